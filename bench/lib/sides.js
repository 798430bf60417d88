// The two kinds of "side" a row compares, both with `run(n)` -> seconds for n operations:
// - rbSide: one command, driven by redis-benchmark (C client, -c 50, -P depth, --csv),
//   timed by redis-benchmark itself (first request to last reply);
// - flowSide: a dependent sequence of commands per operation (GET, then SET + LPUSH),
//   driven by ioredis over 50 connections; at depth P each connection runs P operations
//   side by side, every step of the P operations sent as one pipeline.

'use strict';

const { spawn } = require('child_process');

const CLIENTS = 50;

function redisBenchmark(port, depth, n, keyspace, args) {
  const argv = ['-p', String(port), '-c', String(CLIENTS), '-P', String(depth), '-n', String(n), '-r',
    String(keyspace), '--csv', ...args];
  return new Promise((resolve, reject) => {
    const p = spawn('redis-benchmark', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('close', (code) => {
      const line = out.trim().split('\n').pop() || '';
      // the test name echoes the command (quotes unescaped), so read from the end:
      // rps, avg, min, p50, p95, p99, max
      const fields = line.split(',');
      const rps = Number((fields[fields.length - 7] || '').replace(/"/g, ''));
      if (code !== 0 || !(rps > 0)) {
        reject(new Error(`redis-benchmark ${args[0]} failed (${code}): ${err.trim() || line}`));
        return;
      }
      resolve(rps);
    });
  });
}

/** A single command run by redis-benchmark. `counts`: the commandstats names it runs. */
function rbSide(port, depth, label, args, opts = {}) {
  return {
    label,
    counts: opts.counts || [args[0].toLowerCase()],
    prepare: opts.prepare,
    unchanged: opts.unchanged,
    after: opts.after,
    async run(n) {
      const rps = await redisBenchmark(port, depth, n, opts.keyspace || 10000, args);
      return n / rps;
    },
  };
}

/** Runs `flow` n times over the pool's connections, `depth` operations per connection at a time. */
async function runFlows(pool, depth, n, flow) {
  let next = 0;
  const lane = async (conn) => {
    while (next < n) {
      const k = Math.min(depth, n - next);
      const states = [];
      for (let i = 0; i < k; i++) states.push(flow.init(next++));
      for (const step of flow.steps) {
        const pipe = conn.pipeline();
        const per = [];
        for (const st of states) {
          const cmds = step.send(st);
          per.push(cmds.length);
          for (const c of cmds) pipe.call(...c);
        }
        const replies = await pipe.exec();
        let at = 0;
        for (let i = 0; i < states.length; i++) {
          const mine = replies.slice(at, at + per[i]);
          at += per[i];
          for (const [err] of mine) if (err) throw err;
          if (step.recv) step.recv(states[i], mine.map((r) => r[1]));
        }
      }
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(pool.map(lane));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** A dependent sequence of commands per operation, driven by ioredis. */
function flowSide(pool, depth, label, flow, opts = {}) {
  return {
    label,
    counts: opts.counts,
    prepare: opts.prepare,
    unchanged: opts.unchanged,
    after: opts.after,
    run: (n) => runFlows(pool, depth, n, flow),
  };
}

module.exports = { rbSide, flowSide, runFlows, CLIENTS };
