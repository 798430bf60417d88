#!/usr/bin/env bash
# `make cluster`: a local Redis Cluster of 3 masters and 3 replicas on loopback, the module
# on every node, in the foreground (Ctrl-C stops it). Ports BASE..BASE+5; each node's bus
# port is port + 10000, so BASE must be at most 55530.
set -euo pipefail
base="${1:-30001}"
cd "$(dirname "$0")/.."
if [ "$base" -gt 55530 ]; then echo "make cluster: CLUSTER_PORT must be at most 55530 (bus port = port + 10000)"; exit 2; fi
module="$PWD/target/release/libaijob.so"
root="$PWD/run/cluster"
mkdir -p "$root"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
addrs=()
for i in 0 1 2 3 4 5; do
  port=$((base + i))
  dir="$root/$port"
  rm -rf "$dir" && mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --cluster-enabled yes \
    --cluster-config-file nodes.conf --cluster-node-timeout 5000 --appendonly yes \
    --repl-diskless-sync-delay 0 --loadmodule "$module" --logfile "$dir/redis.log" &
  pids+=($!)
  addrs+=("127.0.0.1:$port")
done
for i in 0 1 2 3 4 5; do
  for _ in $(seq 1 100); do redis-cli -p $((base + i)) ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
echo "make cluster: 3 masters + 3 replicas on ports $base-$((base + 5)), logs in run/cluster/<port>/redis.log"
echo "make cluster: try  redis-cli -c -p $base JOB.CREATE sketch PAYLOAD '{}'"
echo "make cluster: fetcher  target/release/aijob-fetcher --redis-url redis+cluster://127.0.0.1:$base"
wait
