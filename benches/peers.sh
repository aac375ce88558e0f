#!/usr/bin/env bash
# benches/peers.sh — hamstr beside its peers (issue 11): five programs pull the same local
# API (benches/bench_api.rs, 200,000 records in pages of 500), ROUNDS rounds, the order
# rotated every round, each run with a fresh data directory or output file:
#   nostore       the hand-written loop: fetch, parse, validate, store nothing
#                 (benches/nostore.rs)
#   baseline      the hand-written sled program (benches/baseline.rs)
#   hamstr-sled   hamstr run --once benches/bench.hmr        (sled, keyed by id)
#   hamstr-jsonl  hamstr run --once benches/bench_jsonl.hmr  (jsonl file, keyed by id)
#   faucet        faucet-cli 1.17.0, the nearest Rust peer    (jsonl file, raw records)
# It checks that every output holds all the records, prints records/s and peak RSS per
# run, the medians, and the ratios issue 11 sets as targets, each met or MISSED.
#
# Usage: benches/peers.sh [--rounds N] [--records N] [--only LIST] [--no-warmup] [--strict]
#   --rounds N    rounds to run (default 5)
#   --records N   records the API serves (default 200000)
#   --only LIST   run only these programs, comma-separated names from the list above;
#                 `hamstr` stands for hamstr-sled,hamstr-jsonl (default: all five)
#   --no-warmup   skip the unmeasured warm-up run of each program
#   --strict      exit 3 when a target is missed
# Environment: HAMSTR_BIN, BENCH_API_BIN, BASELINE_BIN, NOSTORE_BIN, FAUCET_BIN use those
# executables instead of building them. faucet-cli is installed once (cargo install, a
# few minutes) into FAUCET_ROOT, default ${XDG_CACHE_HOME:-$HOME/.cache}/hamstr-bench/faucet,
# outside the repository. KEEP_TMP=1 keeps the scratch folder's logs (outputs are always
# deleted after their run: 2,000,000 records of jsonl are about 600 MB).
# Exit status: 0 when every run succeeded and stored every record, 1 when one did not,
# 2 on usage errors, 3 with --strict when a target is missed.

set -euo pipefail

rounds=5
records=200000
warmup=1
strict=0
only=""
all_programs=(nostore baseline hamstr-sled hamstr-jsonl faucet)
faucet_version=1.17.0

usage() { sed -n '14,28p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
        --records) records="${2:?--records needs a value}"; shift 2 ;;
        --only) only="${2:?--only needs a value}"; shift 2 ;;
        --no-warmup) warmup=0; shift ;;
        --strict) strict=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "peers.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

# The programs to run, in the order of all_programs.
programs=()
if [ -z "$only" ]; then
    programs=("${all_programs[@]}")
else
    wanted=","
    for name in $(tr ',' ' ' <<<"$only"); do
        case " ${all_programs[*]} " in
            *" $name "*) wanted+="$name," ;;
            *)
                if [ "$name" = hamstr ]; then
                    wanted+="hamstr-sled,hamstr-jsonl,"
                else
                    echo "peers.sh: --only: unknown program '$name'" \
                        "(one of: ${all_programs[*]}, hamstr)" >&2
                    exit 2
                fi ;;
        esac
    done
    for name in "${all_programs[@]}"; do
        case "$wanted" in *",$name,"*) programs+=("$name") ;; esac
    done
fi
runs() { case " ${programs[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

cd "$(dirname "$0")/.."
script=peers.sh
# shellcheck source=common/bench.sh
. benches/common/bench.sh
require_count 1 --rounds "$rounds"
require_count 1 --records "$records"
repo=$(pwd)

# --- build -----------------------------------------------------------------------------

if { runs hamstr-sled || runs hamstr-jsonl; } && [ -z "${HAMSTR_BIN:-}" ]; then
    echo "== building hamstr (release)"
    cargo build --release --bin hamstr
    HAMSTR_BIN=$(cargo build --release --bin hamstr --message-format=json 2>/dev/null |
        executable_of hamstr)
fi
benches=()
[ -n "${BENCH_API_BIN:-}" ] || benches+=(--bench bench_api)
if runs baseline && [ -z "${BASELINE_BIN:-}" ]; then benches+=(--bench baseline); fi
if runs nostore && [ -z "${NOSTORE_BIN:-}" ]; then benches+=(--bench nostore); fi
if [ ${#benches[@]} -gt 0 ]; then
    echo "== building the benches: ${benches[*]} (release)"
    cargo bench --no-run "${benches[@]}"
    # Already built: this second call only reports where the executables are.
    messages=$(cargo bench --no-run "${benches[@]}" --message-format=json 2>/dev/null)
    BENCH_API_BIN=${BENCH_API_BIN:-$(executable_of bench_api <<<"$messages")}
    if runs baseline; then
        BASELINE_BIN=${BASELINE_BIN:-$(executable_of baseline <<<"$messages")}
    fi
    if runs nostore; then
        NOSTORE_BIN=${NOSTORE_BIN:-$(executable_of nostore <<<"$messages")}
    fi
fi
if runs faucet && [ -z "${FAUCET_BIN:-}" ]; then
    FAUCET_ROOT=${FAUCET_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/hamstr-bench/faucet}
    FAUCET_BIN=$FAUCET_ROOT/bin/faucet
    if [ ! -x "$FAUCET_BIN" ]; then
        # faucet-cli declares a newer rust-version than some toolchains have, but builds
        # with them; only the connectors this benchmark uses are compiled.
        echo "== installing faucet-cli $faucet_version into $FAUCET_ROOT (once; takes minutes)"
        cargo install "faucet-cli@$faucet_version" --locked --no-default-features \
            --features source-rest,sink-jsonl,sink-stdout --ignore-rust-version \
            --root "$FAUCET_ROOT"
    fi
fi

# --- measuring -------------------------------------------------------------------------

# Outputs are deleted after every run; what the scratch folder keeps is logs and results.
scratch hamstr-peers
measure_rss

# jsonl_count FILE: prints "LINES UNIQUE_IDS" for a JSON-lines file of records with a
# top-level `id` (a line that is not such an object counts as a line without an id).
jsonl_count() {
    python3 -c '
import json, sys
lines, ids = 0, set()
with open(sys.argv[1], "rb") as f:
    for line in f:
        lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "id" in record:
            ids.add(str(record["id"]))
print(lines, len(ids))
' "$1"
}

echo "== starting bench_api with $records records"
start_api --records "$records"
echo "   $url  (rss measured with $rss_tool; scratch folder $tmp)"

# faucet's pipeline: page-number pagination (`page` from 1, `per_page` = 500), the records
# at $.data[*], into one jsonl file. faucet stops at the first empty page (it has no
# `total_pages` stop), so it makes one request more than the others.
if runs faucet; then
    cat >"$tmp/faucet.yaml" <<EOF
version: 1
name: hamstr_bench_records

pipeline:
  source:
    type: rest
    config:
      base_url: $url
      path: /records
      method: GET
      pagination:
        type: PageNumber
        param_name: page
        start_page: 1
        page_size: 500
        page_size_param: per_page
      records_path: \$.data[*]
  sink:
    type: jsonl
    config:
      path: $tmp/faucet-out/records.jsonl
EOF
    if ! "$FAUCET_BIN" validate "$tmp/faucet.yaml" >"$tmp/faucet-validate.log" 2>&1; then
        echo "peers.sh: faucet rejects its configuration ($tmp/faucet.yaml):" >&2
        cat "$tmp/faucet-validate.log" >&2
        exit 1
    fi
fi

failed=0
# Results per program and round: rate[prog,i] (records/s), rss[prog,i] (KiB),
# seen[prog,i] (what the check found).
declare -A rate=() rss=() seen=()

# check_count PROG I WHAT N: records the check's finding; a count other than $records
# fails the benchmark.
check_count() {
    local prog=$1 i=$2 what=$3 n=$4
    seen[$prog,$i]=${n:-?}
    if [ "${n:-}" != "$records" ]; then
        echo "   round $i: $prog: $what ${n:-?}, expected $records" >&2
        failed=1
    fi
}

# run_one PROG I: one measured run of PROG (I = round number, or "warmup").
run_one() {
    local prog=$1 i=$2
    local dir="$tmp/$prog-$i" res="$tmp/$prog-$i.res" log="$tmp/$prog-$i.log"
    local -a cmd
    case "$prog" in
        nostore) cmd=("$NOSTORE_BIN" --url "$url") ;;
        baseline) cmd=("$BASELINE_BIN" --url "$url" --db "$dir") ;;
        hamstr-sled) cmd=(env BENCH_URL="$url" "$HAMSTR_BIN" run --once --no-watch
            --data-dir "$dir" benches/bench.hmr) ;;
        hamstr-jsonl) cmd=(env BENCH_URL="$url" BENCH_OUT="$dir/out/records.jsonl"
            "$HAMSTR_BIN" run --once --no-watch --data-dir "$dir/data"
            benches/bench_jsonl.hmr) ;;
        # Run in its own folder, so that whatever faucet leaves beside it is deleted too.
        faucet) mkdir -p "$dir"
            cmd=(env -C "$dir" "$FAUCET_BIN" run --quiet "$tmp/faucet.yaml") ;;
    esac
    rm -rf "$tmp/faucet-out"
    if ! timed "$res" "$log" "${cmd[@]}"; then
        echo "   round $i: $prog failed (log: $log):" >&2
        tail -n 5 "$log" >&2
        failed=1
        rm -rf "$dir" "$tmp/faucet-out"
        return 0
    fi
    local secs kib n lines ids
    read -r secs kib <"$res"
    rate[$prog,$i]=$(awk -v n="$records" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
    rss[$prog,$i]=$kib
    case "$prog" in
        nostore|baseline)
            n=$(sed -n 's/^records=\([0-9]*\) .*/\1/p' "$log")
            check_count "$prog" "$i" "reported" "$n" ;;
        hamstr-sled)
            n=$("$HAMSTR_BIN" dump benches/bench.hmr store --data-dir "$dir" 2>"$log.dump" |
                wc -l) || n=""
            check_count "$prog" "$i" "dump lists" "$n" ;;
        hamstr-jsonl|faucet)
            local file="$dir/out/records.jsonl"
            [ "$prog" = faucet ] && file="$tmp/faucet-out/records.jsonl"
            if [ -f "$file" ]; then
                read -r lines ids < <(jsonl_count "$file")
            else
                lines="" ids=""
            fi
            check_count "$prog" "$i" "wrote lines:" "$lines"
            [ "${ids:-}" = "${lines:-}" ] || check_count "$prog" "$i" "unique ids:" "$ids" ;;
    esac
    rm -rf "$dir" "$tmp/faucet-out"
}

if [ "$warmup" = 1 ]; then
    # One unmeasured run of each, so that none pays for cold caches in round 1.
    echo "== warm-up (not measured): ${programs[*]}"
    saved_failed=$failed
    for prog in "${programs[@]}"; do
        run_one "$prog" warmup
    done
    failed=$saved_failed
fi

declare -A order=()
for i in $(seq 1 "$rounds"); do
    # Round i starts at the (i-1)th program: over as many rounds as programs, each one
    # runs once in every position.
    n=${#programs[@]}
    list=()
    for k in $(seq 0 $((n - 1))); do
        list+=("${programs[$(( (i - 1 + k) % n ))]}")
    done
    order[$i]="${list[*]}"
    echo "== round $i/$rounds: ${list[*]}"
    for prog in "${list[@]}"; do
        run_one "$prog" "$i"
    done
done

# --- report ----------------------------------------------------------------------------


# values ARRAY PROG: the rounds' values of PROG in the associative array ARRAY
values() {
    local -n arr=$1
    local i
    for i in $(seq 1 "$rounds"); do
        [ -n "${arr[$2,$i]:-}" ] && echo "${arr[$2,$i]}"
    done
    return 0
}

echo
echo "peers: $records records, pages of 500, $rounds rounds ($(nproc) CPUs)"
for i in $(seq 1 "$rounds"); do
    echo
    echo "round $i: ${order[$i]}"
    printf '  %-13s %12s %9s %9s\n' program "records/s" "RSS MiB" checked
    for prog in ${order[$i]}; do
        printf '  %-13s %12s %9s %9s\n' "$prog" "${rate[$prog,$i]:-FAILED}" \
            "$( [ -n "${rss[$prog,$i]:-}" ] && mib "${rss[$prog,$i]}" || echo -)" \
            "${seen[$prog,$i]:--}"
    done
done

echo
echo "medians over $rounds rounds"
printf '  %-13s %12s %15s %12s\n' program "records/s" "peak RSS MiB" "max RSS MiB"
declare -A med=() med_rss=()
for prog in "${programs[@]}"; do
    # shellcheck disable=SC2046  # one number per line
    med[$prog]=$(median $(values rate "$prog") | awk '{ printf "%.0f\n", $1 }')
    # shellcheck disable=SC2046
    med_rss[$prog]=$(median $(values rss "$prog"))
    # shellcheck disable=SC2046
    max_rss=$(maximum $(values rss "$prog"))
    printf '  %-13s %12s %15s %12s\n' "$prog" "${med[$prog]:-FAILED}" \
        "$( [ -n "${med_rss[$prog]}" ] && mib "${med_rss[$prog]}" || echo -)" \
        "$( [ -n "$max_rss" ] && mib "$max_rss" || echo -)"
done

# The targets of issue 11. Peak RSS is judged on the median of the runs' peaks (sled's
# write path makes single peaks jumpy; see README.md); the largest is printed above.
echo
echo "targets"
missed=0
ratio_target() { # NAME A B MIN: prints A/B and whether it is at least MIN
    local name=$1 a=${med[$2]:-} b=${med[$3]:-} min=$4 r verdict
    if [ -z "$a" ] || [ -z "$b" ]; then
        runs "$2" && runs "$3" && printf '  %-40s %8s   (a run failed)\n' "$name" -
        return 0
    fi
    # Printed to three places; judged unrounded (0.598 is not 0.6).
    r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }')
    if awk -v a="$a" -v b="$b" -v m="$min" 'BEGIN { exit !(a / b >= m) }'; then verdict=met
    else verdict=MISSED; missed=1; fi
    printf '  %-40s %8s   target >= %-6s %s\n' "$name" "$r" "$min" "$verdict"
}
ratio_target "hamstr-jsonl / faucet" hamstr-jsonl faucet 4
ratio_target "hamstr-jsonl / nostore" hamstr-jsonl nostore 0.6
ratio_target "hamstr-sled / baseline" hamstr-sled baseline 1.2
for prog in hamstr-sled hamstr-jsonl; do
    runs "$prog" || continue
    if [ -z "${med_rss[$prog]}" ]; then
        printf '  %-40s %8s   (every run failed)\n' "$prog peak RSS MiB (median)" -
        continue
    fi
    m=$(mib "${med_rss[$prog]}")
    if awk -v m="$m" 'BEGIN { exit !(m <= 64) }'; then verdict=met
    else verdict=MISSED; missed=1; fi
    printf '  %-40s %8s   target <= %-6s %s\n' "$prog peak RSS MiB (median)" "$m" 64 "$verdict"
done

if [ "$failed" != 0 ]; then
    echo "peers.sh: a run failed or did not hold all $records records (see above)" >&2
    exit 1
fi
if [ "$missed" = 1 ] && [ "$strict" = 1 ]; then
    exit 3
fi
exit 0
