variable "name" {
  description = "Name stem of the network's resources, e.g. rates-dev."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group to create the network in."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
}

variable "address_space" {
  description = "The virtual network's address space, a /16 (subnets are carved from it)."
  type        = string
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
}
