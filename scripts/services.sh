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
