output "blob_url" {
  description = "The anchor blob: dbaccess audit anchor --sink blob:<this>."
  value       = "${azurerm_storage_account.this.primary_blob_endpoint}${azurerm_storage_container.anchors.name}/${var.name}.jsonl"
}
