output "endpoint_host" {
  description = "Public host name of the API through Front Door (empty without a gateway)."
  value       = var.gateway_enabled ? azurerm_cdn_frontdoor_endpoint.api[0].host_name : ""
}

output "api_env" {
  description = "The API's settings for its edge: the environment's ingress (the apps subnet) as the one trusted proxy and, with a gateway, its id to require in X-Azure-FDID (FRONT_DOOR_ID)."
  value = merge(
    { TRUSTED_PROXIES = var.apps_subnet.prefix },
    { for key, value in { FRONT_DOOR_ID = one(azurerm_cdn_frontdoor_profile.this[*].resource_guid) } : key => value if value != null },
  )
}
