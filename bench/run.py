"""Benchmark /rates against GET / and reference servers on the same machine, in one run.

    python bench/run.py            # the sample data (make bench)
    python bench/run.py --scale    # synthetic 1M and 10M prices (make bench-scale)

The service runs exactly as deployed (`rates serve`: granian, production settings)
on the embedded PostgreSQL; wrk drives it with random paths per query shape, so no
single cached answer can carry a score. On the sample data the same run measures
the references of bench/baselines.py: a bare Flask hello under gunicorn gthread 2x2
and under granian, and the naive /rates of the original service. Results: a table
with the ratios on stdout and a JSON file under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rates_platform import schema  # noqa: E402
from rates_platform.cli import generate_with_progress  # noqa: E402
from rates_platform.dbaccess.roles import ensure_login_member  # noqa: E402
from rates_platform.dbaccess.secrets import new_password  # noqa: E402
from rates_platform.devdb import EmbeddedPostgres  # noqa: E402
from rates_platform.synthetic import Shape  # noqa: E402
from tests.support import SAMPLE, ApiServer, create_database, free_port  # noqa: E402

LUA = Path(__file__).with_name("paths.lua")
RESULTS = Path(__file__).with_name("results")
PATHS_PER_SHAPE = 2_000
# Bulk loads and large aggregates want memory; nothing here needs durability.
SERVER_SETTINGS = {
    "shared_buffers": "1GB",
    "work_mem": "256MB",
    "maintenance_work_mem": "1GB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}
SHAPES = ("port→port", "port→region", "region→port", "region→region")


# The references, each started as its own server with 2 workers x 2 threads.
GUNICORN_2X2 = [
    sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "2",
    "--worker-class", "gthread", "--reuse-port", "--log-level", "warning", "--bind",
]  # fmt: skip
GRANIAN_2X2 = [
    sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "2",
    "--blocking-threads", "2", "--no-ws", "--log-level", "warning", "--port",
]  # fmt: skip
HELLO_GUNICORN = "hello, gunicorn gthread 2x2"
HELLO_GRANIAN = "hello, granian 2x2"
NAIVE = "naive /rates (mixed)"
BARE = "our service, raw WSGI (mixed)"
REFERENCE_SCENARIOS = (HELLO_GUNICORN, HELLO_GRANIAN, NAIVE, BARE)
# What issue 8 asks of the sample run (see README, Performance).
MIN_MIXED_TO_GUNICORN_HELLO = 0.7
MIN_MIXED_TO_NAIVE = 5.0
MAX_P99_MS = 25.0
# The mixed lanes again with per-client limits on (never reached: every request is
# counted, none refused); the limited path must stay within 5 % of the unlimited one.
RATE_LIMITED_MIXED = "mixed, RATE_LIMIT set"
PAIRED_MIXED = "mixed, paired without"
BENCH_RATE_LIMIT = "10000/second;600000/minute"
MIN_LIMITED_TO_UNLIMITED = 0.95
# The targets' ratios come from servers measured in alternation (A B B A, half the
# duration each), round after round, and the median round counts: a single pass put
# the same build anywhere from 0.86x to 0.97x on this shared machine, and two
# identical servers 0.92x to 1.06x apart.
PAIRED_ROUNDS = 5
MIXED_TO_GUNICORN = "mixed / hello under gunicorn"
LIMITED_TO_UNLIMITED = "mixed with RATE_LIMIT / without"


@dataclass
class Result:
    scenario: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    ratio_to_hello: float | None = None
    ratio_to_gunicorn_hello: float | None = None
    ratio_to_granian_hello: float | None = None
    ratio_to_naive: float | None = None


class Reference:
    """A reference app from bench/baselines.py under a server command, on a free port."""

    def __init__(self, command: list[str], app: str, env: dict[str, str]) -> None:
        self.port = free_port()
        bind = f"127.0.0.1:{self.port}" if "gunicorn" in command else str(self.port)
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [*command, bind, f"bench.baselines:{app}"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{app} under {command[2]} did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
        if found := shutil.which("wrk"):
            return found
    sys.exit("bench: wrk is needed: apt-get install wrk (Debian) or brew install wrk")


def prepare(data_dir: Path, shape: Shape | None) -> tuple[EmbeddedPostgres, str]:
    """A server with the data set loaded; kept in .data/bench between runs."""
    server = EmbeddedPostgres(data_dir / "postgres", free_port())
    server.start(SERVER_SETTINGS)
    marker = data_dir / "loaded.json"
    wanted = json.dumps(asdict(shape) if shape else {"sample": str(SAMPLE)}, default=str)
    admin = server.superuser_conninfo("rates")
    if not marker.exists() or marker.read_text() != wanted:
        with psycopg.connect(server.superuser_conninfo(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS rates")
        create_database(server, "rates")
        schema.migrate(admin)
        if shape is None:
            print(f"loaded {schema.load_sample(admin, SAMPLE)}", file=sys.stderr)
        else:
            print(f"generated {generate_with_progress(admin, shape)}", file=sys.stderr)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        marker.write_text(wanted)
    return server, admin


def path_sets(admin: str, rng: random.Random) -> dict[str, list[str]]:
    """Random paths per shape: lanes weighted as the data is, all regions, random windows."""
    with psycopg.connect(admin) as conn:
        first, last = conn.execute("SELECT min(day), max(day) FROM prices").fetchone()
        (total,) = conn.execute("SELECT count(*) FROM prices").fetchone()
        percent = min(100.0, 100.0 * 5 * PATHS_PER_SHAPE / max(1, total))
        lanes = conn.execute(  # a sample of prices: busy lanes come up as often as they are busy
            "SELECT orig_code, dest_code FROM prices TABLESAMPLE BERNOULLI (%s)", (percent,)
        ).fetchall()
        ports = [
            code
            for (code,) in conn.execute(
                "SELECT DISTINCT orig_code FROM prices UNION SELECT DISTINCT dest_code FROM prices"
            )
        ]
        regions = [slug for (slug,) in conn.execute("SELECT slug FROM regions")]

    def window(days: int) -> str:
        span = max(0, (last - first).days - days + 1)
        start = first + timedelta(days=rng.randint(0, span))
        return f"date_from={start}&date_to={start + timedelta(days=days - 1)}"

    def paths(pairs: list[tuple[str, str]], days: int = 31) -> list[str]:
        return [f"/rates?{window(days)}&orig_code={o}&dest_code={d}" for o, d in pairs]

    def pick(a: list[str], b: list[str]) -> list[tuple[str, str]]:
        return [(rng.choice(a), rng.choice(b)) for _ in range(PATHS_PER_SHAPE)]

    sets = {
        "port→port": paths([rng.choice(lanes) for _ in range(PATHS_PER_SHAPE)]),
        "port→region": paths(pick(ports, regions)),
        "region→port": paths(pick(regions, ports)),
        "region→region": paths(pick(regions, regions)),
        "region→region 1 year": paths(pick(regions, regions), days=365),
    }
    sets["mixed"] = [p for shape in SHAPES for p in sets[shape]]
    return sets


def wrk(
    wrk_bin: str, base: str, paths: list[str], connections: int, seconds: int
) -> dict[str, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(paths) + "\n")
    try:
        out = subprocess.run(
            [
                wrk_bin,
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "-s",
                str(LUA),
                base,
                "--",
                handle.name,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    line = next(line for line in out.splitlines() if line.startswith("WRK_RESULT "))
    result: dict[str, int] = json.loads(line.removeprefix("WRK_RESULT "))
    return result


def worker_rss_mb(api: ApiServer) -> list[float]:
    workers = psutil.Process(api.process.pid).children(recursive=True)
    return sorted(
        round(p.memory_info().rss / 2**20, 1)
        for p in workers
        if "gunicorn" in " ".join(p.cmdline()) or "python" in p.name()
    )


def alternate(
    first: Callable[[int], dict[str, int]],
    second: Callable[[int], dict[str, int]],
    seconds: int,
) -> tuple[list[float], list[dict[str, int]], list[dict[str, int]]]:
    """Measure two servers in alternation, A B B A per round, so the shared machine's
    drift counts against both; each round's ratio is second / first."""
    ratios: list[float] = []
    firsts: list[dict[str, int]] = []
    seconds_runs: list[dict[str, int]] = []
    half = max(1, seconds // 2)
    for _ in range(PAIRED_ROUNDS):
        a1, b1, b2, a2 = first(half), second(half), second(half), first(half)
        ratios.append(round(_rate([b1, b2]) / _rate([a1, a2]), 3))
        firsts += [a1, a2]
        seconds_runs += [b1, b2]
    return ratios, firsts, seconds_runs


def _rate(raw: list[dict[str, int]]) -> float:
    return round(sum(r["requests"] for r in raw) / (sum(r["duration_us"] for r in raw) / 1e6), 1)


def summed(name: str, connections: int, raw: list[dict[str, int]]) -> Result:
    return Result(
        name,
        connections,
        _rate(raw),
        max(r["p50_us"] for r in raw) / 1000,
        max(r["p99_us"] for r in raw) / 1000,
        sum(r["non_2xx"] + r["socket_errors"] for r in raw),
    )


def run_dataset(
    label: str, shape: Shape | None, args: argparse.Namespace, wrk_bin: str
) -> dict[str, object]:
    data_dir = ROOT / ".data" / "bench" / label
    data_dir.mkdir(parents=True, exist_ok=True)
    server, admin = prepare(data_dir, shape)
    password = new_password()
    with psycopg.connect(admin, autocommit=True) as conn:
        ensure_login_member(conn, "rates_bench", password)
    api_login = server.tcp_conninfo("rates_bench", password, "rates")
    api = ApiServer(api_login)
    rng = random.Random(args.seed)
    sets = path_sets(admin, rng)
    results: list[Result] = []

    def measure(name: str, paths: list[str], connections: int, base: str = "") -> Result:
        raw = wrk(wrk_bin, base or api.base, paths, connections, args.duration)
        result = summed(name, connections, [raw])
        results.append(result)
        print(
            f"  {label} {name} c={connections}: {result.requests_per_second:.0f} req/s",
            file=sys.stderr,
        )
        return result

    def measure_reference(name: str, command: list[str], app: str, paths: list[str]) -> Result:
        reference = Reference(command, app, {"DATABASE_URL": api_login})
        try:
            wrk(wrk_bin, reference.base, paths, args.connections, 2)  # warm-up
            return measure(name, paths, args.connections, reference.base)
        finally:
            reference.stop()

    try:
        wrk(wrk_bin, api.base, sets["mixed"], args.connections, 3)  # warm-up, not recorded
        hello = measure("GET /", ["/"], args.connections)
        for name in SHAPES:
            measure(name, sets[name], args.connections)
        measure("mixed", sets["mixed"], args.connections)
        if shape is not None:
            for name in (*SHAPES, "region→region 1 year"):
                measure(name, sets[name], 1)
        rss = worker_rss_mb(api)
        paired: dict[str, list[float]] = {}
        if shape is None:
            paired = measure_paired(
                api, api_login, args=args, wrk_bin=wrk_bin, mixed=sets["mixed"], results=results
            )
        references = {}
        if shape is None:
            references = {
                "gunicorn": measure_reference(HELLO_GUNICORN, GUNICORN_2X2, "hello", ["/"]),
                "granian": measure_reference(HELLO_GRANIAN, GRANIAN_2X2, "hello", ["/"]),
                "naive": measure_reference(NAIVE, GUNICORN_2X2, "naive", sets["mixed"]),
            }
            measure_reference(BARE, GRANIAN_2X2, "bare", sets["mixed"])
        for result in results:
            rps = result.requests_per_second
            result.ratio_to_hello = round(rps / hello.requests_per_second, 3)
            if references:
                result.ratio_to_gunicorn_hello = round(
                    rps / references["gunicorn"].requests_per_second, 3
                )
                result.ratio_to_granian_hello = round(
                    rps / references["granian"].requests_per_second, 3
                )
                result.ratio_to_naive = round(rps / references["naive"].requests_per_second, 2)
    finally:
        api.stop()
        server.stop()
    return {
        "dataset": label,
        "prices": shape.prices if shape else 56_689,
        "worker_rss_mb": rss,
        "results": [asdict(r) for r in results],
        "paired_ratios": paired,
    }


def measure_paired(
    api: ApiServer,
    api_login: str,
    *,
    args: argparse.Namespace,
    wrk_bin: str,
    mixed: list[str],
    results: list[Result],
) -> dict[str, list[float]]:
    """The two ratios the targets are about, each from servers run in alternation:
    our mixed lanes against the bare hello under gunicorn, and with RATE_LIMIT set
    (high enough never to refuse: what counting every request costs) against without."""

    def lanes(base: str) -> Callable[[int], dict[str, int]]:
        return lambda seconds: wrk(wrk_bin, base, mixed, args.connections, seconds)

    paired: dict[str, list[float]] = {}
    hello = Reference(GUNICORN_2X2, "hello", {})
    try:
        wrk(wrk_bin, hello.base, ["/"], args.connections, 2)  # warm-up, not recorded
        ratios, _, _ = alternate(
            lambda seconds: wrk(wrk_bin, hello.base, ["/"], args.connections, seconds),
            lanes(api.base),
            args.duration,
        )
        paired[MIXED_TO_GUNICORN] = ratios
    finally:
        hello.stop()
    if args.rate_limit:
        # Two servers started together and warmed alike, so the pair differs only in
        # RATE_LIMIT (not in one having served every scenario before).
        unlimited = ApiServer(api_login)
        limited = ApiServer(api_login, RATE_LIMIT=args.rate_limit)
        try:
            for server in (unlimited, limited):
                lanes(server.base)(3)  # warm-up, not recorded
            ratios, without, with_limit = alternate(
                lanes(unlimited.base), lanes(limited.base), args.duration
            )
            paired[LIMITED_TO_UNLIMITED] = ratios
        finally:
            limited.stop()
            unlimited.stop()
        results += [
            summed(PAIRED_MIXED, args.connections, without),
            summed(RATE_LIMITED_MIXED, args.connections, with_limit),
        ]
    return paired


def _ratio(value: float | None) -> str:
    return f"{value:>9.2f}" if value is not None else f"{'':>9}"


def print_table(run: dict[str, object]) -> None:
    print(f"\n{run['dataset']}: {run['prices']:,} prices · worker RSS MB {run['worker_rss_mb']}")
    print(
        f"{'scenario':<30}{'conns':>6}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"{'x GET /':>9}{'x gun.':>9}{'x gran.':>9}{'x naive':>9}"
    )
    for r in run["results"]:  # type: ignore[attr-defined]
        print(
            f"{r['scenario']:<30}{r['connections']:>6}{r['requests_per_second']:>9.0f}"
            f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['errors']:>7}"
            f"{_ratio(r['ratio_to_hello'])}{_ratio(r['ratio_to_gunicorn_hello'])}"
            f"{_ratio(r['ratio_to_granian_hello'])}{_ratio(r['ratio_to_naive'])}"
        )


def check_targets(run: dict[str, object]) -> list[str]:
    """The sample run's targets, each as a line saying whether it holds."""
    results = {r["scenario"]: r for r in run["results"]}  # type: ignore[attr-defined]
    mixed = results["mixed"]
    ours = [r for r in results.values() if r["scenario"] not in REFERENCE_SCENARIOS]
    paired: dict[str, list[float]] = run.get("paired_ratios") or {}  # type: ignore[assignment]

    def median_of(name: str, target: float, text: str) -> list[tuple[str, bool]]:
        if name not in paired:
            return []
        ratios = paired[name]
        middle = statistics.median(ratios)
        rounds = ", ".join(f"{r:.3f}" for r in ratios)
        line = f"{text} = {middle:.3f}x, median of rounds {rounds} (target >= {target})"
        return [(line, middle >= target)]

    checks = [
        *median_of(
            LIMITED_TO_UNLIMITED,
            MIN_LIMITED_TO_UNLIMITED,
            "/rates mixed with RATE_LIMIT / without, in alternation",
        ),
        *median_of(
            MIXED_TO_GUNICORN,
            MIN_MIXED_TO_GUNICORN_HELLO,
            "/rates mixed / bare hello under gunicorn gthread 2x2, in alternation",
        ),
        (
            f"/rates mixed = {mixed['ratio_to_naive']:.1f}x the naive baseline"
            f" (target >= {MIN_MIXED_TO_NAIVE})",
            mixed["ratio_to_naive"] >= MIN_MIXED_TO_NAIVE,
        ),
        (
            f"worst p99 of ours = {max(r['p99_ms'] for r in ours):.1f} ms (target <= {MAX_P99_MS})",
            max(r["p99_ms"] for r in ours) <= MAX_P99_MS,
        ),
        (
            f"errors = {sum(r['errors'] for r in results.values())} (target 0)",
            sum(r["errors"] for r in results.values()) == 0,
        ),
    ]
    return [f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", action="store_true", help="synthetic 1M and 10M prices")
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rate-limit",
        default=BENCH_RATE_LIMIT,
        metavar="SPEC",
        help="also measure the mixed lanes with this RATE_LIMIT ('' to skip)",
    )
    args = parser.parse_args()
    wrk_bin = ensure_wrk()
    datasets: list[tuple[str, Shape | None]] = (
        [("synthetic-1m", Shape(prices=1_000_000)), ("synthetic-10m", Shape())]
        if args.scale
        else [("sample", None)]
    )
    runs = [run_dataset(label, shape, args, wrk_bin) for label, shape in datasets]
    for run in runs:
        print_table(run)
    if not args.scale:
        print("\n" + "\n".join(check_targets(runs[0])))
    if args.scale:
        small, large = (
            next(
                r
                for r in run["results"]  # type: ignore[attr-defined]
                if r["scenario"] == "port→port" and r["connections"] == 1
            )
            for run in runs
        )
        print(f"\nport→port p50 at 10M / at 1M: {large['p50_ms'] / small['p50_ms']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{stamp}-{'scale' if args.scale else 'sample'}.json"
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30),
                },
                "connections": args.connections,
                "duration_s": args.duration,
                "runs": runs,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"\nwritten {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
