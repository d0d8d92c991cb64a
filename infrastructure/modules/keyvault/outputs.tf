output "vault_uri" {
  description = "The vault's URI, for DB_SECRET_STORE=keyvault:<uri>."
  value       = azurerm_key_vault.this.vault_uri
}

output "id" {
  description = "Resource id of the vault."
  value       = azurerm_key_vault.this.id
}
