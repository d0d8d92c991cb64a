output "state_storage_account" {
  description = "Name of the storage account holding Terraform state (for backend configs)."
  value       = azurerm_storage_account.state.name
}

output "state_resource_group" {
  description = "Resource group of the state storage account."
  value       = azurerm_resource_group.state.name
}

output "github_client_ids" {
  description = "Client ids of the deploy identities, for the AZURE_CLIENT_ID variables of GitHub environments."
  value       = { for k, v in azurerm_user_assigned_identity.github : k => v.client_id }
}

output "github_principal_ids" {
  description = "Principal ids of the deploy identities, for role assignments made by app-infra."
  value       = { for k, v in azurerm_user_assigned_identity.github : k => v.principal_id }
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
  description = "Resource id of the image registry, for AcrPull grants in app-infra."
  value       = azurerm_container_registry.images.id
}

output "environment_resource_groups" {
  description = "Resource group of each environment."
  value       = { for k, v in azurerm_resource_group.environment : k => v.name }
}
