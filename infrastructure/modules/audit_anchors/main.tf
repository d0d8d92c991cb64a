data "azurerm_client_config" "current" {}

# The audit chain's anchors (`dbaccess audit anchor`): one append blob in a container
# under a time-based retention policy that allows appends only. While the policy holds,
# nobody (not the database's administrator, not the subscription's owner) can overwrite
# or delete a blob, so a rewritten audit history cannot be made to match its anchors.
# Locked in prod: a locked policy can be lengthened, never shortened or removed.
resource "azurerm_storage_account" "this" {
  #checkov:skip=CKV_AZURE_33:Queue service is not used; the account holds append blobs only.
  #checkov:skip=CKV_AZURE_43:The name is computed: st + name without dashes + audit + 6 hex, at most 24 characters.
  name                              = "st${replace(var.name, "-", "")}audit${substr(md5("${data.azurerm_client_config.current.subscription_id}/${var.resource_group_name}"), 0, 6)}"
  resource_group_name               = var.resource_group_name
  location                          = var.location
  account_tier                      = "Standard"
  account_replication_type          = "GRS"
  account_kind                      = "StorageV2"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false # Entra ID only: no account keys to leak
  public_network_access_enabled     = false # the audit job reaches it through the private endpoint
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    delete_retention_policy {
      days = 30
    }
    container_delete_retention_policy {
      days = 30
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }

  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; anchors are hashes, not data that needs a customer key.
  #checkov:skip=CKV2_AZURE_38:Soft delete is set through blob_properties above.
  #checkov:skip=CKV2_AZURE_40:Shared keys are disabled (shared_access_key_enabled = false).
  #checkov:skip=CKV2_AZURE_41:No SAS is issued; the policy is a backstop.
  #checkov:skip=CKV_AZURE_206:GRS (geo-redundant) is the replication chosen.
  tags = var.tags
}

resource "azurerm_storage_container" "anchors" {
  #checkov:skip=CKV2_AZURE_21:Blob read/write/delete logs go to Log Analytics through the diagnostic setting below.
  name                  = "audit-anchors"
  storage_account_id    = azurerm_storage_account.this.id
  container_access_type = "private"
}

resource "azurerm_storage_container_immutability_policy" "anchors" {
  storage_container_resource_manager_id = azurerm_storage_container.anchors.resource_manager_id
  immutability_period_in_days           = var.retention_days
  protected_append_writes_enabled       = true # append blocks to an append blob, nothing else
  locked                                = var.locked
}

resource "azurerm_private_endpoint" "blob" {
  name                = "pe-st-${var.name}-audit"
  resource_group_name = var.resource_group_name
  location            = var.location
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "blob"
    private_connection_resource_id = azurerm_storage_account.this.id
    subresource_names              = ["blob"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "blob"
    private_dns_zone_ids = [var.private_dns_zone_id]
  }
}

# The audit job creates the blob and appends to it; the retention policy refuses it
# (and everyone else) any overwrite or delete.
resource "azurerm_role_assignment" "writer" {
  scope                = azurerm_storage_container.anchors.resource_manager_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = var.writer_principal_id
}

resource "azurerm_monitor_diagnostic_setting" "blob" {
  name                       = "to-log-analytics"
  target_resource_id         = "${azurerm_storage_account.this.id}/blobServices/default"
  log_analytics_workspace_id = var.log_analytics_workspace_id
  enabled_log {
    category = "StorageRead"
  }
  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }
  metric {
    category = "Transaction"
  }
}
