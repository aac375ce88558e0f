#!/usr/bin/env bash
# benches/old_vs_new.sh OLD_HAMSTR NEW_HAMSTR [ROUNDS] — two hamstr builds side by side on
# the throughput benchmark's API and pipeline (benches/bench.hmr, 200,000 records), taking
# turns so both see the same machine load. Prints records/s and peak RSS per run and the
# medians. Needs BENCH_API_BIN (the built bench_api bench) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-4}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hamstr-oldnew.XXXXXX")
"$BENCH_API_BIN" --port 0 --records 200000 >"$tmp/api.out" 2>&1 &
api=$!
trap 'kill $api 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q http "$tmp/api.out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$tmp/api.out" | head -1)
run() { # NAME BIN ROUND
    local dir="$tmp/$1-$3" start end
    start=$(date +%s%N)
    BENCH_URL=$url /usr/bin/time -f '%M' -o "$dir.rss" "$2" run --once --no-watch \
        --data-dir "$dir" benches/bench.hmr >/dev/null 2>&1
    end=$(date +%s%N)
    echo "$1 $(( 200000 * 1000000000 / (end - start) )) $(( $(tail -1 "$dir.rss") / 1024 ))"
    rm -rf "$dir"
}
run old "$old" 0 >/dev/null; run new "$new" 0 >/dev/null   # warm-up
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then run old "$old" "$r"; run new "$new" "$r"
    else run new "$new" "$r"; run old "$old" "$r"; fi
done | tee "$tmp/all"
median() { sort -n | awk '{ v[NR]=$1 } END { print v[int((NR+1)/2)] }'; }
for b in old new; do
    echo "$b: median $(awk -v b=$b '$1==b {print $2}' "$tmp/all" | median) records/s," \
        "median peak RSS $(awk -v b=$b '$1==b {print $3}' "$tmp/all" | median) MiB"
done
