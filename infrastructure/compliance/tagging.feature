Feature: Every resource is tagged
  Costs and ownership are traceable per application and environment.

  Scenario Outline: Taggable resources carry the standard tags
    Given I have resource that supports tags defined
    Then it must contain tags
    And it must contain <tag>

    Examples:
      | tag         |
      | application |
      | environment |
      | managed_by  |
