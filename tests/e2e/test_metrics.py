"""Prometheus metrics from every granian worker, as deployed (multiprocess mode), on the
internal listener only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import ApiServer, PreparedDatabase

pytestmark = pytest.mark.e2e


def test_metrics_directory_is_made_cleaned_and_sums_all_workers(
    sample_db: PreparedDatabase, tmp_path: Path
) -> None:
    metrics = tmp_path / "not" / "yet" / "there"
    metrics.mkdir(parents=True)
    (metrics / "counter_99999.db").write_bytes(b"stale from a previous run")
    api = ApiServer(sample_db.app, PROMETHEUS_MULTIPROC_DIR=str(metrics), WEB_WORKERS="2")
    try:
        for _ in range(40):
            assert api.get("/").status_code == 200
        public = api.get("/metrics")
        text = api.metrics()
    finally:
        api.stop()
    assert public.status_code == 404  # not on the public listener
    assert public.headers["Content-Type"] == "application/problem+json"
    assert not (metrics / "counter_99999.db").exists()
    prefix = 'http_requests_total{method="GET",route="/",status="200"}'
    line = next(row for row in text.splitlines() if row.startswith(prefix))
    assert float(line.split()[-1]) == 40.0  # both workers' requests, summed
