#!/usr/bin/env bash
# Runs the governed-call workloads against this implementation and the
# Python original (governor 0.2.0 from PyPI, installed into bench/.venv)
# in one run, and prints both with the ratio of calls per second.
#
#   bash bench/compare.sh            # full run (a few minutes)
#   QUICK=1 bash bench/compare.sh    # smoke run
#
# Rows with callers 2 run two callers on two threads against one
# governor; "ratio" compares them with the original doing the same,
# "vs best" with its fastest figure for the workload (one caller).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x bench/.venv/bin/python ]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q "governor==0.2.0"

n=20000
quick=()
if [ "${QUICK:-}" = 1 ]; then n=2000; quick=(--quick); fi

out=$(mktemp -d)
bench/.venv/bin/python bench/original_bench.py "$n" > "$out/python.jsonl"
cargo bench -q -p agent-governor --bench governed_call -- "${quick[@]}" | grep '^{' > "$out/rust-memory.jsonl"
GOVERNOR_BENCH_STORE=sqlite cargo bench -q -p agent-governor --bench governed_call -- "${quick[@]}" | grep '^{' > "$out/rust-sqlite.jsonl"

python3 - "$out" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
load = lambda f: [json.loads(l) for l in (d / f).read_text().splitlines() if l.strip()]
# The original's row for the same workload and callers.
py = {(r["workload"], r.get("callers", 1)): r for r in load("python.jsonl") if "calls_per_sec" in r}
py_mem = next(r for r in load("python.jsonl") if "retained_bytes_per_execution" in r)
rs = load("rust-memory.jsonl")
# Also against the original's best for the workload, whatever its callers.
best = {}
for (w, _), r in py.items():
    best[w] = max(best.get(w, 0), r["calls_per_sec"])
print(f"{'workload':<18} {'store':<9} {'p50 µs':>9} {'p99 µs':>9} {'calls/s':>11} {'python calls/s':>15} {'ratio':>7} {'vs best':>8}")
for r in rs + load("rust-sqlite.jsonl"):
    if "calls_per_sec" not in r:
        continue
    base = py.get((r["workload"], r.get("callers", 1)))
    memory = base and r["store"] != "sqlite"
    ratio = f"{r['calls_per_sec'] / base['calls_per_sec']:.1f}x" if memory else "-"
    vs_best = f"{r['calls_per_sec'] / best[r['workload']]:.1f}x" if memory else "-"
    store = r["store"] + (f"/{r['callers']}" if "callers" in r else "")
    print(f"{r['workload']:<18} {store:<9} {r['p50_us']:>9.3f} {r['p99_us']:>9.3f} {r['calls_per_sec']:>11,.0f} "
          f"{(base['calls_per_sec'] if base else 0):>15,.0f} {ratio:>7} {vs_best:>8}")
for r in rs:
    if "retained_bytes_per_execution" in r:
        print(f"retained bytes per execution (memory store): {r['retained_bytes_per_execution']} "
              f"(python original: {py_mem['retained_bytes_per_execution']})")
PY
