module "monitoring" {
  source              = "../modules/monitoring"
  name                = local.name
  resource_group_name = var.resource_group_name
  location            = var.location
  retention_days      = var.log_retention_days
  tags                = local.tags
}

module "network" {
  source              = "../modules/network"
  name                = local.name
  resource_group_name = var.resource_group_name
  location            = var.location
  address_space       = var.address_space
  apps_private_domain = var.public_ingress ? null : {
    domain    = module.apps.environment_default_domain
    static_ip = module.apps.environment_static_ip
  }
  tags = local.tags
}

module "postgres" {
  source                     = "../modules/postgres"
  name                       = local.name
  resource_group_name        = var.resource_group_name
  location                   = var.location
  sku_name                   = var.postgres_sku
  storage_mb                 = var.postgres_storage_mb
  backup_retention_days      = var.backup_retention_days
  geo_redundant_backup       = var.geo_redundant_backup
  zone_redundant_ha          = var.zone_redundant_ha
  subnet_id                  = module.network.postgres_subnet_id
  private_dns_zone_id        = module.network.postgres_dns_zone_id
  operators_group            = { object_id = var.postgres_operators_group_object_id, name = var.postgres_operators_group_name }
  jobs_identity              = { object_id = module.apps.migration_principal_id, name = module.apps.migration_identity_name }
  log_analytics_workspace_id = module.monitoring.workspace_id
  tags                       = local.tags
}

module "key_vault" {
  source                     = "../modules/keyvault"
  name                       = local.name
  resource_group_name        = var.resource_group_name
  location                   = var.location
  private_endpoint_subnet_id = module.network.private_endpoints_subnet_id
  private_dns_zone_id        = module.network.key_vault_dns_zone_id
  # The API reads only its own login; nothing that serves traffic can read the rotator's.
  # The rotation job rotates rates-db-app with its own login; the admin jobs' identity
  # (access bootstrap) writes both. No administrator credential is stored at all.
  vault_grants = [
    { secret = "rates-db-app", principal = "api", principal_id = module.apps.api_principal_id, role = "Key Vault Secrets User" },
    { secret = "rates-db-app", principal = "rotation", principal_id = module.apps.rotation_principal_id, role = "Key Vault Secrets Officer" },
    { secret = "rates-db-app", principal = "migration", principal_id = module.apps.migration_principal_id, role = "Key Vault Secrets Officer" },
    { secret = "rates-db-rotator", principal = "rotation", principal_id = module.apps.rotation_principal_id, role = "Key Vault Secrets User" },
    { secret = "rates-db-rotator", principal = "migration", principal_id = module.apps.migration_principal_id, role = "Key Vault Secrets Officer" },
  ]
  log_analytics_workspace_id = module.monitoring.workspace_id
  tags                       = local.tags
}

module "apps" {
  source                     = "../modules/container_apps"
  name                       = local.name
  resource_group_name        = var.resource_group_name
  location                   = var.location
  subnet_id                  = module.network.apps_subnet_id
  public_ingress             = var.public_ingress
  zone_redundant             = var.zone_redundant_ha
  min_replicas               = var.min_replicas
  max_replicas               = var.max_replicas
  image                      = var.image
  registry_server            = var.registry_server
  registry_id                = var.registry_id
  database_host              = module.postgres.fqdn
  postgres_server_name       = module.postgres.name
  postgres_subnet_id         = module.network.postgres_subnet_id
  postgres_dns_zone_id       = module.network.postgres_dns_zone_id
  azure_cli_image            = var.azure_cli_image
  key_vault_uri              = module.key_vault.vault_uri
  rotation_period_days       = var.rotation_period_days
  sample_data                = var.sample_data
  audit_anchors_url          = module.audit_anchors.blob_url
  api_edge_env               = module.edge.api_env
  access_notify_webhook      = local.notify ? module.notifications[0].webhook_url : null
  log_analytics_workspace_id = module.monitoring.workspace_id
  tags                       = local.tags
}

# Front Door Premium and its WAF in front of the API where it is public (prod); in every
# environment, the apps subnet's ingress and egress locked down (modules/edge).
module "edge" {
  source                          = "../modules/edge"
  name                            = local.name
  resource_group_name             = var.resource_group_name
  location                        = var.location
  gateway_enabled                 = var.public_ingress
  origin_host                     = module.apps.api_fqdn
  apps_subnet                     = { id = module.network.apps_subnet_id, prefix = module.network.subnet_prefixes.apps }
  postgres_subnet_prefix          = module.network.subnet_prefixes.postgres
  private_endpoints_subnet_prefix = module.network.subnet_prefixes.private_endpoints
  log_analytics_workspace_id      = module.monitoring.workspace_id
  tags                            = local.tags
}

# The access workflow's notifications (README, "Access requests"): a Logic App whose HTTP
# trigger posts each event to Teams. Only where a Teams webhook is given (a secret of the
# GitHub environment, TF_VAR_teams_webhook_url); the trigger admits the apps' outbound
# addresses only, and its URL reaches the notifying jobs as a container-app secret.
module "notifications" {
  count                    = local.notify ? 1 : 0
  source                   = "../modules/notifications"
  name                     = local.name
  resource_group_name      = var.resource_group_name
  location                 = var.location
  teams_webhook_url        = var.teams_webhook_url
  allowed_caller_ip_ranges = [for address in module.apps.outbound_ip_addresses : "${address}/32"]
  tags                     = local.tags
}

module "audit_anchors" {
  source                     = "../modules/audit_anchors"
  name                       = local.name
  resource_group_name        = var.resource_group_name
  location                   = var.location
  private_endpoint_subnet_id = module.network.private_endpoints_subnet_id
  private_dns_zone_id        = module.network.blob_dns_zone_id
  writer_principal_id        = module.apps.audit_principal_id
  retention_days             = 400
  locked                     = var.environment == "prod"
  log_analytics_workspace_id = module.monitoring.workspace_id
  tags                       = local.tags
}

module "alerts" {
  source                     = "../modules/alerts"
  name                       = local.name
  resource_group_name        = var.resource_group_name
  location                   = var.location
  log_analytics_workspace_id = module.monitoring.workspace_id
  api_id                     = module.apps.api_id
  api_name                   = module.apps.api_name
  rotation_job_name          = module.apps.rotation_job_name
  expiry_job_name            = module.apps.expiry_job_name
  access_alert_job_name      = module.apps.access_alert_job_name
  drill_job_name             = module.apps.drill_job_name
  alert_email                = var.alert_email
  tags                       = local.tags
}
