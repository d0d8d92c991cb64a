variable "name" {
  description = "Name stem, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the server."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "sku_name" {
  description = "Compute SKU, e.g. B_Standard_B1ms (dev) or GP_Standard_D2ds_v5 (prod)."
  type        = string
}

variable "storage_mb" {
  description = "Storage size in MB."
  type        = number
}

variable "backup_retention_days" {
  description = "Days of point-in-time backups (7-35)."
  type        = number
  validation {
    condition     = var.backup_retention_days >= 7 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 7 and 35."
  }
}

variable "geo_redundant_backup" {
  description = "Copy backups to the paired region (prod)."
  type        = bool
}

variable "zone_redundant_ha" {
  description = "A standby in another availability zone with automatic failover (prod)."
  type        = bool
}

variable "subnet_id" {
  description = "Delegated subnet for private access."
  type        = string
}

variable "private_dns_zone_id" {
  description = "privatelink.postgres.database.azure.com zone linked to the network."
  type        = string
}

variable "operators_group" {
  description = "Entra ID group of the people who administer the server (object id, and display name: their PostgreSQL role)."
  type = object({
    object_id = string
    name      = string
  })
}

variable "jobs_identity" {
  description = "Managed identity of the admin jobs (principal id, and name: its PostgreSQL role), an Entra ID administrator."
  type = object({
    object_id = string
    name      = string
  })
}

variable "log_analytics_workspace_id" {
  description = "Workspace receiving the server's logs and metrics."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
