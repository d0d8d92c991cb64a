locals {
  name = "rates-${var.environment}"
  tags = merge(var.tags, {
    application = "rates-platform"
    environment = var.environment
    managed_by  = "terraform"
  })
}
