#!/usr/bin/env bash
# Builds the `governor` binary (debug, or the profile given as $1) and
# prints its absolute path, wherever cargo puts its target directory
# (CARGO_TARGET_DIR, .cargo/config.toml, or ./target).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dev}
cargo build -q -p governor-cli --profile "$profile"
cargo build -p governor-cli --profile "$profile" --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "governor":
        print(m["executable"])
'
