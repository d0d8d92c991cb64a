resource "azurerm_container_app_environment" "this" {
  name                           = "cae-${var.name}"
  resource_group_name            = var.resource_group_name
  location                       = var.location
  log_analytics_workspace_id     = var.log_analytics_workspace_id
  infrastructure_subnet_id       = var.subnet_id
  internal_load_balancer_enabled = !var.public_ingress # dev and pre: reachable from the VNet only
  zone_redundancy_enabled        = var.zone_redundant

  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }

  tags = var.tags
}

resource "azurerm_user_assigned_identity" "workload" {
  for_each            = toset(["api", "rotation", "migration"])
  name                = "id-${var.name}-${each.key}"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags
}

resource "azurerm_role_assignment" "pull" {
  for_each             = azurerm_user_assigned_identity.workload
  scope                = var.registry_id
  role_definition_name = "AcrPull"
  principal_id         = each.value.principal_id
}

locals {
  # No password anywhere in the app's configuration: the rotated login is read from
  # Key Vault at run time (DB_SECRET_STORE), with the app's managed identity.
  database_url = "host=${var.database_host} dbname=rates sslmode=verify-full sslrootcert=system"
  common_env = {
    DATABASE_URL    = local.database_url
    DB_SECRET_STORE = "keyvault:${var.key_vault_uri}"
    DB_SECRET_NAME  = "rates-db-app"
  }
}

resource "azurerm_container_app" "api" {
  name                         = "ca-${var.name}-api"
  resource_group_name          = var.resource_group_name
  container_app_environment_id = azurerm_container_app_environment.this.id
  revision_mode                = "Single"
  workload_profile_name        = "Consumption"

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.workload["api"].id]
  }

  registry {
    server   = var.registry_server
    identity = azurerm_user_assigned_identity.workload["api"].id
  }

  ingress {
    external_enabled = var.public_ingress
    target_port      = 3000
    transport        = "http"
    traffic_weight {
      latest_revision = true
      percentage      = 100
    }
  }

  template {
    min_replicas = var.min_replicas
    max_replicas = var.max_replicas

    container {
      name   = "api"
      image  = var.image
      cpu    = 0.5
      memory = "1Gi"

      dynamic "env" {
        for_each = merge(local.common_env, {
          HOST                 = "0.0.0.0"
          PORT                 = "3000"
          AZURE_CLIENT_ID      = azurerm_user_assigned_identity.workload["api"].client_id
          DB_POOL_MAX_LIFETIME = "1800" # below the rotation's grace period (3600 s)
        })
        content {
          name  = env.key
          value = env.value
        }
      }

      liveness_probe {
        transport = "HTTP"
        path      = "/healthz"
        port      = 3000
      }

      readiness_probe {
        transport = "HTTP"
        path      = "/readyz"
        port      = 3000
      }
    }

    http_scale_rule {
      name                = "http-concurrency"
      concurrent_requests = "50"
    }
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [template[0].container[0].image] # the deploy pipeline sets the image
  }
}

# Credential rotation: daily, rotates only when due (ROTATION_PERIOD_DAYS).
resource "azurerm_container_app_job" "rotation" {
  name                         = "caj-${var.name}-rotate"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  container_app_environment_id = azurerm_container_app_environment.this.id
  workload_profile_name        = "Consumption"
  replica_timeout_in_seconds   = 600
  replica_retry_limit          = 1

  schedule_trigger_config {
    cron_expression          = "17 3 * * *"
    parallelism              = 1
    replica_completion_count = 1
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.workload["rotation"].id]
  }

  registry {
    server   = var.registry_server
    identity = azurerm_user_assigned_identity.workload["rotation"].id
  }

  template {
    container {
      name    = "rotate"
      image   = var.image
      cpu     = 0.25
      memory  = "0.5Gi"
      command = ["dbaccess", "rotate", "--if-due"]

      dynamic "env" {
        for_each = merge(local.common_env, {
          AZURE_CLIENT_ID        = azurerm_user_assigned_identity.workload["rotation"].client_id
          DBACCESS_LOGIN_SECRET  = "rates-db-rotator"
          ROTATION_PERIOD_DAYS   = tostring(var.rotation_period_days)
          ROTATION_GRACE_SECONDS = "3600"
        })
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [template[0].container[0].image]
  }
}

# Schema migrations, started by the deploy pipeline before each API revision.
resource "azurerm_container_app_job" "migration" {
  name                         = "caj-${var.name}-migrate"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  container_app_environment_id = azurerm_container_app_environment.this.id
  workload_profile_name        = "Consumption"
  replica_timeout_in_seconds   = 1800
  replica_retry_limit          = 0

  manual_trigger_config {
    parallelism              = 1
    replica_completion_count = 1
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.workload["migration"].id]
  }

  registry {
    server   = var.registry_server
    identity = azurerm_user_assigned_identity.workload["migration"].id
  }

  template {
    container {
      name    = "migrate"
      image   = var.image
      cpu     = 0.25
      memory  = "0.5Gi"
      command = ["rates", "migrate"]

      dynamic "env" {
        for_each = merge(local.common_env, {
          AZURE_CLIENT_ID       = azurerm_user_assigned_identity.workload["migration"].client_id
          DBACCESS_LOGIN_SECRET = "rates-db-migrator"
        })
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [template[0].container[0].image]
  }
}

resource "azurerm_monitor_diagnostic_setting" "environment" {
  name                       = "to-log-analytics"
  target_resource_id         = azurerm_container_app_environment.this.id
  log_analytics_workspace_id = var.log_analytics_workspace_id
  enabled_log {
    category_group = "allLogs"
  }
  metric {
    category = "AllMetrics"
  }
}
