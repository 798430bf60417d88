#!/usr/bin/env bash
# `make run`: redis-server with the module in the foreground, the fetcher beside it.
# The fetcher reads its settings from the environment (see `aijob-fetcher --help`): with no
# GEMINI_API_KEY / OPENAI_API_KEY it serves the echo provider only, and says so.
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
  if [ -z "${GEMINI_API_KEY:-}" ] && [ -z "${OPENAI_API_KEY:-}" ]; then
    echo "make run: no GEMINI_API_KEY or OPENAI_API_KEY set: the fetcher serves the echo provider only."
  fi
  listen="${AIJOB_LISTEN:-127.0.0.1:9464}"
  echo "make run: fetcher on queues '${AIJOB_QUEUES:-default}', /healthz and /metrics on http://$listen"
  echo "make run: try  redis-cli -p $port JOB.CREATE default PAYLOAD '{\"provider\":\"echo\",\"request\":{\"text\":\"hi\"}}'"
  (
    # wait for Redis, then run the fetcher against it
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    exec "$fetcher" --redis-url "redis://127.0.0.1:$port" --listen "$listen"
  ) &
  fetcher_pid=$!
else
  echo "make run: $fetcher is not built; Redis runs alone."
fi
redis-server redis.conf --port "$port"
