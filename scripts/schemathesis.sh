#!/usr/bin/env bash
# Property-based tests of the HTTP API against its OpenAPI document:
# schemathesis (PyPI) drives `governor serve` with generated requests and
# valid tokens; any server error, undocumented status, wrong content type
# or response outside the schema fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
venv=${SCHEMATHESIS_VENV:-target/schemathesis-venv}
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4.3,<5"
fi

governor=$(bash scripts/governor-bin.sh)
token="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
hash=$(echo "$token" | "$governor" token hash)
cat > "$work/refund.yaml" <<'YAML'
policies:
  - type: approval
    name: RefundApproval
    approvers: [schemathesis]
    allow_self_approval: true
YAML
cat > "$work/governor.toml" <<TOML
bind = "127.0.0.1:0"
db = "$work/st.db"
# Pending submissions hold their connection at most this long.
max_wait_seconds = 1

[[keys]]
hash = "$hash"
principal = "schemathesis"
roles = ["admin"]
permissions = ["governor:read", "governor:resume"]

[[actions]]
name = "lookup"

[[actions]]
name = "refund"
policies = "refund.yaml"
TOML

source scripts/serve-background.sh
serve_in_background "$governor" "$work"

"$venv/bin/st" run "http://$addr/govern/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --seed 1 \
    --request-timeout 10
