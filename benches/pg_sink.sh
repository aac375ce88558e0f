#!/usr/bin/env bash
# benches/pg_sink.sh — the postgres sink's write speed: N records (default 100,000) of the
# throughput benchmark's shape written through hamstr's postgres writer in pages of 500,
# against a binary `COPY ... FROM STDIN` bulk load of the same records (and multi-row
# INSERT ... VALUES, the alternative to the writer's UNNEST arrays). Prints records/s
# for each, per round and as medians, and the writer / COPY ratio.
#
# Usage: benches/pg_sink.sh [--records N] [--batch N] [--rounds N]
# Uses DATABASE_URL when set; else starts the local test server with tests/pg_setup.sh
# (which installs PostgreSQL when it is missing).

set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${DATABASE_URL:-}" ]; then
    line=$(tests/pg_setup.sh | tail -n 1)
    export "${line?}"
fi
echo "== building the pg_sink bench (release)"
cargo bench --no-run --bench pg_sink
cargo bench --bench pg_sink -- --url "$DATABASE_URL" "$@"
