#!/usr/bin/env bash
# tests/pg_setup.sh — a throwaway PostgreSQL for the postgres sink's tests and benchmark.
#
# Installs PostgreSQL with apt-get when neither `initdb` nor `pg_ctlcluster` is found,
# creates a cluster under a temporary folder (trust auth, superuser `postgres`) that
# listens on 127.0.0.1:$PG_PORT (default 55432) and on a unix socket in that folder,
# starts it, creates the databases `hamstr_test` and `hamstr`, and prints
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:55432/hamstr_test
#
# as its last line. Running it again while the cluster is up only prints that line.
#
# Usage: tests/pg_setup.sh [start|stop]
# Environment: PG_PORT (default 55432), PG_DIR (default $TMPDIR/hamstr-pg-$PG_PORT).
# Typical use: eval "export $(tests/pg_setup.sh | tail -n 1)"

set -euo pipefail

port=${PG_PORT:-55432}
dir=${PG_DIR:-${TMPDIR:-/tmp}/hamstr-pg-$port}
url="postgres://postgres@127.0.0.1:$port/hamstr_test"
action=${1:-start}

# The folder of the newest installed server's programs (initdb, pg_ctl, postgres).
server_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$found" ] && [ -x "$found/initdb" ]; then
        echo "$found"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

bin=$(server_bin)
if [ -z "$bin" ] && [ "$action" = start ]; then
    echo "pg_setup: installing PostgreSQL with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y postgresql >&2
    bin=$(server_bin)
fi
if [ -z "$bin" ]; then
    echo "pg_setup: no PostgreSQL server programs found" >&2
    exit 1
fi

# initdb and postgres refuse to run as root: run them as the `postgres` user then.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "$action" = stop ]; then
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    fi
    exit 0
fi
if [ "$action" != start ]; then
    echo "pg_setup: unknown action '$action' (start or stop)" >&2
    exit 2
fi

ready() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; }

if ! ready; then
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            exit 1
        }
    fi
    # fsync off: a test database that a crash may lose, and much faster on small disks.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || {
        tail -n 20 "$dir/server.log" >&2
        exit 1
    }
fi

for _ in $(seq 1 60); do
    ready && break
    sleep 0.5
done
if ! ready; then
    echo "pg_setup: the server on 127.0.0.1:$port does not answer" >&2
    exit 1
fi

for db in hamstr_test hamstr; do
    if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
        "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -c \
            "CREATE DATABASE $db" >&2
    fi
done

echo "DATABASE_URL=$url"
