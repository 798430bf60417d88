#!/usr/bin/env bash
# `make bench` / `make bench-quick`: installs the bench's npm packages (bullmq, ioredis)
# into bench/node_modules, then runs bench/bench.js and bench/streams.js against the release
# module.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
cd "$root/bench"
npm install --no-audit --no-fund --loglevel=error >/dev/null
node bench.js --module "$target/release/libaijob.so" "$@"
# a job's output stream: appends per second and 100 readers on one job (not with --only)
case " $* " in *" --only "*) exit 0 ;; esac
exec node streams.js --module "$target/release/libaijob.so" "$@"
