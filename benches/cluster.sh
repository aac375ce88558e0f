#!/usr/bin/env bash
# benches/cluster.sh — `run --cluster`: throughput of 1, 2 and 3 instances pulling
# UNITS sources (each the bench API's RECORDS records in pages of 500) into one
# PostgreSQL (a table per unit, keyed by id), from the first start to every row in
# place; then the time from SIGKILL of one of 3 instances to all its units held by the
# others (lease 5 s).
#
# Usage: benches/cluster.sh [--units N] [--records N]
# Uses DATABASE_URL when set; else starts the local test server with tests/pg_setup.sh.

set -euo pipefail
cd "$(dirname "$0")/.."
units=12
records=20000
while [ $# -gt 0 ]; do
    case "$1" in
        --units) units=$2; shift 2 ;;
        --records) records=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "${DATABASE_URL:-}" ]; then
    line=$(tests/pg_setup.sh | tail -n 1)
    export "${line?}"
fi
hamstr=${HAMSTR_BIN:-target/release/hamstr}
[ -x "$hamstr" ] || cargo build --release --bin hamstr

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

# The API: RECORDS records in pages of 500 at /records?page=N&per_page=500, every page
# serialised once at start (python3, so that no second release build is needed).
python3 - "$records" > "$tmp/api.out" <<'PY' &
import json, sys, urllib.parse
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
n, per = int(sys.argv[1]), 500
recs = [{"id": f"r{i:07d}", "seq": i, "amount": f"{i % 1000}.{i % 100:02d}"} for i in range(1, n + 1)]
pages = [json.dumps({"data": recs[i:i + per]}).encode() for i in range(0, n, per)]
empty = json.dumps({"data": []}).encode()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        p = int(q.get("page", ["1"])[0])
        body = pages[p - 1] if 1 <= p <= len(pages) else empty
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(f"listening on http://127.0.0.1:{s.server_address[1]}", flush=True)
s.serve_forever()
PY
pids+=($!)
for _ in $(seq 100); do grep -q listening "$tmp/api.out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^listening on //p' "$tmp/api.out")

base=${DATABASE_URL%/*}
fresh_db() {
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
    echo "$base/$1"
}

# UNITS sources over the bench API's page query, each into its own table.
pipeline() {
    local db=$1 file=$2
    {
        echo "service api { base_url = \"$api\" }"
        for i in $(seq -w 1 "$units"); do
            cat <<HMR
source u$i from api {
  get      = "/records"
  schedule = once
  paginate = page(param = "page", start = 1, size_param = "per_page", size = 500)
  records  = \$.data[*]
  key      = id
  fields {
    id     : string  = \$.id
    seq    : int     = \$.seq
    amount : decimal = \$.amount
  }
}
sink t$i = postgres("$db", table = "t_u$i")
flow u$i -> t$i
HMR
        done
    } > "$file"
}

rows() {
    local db=$1 total=0 n
    for i in $(seq -w 1 "$units"); do
        n=$(psql -qtA "$db" -c "SELECT count(*) FROM t_u$i" 2>/dev/null || echo 0)
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

start() { # db file data lease; prints the pid (stdout closed for the process)
    RUST_LOG=hamstr=warn,hamstr::cluster=info "$hamstr" run "$2" --cluster "$1" --lease "$4" --no-watch --data-dir "$3" > /dev/null 2>> "$3.log" &
    echo $!
}

want=$((units * records))
echo "== throughput: $units units x $records records into PostgreSQL"
for n in 1 2 3; do
    db=$(fresh_db "bench_cluster_$n")
    pipeline "$db" "$tmp/p$n.hmr"
    t0=$(date +%s.%N)
    mine=()
    for k in $(seq "$n"); do mine+=("$(start "$db" "$tmp/p$n.hmr" "$tmp/d$n-$k" 30s)"); done
    pids+=("${mine[@]}")
    while [ "$(rows "$db")" -lt "$want" ]; do sleep 0.2; done
    t1=$(date +%s.%N)
    for p in "${mine[@]}"; do kill -TERM "$p"; done
    wait "${mine[@]}" 2>/dev/null || true
    echo "$n instance(s): $want records in $(echo "$t1 - $t0" | bc) s = $(echo "$want / ($t1 - $t0)" | bc) records/s"
    # (Started in a subshell, they are not this shell's children: `wait` returns at once.)
    for p in "${mine[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    # Each instance logs what checking its lease cost its commits when it leaves.
    for k in $(seq "$n"); do
        grep -h "lease overhead" "$tmp/d$n-$k.log" | sed 's/.*lease overhead[^ ]* /  lease overhead: /' || true
    done
done

echo "== takeover after SIGKILL (3 instances, lease 5s)"
db=$(fresh_db bench_cluster_kill)
pipeline "$db" "$tmp/pk.hmr"
sed -i 's/schedule = once/schedule = every(1s)/' "$tmp/pk.hmr"
ids=()
for k in 1 2 3; do ids+=("$(start "$db" "$tmp/pk.hmr" "$tmp/dk-$k" 5s)"); done
pids+=("${ids[@]}")
held() { psql -qtA "$db" -c "SELECT count(*) FROM hamstr_units WHERE owner IS NOT NULL AND lease_until > now()"; }
until [ "$(held)" -eq "$units" ] && [ "$(psql -qtA "$db" -c "SELECT count(DISTINCT owner) FROM hamstr_units WHERE lease_until > now()")" -eq 3 ]; do sleep 0.2; done
victim_id=$(cut -d' ' -f2 "$tmp/dk-1/cluster-instance")
kill -9 "${ids[0]}"
t0=$(date +%s.%N)
until [ "$(psql -qtA "$db" -c "SELECT count(*) FROM hamstr_units WHERE owner IS NOT NULL AND owner <> $victim_id AND lease_until > now()")" -eq "$units" ]; do sleep 0.05; done
t1=$(date +%s.%N)
echo "all units of the killed instance held elsewhere after $(echo "$t1 - $t0" | bc) s"
for p in "${ids[@]:1}"; do kill -TERM "$p"; done
wait 2>/dev/null || true
