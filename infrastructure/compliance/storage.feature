Feature: Storage is encrypted in transit and not public
  Scenario: Storage accounts require TLS 1.2
    Given I have azurerm_storage_account defined
    Then it must contain min_tls_version
    And its value must be "TLS1_2"

  Scenario: No public blob access
    Given I have azurerm_storage_account defined
    Then it must contain allow_nested_items_to_be_public
    And its value must be false
