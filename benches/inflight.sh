#!/usr/bin/env bash
# benches/inflight.sh — pages in flight: `hamstr run --once` of benches/bench_inflight.hmr
# against the local API answering every page 20 ms late (benches/bench_api.rs
# --delay-ms 20), with the service's `concurrency = 1` (one page at a time) and
# `concurrency = 4` (up to four pages in flight, committed in page order). Runs ROUNDS
# rounds, alternating which goes first, each run with a fresh data directory; checks
# that every run stored all the records; prints records/s per run, the medians and
# their ratio (target: concurrency 4 >= 1.5x concurrency 1).
#
# Usage: benches/inflight.sh [--rounds N] [--records N] [--delay-ms N] [--strict]
#   --rounds N     rounds to run (default 3)
#   --records N    records the API serves, in pages of 500 (default 40000)
#   --delay-ms N   how late the API answers each page (default 20)
#   --strict       exit 3 when the target is missed
# Environment: HAMSTR_BIN, BENCH_API_BIN use prebuilt executables instead of building
# them; KEEP_TMP=1 keeps the scratch folder (data dirs, logs) for inspection.
# Exit status: 0 when every run succeeded, 1 when one failed, 2 on usage errors.

set -euo pipefail

rounds=3
records=40000
delay_ms=20
strict=0
target_ratio=1.5

usage() { sed -n '10,17p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
        --records) records="${2:?--records needs a value}"; shift 2 ;;
        --delay-ms) delay_ms="${2:?--delay-ms needs a value}"; shift 2 ;;
        --strict) strict=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "inflight.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
script=inflight.sh
# shellcheck source=common/bench.sh
. benches/common/bench.sh
require_count 1 --rounds "$rounds"
require_count 1 --records "$records"
require_count 0 --delay-ms "$delay_ms"

# --- build -----------------------------------------------------------------------------

if [ -z "${HAMSTR_BIN:-}" ]; then
    echo "== building hamstr (release)"
    cargo build --release --bin hamstr
    HAMSTR_BIN=$(cargo build --release --bin hamstr --message-format=json 2>/dev/null |
        executable_of hamstr)
fi
if [ -z "${BENCH_API_BIN:-}" ]; then
    echo "== building the bench_api bench (release)"
    cargo bench --no-run --bench bench_api
    BENCH_API_BIN=$(cargo bench --no-run --bench bench_api --message-format=json \
        2>/dev/null | executable_of bench_api)
fi

# --- measuring -------------------------------------------------------------------------

scratch hamstr-inflight

# The two pipelines: the file as it is (concurrency 4) and with concurrency 1.
cp benches/bench_inflight.hmr "$tmp/c4.hmr"
sed 's/^\( *concurrency *= *\)4$/\11/' benches/bench_inflight.hmr >"$tmp/c1.hmr"
if ! grep -q '^ *concurrency *= *1$' "$tmp/c1.hmr"; then
    echo "inflight.sh: benches/bench_inflight.hmr no longer sets concurrency = 4" >&2
    exit 1
fi

echo "== starting bench_api with $records records, each page $delay_ms ms late"
start_api --records "$records" --delay-ms "$delay_ms"
echo "   $url  (scratch folder $tmp)"

failed=0
declare -A rate=()

# run C I: one run of the pipeline with concurrency C in round I; its records/s go to
# rate[C,I].
run() {
    local c=$1 i=$2 dir="$tmp/c$1-$2" log="$tmp/c$1-$2.log" start end stored
    start=$(date +%s%N)
    if env BENCH_URL="$url" "$HAMSTR_BIN" run --once --no-watch --data-dir "$dir" \
        "$tmp/c$c.hmr" >"$log" 2>&1; then
        end=$(date +%s%N)
        rate[$c,$i]=$(awk -v n="$records" -v ns="$((end - start))" \
            'BEGIN { printf "%.0f", n / (ns / 1e9) }')
        stored=$("$HAMSTR_BIN" dump "$tmp/c$c.hmr" store --data-dir "$dir" 2>/dev/null |
            wc -l)
        if [ "$stored" != "$records" ]; then
            echo "   round $i, concurrency $c: stored $stored records, expected $records" >&2
            failed=1
        fi
    else
        echo "   round $i, concurrency $c: hamstr failed (log: $log):" >&2
        tail -n 5 "$log" >&2
        failed=1
    fi
    rm -rf "$dir"
}

# One unmeasured run, so that round 1 does not pay for cold caches.
echo "== warm-up (not measured)"
env BENCH_URL="$url" "$HAMSTR_BIN" run --once --no-watch --data-dir "$tmp/warmup" \
    "$tmp/c4.hmr" >"$tmp/warmup.log" 2>&1 || echo "   warm-up failed (log: $tmp/warmup.log)" >&2
rm -rf "$tmp/warmup"

for i in $(seq 1 "$rounds"); do
    if [ $((i % 2)) = 1 ]; then
        echo "== round $i/$rounds: concurrency 1, then 4"
        run 1 "$i"
        run 4 "$i"
    else
        echo "== round $i/$rounds: concurrency 4, then 1"
        run 4 "$i"
        run 1 "$i"
    fi
done

# --- report ----------------------------------------------------------------------------


echo
echo "pages in flight: $records records, pages of 500 answered $delay_ms ms late," \
    "$rounds rounds ($(nproc) CPUs)"
printf '%-6s %18s %18s\n' round "concurrency 1 r/s" "concurrency 4 r/s"
ones=() fours=()
for i in $(seq 1 "$rounds"); do
    printf '%-6s %18s %18s\n' "$i" "${rate[1,$i]:-FAILED}" "${rate[4,$i]:-FAILED}"
    [ -n "${rate[1,$i]:-}" ] && ones+=("${rate[1,$i]}")
    [ -n "${rate[4,$i]:-}" ] && fours+=("${rate[4,$i]}")
done
one=$(median "${ones[@]}")
four=$(median "${fours[@]}")
echo
if [ -n "$one" ] && [ -n "$four" ]; then
    ratio=$(awk -v a="$four" -v b="$one" 'BEGIN { printf "%.2f", a / b }')
    printf 'concurrency 1: median %8.0f records/s\n' "$one"
    printf 'concurrency 4: median %8.0f records/s\n' "$four"
    if awk -v r="$ratio" -v t="$target_ratio" 'BEGIN { exit !(r >= t) }'; then
        verdict=met
    else
        verdict=MISSED
    fi
    echo "ratio:         concurrency 4 / concurrency 1 = ${ratio}x (target >= ${target_ratio}x: $verdict)"
    if [ "$verdict" = MISSED ] && [ "$strict" = 1 ] && [ "$failed" = 0 ]; then
        exit 3
    fi
fi
exit "$failed"
