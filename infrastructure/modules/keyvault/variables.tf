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

variable "vault_grants" {
  description = "Key Vault role grants on single secrets: secret name, principal key (for the address), principal id, role (Key Vault Secrets User or Officer)."
  type = list(object({
    secret       = string
    principal    = string
    principal_id = string
    role         = string
  }))
  validation {
    condition     = alltrue([for grant in var.vault_grants : contains(["Key Vault Secrets User", "Key Vault Secrets Officer"], grant.role)])
    error_message = "Only Key Vault Secrets User or Key Vault Secrets Officer may be granted."
  }
}

variable "log_analytics_workspace_id" {
  description = "Workspace receiving the vault's audit events."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
