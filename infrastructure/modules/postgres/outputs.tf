output "fqdn" {
  description = "Private host name of the server."
  value       = azurerm_postgresql_flexible_server.this.fqdn
}

output "name" {
  description = "Name of the server (the restore drill's source)."
  value       = azurerm_postgresql_flexible_server.this.name
}
