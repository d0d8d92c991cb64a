data "azurerm_client_config" "current" {}

# The password administrator exists because password authentication must stay on (the
# API's rotated slots and the rotator log in with passwords), but nobody knows its
# password: generated ephemerally and sent write-only, it is in no state, plan or output.
# People and the admin jobs administer through Entra ID; break glass is an
# `az postgres flexible-server update --admin-password` by an Owner.
ephemeral "random_password" "administrator" {
  length  = 40
  special = false
}

resource "azurerm_postgresql_flexible_server" "this" {
  #checkov:skip=CKV2_AZURE_57:Private access through VNet integration (a delegated subnet, no public endpoint) instead of a private endpoint.
  #checkov:skip=CKV_AZURE_136:Geo-redundant backup is a per-environment variable; prod enables it (policy-tested).
  name                          = "psql-${var.name}"
  resource_group_name           = var.resource_group_name
  location                      = var.location
  version                       = "16"
  sku_name                      = var.sku_name
  storage_mb                    = var.storage_mb
  auto_grow_enabled             = true
  zone                          = "1"
  delegated_subnet_id           = var.subnet_id
  private_dns_zone_id           = var.private_dns_zone_id
  public_network_access_enabled = false
  backup_retention_days         = var.backup_retention_days
  geo_redundant_backup_enabled  = var.geo_redundant_backup

  # Entra ID for people and the admin jobs; passwords only for the rotated login slots
  # and the rotator.
  administrator_login               = "rates_admin"
  administrator_password_wo         = ephemeral.random_password.administrator.result
  administrator_password_wo_version = 1
  authentication {
    active_directory_auth_enabled = true
    password_auth_enabled         = true
    tenant_id                     = data.azurerm_client_config.current.tenant_id
  }

  dynamic "high_availability" {
    for_each = var.zone_redundant_ha ? [1] : []
    content {
      mode                      = "ZoneRedundant"
      standby_availability_zone = "2"
    }
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }
}

locals {
  # TLS always; pgaudit for DDL and role changes (what the rotation does); every
  # connection logged. No statement logging: verifiers only ever reach the server,
  # but nothing else should be written in full either.
  server_parameters = {
    "require_secure_transport"   = "ON"
    "ssl_min_protocol_version"   = "TLSv1.2"
    "azure.extensions"           = "PGAUDIT"
    "shared_preload_libraries"   = "pgaudit"
    "pgaudit.log"                = "ddl,role"
    "pgaudit.log_parameter"      = "off"
    "log_connections"            = "on"
    "log_disconnections"         = "on"
    "log_checkpoints"            = "on"
    "connection_throttle.enable" = "on"
    "log_min_duration_statement" = "1000"
  }
}

resource "azurerm_postgresql_flexible_server_configuration" "this" {
  for_each  = local.server_parameters
  name      = each.key
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = each.value
}

resource "azurerm_postgresql_flexible_server_database" "rates" {
  name      = "rates"
  server_id = azurerm_postgresql_flexible_server.this.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# Entra ID administrators: the operators' group (break glass, runbooks) and the managed
# identity of the admin jobs. No pipeline identity administers the database. One after
# the other: the server accepts one administrator change at a time.
resource "azurerm_postgresql_flexible_server_active_directory_administrator" "operators" {
  server_name         = azurerm_postgresql_flexible_server.this.name
  resource_group_name = var.resource_group_name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  object_id           = var.operators_group.object_id
  principal_name      = var.operators_group.name
  principal_type      = "Group"
}

resource "azurerm_postgresql_flexible_server_active_directory_administrator" "jobs" {
  server_name         = azurerm_postgresql_flexible_server.this.name
  resource_group_name = var.resource_group_name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  object_id           = var.jobs_identity.object_id
  principal_name      = var.jobs_identity.name
  principal_type      = "ServicePrincipal"
  depends_on          = [azurerm_postgresql_flexible_server_active_directory_administrator.operators]
}

resource "azurerm_monitor_diagnostic_setting" "this" {
  name                       = "to-log-analytics"
  target_resource_id         = azurerm_postgresql_flexible_server.this.id
  log_analytics_workspace_id = var.log_analytics_workspace_id
  enabled_log {
    category = "PostgreSQLLogs"
  }
  enabled_log {
    category = "PostgreSQLFlexSessions"
  }
  metric {
    category = "AllMetrics"
  }
}
