output "action_group_id" {
  description = "Action group every alert rule notifies."
  value       = azurerm_monitor_action_group.oncall.id
}
