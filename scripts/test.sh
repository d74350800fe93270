#!/usr/bin/env bash
# The whole test suite (PostgreSQL, Redis and a MongoDB-wire server
# started if they are not up):
# every example, the Cedar feature, schemathesis
# against the HTTP API's OpenAPI document, the dashboard in headless
# Chromium, cargo fuzz on the policy
# loader for a bounded time, then unit,
# integration, store conformance, CLI end-to-end and doc tests. README.md
# gives this command and CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
# PostgreSQL, Redis and SecantusDB (MongoDB wire) for the store and
# rate-limit tests.
source scripts/services.sh

for example in basic_usage govern_impl criteria_based_governance financial_approval_system \
    approval_patterns manual_resume multi_stage_approval state_callback policy_config_example; do
    echo "== example $example"
    cargo run -q -p agent-governor --example "$example"
done
for example in approve_over_http governed_routes; do
    echo "== example $example"
    cargo run -q -p governor-http --example "$example"
done
echo "== example webhook_roundtrip"
cargo run -q -p governor-notify --example webhook_roundtrip

cargo test -p governor-core --features cedar --lib cedar
# The facade's MongoDB feature (no crate in the workspace turns it on).
cargo build -q -p agent-governor --features mongodb
echo "== schemathesis against governor serve"
bash scripts/schemathesis.sh

echo "== the approval console in headless Chromium"
bash scripts/browser.sh

echo "== cargo fuzz: policy loader (YAML, JSON) and CEL conditions, ${FUZZ_SECONDS:-30}s each"
bash scripts/fuzz.sh

cargo test --workspace
