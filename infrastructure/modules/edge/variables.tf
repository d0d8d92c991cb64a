variable "name" {
  description = "Name stem, e.g. rates-prod."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the gateway and the apps subnet's security group."
  type        = string
}

variable "location" {
  description = "Azure region (of the security group; Front Door is global)."
  type        = string
}

variable "gateway_enabled" {
  description = "Put Front Door Premium with its WAF in front of the API (prod, the only public environment)."
  type        = bool
}

variable "origin_host" {
  description = "Host name of the API's container app, Front Door's only origin."
  type        = string
}

variable "apps_subnet" {
  description = "The Container Apps subnet: its id (the security group's association) and prefix."
  type        = object({ id = string, prefix = string })
}

variable "postgres_subnet_prefix" {
  description = "Address prefix of the PostgreSQL subnet (the apps' only database destination)."
  type        = string
}

variable "private_endpoints_subnet_prefix" {
  description = "Address prefix of the private endpoints subnet (Key Vault, audit anchors)."
  type        = string
}

variable "registry_storage_service_tag" {
  description = "Regional Storage service tag of the registry's region (image layers are served from blob storage), e.g. Storage.WestEurope."
  type        = string
  default     = "Storage.WestEurope"
}

variable "waf_rate_limit_per_minute" {
  description = "Requests one client address may send per minute before the WAF blocks it (the service limits per key or address behind it too)."
  type        = number
  default     = 3000
}

variable "blocked_ip_ranges" {
  description = "Client addresses or CIDRs the WAF blocks outright (how to block an abusive client at the edge)."
  type        = list(string)
  default     = []
}

variable "log_analytics_workspace_id" {
  description = "Workspace for Front Door's access and WAF logs."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
}
