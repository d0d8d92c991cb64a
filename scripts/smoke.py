"""Smoke and end-to-end checks of a deployed API.

    python scripts/smoke.py https://host [--sample-data] [--wait SECONDS]

Waits (up to --wait seconds, default 180) for /readyz: a first deploy's API reports not
ready until its credential can be read. Then checks the documented examples and the
error contract, printing each check; exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

EXAMPLE = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=CNGGZ&dest_code=EETLL"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # e.g. a proxy's HTML error page: a failed check, not a crash
        return {}


def get(base: str, path: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(base + path, headers={"X-Request-ID": "smoke-test"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], _json(error.read())
    except (urllib.error.URLError, TimeoutError) as error:
        return 0, "", {"error": str(error)}


def wait_ready(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while get(base, "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(2)


def main(base: str, sample_data: bool) -> int:
    checks: list[tuple[str, bool]] = []
    status, _, body = get(base, "/healthz")
    checks.append(("/healthz is ok", status == 200 and body == {"status": "ok"}))
    status, _, body = get(base, "/readyz")
    checks.append(("/readyz is ready", status == 200))
    status, _, body = get(base, EXAMPLE)
    rates = body.get("rates", []) if status == 200 else []
    checks.append(("the documented example has 31 days", len(rates) == 31))
    if sample_data:  # dev and pre hold the sample data set; prod holds real prices
        checks.append(("every day has 3 prices", {r["count"] for r in rates} == {3}))
    status, content_type, body = get(base, EXAMPLE.replace("CNGGZ", "NOPE1"))
    checks.append(
        (
            "unknown ports are a 400 problem",
            status == 400
            and content_type == "application/problem+json"
            and body.get("parameter") == "orig_code",
        )
    )
    status, content_type, _ = get(base, "/no/such/route")
    checks.append(
        (
            "unknown routes are a 404 problem",
            status == 404 and content_type == "application/problem+json",
        )
    )
    for name, passed in checks:
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    return 0 if all(passed for _, passed in checks) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--sample-data", action="store_true", help="dev and pre: sample data")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for /readyz")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    wait_ready(base, args.wait)
    sys.exit(main(base, args.sample_data))
