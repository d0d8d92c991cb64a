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

variable "apps_private_domain" {
  description = "The internal Container Apps environment's default domain and static IP, resolved privately in the VNet; null when the environment is public."
  type = object({
    domain    = string
    static_ip = string
  })
  default = null
}
