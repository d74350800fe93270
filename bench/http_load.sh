#!/usr/bin/env bash
# Load benchmarks of `governor serve` (release build, SQLite, durable):
#  1. GET /govern/approvals/pending with 10,000 pending approvals (wrk)
#  2. POST /govern/executions on the allowed path (wrk, Lua body)
#  3. approve-to-caller-continues over HTTP (bench/approve_latency.py)
# Needs wrk and hey (`apt-get install -y wrk hey`). Prints the numbers that
# BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."

governor=$(bash scripts/governor-bin.sh release)
work=$(mktemp -d)
token="bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
hash=$(echo "$token" | "$governor" token hash)
cat > "$work/approve.yaml" <<'YAML'
policies:
  - type: approval
    name: BenchApproval
    approvers: [bench]
    allow_self_approval: true
YAML
cat > "$work/governor.toml" <<TOML
bind = "127.0.0.1:0"
db = "$work/bench.db"

[[keys]]
hash = "$hash"
principal = "bench"
permissions = ["governor:read", "governor:resume"]

[[actions]]
name = "lookup"

[[actions]]
name = "refund"
policies = "approve.yaml"
TOML
source scripts/serve-background.sh
serve_in_background "$governor" "$work"
base="http://$addr"
auth="Authorization: Bearer $token"

echo "== seeding 10,000 pending approvals (hey)"
hey -n 10000 -c 32 -m POST -T application/json -H "$auth" \
    -d '{"action":"refund","arguments":{"amount":900}}' "$base/govern/executions" \
    | grep -E "Requests/sec|\[202\]|\[[45][0-9][0-9]\]"

echo "== GET /govern/approvals/pending (first page of 50), wrk -t2 -c16 -d10s"
wrk -t2 -c16 -d10s --latency -H "$auth" "$base/govern/approvals/pending" \
    | grep -E "Requests/sec|^ +(50|90|99)%|Non-2xx"

cat > "$work/submit.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"action":"lookup","arguments":{"q":"acme"}}'
LUA
echo "== POST /govern/executions, allowed path (SQLite, durable), wrk -t2 -c64 -d10s"
wrk -t2 -c64 -d10s --latency -H "$auth" -s "$work/submit.lua" "$base/govern/executions" \
    | grep -E "Requests/sec|^ +(50|90|99)%|Non-2xx"

echo "== approve over HTTP until the held submission answers (200 samples)"
python3 bench/approve_latency.py "$base" "$token" 200
