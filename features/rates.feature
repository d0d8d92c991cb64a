Feature: Average daily shipping prices
  Clients ask for the average price per day between two locations, where a
  location is a port code or a region slug covering every port below it.

  Scenario: The hello endpoint greets
    When I request "/"
    Then the response status is 200
    And the JSON field "message" is "Hello world!"

  Scenario: A month between two ports, exactly as the original service answers it
    The price is the exact mean as a JSON number (the float nearest to the sum of
    the day's prices divided by their count), never rounded to cents.

    When I request rates from "CNGGZ" to "EETLL" from 2021-01-01 to 2021-01-31
    Then the response status is 200
    And there are 31 days, newest first
    And the response body is exactly
      """
      {"rates": [
        {"day": "2021-01-31", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-30", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-29", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-28", "price": 1155, "count": 3},
        {"day": "2021-01-27", "price": 1155, "count": 3},
        {"day": "2021-01-26", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-25", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-24", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-23", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-22", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-21", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-20", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-19", "price": 1155, "count": 3},
        {"day": "2021-01-18", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-17", "price": 1155, "count": 3},
        {"day": "2021-01-16", "price": 1155, "count": 3},
        {"day": "2021-01-15", "price": 1155, "count": 3},
        {"day": "2021-01-14", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-13", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-12", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-11", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-10", "price": 1155, "count": 3},
        {"day": "2021-01-09", "price": 1155, "count": 3},
        {"day": "2021-01-08", "price": 1155, "count": 3},
        {"day": "2021-01-07", "price": 1155, "count": 3},
        {"day": "2021-01-06", "price": 1154, "count": 3},
        {"day": "2021-01-05", "price": 1154, "count": 3},
        {"day": "2021-01-04", "price": 1154.3333333333333, "count": 3},
        {"day": "2021-01-03", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-02", "price": 1154.6666666666667, "count": 3},
        {"day": "2021-01-01", "price": 1154.6666666666667, "count": 3}
      ]}
      """

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
