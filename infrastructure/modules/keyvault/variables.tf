variable "name" {
  description = "Name stem, e.g. rates-dev (Key Vault names are global: 3-24 characters)."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the vault."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "private_endpoint_subnet_id" {
  description = "Subnet of the vault's private endpoint."
  type        = string
}

variable "private_dns_zone_id" {
  description = "privatelink.vaultcore.azure.net zone linked to the network."
  type        = string
}

variable "reader_principal_ids" {
  description = "Principals that may read secrets (the API's identity)."
  type        = map(string)
}

variable "writer_principal_ids" {
  description = "Principals that may write secrets (the rotation job's identity)."
  type        = map(string)
}

variable "log_analytics_workspace_id" {
  description = "Workspace receiving the vault's audit events."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
