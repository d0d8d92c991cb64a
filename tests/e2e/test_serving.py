"""The HTTP layer as clients meet it: slow, idle, junk and oversized requests, outages.

Everything runs against the real server (`rates serve`: granian) over real sockets.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from rates_platform.devdb import EmbeddedPostgres
from tests.support import ApiServer, PreparedDatabase, prepare_database

pytestmark = pytest.mark.e2e
RATES = "/rates?date_from=2021-01-01&date_to=2021-01-31&orig_code=china_main&dest_code=EETLL"


@pytest.fixture(scope="module")
def api(sample_db: PreparedDatabase) -> Iterator[ApiServer]:
    server = ApiServer(sample_db.app)
    yield server
    server.stop()


def connect(api: ApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", api.port), timeout=5)


def raw(api: ApiServer, request: bytes) -> bytes:
    """Send bytes as they are; return everything the server answers before closing."""
    with closing(connect(api)) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"connection: close" not in chunks[0].lower():
                break
        return b"".join(chunks)


def timed_get(api: ApiServer, path: str) -> tuple[float, int]:
    started = time.monotonic()
    status = api.get(path, timeout=10).status_code
    return time.monotonic() - started, status


def test_slow_header_and_idle_clients_do_not_delay_others(api: ApiServer) -> None:
    with ExitStack() as stack:
        idle = [stack.enter_context(closing(connect(api))) for _ in range(200)]
        slow = [stack.enter_context(closing(connect(api))) for _ in range(8)]
        for sock in slow:  # a request line and then one header line now and then
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock in slow:
                    # OSError: the server hung up on it, as it should, eventually
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: 1\r\n")

        dribbler = threading.Thread(target=trickle)
        dribbler.start()
        try:
            timings = [timed_get(api, RATES) for _ in range(10)]
        finally:
            stop.set()
            dribbler.join()
        assert len(idle) == 200
    assert {status for _, status in timings} == {200}
    assert max(elapsed for elapsed, _ in timings) < 1.0, timings


def test_a_client_that_never_finishes_its_headers_is_cut_off(api: ApiServer) -> None:
    with closing(connect(api)) as sock:
        sock.settimeout(15)  # a timeout here raises: the server never hung up
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started, answer = time.monotonic(), b""
        while chunk := sock.recv(1024):
            answer += chunk
        elapsed = time.monotonic() - started
    assert 4 < elapsed < 10, elapsed  # the header read timeout (5 s) ended it
    assert b"<html" not in answer.lower(), answer


def test_a_client_that_never_sends_a_byte_is_cut_off(api: ApiServer) -> None:
    """Each open connection holds one of a worker's 1024 permits: silent connections
    kept forever would let one host take the API down (2,100 did, measured)."""
    with closing(connect(api)) as sock:
        sock.settimeout(15)  # a timeout here raises: the server never hung up
        started = time.monotonic()
        assert sock.recv(1024) == b""
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed  # the header read timeout (5 s) ended it


def test_a_long_path_makes_a_short_log_line(api: ApiServer) -> None:
    """Paths up to the server's 64 KiB URI limit reach the app: each logged whole would
    make one client's requests cost 300 times their share of the log store."""
    response = api.get("/" + "a" * 60_000)
    assert response.status_code == 404
    request_id = response.headers["X-Request-ID"]
    time.sleep(0.2)  # the access line is written after the response
    line = next(line for line in api.output().splitlines() if request_id in line)
    assert len(line) < 1_000, len(line)


def test_generated_request_ids_are_distinct_across_workers(api: ApiServer) -> None:
    """Ids come from each worker's PRNG: forked workers must not share its state."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: api.get("/").headers["X-Request-ID"], range(400)))
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids[:3]
    assert len(set(ids)) == len(ids)


def test_a_forked_process_draws_other_request_ids_than_its_parent() -> None:
    from rates_platform.http.observability import _new_request_id  # noqa: PLC0415

    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: write one id and leave without pytest's cleanup
        os.write(writer, _new_request_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        assert pipe.read() != _new_request_id()


def metric_series(api: ApiServer) -> int:
    return sum(1 for line in api.metrics().splitlines() if line and not line.startswith("#"))


def test_made_up_methods_do_not_grow_the_metrics(api: ApiServer) -> None:
    api.get("/")
    before = metric_series(api)
    for n in range(300):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
        conn.request(f"JUNK{n}", "/")
        response = conn.getresponse()
        assert response.status == 405
        assert response.getheader("Content-Type") == "application/problem+json"
        response.read()
        conn.close()
    after = metric_series(api)
    assert after - before < 20, (before, after)
    assert 'method="other"' in api.metrics()


def test_a_long_query_string_is_a_414_problem(api: ApiServer) -> None:
    response = api.get(RATES + "&pad=" + "x" * 5_000)
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith(":uri-too-long")
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        # a 100 KB query: the server's own limit answers before the application
        (b"GET /rates?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414}),
        # hyper's limit is its buffer (128 KiB nominal, up to ~200 KiB as its reads grow)
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 400_000 + b"\r\n\r\n", {431}),
        (b"GARBAGE\r\n\r\n", {400}),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", {400}),
        (b"GET / HTTP/9.1\r\nHost: x\r\n\r\n", {400, 505}),
        (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ],
    ids=["100KB-query", "huge-header", "garbage", "bad-length", "bad-version", "nul-in-path"],
)
def test_requests_the_server_rejects_get_no_html(
    api: ApiServer, request_bytes: bytes, statuses: set[int]
) -> None:
    answer = raw(api, request_bytes)
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    assert match, answer[:200]
    assert int(match.group(1)) in statuses, answer[:200]
    assert b"<html" not in answer.lower() and b"<!doctype" not in answer.lower(), answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"text/html" not in head.lower(), head
    assert body.strip() == b"" or body.lstrip().startswith(b"{"), body[:200]


def timed_client(
    api: ApiServer, stop: threading.Event, timings: list[tuple[float, int]]
) -> Callable[[], None]:
    """A client loop for a thread: a new connection per /rates request until ``stop``,
    each (seconds, status) appended to ``timings`` (status 0: the connection failed)."""

    def client() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
            started = time.monotonic()
            try:
                conn.request("GET", RATES)
                status = conn.getresponse().status
            except OSError:
                status = 0
            finally:
                conn.close()
            timings.append((time.monotonic() - started, status))

    return client


def test_outage_under_load_keeps_liveness_and_answers_503_in_time(
    own_server: EmbeddedPostgres,
) -> None:
    """200 concurrent /rates requests while the database is down: /healthz always
    answers within 1 s, and /rates answers 503 within DB_POOL_TIMEOUT + 1 s."""
    pool_timeout = 3.0
    database = prepare_database(own_server, "rates")
    api = ApiServer(database.app, DB_POOL_TIMEOUT=str(pool_timeout))
    rates_timings: list[tuple[float, int]] = []
    stop = threading.Event()
    client = timed_client(api, stop, rates_timings)
    try:
        assert api.get(RATES).status_code == 200
        own_server.stop()
        clients = [threading.Thread(target=client) for _ in range(200)]
        for thread in clients:
            thread.start()
        health = []
        for _ in range(12):
            health.append(timed_get(api, "/healthz"))
            time.sleep(0.25)
        stop.set()
        for thread in clients:
            thread.join(60)
        own_server.start()
        api.wait_until(RATES, 200, within=15)
    finally:
        stop.set()
        api.stop()
    assert {status for _, status in health} == {200}, health
    assert max(elapsed for elapsed, _ in health) < 1.0, health
    statuses = {status for _, status in rates_timings}
    assert statuses == {503}, statuses
    slowest = max(elapsed for elapsed, _ in rates_timings)
    assert slowest < pool_timeout + 1, slowest
    print(f"{len(rates_timings)} /rates 503s during the outage, slowest {slowest:.3f}s")


def frozen(server: EmbeddedPostgres) -> list[int]:
    """The postmaster and every backend of ``server``: what SIGSTOP freezes."""
    postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
    children = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent_of(entry) == postmaster
    ]
    return [postmaster, *children]


def _parent_of(proc: Path) -> int | None:
    try:
        status = (proc / "status").read_text()
    except OSError:
        return None
    return next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None
    )


def test_a_hung_database_costs_requests_a_bounded_wait_then_503s(
    own_server: EmbeddedPostgres,
) -> None:
    """A frozen server (SIGSTOP: it accepts TCP but answers nothing, like a black-holed
    network) cannot enforce statement_timeout; the client-side watchdog does, and the
    outage that follows makes every later request answer 503 at once."""
    statement_timeout = 1.0
    database = prepare_database(own_server, "rates")
    api = ApiServer(database.app, DB_STATEMENT_TIMEOUT=str(statement_timeout), DB_POOL_TIMEOUT="2")
    timings: list[tuple[float, int]] = []
    stop = threading.Event()
    client = timed_client(api, stop, timings)
    pids: list[int] = []
    clients = [threading.Thread(target=client) for _ in range(20)]
    try:
        assert api.get(RATES).status_code == 200
        for thread in clients:
            thread.start()
        time.sleep(0.5)
        pids = frozen(own_server)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        frozen_at = len(timings)
        time.sleep(6)
        health = [timed_get(api, "/healthz") for _ in range(3)]
        during = timings[frozen_at:]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        stop.set()
        for thread in clients:
            thread.join(60)
    try:
        api.wait_until(RATES, 200, within=15)
        after = [api.get(RATES).status_code for _ in range(10)]
    finally:
        api.stop()
    assert during, "no request finished while the database was frozen"
    assert {status for _, status in during} <= {200, 503}, during
    assert 503 in {status for _, status in during}
    # Bounded: a query in flight is ended at statement timeout + the watchdog's grace
    # (1 s); a request may also wait out one probe (libpq's minimum connect timeout,
    # 2 s) on a thread it queued behind. Not minutes, as TCP alone would take.
    assert max(elapsed for elapsed, _ in during) < statement_timeout + 1 + 2 + 1, during
    assert {status for _, status in health} == {200}, health
    assert max(elapsed for elapsed, _ in health) < 1.0, health
    assert set(after) == {200}, after
