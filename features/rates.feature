Feature: Average daily shipping prices
  Clients ask for the average price per day between two locations, where a
  location is a port code or a region slug covering every port below it.

  Scenario: The hello endpoint greets
    When I request "/"
    Then the response status is 200
    And the JSON field "message" is "Hello world!"

  Scenario: A month between two ports
    When I request rates from "CNGGZ" to "EETLL" from 2021-01-01 to 2021-01-31
    Then the response status is 200
    And there are 31 days, newest first
    And every day has 3 prices
    And the average on 2021-01-31 is 1154.33

  Scenario Outline: Regions cover every port below them
    When I request rates from "<origin>" to "<destination>" from 2021-01-01 to 2021-01-31
    Then the response status is 200
    And the averages match the prices stored for every port below "<origin>" and "<destination>"

    Examples:
      | origin     | destination     |
      | china_main | northern_europe |
      | CNGGZ      | baltic          |
      | china_east_main | EETLL      |

  Scenario Outline: Bad input is a clear 400 problem that names the parameter
    When I request "<path>"
    Then the response status is 400
    And the response is a problem of type "<type>" about "<parameter>"

    Examples:
      | path                                                                               | type                | parameter |
      | /rates?date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL                          | missing-parameter   | date_from |
      | /rates?date_from=2021-01-32&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL     | invalid-date        | date_from |
      | /rates?date_from=2021-01-31&date_to=2021-01-01&orig_code=CNGGZ&dest_code=EETLL     | invalid-date-range  | date_from |
      | /rates?date_from=2021-01-01&date_to=9999-12-31&orig_code=CNGGZ&dest_code=EETLL     | date-range-too-long | date_to   |
      | /rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=NOPE1&dest_code=EETLL     | unknown-location    | orig_code |
      | /rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=mars      | unknown-location    | dest_code |
