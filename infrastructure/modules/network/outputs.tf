output "apps_subnet_id" {
  description = "Subnet of the Container Apps environment."
  value       = azurerm_subnet.apps.id
}

output "postgres_subnet_id" {
  description = "Delegated subnet of the PostgreSQL server."
  value       = azurerm_subnet.postgres.id
}

output "private_endpoints_subnet_id" {
  description = "Subnet of private endpoints (Key Vault)."
  value       = azurerm_subnet.private_endpoints.id
}

output "postgres_dns_zone_id" {
  description = "Private DNS zone of PostgreSQL Flexible Server."
  value       = azurerm_private_dns_zone.zones["privatelink.postgres.database.azure.com"].id
}

output "key_vault_dns_zone_id" {
  description = "Private DNS zone of Key Vault private endpoints."
  value       = azurerm_private_dns_zone.zones["privatelink.vaultcore.azure.net"].id
}
