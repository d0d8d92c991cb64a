locals {
  tags = merge(var.tags, {
    application = "rates-platform"
    stack       = "bootstrap"
    managed_by  = "terraform"
  })
  # One identity per duty: infrastructure changes, and application (image) deploys.
  identities = {
    infra  = "id-${var.name_prefix}-infra"
    deploy = "id-${var.name_prefix}-deploy"
  }
  federations = {
    for pair in setproduct(keys(local.identities), var.environments) :
    "${pair[0]}-${pair[1]}" => { identity = pair[0], environment = pair[1] }
  }
}
