output "fqdn" {
  description = "Private host name of the server."
  value       = azurerm_postgresql_flexible_server.this.fqdn
}

output "administrator_password" {
  description = "Break-glass administrator password: only in the access-controlled state; operators use Entra ID."
  value       = random_password.administrator.result
  sensitive   = true
}
