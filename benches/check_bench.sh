#!/bin/sh
# Times `hamstr check` on generated pipelines of 500 and 5,000 sources, in release.
# Prints ms per run, lines per second, and the 5000/500 ratio (linear is about 10).
set -eu
cd "$(dirname "$0")/.."
exec cargo bench --bench check_bench "$@"
