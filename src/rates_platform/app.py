"""The application factory: everything is built here, nothing at import time."""

from __future__ import annotations

import atexit
import gc

from flask import Flask

from rates_platform.db import Database, Outage, make_pool
from rates_platform.http import observability, ops, problems, protection
from rates_platform.http.edge import Edge, Route
from rates_platform.http.jsonprovider import OrjsonProvider
from rates_platform.logs import skip_unshown_record_fields
from rates_platform.rates import routes as rates_routes
from rates_platform.rates.service import RatesService
from rates_platform.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application; reads the environment only if no settings are given."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=None)
    app.json = OrjsonProvider(app)
    app.config.update(READY_TIMEOUT=settings.ready_timeout, MAX_CONTENT_LENGTH=1024)

    outage = Outage()
    pool = make_pool(settings, outage=outage)
    pool.open(wait=False)  # connects in the background; requests wait up to pool_timeout
    atexit.register(pool.close)
    database = Database(pool, outage, settings.pool_timeout, settings.statement_timeout)
    app.extensions["database"] = database

    service = RatesService(database, settings.max_range_days)

    recorder = observability.register(app, pool)
    problems.register(app)
    guard = protection.register(app, settings, database)
    app.register_blueprint(rates_routes.bp)
    app.register_blueprint(ops.bp)
    # The middleware way Flask documents: /rates is served in front of Flask's cycle.
    rates_route = Route("/rates", "rates.rates", lambda params: rates_routes.rates(service, params))
    app.wsgi_app = Edge(app.wsgi_app, [rates_route], recorder, guard)  # type: ignore[method-assign]
    return app


def create_worker_app() -> Flask:
    """The app of one server worker, which keeps it until the worker exits.

    Everything built at start (the app, its modules, the pool) lives as long as the
    worker, so it moves out of the cyclic collector's reach (``gc.freeze``): otherwise
    every full collection re-scans some 90,000 objects, about a tenth of /rates' CPU.
    Log records skip the fields no log line shows.
    """
    skip_unshown_record_fields()
    app = create_app()
    gc.freeze()
    return app
