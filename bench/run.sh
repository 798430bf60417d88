#!/usr/bin/env bash
# `make bench` / `make bench-quick`: installs the bench's npm packages (bullmq, ioredis)
# into bench/node_modules, then runs bench/bench.js against the release module.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
cd "$root/bench"
npm install --no-audit --no-fund --loglevel=error >/dev/null
exec node bench.js --module "$target/release/libaijob.so" "$@"
