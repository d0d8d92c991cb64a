variable "name" {
  description = "Name stem, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the apps."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "subnet_id" {
  description = "Delegated subnet of the Container Apps environment."
  type        = string
}

variable "public_ingress" {
  description = "Expose the API on the internet (prod only); otherwise the VNet only."
  type        = bool
}

variable "zone_redundant" {
  description = "Spread the environment over availability zones."
  type        = bool
}

variable "min_replicas" {
  description = "Replicas that always run (at least 2 in prod)."
  type        = number
}

variable "max_replicas" {
  description = "Upper bound of HTTP autoscaling."
  type        = number
}

variable "image" {
  description = "Initial image; later revisions are set by the deploy pipeline."
  type        = string
}

variable "registry_server" {
  description = "Login server of the image registry."
  type        = string
}

variable "registry_id" {
  description = "Resource id of the image registry (AcrPull for the workloads)."
  type        = string
}

variable "database_host" {
  description = "Private host name of the PostgreSQL server."
  type        = string
}

variable "key_vault_uri" {
  description = "URI of the vault holding the rotated logins."
  type        = string
}

variable "rotation_period_days" {
  description = "Rotate the API's database login when it is this old."
  type        = number
}

variable "log_analytics_workspace_id" {
  description = "Workspace receiving the environment's logs."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}

variable "sample_data" {
  description = "Add the job loading the sample data set when the database has no prices (dev and pre)."
  type        = bool
}

variable "audit_anchors_url" {
  description = "URL of the append blob the audit job anchors the audit chain in (immutable container)."
  type        = string
}

variable "api_edge_env" {
  description = "The API's settings from its edge module (FRONT_DOOR_ID, TRUSTED_PROXIES)."
  type        = map(string)
  default     = {}
}

variable "azure_cli_image" {
  description = "The official Azure CLI image, by digest: the restore drill's restore-and-delete container."
  type        = string
  validation {
    condition     = can(regex("^mcr\\.microsoft\\.com/azure-cli(:[^@]+)?@sha256:[0-9a-f]{64}$", var.azure_cli_image))
    error_message = "azure_cli_image must be mcr.microsoft.com/azure-cli pinned by digest (@sha256:...)."
  }
}

variable "access_notify_webhook" {
  description = "URL the access workflow's jobs post each event to (the notifications Logic App's trigger, with its SAS signature); null: no webhook."
  type        = string
  default     = null
  sensitive   = true
}

variable "postgres_server_name" {
  description = "Name of the live PostgreSQL Flexible Server (the restore drill's source)."
  type        = string
}

variable "postgres_subnet_id" {
  description = "Delegated subnet of PostgreSQL, which the drill's restored server joins."
  type        = string
}

variable "postgres_dns_zone_id" {
  description = "Private DNS zone of PostgreSQL, which the drill's restored server joins."
  type        = string
}
