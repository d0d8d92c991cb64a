resource "azurerm_container_app_environment" "this" {
  name                           = "cae-${var.name}"
  resource_group_name            = var.resource_group_name
  location                       = var.location
  log_analytics_workspace_id     = var.log_analytics_workspace_id
  infrastructure_subnet_id       = var.subnet_id
  internal_load_balancer_enabled = !var.public_ingress # dev and pre: reachable from the VNet only
  zone_redundancy_enabled        = var.zone_redundant
  # Set explicitly: left unset with infrastructure_subnet_id, azurerm 4.x reads back the
  # name Azure generated and plans to replace the environment on every plan
  # (hashicorp/terraform-provider-azurerm#28727, #27481). Azure creates this group.
  infrastructure_resource_group_name = "ME_cae-${var.name}"

  workload_profile {
    name                  = "Consumption"
    workload_profile_type = "Consumption"
  }

  tags = var.tags
}

# api serves traffic; rotation runs `dbaccess rotate`; migration is an Entra ID
# administrator of PostgreSQL and runs the admin jobs (migrate, access bootstrap, sample
# load): one identity, because PostgreSQL 16 gives ADMIN OPTION on the roles the
# migrations create to their creator, and the access bootstrap alters those roles.
# audit anchors and verifies the audit chain: an Entra ID login of PostgreSQL in the
# read-only group rates_auditor, and the only writer of the anchor blob.
# expiry runs `dbaccess access expire` every minute as a person of the access workflow
# (rates_people: EXECUTE on the workflow functions, nothing else); person names must
# match [a-z][a-z0-9_]*, so its name has no hyphens. drill runs the weekly restore drill
# (drill.tf): rates_dr_drill in PostgreSQL, and its two custom roles in Azure.
resource "azurerm_user_assigned_identity" "workload" {
  for_each            = toset(["api", "rotation", "migration", "audit", "expiry", "drill"])
  name                = each.key == "expiry" ? "job_expiry_${replace(var.name, "-", "_")}" : "id-${var.name}-${each.key}"
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
  # TLS verified against Debian's CA bundle in the image: the psycopg[binary] wheel's own
  # OpenSSL does not look where Debian keeps CAs, so `sslrootcert=system` alone fails;
  # SSL_CERT_FILE points it (and Python's ssl) at the bundle.
  ca_bundle    = "/etc/ssl/certs/ca-certificates.crt"
  database_url = "host=${var.database_host} dbname=rates sslmode=verify-full sslrootcert=${local.ca_bundle}"
  # No password anywhere in the app's configuration: the rotated login is read from
  # Key Vault at run time (DB_SECRET_STORE), with the app's managed identity.
  common_env = {
    DATABASE_URL    = local.database_url
    SSL_CERT_FILE   = local.ca_bundle
    DB_SECRET_STORE = "keyvault:${var.key_vault_uri}"
    DB_SECRET_NAME  = "rates-db-app"
  }
  # The admin jobs log in as the migration identity, an Entra ID administrator of the
  # server: libpq takes PGPASSWORD, here an Entra access token of the job's managed
  # identity (valid about an hour: longer than any job's timeout). No administrator
  # password exists anywhere.
  entra_login = <<-EOT
    PGPASSWORD="$(python -c 'import os; from azure.identity import ManagedIdentityCredential; print(ManagedIdentityCredential(client_id=os.environ["AZURE_CLIENT_ID"]).get_token("https://ossrdbms-aad.database.windows.net/.default").token)')" || exit 1
    export PGPASSWORD
  EOT
  admin_env = {
    DATABASE_URL = "${local.database_url} user=${azurerm_user_assigned_identity.workload["migration"].name}"
  }
  # The access job, after the rotator's and the API's logins: the access policy the image
  # holds (the Dockerfile copies access-policy.toml into WORKDIR /app; printed, applied and
  # audited as policy.change, a no-op when unchanged), then the audit job's identity
  # becomes an Entra ID login in rates_auditor, the restore drill's one in rates_dr_drill
  # (migration 0011: the rates and audit tables, read only; no policy role, so the expiry
  # job leaves it alone), and the expiry job's identity becomes a person of the workflow,
  # once (`users add` refuses an existing person).
  expiry_person = azurerm_user_assigned_identity.workload["expiry"].name
  access_bootstrap = join(" && ", [
    "dbaccess bootstrap",
    "dbaccess policy apply --file /app/access-policy.toml",
    "dbaccess audit grant-auditor ${azurerm_user_assigned_identity.workload["audit"].name}",
    "dbaccess audit grant-drill ${azurerm_user_assigned_identity.workload["drill"].name}",
    "{ dbaccess users list | grep -q '^name=${local.expiry_person}  .*removed_at=-$' || dbaccess users add ${local.expiry_person} --entra; }",
  ])
  # The jobs whose commands notify (issue 10): the access job (policy changes, people),
  # the expiry job (expiry, overdue, drift, emergencies) and the daily unreviewed alert.
  # The webhook's URL carries the Logic App trigger's SAS signature: a container-app
  # secret (the value stays out of the job's readable configuration and every plan),
  # given as ACCESS_NOTIFY_WEBHOOK, the variable rates_platform.access.notify reads.
  notifying_jobs = ["access", "expiry", "access_alert"]
  notify         = nonsensitive(var.access_notify_webhook != null)
  rotation_env = {
    ROTATION_PERIOD_DAYS   = tostring(var.rotation_period_days)
    ROTATION_GRACE_SECONDS = "3600"
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
        for_each = merge(local.common_env, var.api_edge_env, {
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

locals {
  # The jobs differ only in trigger, size, identity and command. Started by each deploy,
  # in this order: `rates migrate`, `dbaccess bootstrap` (the rotator's login, the API's
  # first credential; a no-op once both work), and in dev and pre the sample data
  # (`--if-empty`). Daily: the credential rotation, rotating only when due.
  all_jobs = {
    rotation = {
      name     = "rotate"
      identity = "rotation"
      schedule = "17 3 * * *"
      timeout  = 600
      retries  = 1
      command  = ["dbaccess", "rotate", "--if-due"]
      env      = merge(local.rotation_env, { DBACCESS_LOGIN = "rates-db-rotator" })
    }
    migration = {
      name     = "migrate"
      identity = "migration"
      schedule = null
      timeout  = 1800
      retries  = 0
      command  = ["/bin/sh", "-c", "${local.entra_login}exec rates migrate"]
      env      = local.admin_env
    }
    access = {
      name     = "access"
      identity = "migration"
      schedule = null
      timeout  = 600
      retries  = 0
      command  = ["/bin/sh", "-c", "${local.entra_login}${local.access_bootstrap}"]
      env      = merge(local.admin_env, local.rotation_env)
    }
    # Every minute (issue 10): lapse undecided requests, end due grants and every session
    # of them, revoke drift; logs access.overdue / access.drift for the alerts. Runs may
    # overlap harmlessly (rows are taken FOR UPDATE SKIP LOCKED); new logins are refused
    # at a grant's end even when no run happens (VALID UNTIL).
    expiry = {
      name     = "expire"
      identity = "expiry"
      schedule = "* * * * *"
      timeout  = 120
      retries  = 0
      command  = ["/bin/sh", "-c", "${local.entra_login}exec dbaccess access expire"]
      env = {
        DATABASE_URL = "${local.database_url} user=${azurerm_user_assigned_identity.workload["expiry"].name}"
      }
    }
    # Daily (issue 10): every emergency grant no approver has reviewed yet, one
    # `access.unreviewed request=...` line each (and a notification); the
    # access-unreviewed alert fires on those lines. As the expiry job's person: listing
    # needs no more than a person has (EXECUTE on access.requests_view).
    access_alert = {
      name     = "access-alert"
      identity = "expiry"
      schedule = "13 8 * * *"
      timeout  = 300
      retries  = 0
      command  = ["/bin/sh", "-c", "${local.entra_login}exec dbaccess access list --alert"]
      env = {
        DATABASE_URL = "${local.database_url} user=${azurerm_user_assigned_identity.workload["expiry"].name}"
      }
    }
    # Hourly: anchor the audit chain's head in the immutable blob, then check the whole
    # chain against every anchor (exit 5 and "audit chain broken" when it does not hold).
    audit = {
      name     = "audit"
      identity = "audit"
      schedule = "7 * * * *"
      timeout  = 600
      retries  = 0
      command  = ["/bin/sh", "-c", "${local.entra_login}dbaccess audit anchor && exec dbaccess audit verify"]
      env = {
        DATABASE_URL  = "${local.database_url} user=${azurerm_user_assigned_identity.workload["audit"].name}"
        AUDIT_ANCHORS = "blob:${var.audit_anchors_url}"
      }
    }
    sample = {
      name     = "sample"
      identity = "migration"
      schedule = null
      timeout  = 1800
      retries  = 0
      command  = ["/bin/sh", "-c", "${local.entra_login}exec rates load-sample --if-empty"]
      env      = local.admin_env
    }
  }
  jobs = { for key, job in local.all_jobs : key => job if key != "sample" || var.sample_data }
}

resource "azurerm_container_app_job" "this" {
  for_each                     = local.jobs
  name                         = "caj-${var.name}-${each.value.name}"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  container_app_environment_id = azurerm_container_app_environment.this.id
  workload_profile_name        = "Consumption"
  replica_timeout_in_seconds   = each.value.timeout
  replica_retry_limit          = each.value.retries

  dynamic "schedule_trigger_config" {
    for_each = each.value.schedule == null ? [] : [each.value.schedule]
    content {
      cron_expression          = schedule_trigger_config.value
      parallelism              = 1
      replica_completion_count = 1
    }
  }

  dynamic "manual_trigger_config" {
    for_each = each.value.schedule == null ? [1] : []
    content {
      parallelism              = 1
      replica_completion_count = 1
    }
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.workload[each.value.identity].id]
  }

  registry {
    server   = var.registry_server
    identity = azurerm_user_assigned_identity.workload[each.value.identity].id
  }

  template {
    container {
      name    = each.value.name
      image   = var.image
      cpu     = 0.25
      memory  = "0.5Gi"
      command = each.value.command

      dynamic "env" {
        for_each = merge(local.common_env, each.value.env, {
          AZURE_CLIENT_ID = azurerm_user_assigned_identity.workload[each.value.identity].client_id
        })
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.notify && contains(local.notifying_jobs, each.key) ? ["ACCESS_NOTIFY_WEBHOOK"] : []
        content {
          name        = env.value
          secret_name = "access-notify-webhook"
        }
      }
    }
  }

  dynamic "secret" {
    for_each = local.notify && contains(local.notifying_jobs, each.key) ? ["access-notify-webhook"] : []
    content {
      name  = secret.value
      value = var.access_notify_webhook
    }
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [template[0].container[0].image] # the deploy pipeline sets the image
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
