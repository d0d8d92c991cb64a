Feature: Data services are private
  The database and the vault holding its credentials are never reachable from the internet.

  Scenario: Key Vault refuses public network access
    Given I have azurerm_key_vault defined
    Then it must contain public_network_access_enabled
    And its value must be false

  Scenario: Key Vault keeps deleted secrets and cannot be purged early
    Given I have azurerm_key_vault defined
    Then it must contain purge_protection_enabled
    And its value must be true

  Scenario: PostgreSQL refuses public network access
    Given I have azurerm_postgresql_flexible_server defined
    Then it must contain public_network_access_enabled
    And its value must be false

  Scenario: PostgreSQL requires TLS
    Given I have azurerm_postgresql_flexible_server_configuration defined
    When its name is "require_secure_transport"
    Then it must contain value
    And its value must be "ON"
