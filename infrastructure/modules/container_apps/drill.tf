# The weekly restore drill (README: Disaster recovery; scripts/dr_drill_azure.sh is the
# same procedure for a host that has both tools). One job, two containers that meet in an
# EmptyDir volume: the official Azure CLI image (pinned by digest) restores the live
# server to a scratch server and deletes it afterwards, whatever happened; the app's image
# compares the two (`python -m rates_platform.drdrill compare`) as the drill's Entra ID
# login. The app's image stays free of the Azure CLI (its size, its CVEs, its Python);
# the CLI image never holds a database token.
#
# The handshake, in $DRILL_DIR: the CLI container writes `restored` (three lines: the
# live host, the scratch host, the target time) once the restore finished, or `failed`
# (an exit code) if it could not restore; the compare container writes `result` (its
# exit code) when it is done, whatever happened. Each side waits a bounded time.
# Exit codes as the script's: 0 whole, 1 a check failed, 2 no restore, 3 inconclusive.
locals {
  drill_restore = <<-EOT
    set -u
    log() { printf '%s dr-drill: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
    scratch="$SOURCE_SERVER-drill-$(date -u +%Y%m%d%H%M)"
    target=$(date -u -d "@$(($(date +%s) - DRILL_TARGET_AGE_MIN * 60))" +%Y-%m-%dT%H:%M:%S+00:00)
    give_up() { log "$1"; printf '2\n' > "$DRILL_DIR/failed"; exit 2; }
    az login --identity --client-id "$AZURE_CLIENT_ID" --output none || give_up "cannot log in as the drill's identity"
    nowait=""
    cleanup() {
      status=$?
      log "deleting the scratch server $scratch"
      az postgres flexible-server delete --resource-group "$RESOURCE_GROUP" --name "$scratch" --yes --output none $nowait || log "could not delete $scratch: delete it by hand"
      [ "$status" -eq 0 ] || log "drill failed (exit $status)"
    }
    trap cleanup EXIT
    trap 'nowait=--no-wait; exit 143' TERM INT # the job's timeout: do not wait for the delete
    log "restoring $SOURCE_SERVER as of $target into $scratch (same network, private access)"
    az postgres flexible-server restore --resource-group "$RESOURCE_GROUP" --name "$scratch" --source-server "$SOURCE_SERVER" --restore-time "$target" --output none || give_up "the restore itself failed"
    host_of() { az postgres flexible-server show --resource-group "$RESOURCE_GROUP" --name "$1" --query fullyQualifiedDomainName --output tsv; }
    source_host=$(host_of "$SOURCE_SERVER") && scratch_host=$(host_of "$scratch") || give_up "cannot read the servers' host names"
    printf '%s\n' "$source_host" "$scratch_host" "$target" > "$DRILL_DIR/restored.tmp"
    mv "$DRILL_DIR/restored.tmp" "$DRILL_DIR/restored"
    waited=0
    until [ -f "$DRILL_DIR/result" ]; do
      [ "$waited" -lt "$DRILL_COMPARE_TIMEOUT" ] || { log "no comparison after $waited s"; exit 1; }
      sleep 2; waited=$((waited + 2))
    done
    exit "$(cat "$DRILL_DIR/result")"
  EOT

  drill_compare = <<-EOT
    set -u
    log() { printf '%s dr-drill: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
    finish() {
      status=$?
      printf '%s\n' "$status" > "$DRILL_DIR/result.tmp" && mv "$DRILL_DIR/result.tmp" "$DRILL_DIR/result"
      [ "$status" -eq 0 ] || log "drill failed (exit $status)"
    }
    trap finish EXIT
    waited=0
    until [ -f "$DRILL_DIR/restored" ]; do
      if [ -f "$DRILL_DIR/failed" ]; then log "no restore to compare"; exit "$(cat "$DRILL_DIR/failed")"; fi
      [ "$waited" -lt "$DRILL_RESTORE_TIMEOUT" ] || { log "no restore after $waited s"; exit 2; }
      sleep 2; waited=$((waited + 2))
    done
    { read -r source_host; read -r scratch_host; read -r target; } < "$DRILL_DIR/restored"
    ${local.entra_login}
    conninfo() { printf 'host=%s port=5432 dbname=%s user=%s sslmode=verify-full sslrootcert=%s' "$1" "$DATABASE" "$DRILL_LOGIN" "$SSL_CERT_FILE"; }
    log "comparing $source_host with $scratch_host at $target"
    python -m rates_platform.drdrill compare --source "$(conninfo "$source_host")" --restored "$(conninfo "$scratch_host")" --target-time "$target"
  EOT

  # Both containers: where they meet, and how long each waits for the other. The job's
  # timeout bounds the restore (which takes minutes to an hour), the comparison and the
  # delete.
  drill_env = {
    DRILL_DIR             = "/drill"
    DRILL_RESTORE_TIMEOUT = "5400"
    DRILL_COMPARE_TIMEOUT = "900"
    DRILL_TARGET_AGE_MIN  = "15"
    RESOURCE_GROUP        = var.resource_group_name
    SOURCE_SERVER         = var.postgres_server_name
    DRILL_LOGIN           = azurerm_user_assigned_identity.workload["drill"].name
    DATABASE              = "rates"
    AZURE_CLIENT_ID       = azurerm_user_assigned_identity.workload["drill"].client_id
  }
  # Keyed so that the app's container comes first (the deploy pipeline's image).
  drill_containers = {
    compare = {
      image   = var.image
      command = local.drill_compare
      env     = { SSL_CERT_FILE = local.ca_bundle }
    }
    restore = {
      image   = var.azure_cli_image
      command = local.drill_restore
      env     = { AZURE_CONFIG_DIR = "/tmp/azure" } # the CLI's token cache: its own, not the volume
    }
  }
}

resource "azurerm_container_app_job" "drill" {
  name                         = "caj-${var.name}-drill"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  container_app_environment_id = azurerm_container_app_environment.this.id
  workload_profile_name        = "Consumption"
  replica_timeout_in_seconds   = 7200
  replica_retry_limit          = 0 # a retry would restore again: the next week's run will

  schedule_trigger_config {
    cron_expression          = "23 4 * * 1" # Mondays 04:23 UTC, after the nightly backup
    parallelism              = 1
    replica_completion_count = 1
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.workload["drill"].id]
  }

  registry {
    server   = var.registry_server
    identity = azurerm_user_assigned_identity.workload["drill"].id
  }

  template {
    dynamic "container" {
      for_each = local.drill_containers
      content {
        name    = container.key
        image   = container.value.image
        cpu     = 0.25
        memory  = "0.5Gi"
        command = ["/bin/sh", "-c", container.value.command]

        dynamic "env" {
          for_each = merge(local.drill_env, container.value.env)
          content {
            name  = env.key
            value = env.value
          }
        }

        volume_mounts {
          name = "drill"
          path = "/drill"
        }
      }
    }

    volume {
      name         = "drill"
      storage_type = "EmptyDir"
    }
  }

  tags = var.tags

  lifecycle {
    # The deploy pipeline sets the app's image (the compare container, the first).
    ignore_changes = [template[0].container[0].image]
  }
}

# Azure rights: the two custom roles the bootstrap defines (and lets the infra identity
# grant), no others. The servers role on the resource group: restore creates a server
# named anew each week, show reads both, delete removes the scratch one. The network role
# on the PostgreSQL subnet and its private DNS zone only: the restored server joins both.
data "azurerm_client_config" "current" {}

data "azurerm_role_definition" "drill" {
  for_each = toset(["servers", "network"])
  name     = "rates-dr-drill-${each.key}" # bootstrap: "${var.name_prefix}-dr-drill-<key>"
  scope    = "/subscriptions/${data.azurerm_client_config.current.subscription_id}"
}

locals {
  drill_grants = {
    servers = { role = "servers", scope = "/subscriptions/${data.azurerm_client_config.current.subscription_id}/resourceGroups/${var.resource_group_name}" }
    subnet  = { role = "network", scope = var.postgres_subnet_id }
    zone    = { role = "network", scope = var.postgres_dns_zone_id }
  }
}

resource "azurerm_role_assignment" "drill" {
  for_each           = local.drill_grants
  scope              = each.value.scope
  role_definition_id = data.azurerm_role_definition.drill[each.value.role].id
  principal_id       = azurerm_user_assigned_identity.workload["drill"].principal_id
  principal_type     = "ServicePrincipal"
}
