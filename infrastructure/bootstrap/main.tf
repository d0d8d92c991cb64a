data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "state" {
  name     = "rg-${var.name_prefix}-tfstate"
  location = var.location
  tags     = local.tags
}

resource "azurerm_storage_account" "state" {
  #checkov:skip=CKV_AZURE_33:Queue service is not used; the account holds blobs only.
  #checkov:skip=CKV_AZURE_43:The name is computed: st + prefix (validated 3-10 [a-z0-9]) + tfstate + 6 hex, at most 24 characters.
  name                              = "st${var.name_prefix}tfstate${substr(md5(data.azurerm_client_config.current.subscription_id), 0, 6)}"
  resource_group_name               = azurerm_resource_group.state.name
  location                          = azurerm_resource_group.state.location
  account_tier                      = "Standard"
  account_replication_type          = "GRS"
  account_kind                      = "StorageV2"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  allow_nested_items_to_be_public   = false
  shared_access_key_enabled         = false # Entra ID only: no account keys to leak
  public_network_access_enabled     = true  #checkov:skip=CKV_AZURE_59:GitHub-hosted runners reach state over the internet; access is Entra ID RBAC only.
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  blob_properties {
    versioning_enabled  = true
    change_feed_enabled = true
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

  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; state holds no data that needs a customer key.
  #checkov:skip=CKV2_AZURE_33:A private endpoint would lock out GitHub-hosted runners.
  #checkov:skip=CKV2_AZURE_38:Soft delete is set through blob_properties above.
  #checkov:skip=CKV2_AZURE_40:Shared keys are disabled (shared_access_key_enabled = false).
  #checkov:skip=CKV2_AZURE_41:No SAS is issued; the policy is a backstop.
  #checkov:skip=CKV_AZURE_206:GRS (geo-redundant) is the replication chosen for state.
  tags = local.tags
}

resource "azurerm_storage_container" "state" {
  #checkov:skip=CKV2_AZURE_21:Blob read/write/delete logs go to Log Analytics through the diagnostic setting below.
  for_each              = local.environments
  name                  = "tfstate-${each.key}"
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

# The bootstrap's own state, after its first run (README: Deploy): only the operator who
# ran it may read or write it; no pipeline identity can.
resource "azurerm_storage_container" "bootstrap" {
  #checkov:skip=CKV2_AZURE_21:Blob read/write/delete logs go to Log Analytics through the diagnostic setting below.
  name                  = "tfstate-bootstrap"
  storage_account_id    = azurerm_storage_account.state.id
  container_access_type = "private"
}

resource "azurerm_role_assignment" "operator_state" {
  scope                = azurerm_storage_container.bootstrap.resource_manager_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_user_assigned_identity" "github" {
  for_each            = local.github_identities
  name                = "id-${var.name_prefix}-${each.key}"
  resource_group_name = azurerm_resource_group.state.name
  location            = azurerm_resource_group.state.location
  tags                = merge(local.tags, { environment = each.value.environment })
}

# GitHub OIDC: a workflow job in the named GitHub environment may act as the identity;
# nothing stored in GitHub can be replayed elsewhere.
resource "azurerm_federated_identity_credential" "github" {
  for_each            = local.federations
  name                = "github-${each.value.github_environment}"
  resource_group_name = azurerm_resource_group.state.name
  parent_id           = azurerm_user_assigned_identity.github[each.value.identity].id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = "https://token.actions.githubusercontent.com"
  subject             = "repo:${var.github_repository}:environment:${each.value.github_environment}"
}

# State: each environment's infra identity writes its own container (and only it); the
# plan identity reads it. Deploy and build identities never see state. State holds no
# password: PostgreSQL's administrator password is write-only (see modules/postgres).
resource "azurerm_role_assignment" "infra_state" {
  for_each             = local.by_role.infra
  scope                = azurerm_storage_container.state[each.key].resource_manager_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.github[each.value].principal_id
}

resource "azurerm_role_assignment" "plan_state" {
  for_each             = local.by_role.plan
  scope                = azurerm_storage_container.state[each.key].resource_manager_id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = azurerm_user_assigned_identity.github[each.value].principal_id
}

resource "azurerm_role_assignment" "state_readers" {
  for_each             = var.state_reader_principal_ids
  scope                = azurerm_storage_account.state.id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = each.value
}

# One resource group per environment: app-infra fills it; the identities' rights end at it.
resource "azurerm_resource_group" "environment" {
  for_each = local.environments
  name     = "rg-${var.name_prefix}-${each.key}"
  location = var.location
  tags     = merge(local.tags, { environment = each.key })
}

resource "azurerm_role_assignment" "infra_contributor" {
  for_each             = local.by_role.infra
  scope                = azurerm_resource_group.environment[each.key].id
  role_definition_name = "Contributor"
  principal_id         = azurerm_user_assigned_identity.github[each.value].principal_id
}

# app-infra grants its workload identities data roles on single resources, and only
# these: Key Vault Secrets User (4633458b...) and Key Vault Secrets Officer (b86a8fe4...)
# on single secrets, Storage Blob Data Contributor (ba92f5b4...) on the audit anchors'
# container, and the restore drill's two roles below. tests/policy checks every role
# app-infra assigns against this list.
resource "azurerm_role_assignment" "infra_rbac" {
  for_each             = local.by_role.infra
  scope                = azurerm_resource_group.environment[each.key].id
  role_definition_name = "Role Based Access Control Administrator"
  principal_id         = azurerm_user_assigned_identity.github[each.value].principal_id
  condition_version    = "2.0"
  condition            = <<-EOT
    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
     (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals
      {4633458b-17de-408a-b874-0445c86b69e6, b86a8fe4-44ce-4948-aee5-eccb2c155cd7, ba92f5b4-2d11-453d-a403-e96b0029c9fe,
       ${azurerm_role_definition.dr_drill_servers.role_definition_id}, ${azurerm_role_definition.dr_drill_network.role_definition_id}}))
  EOT
}

# The weekly restore drill (app-infra: caj-rates-<env>-drill, README: Disaster recovery)
# runs `az postgres flexible-server restore` to a scratch server in the environment's
# group and network, `show` for host names, and `delete` afterwards. Its identity gets
# these two roles and nothing else: the servers role on the resource group (restore
# creates a server whose name is new each week, so no narrower scope exists), the network
# role on the PostgreSQL subnet and its private DNS zone only (the restored server joins
# both, as the live one did). No Key Vault, no Container Apps, no role assignments, no
# other resource type. Residual risk, accepted for the drill: write and delete at group
# scope also reach the live server (ARM has no conditions on control-plane actions).
resource "azurerm_role_definition" "dr_drill_servers" {
  name        = "${var.name_prefix}-dr-drill-servers"
  scope       = "/subscriptions/${data.azurerm_client_config.current.subscription_id}"
  description = "Restore a rates platform PostgreSQL server to a scratch server, read it, delete it."
  permissions {
    actions = [
      "Microsoft.DBforPostgreSQL/flexibleServers/read",
      "Microsoft.DBforPostgreSQL/flexibleServers/write",
      "Microsoft.DBforPostgreSQL/flexibleServers/delete",
      # Polling the restore's and the delete's long-running operations.
      "Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read",
      "Microsoft.DBforPostgreSQL/locations/operationResults/read",
    ]
    not_actions = []
  }
  assignable_scopes = [for rg in azurerm_resource_group.environment : rg.id]
}

resource "azurerm_role_definition" "dr_drill_network" {
  name        = "${var.name_prefix}-dr-drill-network"
  scope       = "/subscriptions/${data.azurerm_client_config.current.subscription_id}"
  description = "Place a restored rates platform PostgreSQL server in the delegated subnet and private DNS zone."
  permissions {
    actions = [
      "Microsoft.Network/virtualNetworks/subnets/join/action",
      "Microsoft.Network/privateDnsZones/join/action",
    ]
    not_actions = []
  }
  assignable_scopes = [for rg in azurerm_resource_group.environment : rg.id]
}

# The registry lives in the bootstrap group, which no infra identity can otherwise touch:
# each may grant AcrPull (7f951dda...) there, to service principals (its workload
# identities), and nothing else. Pulling an image is all such a grant allows, and the
# images are the same in every environment; the workload identities stay with the app
# stack that uses them.
resource "azurerm_role_assignment" "infra_acr_pull_grants" {
  for_each             = local.by_role.infra
  scope                = azurerm_container_registry.images.id
  role_definition_name = "Role Based Access Control Administrator"
  principal_id         = azurerm_user_assigned_identity.github[each.value].principal_id
  condition_version    = "2.0"
  condition            = <<-EOT
    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
     (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals
      {7f951dda-4ed3-4680-a7ca-43fe172d538d}
      AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase
      {'ServicePrincipal'}))
    AND
    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR
     (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals
      {7f951dda-4ed3-4680-a7ca-43fe172d538d}))
  EOT
}

# Read-only plans (pull requests, nightly drift): every read, plus listing the secrets
# of container apps and jobs, which the provider reads on refresh (they hold none: the
# workloads read Key Vault at run time).
resource "azurerm_role_definition" "plan_reader" {
  name        = "${var.name_prefix}-plan-reader"
  scope       = "/subscriptions/${data.azurerm_client_config.current.subscription_id}"
  description = "Read everything of a rates platform environment for terraform plan; change nothing."
  permissions {
    actions = [
      "*/read",
      "Microsoft.App/containerApps/listSecrets/action",
      "Microsoft.App/jobs/listSecrets/action",
    ]
    not_actions = []
  }
  assignable_scopes = [for rg in azurerm_resource_group.environment : rg.id]
}

resource "azurerm_role_assignment" "plan_reader" {
  for_each           = local.by_role.plan
  scope              = azurerm_resource_group.environment[each.key].id
  role_definition_id = azurerm_role_definition.plan_reader.role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.github[each.value].principal_id
}

# Deploying the application changes a container app's image and starts jobs: nothing else.
resource "azurerm_role_definition" "app_deployer" {
  name        = "${var.name_prefix}-app-deployer"
  scope       = "/subscriptions/${data.azurerm_client_config.current.subscription_id}"
  description = "Update container app revisions and start container app jobs of the rates platform."
  permissions {
    actions = [
      "Microsoft.App/containerApps/read",
      "Microsoft.App/containerApps/write",
      "Microsoft.App/containerApps/listSecrets/action", # az containerapp update reads them (there are none)
      "Microsoft.App/containerApps/revisions/read",
      "Microsoft.App/jobs/read",
      "Microsoft.App/jobs/write",
      "Microsoft.App/jobs/listSecrets/action",
      "Microsoft.App/jobs/start/action",
      "Microsoft.App/jobs/executions/read",
      "Microsoft.App/managedEnvironments/read",
      "Microsoft.App/managedEnvironments/join/action",
      "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
      "Microsoft.Resources/subscriptions/resourceGroups/read",
    ]
    not_actions = []
  }
  assignable_scopes = [for rg in azurerm_resource_group.environment : rg.id]
}

resource "azurerm_role_assignment" "deploy_apps" {
  for_each           = local.by_role.deploy
  scope              = azurerm_resource_group.environment[each.key].id
  role_definition_id = azurerm_role_definition.app_deployer.role_definition_resource_id
  principal_id       = azurerm_user_assigned_identity.github[each.value].principal_id
}

# Images are built once and promoted unchanged from dev to prod: one registry.
resource "azurerm_container_registry" "images" {
  #checkov:skip=CKV_AZURE_139:GitHub-hosted runners push over the internet; admin user is off and access is Entra ID only.
  #checkov:skip=CKV_AZURE_166:Image quarantine is in preview; images are scanned by trivy before push.
  #checkov:skip=CKV_AZURE_233:Zone redundancy needs Premium in a zonal region; decided per subscription.
  #checkov:skip=CKV_AZURE_237:Dedicated data endpoints need Premium networking; not used.
  #checkov:skip=CKV_AZURE_164:Content trust is retired in favour of signing; images are referenced by digest.
  #checkov:skip=CKV_AZURE_165:All environments run in one region; geo-replication is added with a second region.
  name                          = "cr${var.name_prefix}${substr(md5(data.azurerm_client_config.current.subscription_id), 0, 6)}"
  resource_group_name           = azurerm_resource_group.state.name
  location                      = azurerm_resource_group.state.location
  sku                           = "Premium"
  admin_enabled                 = false
  public_network_access_enabled = true
  anonymous_pull_enabled        = false
  retention_policy_in_days      = 30
  tags                          = local.tags
}

# The build job (GitHub environment `build`) pushes the image once; deploys promote it
# by digest. It also reads which image prod runs, for the nightly scan.
resource "azurerm_role_assignment" "build_push" {
  scope                = azurerm_container_registry.images.id
  role_definition_name = "AcrPush"
  principal_id         = azurerm_user_assigned_identity.github["build"].principal_id
}

resource "azurerm_role_assignment" "build_reads_prod_apps" {
  scope                = azurerm_resource_group.environment["prod"].id
  role_definition_name = "Reader"
  principal_id         = azurerm_user_assigned_identity.github["build"].principal_id
}

# Who read or wrote state, and when: blob service logs to Log Analytics.
resource "azurerm_log_analytics_workspace" "bootstrap" {
  name                = "log-${var.name_prefix}-bootstrap"
  resource_group_name = azurerm_resource_group.state.name
  location            = azurerm_resource_group.state.location
  sku                 = "PerGB2018"
  retention_in_days   = 365
  tags                = local.tags
}

resource "azurerm_monitor_diagnostic_setting" "state_blobs" {
  name                       = "to-log-analytics"
  target_resource_id         = "${azurerm_storage_account.state.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.bootstrap.id
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
