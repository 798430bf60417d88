#!/usr/bin/env bash
# make bench-cluster: end-to-end jobs/s of one aijob-fetcher (echo provider, --cluster) against
# a 1-master cluster and against a 3-master cluster, with the same load: JOBS jobs spread over
# QUEUES queues chosen so that each of the 3 masters holds the same number of them. The jobs
# are pushed with pipelined JOB.CREATE (redis-cli --pipe, to each queue's master) while the
# fetcher runs; the clock stops when every job is done (INFO aijob, jobs completed, summed
# over the masters). Prints jobs/s for both and the ratio.
#
# Each setup runs ROUNDS times, alternating (1, 3, 1, 3, ...); the median of each is compared.
#
# Knobs (environment): JOBS (50000), QUEUES (12, a multiple of 3), CONCURRENCY (256, the
# fetcher's --concurrency), ROUNDS (3), BENCH_PORT (first port to try, 21001: below the
# ephemeral range, bus ports included, so that no outgoing connection holds one), SKIP_BUILD=1
# (use the release binaries already built), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS="${JOBS:-50000}"
QUEUES="${QUEUES:-12}"
CONCURRENCY="${CONCURRENCY:-256}"
ROUNDS="${ROUNDS:-3}"
BENCH_PORT="${BENCH_PORT:-21001}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
if [ $((QUEUES % 3)) -ne 0 ]; then echo "bench-cluster: QUEUES must be a multiple of 3" >&2; exit 2; fi
for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench-cluster: $tool is missing (make deps)" >&2; exit 2; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p aijob -p aijob-fetcher
fi
module="$target/release/libaijob.so"
fetcher="$target/release/aijob-fetcher"
[ -f "$module" ] && [ -x "$fetcher" ] || { echo "bench-cluster: build first ($module, $fetcher)" >&2; exit 2; }

tmp="$(mktemp -d /tmp/aijob-bench-cluster.XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

in_use() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port=$BENCH_PORT
# A port whose cluster bus port (port + 10000) is free too.
take_port() {
  while in_use "$next_port" || in_use $((next_port + 10000)); do next_port=$((next_port + 1)); done
  port=$next_port
  next_port=$((next_port + 1))
}

# start_nodes N: N cluster-mode nodes with the module, no persistence; their ports in $nodes.
start_nodes() {
  nodes=()
  for _ in $(seq 1 "$1"); do
    take_port
    mkdir -p "$tmp/$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp/$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 5000 --save "" --appendonly no \
      --loadmodule "$module" --logfile "$tmp/$port/redis.log" &
    pids+=($!)
    nodes+=("$port")
  done
  local ok
  for p in "${nodes[@]}"; do
    ok=0
    for _ in $(seq 1 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && { ok=1; break; }; sleep 0.05; done
    if [ "$ok" != 1 ]; then
      echo "bench-cluster: redis-server on port $p did not start:" >&2
      tail -5 "$tmp/$p/redis.log" >&2
      exit 1
    fi
  done
  if [ "$1" -eq 1 ]; then
    redis-cli -p "${nodes[0]}" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
  else
    local addrs=()
    for p in "${nodes[@]}"; do addrs+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  for p in "${nodes[@]}"; do
    for _ in $(seq 1 200); do
      redis-cli -p "$p" CLUSTER INFO | grep -q "cluster_state:ok" && break
      sleep 0.05
    done
  done
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# The master of a key: the node that does not answer MOVED.
owner() {
  local p
  for p in "${nodes[@]}"; do
    if ! redis-cli -p "$p" EXISTS "$1" 2>&1 | grep -q MOVED; then echo "$p"; return; fi
  done
}

payload='{"provider":"echo","request":{"text":"bench"}}'
# The RESP of JOB.CREATE <queue> PAYLOAD <payload>, n times.
resp_creates() {
  local q="$1" n="$2"
  awk -v q="$q" -v p="$payload" -v n="$n" 'BEGIN {
    cmd = sprintf("*4\r\n$10\r\nJOB.CREATE\r\n$%d\r\n%s\r\n$7\r\nPAYLOAD\r\n$%d\r\n%s\r\n", length(q), q, length(p), p);
    for (i = 0; i < n; i++) printf "%s", cmd;
  }'
}

completed() {
  local sum=0 p n
  for p in "${nodes[@]}"; do
    n=$(redis-cli -p "$p" INFO aijob | tr -d '\r' | awk -F: '$1 == "aijob_jobs_completed" {print $2}')
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}

# Pick the queues on a 3-master cluster: QUEUES/3 on each master.
start_nodes 3
queues=()
declare -A per_master=()
i=0
while [ "${#queues[@]}" -lt "$QUEUES" ]; do
  q="bench-$i"
  o=$(owner "$q")
  if [ "${per_master[$o]:-0}" -lt $((QUEUES / 3)) ]; then
    queues+=("$q")
    per_master[$o]=$(( ${per_master[$o]:-0} + 1 ))
  fi
  i=$((i + 1))
done
stop_all
queue_list=$(IFS=,; echo "${queues[*]}")

# run MASTERS: sets $rate (jobs/s) and $secs of one run (no subshell: the trap must see
# every process started).
run() {
  start_nodes "$1"
  local log="$tmp/fetcher-$1.log"
  "$fetcher" --redis-url "redis+cluster://127.0.0.1:${nodes[0]}" --queues "$queue_list" \
    --concurrency "$CONCURRENCY" --log-level warn --worker "bench-$1" 2>"$log" &
  local fpid=$!
  pids+=("$fpid")
  sleep 1
  # One pipe file per master, each queue's share to its master.
  local per=$((JOBS / QUEUES)) extra=$((JOBS % QUEUES)) k=0 q n o
  for p in "${nodes[@]}"; do : >"$tmp/pipe-$p"; done
  for q in "${queues[@]}"; do
    n=$per
    if [ "$k" -lt "$extra" ]; then n=$((n + 1)); fi
    o=$(owner "$q")
    resp_creates "$q" "$n" >>"$tmp/pipe-$o"
    k=$((k + 1))
  done
  local t0 t1
  t0=$(date +%s.%N)
  local pushers=()
  for p in "${nodes[@]}"; do
    redis-cli -p "$p" --pipe <"$tmp/pipe-$p" >"$tmp/push-$p.log" 2>&1 &
    pushers+=($!)
  done
  for pp in "${pushers[@]}"; do wait "$pp"; done
  local deadline=$((SECONDS + 120)) done_now=0
  while :; do
    done_now=$(completed)
    [ "$done_now" -ge "$JOBS" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "bench-cluster: only $done_now of $JOBS jobs done after 120 s; fetcher log:" >&2
      tail -20 "$log" >&2
      exit 1
    fi
    sleep 0.02
  done
  t1=$(date +%s.%N)
  stop_all
  read -r rate secs < <(awk -v n="$JOBS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f %.3f\n", n / (b - a), b - a }')
}

echo "bench-cluster: $JOBS echo jobs over $QUEUES queues (${queues[*]}), one fetcher --cluster --concurrency $CONCURRENCY, $(nproc) cores"
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ones=()
threes=()
for r in $(seq 1 "$ROUNDS"); do
  run 1
  ones+=("$rate")
  echo "  round $r: 1 master  $rate jobs/s ($secs s)"
  run 3
  threes+=("$rate")
  echo "  round $r: 3 masters $rate jobs/s ($secs s)"
done
one=$(median "${ones[@]}")
three=$(median "${threes[@]}")
echo "bench-cluster: 1 master ${one} jobs/s, 3 masters ${three} jobs/s (medians of $ROUNDS)"
awk -v a="$one" -v b="$three" 'BEGIN { printf "bench-cluster: ratio 3 masters / 1 master: %.2f\n", b / a }'
if [ "$(nproc)" -lt 4 ]; then
  echo "bench-cluster: note: $(nproc) cores are shared by the masters, the fetcher, redis-cli and anything else running: 3 masters cannot each have a core here, so the ratio says little about scaling on real hardware"
fi
