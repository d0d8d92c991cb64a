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
  description = "Private DNS zone of PostgreSQL Flexible Server, once linked to the VNet (the server's creation fails without the link)."
  value       = azurerm_private_dns_zone.zones["privatelink.postgres.database.azure.com"].id
  depends_on  = [azurerm_private_dns_zone_virtual_network_link.zones]
}

output "key_vault_dns_zone_id" {
  description = "Private DNS zone of Key Vault private endpoints."
  value       = azurerm_private_dns_zone.zones["privatelink.vaultcore.azure.net"].id
}

output "blob_dns_zone_id" {
  description = "Private DNS zone of blob private endpoints (the audit anchors)."
  value       = azurerm_private_dns_zone.zones["privatelink.blob.core.windows.net"].id
}

output "runners_subnet_id" {
  description = "Subnet of the self-hosted runners and the runbook host."
  value       = azurerm_subnet.runners.id
}

output "subnet_prefixes" {
  description = "Address prefix of each subnet (apps, postgres, private_endpoints): the apps' security group names its destinations by them."
  value = {
    apps              = azurerm_subnet.apps.address_prefixes[0]
    postgres          = azurerm_subnet.postgres.address_prefixes[0]
    private_endpoints = azurerm_subnet.private_endpoints.address_prefixes[0]
  }
}
