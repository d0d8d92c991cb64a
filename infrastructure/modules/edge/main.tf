# The API's edge: Azure Front Door Premium with a WAF policy in front of the container
# app (prod), and, in every environment, a security group on the apps subnet that lets
# in only the gateway (or the VNet) and lets out only what the apps use.
#
# Why Front Door Premium and not API Management: the API needs a WAF (managed OWASP
# rules, bot rules), per-client rate limiting at the edge and global TLS termination;
# the service itself does keys, scopes and per-key limits. Front Door Premium does all
# of the edge part for about USD 330 a month plus traffic; API Management would add a
# second gateway (Standard v2 about USD 700, Premium about USD 2,800 a month for VNet
# injection) without a WAF of its own.
#
# Origin lock: the container app stays an external ingress, reachable only from the
# AzureFrontDoor.Backend service tag (the security group below), and the service
# refuses any request whose X-Azure-FDID is not this profile's id (FRONT_DOOR_ID, a 403
# problem): the tag is shared by every Front Door customer, the id is ours. A Private
# Link origin would need an internal environment with private endpoints (in preview for
# workload-profile environments); switch to it when it is generally available.

resource "azurerm_cdn_frontdoor_profile" "this" {
  count                    = var.gateway_enabled ? 1 : 0
  name                     = "afd-${var.name}"
  resource_group_name      = var.resource_group_name
  sku_name                 = "Premium_AzureFrontDoor"
  response_timeout_seconds = 30
  tags                     = var.tags
}

resource "azurerm_cdn_frontdoor_firewall_policy" "this" {
  count                             = var.gateway_enabled ? 1 : 0
  name                              = "waf${replace(var.name, "-", "")}"
  resource_group_name               = var.resource_group_name
  sku_name                          = "Premium_AzureFrontDoor"
  enabled                           = true
  mode                              = "Prevention"
  request_body_check_enabled        = true
  custom_block_response_status_code = 403
  tags                              = var.tags

  # An abusive client (by address) is cut off at the edge for the rest of the minute.
  custom_rule {
    name                           = "ratelimitperclient"
    enabled                        = true
    priority                       = 100
    type                           = "RateLimitRule"
    action                         = "Block"
    rate_limit_duration_in_minutes = 1
    rate_limit_threshold           = var.waf_rate_limit_per_minute
    match_condition {
      match_variable     = "RequestUri" # every request: every URI contains a slash
      operator           = "Contains"
      negation_condition = false
      match_values       = ["/"]
    }
  }

  # Blocking one client by hand: add its address to blocked_ip_ranges and apply.
  dynamic "custom_rule" {
    for_each = length(var.blocked_ip_ranges) > 0 ? [var.blocked_ip_ranges] : []
    content {
      name     = "blockedclients"
      enabled  = true
      priority = 10
      type     = "MatchRule"
      action   = "Block"
      match_condition {
        match_variable     = "RemoteAddr"
        operator           = "IPMatch"
        negation_condition = false
        match_values       = custom_rule.value
      }
    }
  }

  # OWASP-based Default Rule Set (anomaly scoring) and the bot manager's rules.
  managed_rule {
    type    = "Microsoft_DefaultRuleSet"
    version = "2.1"
    action  = "Block"
  }

  managed_rule {
    type    = "Microsoft_BotManagerRuleSet"
    version = "1.1"
    action  = "Block"
  }
}

resource "azurerm_cdn_frontdoor_endpoint" "api" {
  count                    = var.gateway_enabled ? 1 : 0
  name                     = "fde-${var.name}-api"
  cdn_frontdoor_profile_id = azurerm_cdn_frontdoor_profile.this[0].id
  tags                     = var.tags
}

resource "azurerm_cdn_frontdoor_origin_group" "api" {
  count                    = var.gateway_enabled ? 1 : 0
  name                     = "api"
  cdn_frontdoor_profile_id = azurerm_cdn_frontdoor_profile.this[0].id

  load_balancing {
    sample_size                 = 4
    successful_samples_required = 3
  }

  health_probe {
    protocol            = "Https"
    path                = "/healthz"
    request_type        = "GET"
    interval_in_seconds = 30
  }
}

resource "azurerm_cdn_frontdoor_origin" "api" {
  count                          = var.gateway_enabled ? 1 : 0
  name                           = "container-app"
  cdn_frontdoor_origin_group_id  = azurerm_cdn_frontdoor_origin_group.api[0].id
  enabled                        = true
  host_name                      = var.origin_host
  origin_host_header             = var.origin_host
  http_port                      = 80
  https_port                     = 443
  certificate_name_check_enabled = true
  priority                       = 1
  weight                         = 1000
}

resource "azurerm_cdn_frontdoor_route" "api" {
  count                         = var.gateway_enabled ? 1 : 0
  name                          = "api"
  cdn_frontdoor_endpoint_id     = azurerm_cdn_frontdoor_endpoint.api[0].id
  cdn_frontdoor_origin_group_id = azurerm_cdn_frontdoor_origin_group.api[0].id
  cdn_frontdoor_origin_ids      = [azurerm_cdn_frontdoor_origin.api[0].id]
  supported_protocols           = ["Http", "Https"]
  patterns_to_match             = ["/*"]
  forwarding_protocol           = "HttpsOnly"
  https_redirect_enabled        = true
  link_to_default_domain        = true
}

resource "azurerm_cdn_frontdoor_security_policy" "waf" {
  count                    = var.gateway_enabled ? 1 : 0
  name                     = "waf"
  cdn_frontdoor_profile_id = azurerm_cdn_frontdoor_profile.this[0].id

  security_policies {
    firewall {
      cdn_frontdoor_firewall_policy_id = azurerm_cdn_frontdoor_firewall_policy.this[0].id
      association {
        domain {
          cdn_frontdoor_domain_id = azurerm_cdn_frontdoor_endpoint.api[0].id
        }
        patterns_to_match = ["/*"]
      }
    }
  }
}

resource "azurerm_monitor_diagnostic_setting" "front_door" {
  count                      = var.gateway_enabled ? 1 : 0
  name                       = "to-log-analytics"
  target_resource_id         = azurerm_cdn_frontdoor_profile.this[0].id
  log_analytics_workspace_id = var.log_analytics_workspace_id

  enabled_log {
    category_group = "allLogs"
  }

  metric {
    category = "AllMetrics"
  }
}

locals {
  # Inbound: the gateway (prod) or the VNet (dev, pre: the runners), Azure's load
  # balancer probes, and the environment's own nodes; nothing else.
  inbound_sources = var.gateway_enabled ? { front-door = "AzureFrontDoor.Backend" } : { vnet = "VirtualNetwork" }
  # Outbound: exactly what the apps use, by service tag or subnet; then deny.
  egress = {
    postgres          = { priority = 100, destination = var.postgres_subnet_prefix, port = "5432" }
    private-endpoints = { priority = 110, destination = var.private_endpoints_subnet_prefix, port = "443" }
    registry          = { priority = 120, destination = "AzureContainerRegistry", port = "443" }
    registry-layers   = { priority = 130, destination = var.registry_storage_service_tag, port = "443" }
    platform-images   = { priority = 140, destination = "MicrosoftContainerRegistry", port = "443" }
    platform-cdn      = { priority = 150, destination = "AzureFrontDoor.FirstParty", port = "443" }
    monitoring        = { priority = 160, destination = "AzureMonitor", port = "443" }
    entra-id          = { priority = 170, destination = "AzureActiveDirectory", port = "443" }
    resource-manager  = { priority = 180, destination = "AzureResourceManager", port = "443" } # the restore drill's az calls
    logic-apps        = { priority = 190, destination = "LogicApps", port = "443" }            # the access notifications' trigger
  }
}

resource "azurerm_network_security_group" "apps" {
  name                = "nsg-${var.name}-apps"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags

  dynamic "security_rule" {
    for_each = local.inbound_sources
    content {
      name                       = "allow-${security_rule.key}"
      priority                   = 100
      direction                  = "Inbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_address_prefix      = security_rule.value
      source_port_range          = "*"
      destination_address_prefix = var.apps_subnet.prefix
      destination_port_ranges    = ["80", "443"]
    }
  }

  security_rule {
    name                       = "allow-same-subnet-inbound"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = var.apps_subnet.prefix
    source_port_range          = "*"
    destination_address_prefix = var.apps_subnet.prefix
    destination_port_range     = "*"
  }

  security_rule {
    name                       = "allow-azure-load-balancer"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = "AzureLoadBalancer"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }

  security_rule {
    name                       = "deny-all-inbound"
    priority                   = 4096
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }

  dynamic "security_rule" {
    for_each = local.egress
    content {
      name                       = "allow-${security_rule.key}"
      priority                   = security_rule.value.priority
      direction                  = "Outbound"
      access                     = "Allow"
      protocol                   = "Tcp"
      source_address_prefix      = var.apps_subnet.prefix
      source_port_range          = "*"
      destination_address_prefix = security_rule.value.destination
      destination_port_range     = security_rule.value.port
    }
  }

  security_rule {
    name                       = "allow-same-subnet-outbound"
    priority                   = 200
    direction                  = "Outbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = var.apps_subnet.prefix
    source_port_range          = "*"
    destination_address_prefix = var.apps_subnet.prefix
    destination_port_range     = "*"
  }

  security_rule {
    name                       = "deny-all-outbound"
    priority                   = 4096
    direction                  = "Outbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "apps" {
  subnet_id                 = var.apps_subnet.id
  network_security_group_id = azurerm_network_security_group.apps.id
}
