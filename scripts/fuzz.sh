#!/usr/bin/env bash
# Fuzzes the policy-file loader (YAML, JSON) and CEL conditions with
# cargo fuzz (libFuzzer), each for a bounded time, seeded with the seed's
# and our starter policy files. Exits non-zero on any crash, leak or
# timeout (an input that takes over 10 s).
#
#   bash scripts/fuzz.sh            # 30 s per target
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain on this machine; cargo fuzz needs one" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/policy_yaml" "$work/policy_json" "$work/cel_condition"
# The original's policy files, from its sdist on PyPI.
seed=$(bash scripts/seed-policies.sh)
n=0
for f in "$seed"/*.yaml policies/*.yaml crates/agent-governor/examples/criteria/*.yaml; do
    cp "$f" "$work/policy_yaml/seed$n.yaml"
    n=$((n + 1))
done
cp "$seed"/*.json "$work/policy_json/"
i=0
for expr in "input.amount > 10000" "'finance' in principal.roles && env.name == 'production'" \
    "principal.roles.exists(r, r.startsWith('fin'))" "now.getHours('Europe/Berlin') < 18" \
    "has(input.to.iban) ? input.to.iban.size() > 3 : false" "(input.count + 1) * 2 == 8" \
    "input.tags.map(t, t + '!').size() == 2" "output.status == 'done'"; do
    printf '%s' "$expr" > "$work/cel_condition/seed$i"
    i=$((i + 1))
done

status=0
for target in policy_yaml policy_json cel_condition; do
    echo "== cargo fuzz run $target (${seconds}s)"
    code=0
    cargo +nightly fuzz run "$target" "$work/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 > "$work/$target.log" 2>&1 || code=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY|thread '.*' panicked)" "$work/$target.log" || true
    if [ "$code" -ne 0 ]; then
        echo "fuzz: $target found a problem (exit $code); the end of its log:" >&2
        tail -n 40 "$work/$target.log" >&2
        status=1
    fi
done
exit "$status"
