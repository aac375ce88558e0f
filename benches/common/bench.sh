# benches/common/bench.sh — what the benchmark scripts (throughput.sh, peers.sh,
# inflight.sh) share: finding what cargo built, a scratch folder removed on exit, the
# local benchmark API, timing a run with its peak RSS, medians. Sourced, not run; the
# sourcing script sets `script` (its name, for messages) first.

# executable_of NAME: prints the executable cargo reports for target NAME in the JSON
# messages on stdin.
executable_of() {
    python3 -c '
import json, sys
script, name, found = sys.argv[1], sys.argv[2], None
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name \
            and msg.get("executable"):
        found = msg["executable"]
if not found:
    sys.exit(script + ": cargo reported no executable for " + name)
print(found)
' "$script" "$1"
}

# require_count MIN FLAG VALUE: exits 2 unless VALUE (the argument of FLAG) is a whole
# number of at least MIN.
require_count() {
    case "$3" in
        '' | *[!0-9]*) echo "$script: $2 takes a whole number" >&2; exit 2 ;;
    esac
    if [ "$3" -lt "$1" ]; then
        echo "$script: $2 must be at least $1" >&2
        exit 2
    fi
}

# scratch PREFIX: makes the scratch folder `tmp`; on exit the API started by start_api
# is stopped and the folder removed (kept with KEEP_TMP=1).
scratch() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    api_pid=""
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
cleanup() {
    if [ -n "$api_pid" ]; then
        kill "$api_pid" 2>/dev/null || true
        wait "$api_pid" 2>/dev/null || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "scratch folder kept: $tmp"
    else
        rm -rf "$tmp"
    fi
}

# start_api ARGS...: starts BENCH_API_BIN --port 0 ARGS... and sets `url` (and
# `api_pid`) once it listens; exits 1 when it does not within 60 s.
start_api() {
    "$BENCH_API_BIN" --port 0 "$@" >"$tmp/api.out" 2>"$tmp/api.err" &
    api_pid=$!
    url=""
    for _ in $(seq 1 600); do
        url=$(sed -n '1s/^listening on //p' "$tmp/api.out" 2>/dev/null)
        [ -n "$url" ] && return 0
        if ! kill -0 "$api_pid" 2>/dev/null; then
            echo "$script: bench_api exited:" >&2
            cat "$tmp/api.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$script: bench_api did not start within 60 s" >&2
    exit 1
}

# Peak RSS comes from GNU time when it is there, else from a small python3 wrapper that
# reads the child's rusage from os.wait4. Wall time is taken here, in nanoseconds.
# measure_rss: picks the tool (`rss_tool`); call after `scratch`.
measure_rss() {
    if /usr/bin/time -f '%M' -o /dev/null true 2>/dev/null; then
        rss_tool=gnu-time
    else
        rss_tool=python3
        cat >"$tmp/rss.py" <<'PY'
import os, subprocess, sys
out, cmd = sys.argv[1], sys.argv[2:]
child = subprocess.Popen(cmd)
_, status, usage = os.wait4(child.pid, 0)
with open(out, "w") as f:
    f.write("%d\n" % usage.ru_maxrss)  # KiB on Linux
sys.exit(os.waitstatus_to_exitcode(status) if status else 0)
PY
    fi
}

# timed RESULT LOG CMD...: runs CMD with its output in LOG; writes "SECONDS RSS_KIB" to
# RESULT. Returns CMD's exit status.
timed() {
    local result=$1 log=$2 start end status=0 rss
    shift 2
    start=$(date +%s%N)
    if [ "$rss_tool" = gnu-time ]; then
        /usr/bin/time -f '%M' -o "$result.rss" "$@" >"$log" 2>&1 || status=$?
    else
        python3 "$tmp/rss.py" "$result.rss" "$@" >"$log" 2>&1 || status=$?
    fi
    end=$(date +%s%N)
    # GNU time writes "Command exited with non-zero status N" first when CMD fails.
    rss=$(tail -n 1 "$result.rss" 2>/dev/null || echo 0)
    echo "$(( (end - start) / 1000000 ))" "$rss" |
        awk '{ printf "%.3f %d\n", $1 / 1000, $2 }' >"$result"
    return "$status"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# median and max of the numbers given as arguments (empty when there are none)
median() { [ $# -gt 0 ] || return 0; printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maximum() { [ $# -gt 0 ] || return 0; printf '%s\n' "$@" | sort -n | tail -n 1; }
