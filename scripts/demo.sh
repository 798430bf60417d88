#!/usr/bin/env bash
# `make demo`: walks through the seeds' flows against a running `make run`, in redis-cli.
#   1. cache miss -> queued -> (coalesced) -> worker events -> done -> cache hit (the fetcher works it)
#   2. the FastAPI flow with the app's own worker: progress events over pub/sub
#   3. a per-client rate limit reaching 429 territory
#   4. a crashed worker's job recovered, and the stale worker fenced off
# PORT (default 6379) picks the server; HOST too.
set -euo pipefail

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-6379}"
RUN="$(date +%s%N)"          # a fresh request each run, so the flows start with a miss
TMP="$(mktemp -d)"
SUB_PID=""
cleanup() {
  if [ -n "$SUB_PID" ]; then kill "$SUB_PID" 2>/dev/null || true; wait "$SUB_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

if [ -t 1 ]; then B=$'\e[1m'; D=$'\e[2m'; R=$'\e[0m'; else B=""; D=""; R=""; fi

cli() { redis-cli -h "$HOST" -p "$PORT" "$@"; }
# Shows a command the way redis-cli's prompt does, then its reply.
run() {
  local shown="" a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_.:*-]+$ ]]; then shown+=" $a"; else shown+=" '${a//\'/\'\\\'\'}'"; fi
  done
  echo "${B}$HOST:$PORT>${shown}${R}"
  cli --no-raw "$@" > "$TMP/last"
  sed 's/^/  /' "$TMP/last"
}
# Line N of the last reply shown, without its "N) " and quotes.
reply_line() { sed -n "${1}p" "$TMP/last" | sed -E 's/^[0-9]+\) //; s/^"(.*)"$/\1/'; }
raw() { cli --raw "$@"; }
say() { echo; echo "${B}== $*${R}"; }
note() { echo "${D}# $*${R}"; }

# Events arrive on aijob:{Q}:job:<id>; a pattern subscription sees them from the first one.
subscribe() {
  : > "$TMP/events"
  redis-cli -h "$HOST" -p "$PORT" --raw PSUBSCRIBE "aijob:{$1}:job:*" > "$TMP/events" 2>/dev/null &
  SUB_PID=$!
  for _ in $(seq 1 50); do grep -q psubscribe "$TMP/events" 2>/dev/null && return; sleep 0.05; done
}
unsubscribe() {
  kill "$SUB_PID" 2>/dev/null || true; wait "$SUB_PID" 2>/dev/null || true; SUB_PID=""
}
# The JSON events received so far, shorter: without id, queue and time.
show_events() {
  note "events published on aijob:{$1}:job:<id>:"
  grep '^{' "$TMP/events" | sed -E 's/"id":"[^"]*",//; s/"queue":"[^"]*",//; s/,"at":[0-9]+//' | sed 's/^/  /' || true
}
field() { # field NAME from a flat JOB.GET reply on stdin
  awk -v n="$1" 'NR%2==1 {k=$0; next} k==n {print; exit}'
}

if ! cli ping >/dev/null 2>&1; then
  echo "make demo: no server answers on $HOST:$PORT. Start one with \`make run\` in another terminal (PORT=$PORT make run)." >&2
  exit 1
fi
if ! cli COMMAND INFO job.create | grep -q job.create; then
  echo "make demo: the server on $HOST:$PORT has no aijob module loaded (\`make run\` loads it)." >&2
  exit 1
fi

# ------------------------------------------------------------------------------------------
say "1. Rails improve-sketch: cache miss -> queued -> done -> cache hit"
note "Before: GET the cache key; on a miss SETEX a status key, LPUSH a Sidekiq job, SETEX status at every step."
note "After: one CACHE.GETORQUEUE. The KEY parts are the sketch's PNG, SVG and hints."
Q=improve_sketch
PAYLOAD='{"provider":"echo","model":"gemini-2.5-flash","request":{"text":"Improve this sketch","delay_ms":1500}}'
subscribe "$Q"
run CACHE.GETORQUEUE "$Q" PAYLOAD "$PAYLOAD" KEY "iVBORw0KGgo-$RUN" "<svg/>" "make it cleaner"
ID="$(reply_line 2)"
note "the same request again while it runs: the same job, no second AI call"
run CACHE.GETORQUEUE "$Q" PAYLOAD "$PAYLOAD" KEY "iVBORw0KGgo-$RUN" "<svg/>" "make it cleaner"
note "aijob-fetcher (started by make run) claims it and calls the provider (echo here)..."
status=queued
for i in $(seq 1 100); do
  status="$(raw JOB.GET "$Q" "$ID" | field status)"
  [ "$status" = done ] && break
  if [ "$i" = 30 ] && [ "$status" = queued ]; then
    note "no fetcher claimed it in 3 s (is \`make run\` running, with '$Q' in AIJOB_QUEUES?): the demo plays the worker"
    TOKEN="$(raw JOB.CLAIM "$Q" WORKER demo | field token)"
    run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN" STATUS done RESULT '{"provider":"echo","output":{"text":"Improve this sketch"},"text":"Improve this sketch"}'
  fi
  sleep 0.1
done
sleep 0.2
show_events "$Q"
unsubscribe
run JOB.GET "$Q" "$ID" JSON
note "the next identical request is a cache hit: no job, no AI call"
run CACHE.GETORQUEUE "$Q" PAYLOAD "$PAYLOAD" KEY "iVBORw0KGgo-$RUN" "<svg/>" "make it cleaner"

# ------------------------------------------------------------------------------------------
say "2. FastAPI analyze-artifact with the app's own worker: progress events over pub/sub"
note "Before: the background task rewrote job:{id} JSON at each step; the client polled it."
note "After: the worker reports PROGRESS with its lease token; every change is published."
Q=demo_analyze
ARTIFACT="service: checkout
replicas: 1
run: $RUN"
subscribe "$Q"
run CACHE.GETORQUEUE "$Q" PAYLOAD '{"task":"analyze"}' KEY "$ARTIFACT"
ID="$(reply_line 2)"
note "the app's worker claims it with a 30 s lease and gets a fencing token"
TOKEN="$(raw JOB.CLAIM "$Q" WORKER api-1 LEASE 30000 | field token)"
echo "${B}$HOST:$PORT> JOB.CLAIM $Q WORKER api-1 LEASE 30000${R}"
echo "  ... \"token\" \"$TOKEN\""
run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN" PROGRESS "Normalizing artifact..." PERCENT 20
run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN" PROGRESS "Running heuristics..." PERCENT 50
run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN" PROGRESS "Synthesizing with AI..." PERCENT 80
run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN" STATUS done RESULT '{"production_readiness_score":85,"findings":["one replica"]}'
sleep 0.2
show_events "$Q"
unsubscribe
run CACHE.GETORQUEUE "$Q" PAYLOAD '{"task":"analyze"}' KEY "$ARTIFACT"
set -- $(raw QUEUE.STATS "$Q" | awk 'NR%2==1 {k=$0; next} k ~ /^(created|completed|hits|misses)$/ {printf "%s=%s ", k, $0}')
note "QUEUE.STATS $Q: $*"

# ------------------------------------------------------------------------------------------
say "3. The generator API's per-client limit: 5 requests a minute (and 100 an hour), strictly"
note "Before: INCR rate_limit:minute:... and rate_limit:hour:..., fixed windows (2x at an edge)."
note "Reply: allowed, remaining, retry_after_ms, reset_ms."
KEY="rl:{client-$RUN}:generate"
for i in 1 2 3 4 5; do
  set -- $(raw RATELIMIT.HIT "$KEY" LIMIT 5 PERIOD 60000 LIMIT 100 PERIOD 3600000)
  echo "  request $i: allowed=$1 remaining=$2  -> HTTP 200"
done
note "request 6:"
run RATELIMIT.HIT "$KEY" LIMIT 5 PERIOD 60000 LIMIT 100 PERIOD 3600000
RETRY_MS="$(reply_line 3 | sed -E 's/^\(integer\) //')"
echo "  -> HTTP 429 Too Many Requests, Retry-After: $(( (RETRY_MS + 999) / 1000 )) s"
note "a refused request consumed nothing; another client has its own budget:"
run RATELIMIT.HIT "rl:{other-$RUN}:generate" LIMIT 5 PERIOD 60000 LIMIT 100 PERIOD 3600000
cli RATELIMIT.RESET "$KEY" >/dev/null; cli RATELIMIT.RESET "rl:{other-$RUN}:generate" >/dev/null

# ------------------------------------------------------------------------------------------
say "4. A worker crashes mid-job: its lease expires, the job is claimed again, the stale worker is fenced off"
note "Before: Sidekiq's BRPOP had already removed the job; a worker that died lost it."
Q=demo_crash
ID="$(raw JOB.CREATE "$Q" PAYLOAD '{"task":"stripe:provision","account":"acct_42"}')"
echo "${B}$HOST:$PORT> JOB.CREATE $Q PAYLOAD '{\"task\":\"stripe:provision\",\"account\":\"acct_42\"}'${R}"
echo "  \"$ID\""
TOKEN_A="$(raw JOB.CLAIM "$Q" WORKER worker-a LEASE 1500 | field token)"
echo "${B}$HOST:$PORT> JOB.CLAIM $Q WORKER worker-a LEASE 1500${R}"
echo "  ... \"token\" \"$TOKEN_A\""
note "worker-a dies here: no heartbeat, no update. 1.5 s later the lease expires..."
for _ in $(seq 1 50); do
  [ "$(raw JOB.GET "$Q" "$ID" | field status)" = queued ] && break
  sleep 0.1
done
run JOB.GET "$Q" "$ID" JSON
note "...and worker-b claims it (attempt 2)"
TOKEN_B="$(raw JOB.CLAIM "$Q" WORKER worker-b LEASE 30000 | field token)"
echo "${B}$HOST:$PORT> JOB.CLAIM $Q WORKER worker-b LEASE 30000${R}"
echo "  ... \"token\" \"$TOKEN_B\""
note "worker-a comes back to life and tries to finish with its old token: refused"
run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN_A" STATUS done RESULT '{"provisioned":"twice?"}'
run JOB.UPDATE "$Q" "$ID" TOKEN "$TOKEN_B" STATUS done RESULT '{"provisioned":true}'
run JOB.GET "$Q" "$ID" JSON

say "Done. More: docs/commands.md (command reference), docs/README.md (everything else), examples/ (Python, Node, Ruby, Go clients)."
