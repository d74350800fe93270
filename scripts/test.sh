#!/usr/bin/env bash
# The whole test suite: unit, integration, store conformance, doc tests,
# the CLI end to end, and every example. README.md gives this command and
# CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
cargo test -p governor-core --features cedar --lib cedar

for example in basic_usage govern_impl criteria_based_governance; do
    echo "== example $example"
    cargo run -q -p agent-governor --example "$example"
done
