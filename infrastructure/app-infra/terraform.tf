terraform {
  # 1.11: ephemeral values and write-only arguments (PostgreSQL's administrator password).
  required_version = ">= 1.11.0, < 2.0.0"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "4.39.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
  }
  # Partial configuration: `terraform init -backend-config=backends/<env>.tfbackend`.
  backend "azurerm" {}
}

provider "azurerm" {
  features {
    key_vault {
      purge_soft_delete_on_destroy = false
    }
    # Storage (the audit anchors) is private and key-less: manage it through Azure
    # Resource Manager only, which the pipelines' runners and the plan identity can reach.
    storage {
      data_plane_available = false
    }
  }
  storage_use_azuread = true
  # The bootstrap stack registered the resource providers; the read-only plan identity
  # could not.
  resource_provider_registrations = "none"
}
