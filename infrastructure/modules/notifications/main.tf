# The webhook behind `dbaccess`'s notifications (ACCESS_NOTIFY_WEBHOOK, README "Access
# requests"): an HTTP-triggered Logic App that posts each access event (request,
# approval, grant, expiry, revocation, emergency, overdue, drift) to a Teams channel.
# `dbaccess` retries a failed call and never lets it block a decision.
resource "azurerm_logic_app_workflow" "access" {
  name                = "logic-${var.name}-access"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  # Only the container apps' outbound addresses may call the trigger.
  access_control {
    trigger {
      allowed_caller_ip_address_range = var.allowed_caller_ip_ranges
    }
    content {
      allowed_caller_ip_address_range = []
    }
  }
}

resource "azurerm_logic_app_trigger_http_request" "event" {
  name         = "access-event"
  logic_app_id = azurerm_logic_app_workflow.access.id
  schema = jsonencode({
    type     = "object"
    required = ["at", "event"]
    properties = {
      at         = { type = "string" }
      event      = { type = "string" }
      id         = { type = ["integer", "null"] }
      requester  = { type = ["string", "null"] }
      role_name  = { type = ["string", "null"] }
      reason     = { type = ["string", "null"] }
      status     = { type = ["string", "null"] }
      emergency  = { type = ["boolean", "null"] }
      ends_at    = { type = ["string", "null"] }
      login_name = { type = ["string", "null"] }
      person     = { type = ["string", "null"] }
      request_id = { type = ["integer", "null"] }
    }
  })
}

resource "azurerm_logic_app_action_http" "teams" {
  name         = "post-to-teams"
  logic_app_id = azurerm_logic_app_workflow.access.id
  method       = "POST"
  uri          = var.teams_webhook_url
  headers      = { "Content-Type" = "application/json" }
  body = jsonencode({
    text = "Database access: @{triggerBody()?['event']} request @{triggerBody()?['id']} by @{triggerBody()?['requester']} for @{triggerBody()?['role_name']} (@{triggerBody()?['status']}): @{triggerBody()?['reason']}"
  })
}
