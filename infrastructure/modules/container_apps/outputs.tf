output "api_fqdn" {
  description = "Host name of the API (internal to the VNet unless public_ingress)."
  value       = azurerm_container_app.api.ingress[0].fqdn
}

output "api_principal_id" {
  description = "Principal of the API's identity (reads rates-db-app only)."
  value       = azurerm_user_assigned_identity.workload["api"].principal_id
}

output "rotation_principal_id" {
  description = "Principal of the rotation job's identity."
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
  description = "Principal of the admin jobs' identity (migrate, access bootstrap, sample load): an Entra ID administrator of PostgreSQL."
  value       = azurerm_user_assigned_identity.workload["migration"].principal_id
}

output "migration_job_name" {
  description = "Name of the migration job the deploy pipeline starts."
  value       = azurerm_container_app_job.this["migration"].name
}

output "migration_identity_name" {
  description = "Name of the admin jobs' identity: its PostgreSQL role name as an Entra ID administrator."
  value       = azurerm_user_assigned_identity.workload["migration"].name
}

output "access_job_name" {
  description = "Name of the job running `dbaccess bootstrap`, started by each deploy after the migrations."
  value       = azurerm_container_app_job.this["access"].name
}

output "sample_job_name" {
  description = "Name of the job loading the sample data if the database has none (dev and pre; empty in prod)."
  value       = var.sample_data ? azurerm_container_app_job.this["sample"].name : ""
}

output "audit_principal_id" {
  description = "Principal of the audit job's identity (writes the anchor blob)."
  value       = azurerm_user_assigned_identity.workload["audit"].principal_id
}

output "audit_identity_name" {
  description = "Name of the audit job's identity: its PostgreSQL role name (an Entra ID principal in rates_auditor)."
  value       = azurerm_user_assigned_identity.workload["audit"].name
}

output "audit_job_name" {
  description = "Name of the hourly job anchoring and verifying the audit chain."
  value       = azurerm_container_app_job.this["audit"].name
}

output "environment_default_domain" {
  description = "Default domain of the Container Apps environment (a private DNS zone in dev and pre)."
  value       = azurerm_container_app_environment.this.default_domain
}

output "environment_static_ip" {
  description = "Static IP of the environment's load balancer (internal in dev and pre)."
  value       = azurerm_container_app_environment.this.static_ip_address
}

output "outbound_ip_addresses" {
  description = "Public addresses the environment's apps and jobs call out from (the notifications trigger admits only these)."
  value       = azurerm_container_app.api.outbound_ip_addresses
}

output "api_id" {
  description = "Resource id of the API container app (metric alerts)."
  value       = azurerm_container_app.api.id
}

output "expiry_job_name" {
  description = "Name of the job running `dbaccess access expire` every minute."
  value       = azurerm_container_app_job.this["expiry"].name
}

output "access_alert_job_name" {
  description = "Daily job running `dbaccess access list --alert` (unreviewed emergency grants)."
  value       = azurerm_container_app_job.this["access_alert"].name
}

output "expiry_identity_name" {
  description = "Name of the expiry job's identity: its PostgreSQL login, a person of the access workflow (rates_people)."
  value       = azurerm_user_assigned_identity.workload["expiry"].name
}

output "drill_job_name" {
  description = "Name of the weekly restore-drill job."
  value       = azurerm_container_app_job.drill.name
}

output "drill_identity_name" {
  description = "Name of the restore drill's identity: its PostgreSQL login (DRILL_LOGIN)."
  value       = azurerm_user_assigned_identity.workload["drill"].name
}
