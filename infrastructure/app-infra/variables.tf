variable "environment" {
  description = "dev, pre or prod."
  type        = string
  validation {
    condition     = contains(["dev", "pre", "prod"], var.environment)
    error_message = "environment must be dev, pre or prod."
  }
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

variable "resource_group_name" {
  description = "The environment's resource group, created by the bootstrap stack."
  type        = string
}

variable "address_space" {
  description = "Address space of the environment's virtual network (/16)."
  type        = string
}

variable "public_ingress" {
  description = "Expose the API on the internet. Only prod: dev and pre stay inside the VNet."
  type        = bool
}

variable "min_replicas" {
  description = "API replicas that always run."
  type        = number
}

variable "max_replicas" {
  description = "Upper bound of the API's HTTP autoscaling."
  type        = number
}

variable "postgres_sku" {
  description = "PostgreSQL compute SKU."
  type        = string
}

variable "postgres_storage_mb" {
  description = "PostgreSQL storage in MB."
  type        = number
}

variable "backup_retention_days" {
  description = "Point-in-time backup retention (7-35 days)."
  type        = number
}

variable "geo_redundant_backup" {
  description = "Copy backups to the paired region."
  type        = bool
}

variable "zone_redundant_ha" {
  description = "Zone-redundant high availability of PostgreSQL and the apps environment."
  type        = bool
}

variable "log_retention_days" {
  description = "Log Analytics retention."
  type        = number
}

variable "rotation_period_days" {
  description = "Rotate the API's database login after this many days."
  type        = number
  default     = 30
}

variable "registry_server" {
  description = "Login server of the image registry (bootstrap output)."
  type        = string
}

variable "registry_id" {
  description = "Resource id of the image registry (bootstrap output)."
  type        = string
}

variable "image" {
  description = "Image (by digest) of the first revision and jobs: the pipeline passes the image it deploys; later deploys set it through the deploy identity."
  type        = string
}

variable "postgres_operators_group_object_id" {
  description = "Object id of the Entra ID group whose members administer PostgreSQL (break glass, runbooks)."
  type        = string
}

variable "postgres_operators_group_name" {
  description = "Display name of that group: the PostgreSQL role its members log in as."
  type        = string
}

variable "sample_data" {
  description = "Load the sample data set into an empty database on each deploy (dev and pre; never prod)."
  type        = bool
}

variable "alert_email" {
  description = "Address every Azure Monitor alert of the environment is mailed to."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "azure_cli_image" {
  description = "The official Azure CLI image, pinned by digest, that restores and deletes the weekly drill's scratch server (Dependabot does not follow it: bump tag and digest together)."
  type        = string
  default     = "mcr.microsoft.com/azure-cli:2.73.0@sha256:eedd1fb2d6628c6a6f30c5e0cd31b2fd789151514fa0ab645ff440682e5586b7"
}

variable "teams_webhook_url" {
  description = "Incoming-webhook URL of the Teams channel for access-request notifications: the GitHub environment's secret TEAMS_WEBHOOK_URL (TF_VAR_teams_webhook_url), never a tfvars file. Null: no notifications Logic App, no webhook."
  type        = string
  default     = null
  sensitive   = true
}
