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
  tags                = local.tags
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
  entra_admin_object_id      = var.pipeline_principal_object_id
  entra_admin_name           = var.pipeline_principal_name
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
  reader_principal_ids = {
    api       = module.apps.api_principal_id
    migration = module.apps.migration_principal_id
  }
  writer_principal_ids       = { rotation = module.apps.rotation_principal_id }
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
  key_vault_uri              = module.key_vault.vault_uri
  rotation_period_days       = var.rotation_period_days
  log_analytics_workspace_id = module.monitoring.workspace_id
  tags                       = local.tags
}
