output "resource_group_name" {
  description = "The environment's resource group (the deploy script's target)."
  value       = var.resource_group_name
}

output "api_fqdn" {
  description = "Host name of the API (internal to the VNet in dev and pre)."
  value       = module.apps.api_fqdn
}

output "api_name" {
  description = "Container app the deploy pipeline updates."
  value       = module.apps.api_name
}

output "rotation_job_name" {
  description = "Scheduled job running `dbaccess rotate --if-due`."
  value       = module.apps.rotation_job_name
}

output "migration_job_name" {
  description = "Job running `rates migrate`, started by each deploy."
  value       = module.apps.migration_job_name
}

output "key_vault_uri" {
  description = "Vault holding the rotated database logins."
  value       = module.key_vault.vault_uri
}

output "postgres_fqdn" {
  description = "Private host name of PostgreSQL."
  value       = module.postgres.fqdn
}

output "access_job_name" {
  description = "Job running `dbaccess bootstrap`, started by each deploy after the migrations."
  value       = module.apps.access_job_name
}

output "sample_job_name" {
  description = "Job loading the sample data into an empty database (dev and pre; empty in prod)."
  value       = module.apps.sample_job_name
}

output "api_public_host" {
  description = "The API's public host through Front Door (prod; empty where there is no gateway)."
  value       = module.edge.endpoint_host
}

output "audit_job_name" {
  description = "Hourly job anchoring and verifying the audit chain (each deploy moves it to the new image)."
  value       = module.apps.audit_job_name
}

output "expiry_job_name" {
  description = "Job running `dbaccess access expire` every minute (each deploy moves it to the new image)."
  value       = module.apps.expiry_job_name
}

output "access_alert_job_name" {
  description = "Daily job alerting unreviewed emergency grants (each deploy moves it to the new image)."
  value       = module.apps.access_alert_job_name
}

output "drill_job_name" {
  description = "Weekly restore-drill job (its `compare` container runs the app's image)."
  value       = module.apps.drill_job_name
}
