locals {
  name = "rates-${var.environment}"
  # Access notifications (the Logic App) only where a Teams webhook is given; whether
  # one is given is no secret, its URL is.
  notify = nonsensitive(var.teams_webhook_url != null)
  tags = merge(var.tags, {
    application = "rates-platform"
    environment = var.environment
    managed_by  = "terraform"
  })
}
