"""HTTP routes of the rates capability: thin, the service does the work."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from rates_platform.rates.service import RatesService

bp = Blueprint("rates", __name__)


@bp.get("/")
def hello() -> dict[str, Any]:
    return {"message": "Hello world!"}


@bp.get("/rates")
def rates() -> dict[str, Any]:
    service: RatesService = current_app.extensions["rates_service"]
    series = service.daily_rates(request.args)
    # Days as they are: the app's JSON provider writes them as YYYY-MM-DD.
    return {"rates": [{"day": r.day, "price": r.price, "count": r.count} for r in series]}
