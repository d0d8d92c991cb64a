output "workspace_id" {
  description = "Log Analytics workspace receiving every diagnostic setting."
  value       = azurerm_log_analytics_workspace.this.id
}
