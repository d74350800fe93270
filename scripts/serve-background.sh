# Sourced by scripts that drive a real `governor serve`:
#   serve_in_background GOVERNOR_BINARY WORKDIR
# starts it on WORKDIR/governor.toml, stops it (and removes WORKDIR) on
# exit, and sets `addr` to the host:port it listens on.
serve_in_background() {
    local governor=$1 work=$2
    "$governor" serve --config "$work/governor.toml" > "$work/serve.out" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true; rm -rf "'"$work"'"' EXIT
    for _ in $(seq 100); do
        grep -q serving "$work/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    if ! grep -q serving "$work/serve.out"; then
        echo "governor serve did not start:" >&2
        cat "$work/serve.out" >&2
        return 1
    fi
    addr=$(grep -m1 "governor serving" "$work/serve.out" | sed -E 's|.*http://([^ ]+).*|\1|')
}
