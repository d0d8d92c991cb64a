data "azurerm_client_config" "current" {}

# Holds the database logins: the API's rotated one (rates-db-app) and the rotator's
# (rates-db-rotator). No administrator credential: the admin jobs use Entra ID tokens.
resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_189:Public network access is disabled; this check mis-reads network_acls.
  name                          = "kv-${var.name}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "standard"
  enable_rbac_authorization     = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = false

  network_acls {
    default_action = "Deny"
    bypass         = "None"
  }

  tags = var.tags
}

resource "azurerm_private_endpoint" "vault" {
  name                = "pe-kv-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "vault"
    private_connection_resource_id = azurerm_key_vault.this.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "vault"
    private_dns_zone_ids = [var.private_dns_zone_id]
  }
}

# Least privilege per secret, not per vault: the API may read only rates-db-app; only
# the jobs that write a secret may write it. A role is scoped to a secret that exists,
# so each secret is created here through Azure Resource Manager (the control plane: the
# vault stays private) with one disabled, unlabelled first version, which the code
# never reads (dbaccess.keyvault lists enabled versions only). Its tags carry the shape
# the code expects (`stages`, `created`), should anyone enable it.
resource "azurerm_resource_group_template_deployment" "secrets" {
  for_each            = toset(distinct([for grant in var.vault_grants : grant.secret]))
  name                = "kv-secret-${each.key}"
  resource_group_name = var.resource_group_name
  deployment_mode     = "Incremental"
  template_content = jsonencode({
    "$schema"      = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    contentVersion = "1.0.0.0"
    resources = [{
      type       = "Microsoft.KeyVault/vaults/secrets"
      apiVersion = "2023-07-01"
      name       = "${azurerm_key_vault.this.name}/${each.key}"
      tags       = { stages = "", created = "1970-01-01T00:00:00+00:00" }
      properties = {
        value       = "{}"
        contentType = "application/json"
        attributes  = { enabled = false }
      }
    }]
  })
  tags = var.tags

  lifecycle {
    ignore_changes = [template_content] # created once; the jobs add the versions
  }
}

resource "azurerm_role_assignment" "secrets" {
  for_each             = { for grant in var.vault_grants : "${grant.secret}-${grant.principal}" => grant }
  scope                = "${azurerm_key_vault.this.id}/secrets/${each.value.secret}"
  role_definition_name = each.value.role
  principal_id         = each.value.principal_id
  depends_on           = [azurerm_resource_group_template_deployment.secrets]
}

resource "azurerm_monitor_diagnostic_setting" "this" {
  name                       = "to-log-analytics"
  target_resource_id         = azurerm_key_vault.this.id
  log_analytics_workspace_id = var.log_analytics_workspace_id
  enabled_log {
    category = "AuditEvent"
  }
  metric {
    category = "AllMetrics"
  }
}
