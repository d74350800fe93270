#!/usr/bin/env bash
# Prints the directory holding the original's own policy files, taken
# unchanged from its sdist on PyPI (governor==0.2.0), so that tests prove
# they load as the original shipped them. The sdist is fetched once with
# pip (which checks PyPI's hash), checked against the sha256 below, and
# unpacked into a cache outside the repository:
#   ${GOVERNOR_SEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/governor-seed}
# Exits non-zero, saying why on stderr, when it cannot be fetched.
set -euo pipefail

version=0.2.0
sha256=b0d9f84c6b6e40f738170645af2397f5a0b40f01d3ce6d5cd7d98b504e90ad3c
cache="${GOVERNOR_SEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/governor-seed}"
policies="$cache/governor-$version/examples/policies"

if [ ! -f "$policies/governance.yaml" ]; then
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/fetch.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: "governor==$version" -d "$work" >&2
    sdist="$work/governor-$version.tar.gz"
    got=$(sha256sum "$sdist" | cut -d' ' -f1)
    if [ "$got" != "$sha256" ]; then
        echo "seed-policies: governor-$version.tar.gz has sha256 $got, expected $sha256" >&2
        exit 1
    fi
    tar -xzf "$sdist" -C "$work" "governor-$version/examples/policies"
    # Another run may have unpacked it meanwhile; either copy is the same.
    mv -T "$work/governor-$version" "$cache/governor-$version" 2>/dev/null || true
fi
echo "$policies"
