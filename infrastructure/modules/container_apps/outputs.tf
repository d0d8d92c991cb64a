output "api_fqdn" {
  description = "Host name of the API (internal to the VNet unless public_ingress)."
  value       = azurerm_container_app.api.ingress[0].fqdn
}

output "api_principal_id" {
  description = "Principal of the API's identity (Key Vault Secrets User)."
  value       = azurerm_user_assigned_identity.workload["api"].principal_id
}

output "rotation_principal_id" {
  description = "Principal of the rotation job's identity (Key Vault Secrets Officer)."
  value       = azurerm_user_assigned_identity.workload["rotation"].principal_id
}

output "api_name" {
  description = "Name of the API container app, for deploys."
  value       = azurerm_container_app.api.name
}

output "rotation_job_name" {
  description = "Name of the rotation job."
  value       = azurerm_container_app_job.this["rotation"].name
}

output "migration_principal_id" {
  description = "Principal of the migration job's identity (Key Vault Secrets User)."
  value       = azurerm_user_assigned_identity.workload["migration"].principal_id
}

output "migration_job_name" {
  description = "Name of the migration job the deploy pipeline starts."
  value       = azurerm_container_app_job.this["migration"].name
}
