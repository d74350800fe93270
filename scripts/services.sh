#!/usr/bin/env bash
# Makes sure the servers the tests talk to are up (PostgreSQL, Redis),
# starting or installing them from Debian's packages when they are not,
# and exports their URLs for the tests. Sourced by scripts/test.sh.

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if [ -z "${GOVERNOR_TEST_POSTGRES_URL:-}" ]; then
    export GOVERNOR_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
    if ! pg_up; then
        echo "== starting PostgreSQL"
        command -v pg_ctlcluster >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
        service postgresql start >/dev/null 2>&1 || pg_ctlcluster "$(ls /etc/postgresql | head -1)" main start
        for _ in $(seq 50); do pg_up && break; sleep 0.2; done
        # A server this script started has no trust rule for TCP: give the
        # postgres role a password for the tests.
        su postgres -c "psql -q -c \"ALTER ROLE postgres PASSWORD 'governor'\"" >/dev/null
        export GOVERNOR_TEST_POSTGRES_URL="postgres://postgres:governor@127.0.0.1:5432/test"
    fi
    if ! psql "${GOVERNOR_TEST_POSTGRES_URL%/test}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
        psql "${GOVERNOR_TEST_POSTGRES_URL%/test}/postgres" -qc "CREATE DATABASE test"
    fi
fi

if [ -z "${GOVERNOR_TEST_REDIS_URL:-}" ]; then
    export GOVERNOR_TEST_REDIS_URL="redis://127.0.0.1:6379"
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        echo "== starting Redis"
        command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
        redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
        for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.2; done
    fi
fi
echo "== services: PostgreSQL ${GOVERNOR_TEST_POSTGRES_URL%%:*}://…@127.0.0.1:5432/test, Redis $GOVERNOR_TEST_REDIS_URL"

# MongoDB: Debian has no server package, so the tests run against
# SecantusDB (PyPI), a MongoDB-wire server: a replica-set primary for the
# store's tests and a standalone one for the "needs a replica set" error.
port_up() { (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_secantus() { # port, extra flags...
    local port=$1 dir="${GOVERNOR_CACHE:-$HOME/.cache/governor}/secantus"
    shift
    if [ ! -x "$dir/venv/bin/secantusd-py" ]; then
        echo "== installing secantusdb from PyPI"
        python3 -m venv "$dir/venv" 2>/dev/null || {
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$dir/venv"
        }
        "$dir/venv/bin/pip" install -q secantusdb
    fi
    mkdir -p "$dir"
    nohup "$dir/venv/bin/secantusd-py" --host 127.0.0.1 --port "$port" --log-level WARNING "$@" \
        >"$dir/$port.log" 2>&1 &
    for _ in $(seq 100); do port_up "$port" && return 0; sleep 0.2; done
    echo "secantusdb did not start on port $port:" >&2
    cat "$dir/$port.log" >&2
    return 1
}

if [ -z "${GOVERNOR_TEST_MONGODB_URL:-}" ]; then
    export GOVERNOR_TEST_MONGODB_URL="mongodb://127.0.0.1:27017/?directConnection=true"
    port_up 27017 || { echo "== starting SecantusDB (MongoDB wire) on 27017"; start_secantus 27017 --storage-path :memory:; }
fi
if [ -z "${GOVERNOR_TEST_MONGODB_STANDALONE_URL:-}" ]; then
    export GOVERNOR_TEST_MONGODB_STANDALONE_URL="mongodb://127.0.0.1:27019/?directConnection=true"
    port_up 27019 || start_secantus 27019 --storage-path :memory: --standalone
fi
echo "== services: MongoDB wire $GOVERNOR_TEST_MONGODB_URL"

# SMTP: the tests start their own aiosmtpd servers (PyPI) from a venv.
if [ -z "${GOVERNOR_TEST_SMTP_PYTHON:-}" ]; then
    smtp_dir="${GOVERNOR_CACHE:-$HOME/.cache/governor}/aiosmtpd"
    if ! "$smtp_dir/venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
        echo "== installing aiosmtpd from PyPI"
        python3 -m venv "$smtp_dir/venv" 2>/dev/null || {
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$smtp_dir/venv"
        }
        "$smtp_dir/venv/bin/pip" install -q --disable-pip-version-check "aiosmtpd>=1.4,<2"
    fi
    command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
    export GOVERNOR_TEST_SMTP_PYTHON="$smtp_dir/venv/bin/python"
fi
echo "== services: SMTP tests run aiosmtpd with $GOVERNOR_TEST_SMTP_PYTHON"
