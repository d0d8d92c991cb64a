locals {
  tags = merge(var.tags, {
    application = "rates-platform"
    stack       = "bootstrap"
    managed_by  = "terraform"
  })
  environments = toset(["dev", "pre", "prod"])
  # One environment, one identity. Each GitHub OIDC identity is federated only to the
  # GitHub environment(s) named here, and each job finds its client id in the GitHub
  # variable named here (set on that GitHub environment). Only protected environments
  # can change prod: `prod` (required reviewers) for infra and deploy; `prod-plan`
  # only reads. tests/policy checks every workflow job that logs in to Azure against
  # this table.
  github_identities = {
    "infra-dev"   = { environment = "dev", role = "infra", github_environments = ["dev"], client_id_variable = "AZURE_INFRA_CLIENT_ID" }
    "infra-pre"   = { environment = "pre", role = "infra", github_environments = ["pre"], client_id_variable = "AZURE_INFRA_CLIENT_ID" }
    "infra-prod"  = { environment = "prod", role = "infra", github_environments = ["prod"], client_id_variable = "AZURE_INFRA_CLIENT_ID" }
    "plan-dev"    = { environment = "dev", role = "plan", github_environments = ["dev-plan"], client_id_variable = "AZURE_PLAN_CLIENT_ID" }
    "plan-pre"    = { environment = "pre", role = "plan", github_environments = ["pre-plan"], client_id_variable = "AZURE_PLAN_CLIENT_ID" }
    "plan-prod"   = { environment = "prod", role = "plan", github_environments = ["prod-plan"], client_id_variable = "AZURE_PLAN_CLIENT_ID" }
    "deploy-dev"  = { environment = "dev", role = "deploy", github_environments = ["dev"], client_id_variable = "AZURE_DEPLOY_CLIENT_ID" }
    "deploy-pre"  = { environment = "pre", role = "deploy", github_environments = ["pre"], client_id_variable = "AZURE_DEPLOY_CLIENT_ID" }
    "deploy-prod" = { environment = "prod", role = "deploy", github_environments = ["prod"], client_id_variable = "AZURE_DEPLOY_CLIENT_ID" }
    "build"       = { environment = "shared", role = "build", github_environments = ["build"], client_id_variable = "AZURE_BUILD_CLIENT_ID" }
  }
  federations = merge([
    for key, identity in local.github_identities : {
      for github_environment in identity.github_environments :
      "${key}-${github_environment}" => { identity = key, github_environment = github_environment }
    }
  ]...)
  by_role = {
    for role in ["infra", "plan", "deploy"] : role => {
      for key, identity in local.github_identities : identity.environment => key if identity.role == role
    }
  }
}
