#!/usr/bin/env bash
# Load test of a deployed API (pipeline, against pre): wrk with the benchmark's random
# paths for 60 s (DURATION) at 16 connections; fails on any error or a p99 over 250 ms
# (P99_MS).
set -euo pipefail
base=${1:?usage: loadtest.sh BASE_URL}
duration=${DURATION:-60s}
export P99_MS=${P99_MS:-250}
here=$(cd "$(dirname "$0")/.." && pwd)
paths=$(mktemp)
trap 'rm -f "$paths"' EXIT
python3 - "$paths" <<'PY'
import random, sys
from datetime import date, timedelta
rng = random.Random(1)
locations = ["CNGGZ", "EETLL", "CNSHK", "NOOSL", "china_main", "northern_europe",
             "baltic", "china_south_main", "scandinavia", "uk_sub"]
with open(sys.argv[1], "w") as out:
    for _ in range(2000):
        start = date(2021, 1, 1) + timedelta(days=rng.randint(0, 30))
        out.write(f"/rates?date_from={start}&date_to={start + timedelta(days=30)}"
                  f"&orig_code={rng.choice(locations)}&dest_code={rng.choice(locations)}\n")
PY
result=$(wrk -t2 -c16 "-d${duration}" --timeout 5s -s "$here/bench/paths.lua" "$base" -- "$paths" | grep '^WRK_RESULT ')
echo "$result"
python3 - "$result" <<'PY'
import json, os, sys
r = json.loads(sys.argv[1].removeprefix("WRK_RESULT "))
errors = r["non_2xx"] + r["socket_errors"]
limit_ms = float(os.environ["P99_MS"])
print(f"{r['requests']} requests, {errors} errors, p99 {r['p99_us'] / 1000:.1f} ms (limit {limit_ms:g} ms)")
sys.exit(1 if errors or r["p99_us"] > limit_ms * 1000 else 0)
PY
