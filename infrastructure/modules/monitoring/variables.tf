variable "name" {
  description = "Name stem, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the workspace."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "retention_days" {
  description = "Days logs are kept (audit needs at least 90 in prod)."
  type        = number
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
