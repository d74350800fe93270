#!/usr/bin/env bash
# The whole test suite: unit, integration, conformance, doc tests and the
# examples. This is the command README.md gives and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
cargo test -p governor-core --features cedar --lib cedar
