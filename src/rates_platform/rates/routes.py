"""HTTP routes of the rates capability: thin, the service does the work."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import Blueprint

from rates_platform.rates.service import RatesService

bp = Blueprint("rates", __name__)


@bp.get("/")
def hello() -> dict[str, Any]:
    return {"message": "Hello world!"}


def rates(service: RatesService, params: Mapping[str, str]) -> bytes:
    """GET /rates' JSON body. The edge (``http.edge``) serves it without Flask's request
    cycle, which cost over a third of this route's CPU."""
    series = service.daily_rates(params)
    # Days as they are: orjson writes them as YYYY-MM-DD.
    return orjson.dumps(
        {"rates": [{"day": r.day, "price": r.price, "count": r.count} for r in series]}
    )
