"""Errors the rates capability raises for bad client input.

Each carries a stable problem type and the name of the offending parameter, so the
HTTP layer can render an RFC 9457 problem without knowing the rules.
"""

from __future__ import annotations


class InvalidRatesQuery(ValueError):
    """The client asked for something the API cannot answer (HTTP 400)."""

    problem_type = "invalid-parameter"
    title = "Invalid query parameter"

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.detail = detail


class MissingParameter(InvalidRatesQuery):
    problem_type = "missing-parameter"
    title = "Missing query parameter"


class InvalidDate(InvalidRatesQuery):
    problem_type = "invalid-date"
    title = "Malformed date"


class InvalidDateRange(InvalidRatesQuery):
    problem_type = "invalid-date-range"
    title = "Date range is empty"


class DateRangeTooLong(InvalidRatesQuery):
    problem_type = "date-range-too-long"
    title = "Date range is too long"


class UnknownLocation(InvalidRatesQuery):
    problem_type = "unknown-location"
    title = "Unknown port code or region slug"
