# The bootstrap stack creates what every other stack stands on: Terraform state
# storage and the GitHub deploy identities. Its own state starts local; see README
# "Deploy" for the first run and the migration of this state into the account it made.
terraform {
  required_version = ">= 1.9.0, < 2.0.0"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "4.14.0"
    }
  }
  backend "local" {}
}

provider "azurerm" {
  features {}
  storage_use_azuread = true
}
