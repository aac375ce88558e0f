#!/usr/bin/env bash
# tests/soak/kill.sh — a soak test (not part of `cargo test`): kills `hamstr run` with
# SIGKILL N times while it rewrites a store of 50,000 records from the benchmark API
# (benches/bench_api.rs), and after every kill checks that the data directory still opens
# (`hamstr state`). Counts the kills that left an unfinished sled snapshot behind
# (`snap.*.generating`), the case that once made a store refuse to open.
#
# Usage: tests/soak/kill.sh [--kills N] [--early]
#   --kills N  how many kills (default 200)
#   --early    kill 5-85 ms after the start, while the store is being opened (sled writes
#              a snapshot then); otherwise 100-990 ms after, mid-run
# Environment: HAMSTR_BIN, BENCH_API_BIN use prebuilt executables instead of building.
# Exit status: 0 when the store opened after every kill, 1 when it did not, 2 on usage errors.

set -euo pipefail

kills=200
early=0
while [ $# -gt 0 ]; do
    case "$1" in
        --kills) kills="${2:?--kills needs a value}"; shift 2 ;;
        --early) early=1; shift ;;
        -h|--help) sed -n '8,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "kill.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
case "$kills" in
    ''|*[!0-9]*) echo "kill.sh: --kills takes a whole number" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../.."
if [ -z "${HAMSTR_BIN:-}" ]; then
    cargo build --bin hamstr
    HAMSTR_BIN=target/debug/hamstr
fi
if [ -z "${BENCH_API_BIN:-}" ]; then
    BENCH_API_BIN=$(cargo bench --no-run --bench bench_api --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "bench_api" and m.get("executable"):
        print(m["executable"])')
fi

work=$(mktemp -d)
"$BENCH_API_BIN" --port 0 --records 50000 >"$work/api.out" &
api=$!
trap 'kill $api 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do
    [ -s "$work/api.out" ] && break
    sleep 0.1
done
url=$(head -1 "$work/api.out" | sed 's/^listening on //')
sed -e 's/schedule = once/schedule = every(1s)/' benches/bench.hmr >"$work/p.hmr"

unfinished=0
for i in $(seq 1 "$kills"); do
    # Forget what was collected, so every run writes the whole store again.
    "$HAMSTR_BIN" state --data-dir "$work/data" "$work/p.hmr" --reset records >/dev/null 2>&1 || true
    BENCH_URL=$url "$HAMSTR_BIN" run --no-watch --data-dir "$work/data" "$work/p.hmr" \
        >/dev/null 2>&1 &
    run=$!
    if [ "$early" = 1 ]; then
        sleep "$(printf '0.%03d' $((RANDOM % 80 + 5)))"
    else
        sleep "$(printf '0.%03d' $((RANDOM % 890 + 100)))"
    fi
    kill -9 "$run"
    wait "$run" 2>/dev/null || true
    if ls "$work/data/state" 2>/dev/null | grep -q '\.generating$'; then
        unfinished=$((unfinished + 1))
    fi
    if ! "$HAMSTR_BIN" state --data-dir "$work/data" "$work/p.hmr" >/dev/null 2>"$work/err"; then
        echo "kill $i of $kills: the store no longer opens: $(cat "$work/err")"
        ls -la "$work/data/state"
        exit 1
    fi
done
echo "the store opened after each of $kills kills; $unfinished of them left an unfinished snapshot"
