"""Request ids, one JSON log line per request, and Prometheus metrics."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, abort, g, request
from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import ConnectionPool

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON_KEY = "HTTP_X_REQUEST_ID"
# Echo a caller's id only if it is short and plain, so it cannot forge log lines.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

REQUESTS = Counter("http_requests_total", "HTTP requests served.", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to serve a request.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
POOL_CONNECTIONS = Gauge(
    "db_pool_connections", "Connections held by the pool.", multiprocess_mode="livesum"
)
POOL_IDLE = Gauge(
    "db_pool_connections_idle", "Pooled connections ready for use.", multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "db_pool_requests_waiting", "Requests waiting for a connection.", multiprocess_mode="livesum"
)

_access_log = logging.getLogger("rates_platform.access")


# Label values are a closed set, so no client can grow /metrics: any other method is
# counted as "other", and every unknown path as one route.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"
# Longer query strings get a 414 problem; no /rates query needs a tenth of this.
MAX_QUERY_STRING_BYTES = 4096
# Paths up to the server's 64 KiB URI limit reach the app; the log keeps their start,
# so one client cannot make each of its requests cost 300 times its share of the logs.
MAX_LOGGED_PATH_CHARS = 256


def _route() -> str:
    # The rule, not the path: unknown paths must not create unbounded label values.
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE


def _new_request_id() -> str:
    """32 random hex digits. An id correlates log lines and is no secret, so it comes from
    the process's PRNG (reseeded in each forked worker): uuid4 reads the kernel's random
    source, one more system call per request."""
    return f"{random.getrandbits(128):032x}"  # nosec B311


def request_id(environ: Mapping[str, Any]) -> str:
    """The caller's X-Request-ID if it is safe to log, else a new one."""
    supplied = environ.get(_REQUEST_ID_ENVIRON_KEY, "")
    return supplied if _SAFE_REQUEST_ID.fullmatch(supplied) else _new_request_id()


def query_too_long(environ: Mapping[str, Any]) -> bool:
    return len(environ.get("QUERY_STRING", "")) > MAX_QUERY_STRING_BYTES


def _start() -> None:
    environ = request.environ  # every request: the raw WSGI keys are cheapest
    g.request_id = request_id(environ)
    g.started = time.perf_counter()
    if query_too_long(environ):
        abort(414)


# Pool gauges are refreshed at most this often per worker, not on every request.
POOL_GAUGES_INTERVAL_SECONDS = 1.0


class Recorder:
    """Counts, times and logs each finished request, for Flask's routes and the edge's."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._pool_gauges_at = 0.0  # last refresh; a benign race between threads at worst
        # The metric children per label set, looked up once: the labels are a closed set.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(
        self, *, request_id: str, method: str, route: str, path: str, status: int, elapsed: float
    ) -> None:
        labels = (method if method in KNOWN_METHODS else "other", route, status)
        counted = self._series.get(labels)
        if counted is None:
            counted = self._series[labels] = (
                REQUESTS.labels(labels[0], route, str(status)),
                LATENCY.labels(labels[0], route),
            )
        counted[0].inc()
        counted[1].observe(elapsed)
        self._refresh_pool_gauges(time.monotonic())
        _access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method[:32],  # printable: werkzeug decodes it as latin-1
                "route": route,
                "path": path[:MAX_LOGGED_PATH_CHARS],
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )

    def _refresh_pool_gauges(self, now: float) -> None:
        if now - self._pool_gauges_at < POOL_GAUGES_INTERVAL_SECONDS:
            return
        self._pool_gauges_at = now
        stats = self._pool.get_stats()
        POOL_CONNECTIONS.set(stats.get("pool_size", 0))
        POOL_IDLE.set(stats.get("pool_available", 0))
        POOL_WAITING.set(stats.get("requests_waiting", 0))


def register(app: Flask, pool: ConnectionPool) -> Recorder:
    """Request ids, metrics and access lines for Flask's routes; the recorder, for the edge's."""
    recorder = Recorder(pool)

    def finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        request_id = g.get("request_id", "")
        response.headers[REQUEST_ID_HEADER] = request_id
        recorder.record(
            request_id=request_id,
            method=request.method,
            route=_route(),
            path=request.path,
            status=response.status_code,
            elapsed=elapsed,
        )
        return response

    app.before_request(_start)
    app.after_request(finish)
    return recorder
