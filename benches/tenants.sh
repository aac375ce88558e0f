#!/usr/bin/env bash
# benches/tenants.sh — many tenants, one source each (spec §13): `hamstr check` time, one
# `run --once` round (time, peak RSS), and a running `hamstr run` on `every(1m)`: CPU and
# RSS while idle between the first round and the second, and while the spread rounds
# run. One local API (benches/bench_api.rs) answers every tenant with a small page.
#
# Usage: benches/tenants.sh [N ...]        (default: 1000 5000)
# Environment: HAMSTR_BIN, BENCH_API_BIN use prebuilt executables; WATCH_SECONDS (default
# 120) is how long the running pipeline is watched.

set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(1000 5000)
watch_seconds=${WATCH_SECONDS:-120}

if [ -z "${HAMSTR_BIN:-}" ]; then
    cargo build --release --bin hamstr >&2
    HAMSTR_BIN=target/release/hamstr
fi
if [ -z "${BENCH_API_BIN:-}" ]; then
    BENCH_API_BIN=$(cargo bench --no-run --bench bench_api --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="bench_api" and m.get("executable"): print(m["executable"])' | tail -n1)
fi

tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$BENCH_API_BIN" --port 0 --records 2 --per-page 2 > "$tmp/api.out" 2>&1 &
for _ in $(seq 100); do grep -q listening "$tmp/api.out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$tmp/api.out" | head -n1)

# CPU seconds (user + system) and RSS (KiB) of a process.
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

printf '%-8s %-10s %-12s %-16s %-22s %-22s\n' tenants check once-round "once peak RSS" "idle CPU, RSS" "spread CPU, RSS"
for n in "${sizes[@]}"; do
    dir="$tmp/t$n"
    mkdir -p "$dir"
    {
        echo "name,url,token"
        for i in $(seq 1 "$n"); do echo "shop$i,$url,token-of-shop-$i-$RANDOM$RANDOM"; done
    } > "$dir/shops.csv"
    cat > "$dir/chain.hmr" <<'EOF'
tenants shops = csv("shops.csv")

service till for shops {
  base_url = tenant.url
  auth     = bearer(tenant.token)
}

source orders from till {
  get      = "/records"
  query { per_page = 2 }
  schedule = every(1m)
  paginate = page(param = "page", start = 1, total_pages = $.total_pages)
  records  = $.data[*]
  key      = [shop, id]
  fields { shop : string = tenant.name  id : string = $.id  amount : decimal = $.amount }
}

sink store = sled("orders")
flow orders -> store
EOF
    check=$( { /usr/bin/time -f '%e' "$HAMSTR_BIN" check "$dir/chain.hmr" 2>&1 >/dev/null; } | tail -n1)
    once=$( { /usr/bin/time -f '%e %M' "$HAMSTR_BIN" run --once --no-watch --data-dir "$dir/once" "$dir/chain.hmr" 2>&1 >/dev/null; } | tail -n1)
    stored=$("$HAMSTR_BIN" dump "$dir/chain.hmr" store --data-dir "$dir/once" | wc -l)
    [ "$stored" -eq $((2 * n)) ] || echo "warning: $stored records stored, not $((2 * n))" >&2

    "$HAMSTR_BIN" run --no-watch --data-dir "$dir/run" "$dir/chain.hmr" 2>/dev/null &
    pid=$!
    # Idle: from 20 s (the first round is over) to 55 s (the second starts at 60 s).
    sleep 20; c0=$(cpu_of $pid); sleep 35; c1=$(cpu_of $pid); idle_rss=$(rss_of $pid)
    # Spread rounds: from 65 s on, every unit once a minute at its own offset.
    sleep 10; c2=$(cpu_of $pid); sleep $((watch_seconds - 65)); c3=$(cpu_of $pid); busy_rss=$(rss_of $pid)
    kill -TERM $pid; wait $pid || true
    idle=$(python3 -c "print(f'{100*($c1-$c0)/35:.2f} %, {$idle_rss/1024:.0f} MiB')")
    busy=$(python3 -c "print(f'{100*($c3-$c2)/($watch_seconds-65):.2f} %, {$busy_rss/1024:.0f} MiB')")
    read -r once_s once_kib <<<"$once"
    printf '%-8s %-10s %-12s %-16s %-22s %-22s\n' "$n" "${check}s" "${once_s}s" "$((once_kib / 1024)) MiB" "$idle" "$busy"
done
