#!/usr/bin/env bash
# `make run`: redis-server with the module in the foreground, the fetcher and the dashboard
# (aijob-web, on 127.0.0.1:$WEB_PORT, 8080 by default) beside it.
# The fetcher reads its settings from the environment (see `aijob-fetcher --help`): with no
# GEMINI_API_KEY / OPENAI_API_KEY it serves the echo provider only, and says so.
set -euo pipefail
port="${1:-6379}"
cd "$(dirname "$0")/.."
mkdir -p run
fetcher=target/release/aijob-fetcher
web=target/release/aijob-web
fetcher_pid=""
web_pid=""
cleanup() {
  for pid in $fetcher_pid $web_pid; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
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
if [ -x "$web" ]; then
  web_listen="${AIJOB_WEB_LISTEN:-127.0.0.1:${WEB_PORT:-8080}}"
  echo "make run: dashboard on http://$web_listen  (aijob-web --help for auth and --read-only)"
  (
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    exec "$web" --redis-url "redis://127.0.0.1:$port" --listen "$web_listen"
  ) &
  web_pid=$!
else
  echo "make run: $web is not built; no dashboard."
fi
redis-server redis.conf --port "$port"
