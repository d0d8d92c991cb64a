variable "location" {
  description = "Azure region of the state storage and identities."
  type        = string
  default     = "westeurope"
}

variable "name_prefix" {
  description = "Short prefix of every resource name (letters and digits)."
  type        = string
  default     = "rates"
  validation {
    condition     = can(regex("^[a-z0-9]{3,10}$", var.name_prefix))
    error_message = "name_prefix must be 3-10 lowercase letters or digits."
  }
}

variable "github_repository" {
  description = "The GitHub repository, owner/name, whose workflows may deploy."
  type        = string
}

variable "state_reader_principal_ids" {
  description = "Object ids (people, groups) that may read state for troubleshooting."
  type        = set(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
