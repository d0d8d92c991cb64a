# The bootstrap stack creates what every other stack stands on: Terraform state
# storage and the GitHub deploy identities. Its own state starts local; see README
# "Deploy" for the first run and the migration of this state into the account it made.
terraform {
  required_version = ">= 1.11.0, < 2.0.0"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "4.39.0"
    }
  }
  backend "local" {}
}

provider "azurerm" {
  features {
    # The state account is key-less (Entra ID only): manage it through Azure Resource
    # Manager, so the Owner running this needs no blob data role.
    storage {
      data_plane_available = false
    }
  }
  storage_use_azuread = true
  # Run once by an Owner: register what app-infra needs, whose plan identities may not.
  resource_provider_registrations = "core"
  resource_providers_to_register = [
    "Microsoft.App",
    "Microsoft.ContainerRegistry",
    "Microsoft.DBforPostgreSQL",
    "Microsoft.Insights",
    "Microsoft.KeyVault",
    "Microsoft.ManagedIdentity",
    "Microsoft.Network",
    "Microsoft.OperationalInsights",
    "Microsoft.Storage",
  ]
}
