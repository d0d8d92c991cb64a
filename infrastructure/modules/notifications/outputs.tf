output "webhook_url" {
  description = "The HTTP trigger's callback URL (it carries a SAS signature): store it in Key Vault as ACCESS_NOTIFY_WEBHOOK."
  value       = azurerm_logic_app_trigger_http_request.event.callback_url
  sensitive   = true
}
