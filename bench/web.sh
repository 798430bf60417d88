#!/usr/bin/env bash
# `make bench-web`: the dashboard against a queue of 1,000,000 jobs (BENCH_JOBS=). Starts
# its own redis-server (release module) and aijob-web on free ports, fills the queue with
# pipelined JOB.CREATE, then times each page over 200 requests (p50, p99) and reads INFO
# commandstats around them: the Redis commands, and server time, each page costs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
exec python3 "$root/bench/web/bench.py" \
  --module "$target/release/libaijob.so" --web "$target/release/aijob-web" \
  --jobs "${BENCH_JOBS:-1000000}" --requests "${BENCH_REQUESTS:-200}"
