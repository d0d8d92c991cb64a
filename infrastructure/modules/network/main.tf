resource "azurerm_virtual_network" "this" {
  name                = "vnet-${var.name}"
  resource_group_name = var.resource_group_name
  location            = var.location
  address_space       = [var.address_space]
  tags                = var.tags
}

# Container Apps environment (workload profiles need a /27 or larger, delegated).
resource "azurerm_subnet" "apps" {
  name                 = "snet-apps"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [cidrsubnet(var.address_space, 7, 0)]
  delegation {
    name = "container-apps"
    service_delegation {
      name    = "Microsoft.App/environments"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

# PostgreSQL Flexible Server with private access (VNet integration).
resource "azurerm_subnet" "postgres" {
  name                 = "snet-postgres"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [cidrsubnet(var.address_space, 8, 2)]
  service_endpoints    = ["Microsoft.Storage"]
  delegation {
    name = "postgres"
    service_delegation {
      name    = "Microsoft.DBforPostgreSQL/flexibleServers"
      actions = ["Microsoft.Network/virtualNetworks/subnets/join/action"]
    }
  }
}

resource "azurerm_subnet" "private_endpoints" {
  name                              = "snet-private-endpoints"
  resource_group_name               = var.resource_group_name
  virtual_network_name              = azurerm_virtual_network.this.name
  address_prefixes                  = [cidrsubnet(var.address_space, 8, 3)]
  private_endpoint_network_policies = "Enabled"
}

# Self-hosted GitHub runners of this environment (labels rates-dev, rates-pre) and the
# runbook host: they reach the API through the environment's internal load balancer,
# PostgreSQL and Key Vault; nothing reaches them.
resource "azurerm_subnet" "runners" {
  name                 = "snet-runners"
  resource_group_name  = var.resource_group_name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [cidrsubnet(var.address_space, 8, 4)]
}

resource "azurerm_network_security_group" "runners" {
  name                = "nsg-${var.name}-runners"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags

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
}

# The database and the private endpoints accept their one port from the apps subnet and
# the runner subnet only.
locals {
  guarded_subnets = {
    postgres = {
      prefix = azurerm_subnet.postgres.address_prefixes[0]
      port   = "5432"
    }
    private-endpoints = {
      prefix = azurerm_subnet.private_endpoints.address_prefixes[0]
      port   = "443"
    }
  }
}

resource "azurerm_network_security_group" "guarded" {
  for_each            = local.guarded_subnets
  name                = "nsg-${var.name}-${each.key}"
  resource_group_name = var.resource_group_name
  location            = var.location
  tags                = var.tags

  security_rule {
    name                       = "allow-apps"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = azurerm_subnet.apps.address_prefixes[0]
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = each.value.port
  }

  security_rule {
    name                       = "allow-runners"
    priority                   = 105
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = azurerm_subnet.runners.address_prefixes[0]
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = each.value.port
  }

  # Within the subnet (PostgreSQL's HA standby replicates there) and Azure's probes.
  security_rule {
    name                       = "allow-same-subnet"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = each.value.prefix
    source_port_range          = "*"
    destination_address_prefix = each.value.prefix
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
}

# One association per subnet, each naming its subnet (scanners resolve these).
resource "azurerm_subnet_network_security_group_association" "postgres" {
  subnet_id                 = azurerm_subnet.postgres.id
  network_security_group_id = azurerm_network_security_group.guarded["postgres"].id
}

resource "azurerm_subnet_network_security_group_association" "private_endpoints" {
  subnet_id                 = azurerm_subnet.private_endpoints.id
  network_security_group_id = azurerm_network_security_group.guarded["private-endpoints"].id
}

resource "azurerm_subnet_network_security_group_association" "runners" {
  subnet_id                 = azurerm_subnet.runners.id
  network_security_group_id = azurerm_network_security_group.runners.id
}

resource "azurerm_private_dns_zone" "zones" {
  for_each            = toset(["privatelink.postgres.database.azure.com", "privatelink.vaultcore.azure.net", "privatelink.blob.core.windows.net"])
  name                = each.key
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "zones" {
  for_each              = azurerm_private_dns_zone.zones
  name                  = "link-${var.name}"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = each.value.name
  virtual_network_id    = azurerm_virtual_network.this.id
  registration_enabled  = false
  tags                  = var.tags
}

# dev and pre: the environment is internal, and its default domain resolves nowhere
# outside it. A private zone for that domain, every name to the internal load balancer,
# lets the runners in this VNet reach the API by its FQDN (smoke, e2e, load, ZAP).
resource "azurerm_private_dns_zone" "apps" {
  count               = var.apps_private_domain == null ? 0 : 1
  name                = var.apps_private_domain.domain
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_a_record" "apps_wildcard" {
  count               = var.apps_private_domain == null ? 0 : 1
  name                = "*"
  zone_name           = azurerm_private_dns_zone.apps[0].name
  resource_group_name = var.resource_group_name
  ttl                 = 300
  records             = [var.apps_private_domain.static_ip]
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "apps" {
  count                 = var.apps_private_domain == null ? 0 : 1
  name                  = "link-${var.name}"
  resource_group_name   = var.resource_group_name
  private_dns_zone_name = azurerm_private_dns_zone.apps[0].name
  virtual_network_id    = azurerm_virtual_network.this.id
  registration_enabled  = false
  tags                  = var.tags
}
