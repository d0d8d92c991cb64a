variable "name" {
  description = "Name stem, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the Logic App."
  type        = string
}

variable "location" {
  description = "Azure region of the Logic App."
  type        = string
}

variable "teams_webhook_url" {
  description = "Incoming-webhook URL of the Teams channel that receives access-request notifications (from Key Vault; sensitive)."
  type        = string
  sensitive   = true
}

variable "allowed_caller_ip_ranges" {
  description = "CIDR ranges allowed to call the HTTP trigger: the outbound addresses of the container apps environment (dbaccess runs there)."
  type        = list(string)
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
