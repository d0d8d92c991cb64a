variable "name" {
  description = "Name stem, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the storage account."
  type        = string
}

variable "location" {
  description = "Azure region of the storage account."
  type        = string
}

variable "private_endpoint_subnet_id" {
  description = "Subnet of the blob private endpoint."
  type        = string
}

variable "private_dns_zone_id" {
  description = "Private DNS zone privatelink.blob.core.windows.net, linked to the VNet."
  type        = string
}

variable "writer_principal_id" {
  description = "Principal of the audit job's identity: appends anchors, reads them back."
  type        = string
}

variable "retention_days" {
  description = "Days each anchor blob stays undeletable and unchangeable (appends still allowed)."
  type        = number
}

variable "locked" {
  description = "Lock the retention policy (prod): it can then only be lengthened, never removed."
  type        = bool
}

variable "log_analytics_workspace_id" {
  description = "Workspace receiving the blob service's read, write and delete logs."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
