#!/usr/bin/env bash
# benches/throughput.sh — throughput benchmark: `hamstr run --once` against a hand-written
# Rust client (benches/baseline.rs), both pulling the same local API (benches/bench_api.rs,
# 200,000 records in pages of 500) into sled. Runs ROUNDS rounds, alternating which of the
# two goes first, each run with a fresh data directory, and prints records/s and peak RSS
# per run, the medians, hamstr's throughput as a percentage of the baseline's, and whether
# the target (hamstr >= 80 % of the baseline, hamstr's median peak RSS < 100 MiB) is met.
#
# Usage: benches/throughput.sh [--rounds N] [--records N] [--no-warmup] [--baseline-only]
#                               [--strict]
#   --rounds N       rounds to run (default 5)
#   --records N      records the API serves (default 200000)
#   --no-warmup      skip the unmeasured warm-up run of each client
#   --baseline-only  skip hamstr (build and runs); measure the baseline alone
#   --strict         exit 3 when the target is missed
# Environment: HAMSTR_BIN, BENCH_API_BIN, BASELINE_BIN use prebuilt executables instead
# of building them; KEEP_TMP=1 keeps the scratch folder (data dirs, logs) for inspection.
# Exit status: 0 when every run succeeded, 1 when one failed, 2 on usage errors.

set -euo pipefail

rounds=5
records=200000
baseline_only=0
warmup=1
strict=0
target_percent=80
target_rss_mib=100

usage() { sed -n '9,18p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
        --records) records="${2:?--records needs a value}"; shift 2 ;;
        --no-warmup) warmup=0; shift ;;
        --baseline-only) baseline_only=1; shift ;;
        --strict) strict=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "throughput.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
script=throughput.sh
# shellcheck source=common/bench.sh
. benches/common/bench.sh
require_count 1 --rounds "$rounds"
require_count 1 --records "$records"
pipeline=benches/bench.hmr

# --- build -----------------------------------------------------------------------------

if [ "$baseline_only" = 0 ] && [ -z "${HAMSTR_BIN:-}" ]; then
    echo "== building hamstr (release)"
    cargo build --release --bin hamstr
    HAMSTR_BIN=$(cargo build --release --bin hamstr --message-format=json 2>/dev/null |
        executable_of hamstr)
fi
if [ -z "${BENCH_API_BIN:-}" ] || [ -z "${BASELINE_BIN:-}" ]; then
    echo "== building the bench_api and baseline benches (release)"
    cargo bench --no-run --bench bench_api --bench baseline
    # Already built: this second call only reports where the executables are.
    messages=$(cargo bench --no-run --bench bench_api --bench baseline \
        --message-format=json 2>/dev/null)
    BENCH_API_BIN=${BENCH_API_BIN:-$(executable_of bench_api <<<"$messages")}
    BASELINE_BIN=${BASELINE_BIN:-$(executable_of baseline <<<"$messages")}
fi

# --- measuring -------------------------------------------------------------------------

scratch hamstr-throughput
measure_rss

echo "== starting bench_api with $records records"
start_api --records "$records"
echo "   $url  (rss measured with $rss_tool; scratch folder $tmp)"

failed=0
base_rate=() base_rss=() ham_rate=() ham_rss=() ham_stored=() orders=()

run_baseline() {
    local i=$1 dir="$tmp/baseline-$1" res="$tmp/baseline-$1.res" log="$tmp/baseline-$1.log"
    if timed "$res" "$log" "$BASELINE_BIN" --url "$url" --db "$dir"; then
        local n secs rss
        n=$(sed -n 's/^records=\([0-9]*\) .*/\1/p' "$log")
        read -r secs rss <"$res"
        if [ "$n" != "$records" ]; then
            echo "   round $i: baseline stored ${n:-?} records, expected $records" >&2
            failed=1
        fi
        base_rate[i]=$(awk -v n="$records" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
        base_rss[i]=$rss
    else
        echo "   round $i: baseline failed (log: $log):" >&2
        tail -n 5 "$log" >&2
        failed=1
    fi
    rm -rf "$dir"
}

run_hamstr() {
    local i=$1 dir="$tmp/hamstr-$1" res="$tmp/hamstr-$1.res" log="$tmp/hamstr-$1.log"
    if timed "$res" "$log" env BENCH_URL="$url" \
        "$HAMSTR_BIN" run --once --no-watch --data-dir "$dir" "$pipeline"; then
        local secs rss
        read -r secs rss <"$res"
        ham_rate[i]=$(awk -v n="$records" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
        ham_rss[i]=$rss
        # Count what the run stored; a dump that fails only leaves the column at "?".
        local stored
        if stored=$("$HAMSTR_BIN" dump "$pipeline" store --data-dir "$dir" 2>/dev/null |
            wc -l) && [ "$stored" -gt 0 ]; then
            ham_stored[i]=$stored
            if [ "$stored" != "$records" ]; then
                echo "   round $i: hamstr stored $stored records, expected $records" >&2
                failed=1
            fi
        fi
    else
        echo "   round $i: hamstr failed (log: $log):" >&2
        tail -n 5 "$log" >&2
        failed=1
    fi
    rm -rf "$dir"
}

if [ "$warmup" = 1 ]; then
    # One unmeasured run of each, so that neither pays for cold caches in round 1.
    echo "== warm-up (not measured)"
    if ! "$BASELINE_BIN" --url "$url" --db "$tmp/warmup-baseline" >"$tmp/warmup-baseline.log" 2>&1
    then
        echo "   warm-up: baseline failed (log: $tmp/warmup-baseline.log)" >&2
    fi
    if [ "$baseline_only" = 0 ] && ! env BENCH_URL="$url" "$HAMSTR_BIN" run --once --no-watch \
        --data-dir "$tmp/warmup-hamstr" "$pipeline" >"$tmp/warmup-hamstr.log" 2>&1; then
        echo "   warm-up: hamstr failed (log: $tmp/warmup-hamstr.log)" >&2
    fi
    rm -rf "$tmp/warmup-baseline" "$tmp/warmup-hamstr"
fi

for i in $(seq 1 "$rounds"); do
    if [ "$baseline_only" = 1 ]; then
        orders[i]="baseline"
        echo "== round $i/$rounds: baseline"
        run_baseline "$i"
    elif [ $((i % 2)) = 1 ]; then
        orders[i]="baseline,hamstr"
        echo "== round $i/$rounds: baseline, then hamstr"
        run_baseline "$i"
        run_hamstr "$i"
    else
        orders[i]="hamstr,baseline"
        echo "== round $i/$rounds: hamstr, then baseline"
        run_hamstr "$i"
        run_baseline "$i"
    fi
done

# --- report ----------------------------------------------------------------------------



echo
echo "throughput: $records records, pages of 500, $rounds rounds ($(nproc) CPUs)"
printf '%-6s %-16s %14s %10s %14s %10s %9s\n' \
    round order "baseline rec/s" "RSS MiB" "hamstr rec/s" "RSS MiB" stored
for i in $(seq 1 "$rounds"); do
    printf '%-6s %-16s %14s %10s %14s %10s %9s\n' "$i" "${orders[i]}" \
        "${base_rate[i]:-FAILED}" "$( [ -n "${base_rss[i]:-}" ] && mib "${base_rss[i]}" || echo -)" \
        "$( [ "$baseline_only" = 1 ] && echo - || echo "${ham_rate[i]:-FAILED}")" \
        "$( [ -n "${ham_rss[i]:-}" ] && mib "${ham_rss[i]}" || echo -)" \
        "$( [ "$baseline_only" = 1 ] && echo - || echo "${ham_stored[i]:-?}")"
done

base_median=$(median "${base_rate[@]}")
ham_median=$(median "${ham_rate[@]}")
echo
# Peak RSS per run is the process's maximum resident set; sled makes it jumpy (a run now
# and then spikes far above the others), so the verdict uses the median of the runs' peaks,
# like the throughput, and the largest is printed beside it.
if [ -n "$base_median" ]; then
    printf 'baseline: median %8.0f records/s, peak RSS median %6s MiB (max %s MiB)\n' \
        "$base_median" "$(mib "$(median "${base_rss[@]}")")" "$(mib "$(maximum "${base_rss[@]}")")"
fi
if [ -n "$ham_median" ]; then
    printf 'hamstr:   median %8.0f records/s, peak RSS median %6s MiB (max %s MiB)\n' \
        "$ham_median" "$(mib "$(median "${ham_rss[@]}")")" "$(mib "$(maximum "${ham_rss[@]}")")"
fi
if [ -n "$base_median" ] && [ -n "$ham_median" ]; then
    ratio=$(awk -v h="$ham_median" -v b="$base_median" 'BEGIN { printf "%.1f", 100 * h / b }')
    ham_rss_mib=$(mib "$(median "${ham_rss[@]}")")
    echo "ratio:    hamstr / baseline = $ratio %"
    if awk -v r="$ratio" -v m="$ham_rss_mib" -v tp="$target_percent" -v tm="$target_rss_mib" \
        'BEGIN { exit !(r >= tp && m < tm) }'; then
        verdict=met
    else
        verdict=MISSED
    fi
    echo "target:   hamstr >= $target_percent % of the baseline and median peak RSS" \
        "< $target_rss_mib MiB: $verdict"
    if [ "$verdict" = MISSED ] && [ "$strict" = 1 ] && [ "$failed" = 0 ]; then
        exit 3
    fi
fi
exit "$failed"
