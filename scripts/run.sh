#!/usr/bin/env bash
# `make run`: redis-server with the module in the foreground, the fetcher beside it.
set -euo pipefail
port="${1:-6379}"
cd "$(dirname "$0")/.."
mkdir -p run
fetcher=target/release/aijob-fetcher
fetcher_pid=""
cleanup() {
  if [ -n "$fetcher_pid" ]; then kill "$fetcher_pid" 2>/dev/null || true; wait "$fetcher_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM
if [ -x "$fetcher" ]; then
  (
    # wait for Redis, then run the fetcher against it
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    exec "$fetcher" --redis-url "redis://127.0.0.1:$port"
  ) &
  fetcher_pid=$!
fi
redis-server redis.conf --port "$port"
