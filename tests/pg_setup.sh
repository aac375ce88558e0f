#!/usr/bin/env bash
# tests/pg_setup.sh — a throwaway PostgreSQL for the postgres sink's tests and benchmark.
#
# Installs PostgreSQL with apt-get when neither `initdb` nor `pg_ctlcluster` is found,
# creates a cluster under a temporary folder (trust auth, superuser `postgres`) that
# listens on 127.0.0.1:$PG_PORT (default 55432) and on a unix socket in that folder,
# starts it, creates the databases `hamstr_test` and `hamstr`, and prints
#
#   PG_TLS_DIR=/tmp/hamstr-pg-55432/tls
#   DATABASE_URL=postgres://postgres@127.0.0.1:55432/hamstr_test
#
# as its last lines. Running it again while the cluster is up only prints them.
#
# TLS: the server has ssl=on with a certificate for 127.0.0.1 and localhost signed by a
# self-signed CA. PG_TLS_DIR holds `ca.crt` (that CA), `server.crt`, `server.key`, and
# `wrong-ca.crt`, a second CA that signed nothing, for tests of a refused certificate
# (`SHOW ssl_cert_file` on the server also names the folder). A cluster already running
# without TLS gets it on a configuration reload, without a restart.
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
if ! command -v openssl >/dev/null && [ "$action" = start ]; then
    echo "pg_setup: installing openssl with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y openssl >&2
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

# The certificates: a CA, a server certificate it signs, and a CA that signed nothing.
tls="$dir/tls"
make_certs() {
    local tmp
    tmp=$(mktemp -d)
    ca() { # NAME SUBJECT
        openssl req -x509 -new -nodes -days 3650 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -keyout "$tmp/$1.key" -out "$tmp/$1.crt" -subj "/CN=$2" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    }
    ca ca "hamstr test CA"
    ca wrong-ca "hamstr wrong CA"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$tmp/server.ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
        -CAcreateserial -days 3650 -extfile "$tmp/server.ext" -out "$tmp/server.crt" 2>/dev/null
    mkdir -p "$tls"
    cp "$tmp/ca.crt" "$tmp/wrong-ca.crt" "$tmp/server.crt" "$tmp/server.key" "$tls/"
    rm -rf "$tmp"
    chmod 600 "$tls/server.key"
    chmod 644 "$tls/ca.crt" "$tls/wrong-ca.crt" "$tls/server.crt"
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres: "$tls"
    fi
}
psql_admin() { "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
if [ "$(psql_admin -tAc 'SHOW ssl')" != on ]; then
    [ -f "$tls/server.crt" ] || make_certs
    psql_admin -q -c "ALTER SYSTEM SET ssl_cert_file = '$tls/server.crt'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$tls/server.key'" \
        -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 1 40); do
        [ "$(psql_admin -tAc 'SHOW ssl')" = on ] && break
        sleep 0.25
    done
    if [ "$(psql_admin -tAc 'SHOW ssl')" != on ]; then
        echo "pg_setup: the server did not turn TLS on; its log:" >&2
        tail -n 20 "$dir/server.log" >&2 || true
        exit 1
    fi
fi

for db in hamstr_test hamstr; do
    if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
        "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -c \
            "CREATE DATABASE $db" >&2
    fi
done

echo "PG_TLS_DIR=$tls"
echo "DATABASE_URL=$url"
