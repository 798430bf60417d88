#!/usr/bin/env node
// `make bench` (after bench.js) / `make bench-quick`: a job's output stream (docs/streams.md).
//
// 1. Appends per second: JOB.APPEND of one 40-byte chunk (a few tokens) against a plain
//    XADD of the same chunk to one stream, interleaved like bench.js's rows (redis-benchmark,
//    50 clients, P=1 and P=16).
// 2. Read fan-out: 100 readers blocked on one job (JOB.READ ... BLOCK 0 in a loop, each on
//    its own connection) and one writer appending a chunk at a time, the next once all 100
//    have it. Per append: the time until the last reader has it, and the server's CPU time
//    (user + sys), against the same 100 readers on raw XREAD BLOCK of the same key.
//
// Prints a markdown table and writes it to bench/results/streams.md (quick: streams-quick.md).
//
//   node bench/streams.js [--quick] [--module path/to/libaijob.so]

'use strict';

const fs = require('fs');
const path = require('path');
const Redis = require('ioredis');

const server = require('./lib/server');
const { rbSide } = require('./lib/sides');
const { pair, median } = require('./lib/pair');

const QUICK = process.argv.includes('--quick');
const argAfter = (flag) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const MODULE = path.resolve(argAfter('--module') || path.join(__dirname, '..', 'target', 'release', 'libaijob.so'));
const PLAN = QUICK
  ? { depths: [16], seconds: 0.2, rounds: 3, calOps: 3000, minOps: 2000, maxOps: 400000, appends: 100 }
  : { depths: [1, 16], seconds: 0.6, rounds: 5, calOps: 10000, minOps: 5000, maxOps: 3000000, appends: 400 };
const READERS = 100;
const CHUNK = 'x'.repeat(40);
const Q = 'streambench';

/** A new running job: its id and lease token. */
async function runningJob(admin) {
  const id = await admin.call('JOB.CREATE', Q, 'PAYLOAD', '{}');
  const claimed = await admin.call('JOB.CLAIM', Q, 'LEASE', '3600000');
  const rec = claimed[0];
  const token = rec[rec.indexOf('token') + 1];
  if (rec[rec.indexOf('id') + 1] !== id) throw new Error('the bench queue holds other jobs');
  return { id, token };
}

/**
 * A worker's command on a fresh running job each run (so every run's stream starts
 * empty): JOB.APPEND of the chunk, or JOB.UPDATE PROGRESS of the same text (how a worker
 * shows partial output without a stream: a heartbeat and an event per piece).
 */
function workerSide(ctx, depth, command) {
  let args = null;
  return {
    label: command,
    counts: [command.toLowerCase()],
    async prepare() {
      if (args) await ctx.admin.call('JOB.DELETE', Q, args[2]);
      const { id, token } = await runningJob(ctx.admin);
      const what = command === 'JOB.APPEND' ? 'DATA' : 'PROGRESS';
      args = [command, Q, id, 'TOKEN', token, what, CHUNK];
    },
    run: (n) => rbSide(ctx.port, depth, command, args).run(n),
  };
}

function xaddSide(ctx, depth) {
  return {
    label: 'XADD',
    counts: ['xadd'],
    prepare: () => ctx.admin.call('DEL', 'plain:out'),
    run: (n) => rbSide(ctx.port, depth, 'XADD', ['XADD', 'plain:out', '*', 'chunk', CHUNK]).run(n),
  };
}

async function cpuSeconds(admin) {
  const text = await admin.info('cpu');
  const user = Number(text.match(/^used_cpu_user:([\d.]+)/m)[1]);
  const sys = Number(text.match(/^used_cpu_sys:([\d.]+)/m)[1]);
  return user + sys;
}

/**
 * 100 readers following one job; `kind` is 'job.read' or 'xread'. Returns the median and
 * p99 ms from an append to its last reader, and the server's CPU µs per append.
 */
async function fanOut(ctx, kind, appends) {
  const { id, token } = await runningJob(ctx.admin);
  const key = `aijob:{${Q}}:out:${id}`;
  const readers = [];
  for (let i = 0; i < READERS; i++) {
    const c = new Redis({ port: ctx.port, maxRetriesPerRequest: 0 });
    c.on('error', () => {});
    readers.push(c);
  }
  await Promise.all(readers.map((c) => c.ping()));
  let waiting = null; // { seq, left, resolve }
  let stop = false;
  const got = (seq) => {
    if (waiting && seq >= waiting.seq && --waiting.left === 0) waiting.resolve();
  };
  const follow = async (c) => {
    let after = '0-0';
    let seen = 0;
    while (!stop) {
      let ids;
      if (kind === 'job.read') {
        const r = await c.call('JOB.READ', Q, id, 'AFTER', after, 'BLOCK', '0');
        ids = r[1].map((e) => e[0]);
        after = r[3];
        if (r[5] === 1) return;
      } else {
        const r = await c.call('XREAD', 'BLOCK', '0', 'STREAMS', key, after);
        ids = r ? r[0][1].map((e) => e[0]) : [];
        if (ids.length) after = ids[ids.length - 1];
      }
      for (const e of ids) {
        const seq = Number(e.split('-')[1]);
        if (seq > seen) {
          seen = seq;
          got(seq);
        }
      }
    }
  };
  const loops = readers.map((c) => follow(c).catch(() => {}));
  const wait = (seq) => new Promise((resolve) => { waiting = { seq, left: READERS, resolve }; });
  const lat = [];
  // the first append opens the stream (entry 1-0 is its attempt entry); a chunk's offset
  // counts the bytes up to it, so the i-th chunk is 1-<40 i>
  let arrived = wait(CHUNK.length);
  await ctx.admin.call('JOB.APPEND', Q, id, 'TOKEN', token, 'DATA', CHUNK);
  await arrived;
  const cpu0 = await cpuSeconds(ctx.admin);
  for (let i = 2; i <= appends + 1; i++) {
    arrived = wait(i * CHUNK.length);
    const t0 = process.hrtime.bigint();
    await ctx.admin.call('JOB.APPEND', Q, id, 'TOKEN', token, 'DATA', CHUNK);
    await arrived;
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const cpu1 = await cpuSeconds(ctx.admin);
  stop = true;
  await ctx.admin.call('JOB.UPDATE', Q, id, 'TOKEN', token, 'STATUS', 'done', 'RESULT', '{}');
  readers.forEach((c) => c.disconnect());
  await Promise.all(loops);
  await ctx.admin.call('JOB.DELETE', Q, id);
  lat.sort((a, b) => a - b);
  return {
    p50: median(lat),
    p99: lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))],
    cpuUs: ((cpu1 - cpu0) * 1e6) / appends,
  };
}

const k = (x) => (x >= 1000 ? `${(x / 1000).toFixed(x >= 100000 ? 0 : 1)}k` : x.toFixed(0));

async function main() {
  const started = Date.now();
  const ctx = await server.start(MODULE, path.join(__dirname, '..', 'redis.conf'));
  const lines = [];
  try {
    await ctx.admin.call('CONFIG', 'SET', 'aijob.stream-max-chunks', '1000000000');
    await ctx.admin.call('CONFIG', 'SET', 'aijob.stream-max-bytes', '4294967296');
    lines.push('| row | P | aijob ops/s | baseline ops/s | ratio (per-round range) | server µs/op (aijob vs baseline) |');
    lines.push('|---|---|---|---|---|---|');
    const rows = [];
    for (const depth of PLAN.depths) {
      rows.push(['JOB.APPEND, one 40-byte chunk, vs a plain XADD of it', depth,
        workerSide(ctx, depth, 'JOB.APPEND'), xaddSide(ctx, depth)]);
      rows.push(['JOB.APPEND, one 40-byte chunk, vs JOB.UPDATE PROGRESS of it', depth,
        workerSide(ctx, depth, 'JOB.APPEND'), workerSide(ctx, depth, 'JOB.UPDATE')]);
    }
    for (const [row, depth, A, B] of rows) {
      const m = await pair(ctx.admin, A, B, PLAN);
      lines.push(`| ${row} | ${depth} | ${k(m.a.rate)} | ${k(m.b.rate)} | `
        + `${m.ratio.toFixed(2)}x (${m.lo.toFixed(2)}-${m.hi.toFixed(2)}) | ${m.a.usec.toFixed(2)} vs ${m.b.usec.toFixed(2)} |`);
      console.log(lines[lines.length - 1]);
    }
    const mine = await fanOut(ctx, 'job.read', PLAN.appends);
    const raw = await fanOut(ctx, 'xread', PLAN.appends);
    lines.push('');
    lines.push(`| ${READERS} readers blocked on one job, one append at a time | append to last reader, p50 | p99 | server CPU µs per append (all ${READERS} served) |`);
    lines.push('|---|---|---|---|');
    for (const [name, r] of [['JOB.READ ... BLOCK 0', mine], ['XREAD BLOCK 0 on the same key', raw]]) {
      lines.push(`| ${name} | ${r.p50.toFixed(2)} ms | ${r.p99.toFixed(2)} ms | ${r.cpuUs.toFixed(0)} (${(r.cpuUs / READERS).toFixed(1)} per reader) |`);
      console.log(lines[lines.length - 1]);
    }
  } finally {
    await ctx.stop();
  }
  const head = `${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; \`make bench${QUICK ? '-quick' : ''}\` streams; `
    + `redis-server ${ctx.version} started by the bench; ${(Date.now() - started) / 1000 | 0} s.`;
  const out = path.join(__dirname, 'results', QUICK ? 'streams-quick.md' : 'streams.md');
  fs.writeFileSync(out, `${head}\n\n${lines.join('\n')}\n`);
  console.log(`\nwritten to ${path.relative(process.cwd(), out)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
