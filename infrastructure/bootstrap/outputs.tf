output "state_storage_account" {
  description = "Name of the storage account holding Terraform state (for backend configs)."
  value       = azurerm_storage_account.state.name
}

output "state_resource_group" {
  description = "Resource group of the state storage account."
  value       = azurerm_resource_group.state.name
}

output "github_environment_variables" {
  description = "Per GitHub environment, the variables to set on it: the client id of each identity federated to it."
  value = {
    for github_environment in distinct(flatten([for i in local.github_identities : i.github_environments])) :
    github_environment => {
      for key, identity in local.github_identities :
      identity.client_id_variable => azurerm_user_assigned_identity.github[key].client_id
      if contains(identity.github_environments, github_environment)
    }
  }
}

output "tenant_id" {
  description = "Entra ID tenant, for AZURE_TENANT_ID."
  value       = data.azurerm_client_config.current.tenant_id
}

output "registry_login_server" {
  description = "Login server of the image registry (REGISTRY variable of the pipelines)."
  value       = azurerm_container_registry.images.login_server
}

output "registry_id" {
  description = "Resource id of the image registry (REGISTRY_ID variable), for AcrPull grants in app-infra."
  value       = azurerm_container_registry.images.id
}

output "environment_resource_groups" {
  description = "Resource group of each environment."
  value       = { for k, v in azurerm_resource_group.environment : k => v.name }
}
