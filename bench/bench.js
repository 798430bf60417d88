#!/usr/bin/env node
// `make bench` / `make bench-quick`: aijob's commands against what apps do without it
// (plain commands, the seeds' round trips, Lua, BullMQ), each pair measured interleaved
// on one redis-server started here. Prints one markdown table and writes it to
// bench/results/latest.md (bench-quick: latest-quick.md).
//
//   node bench/bench.js [--quick] [--module path/to/libaijob.so]

'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const Redis = require('ioredis');

const server = require('./lib/server');
const { rbSide, flowSide, CLIENTS } = require('./lib/sides');
const { pair } = require('./lib/pair');
const e2e = require('./lib/e2e');
const memory = require('./lib/memory');
const floor = require('./lib/floor');
const payloads = require('./lib/payloads');

const QUICK = process.argv.includes('--quick');
const argAfter = (flag) => {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
// --only <text>: just the comparisons whose row contains <text> (for development)
const ONLY = argAfter('--only');
const MODULE = path.resolve(argAfter('--module') || path.join(__dirname, '..', 'target', 'release', 'libaijob.so'));

const PLAN = QUICK
  ? { depths: [16], seconds: 0.2, rounds: 3, calOps: 3000, minOps: 2000, maxOps: 400000, e2eN: 3000,
    e2eRounds: 1, memN: 10000 }
  : { depths: [1, 16], seconds: 0.6, rounds: 5, calOps: 10000, minOps: 5000, maxOps: 3000000, e2eN: 20000,
    e2eRounds: 3, memN: 100000 };
const E2E_WORKERS = 8;

const HEX_PREFIX = '0'.repeat(52); // + redis-benchmark's 12-digit __rand_int__ = 64 hex digits
// redis-benchmark reads -r with atoi: keep it an int
const BIG = 2000000000;
const hashOf = (i) => HEX_PREFIX + String(i).padStart(12, '0');

// ---------------------------------------------------------------------------------------
// Rows. Each returns a list of { row, depth, A, B, target } comparisons (A is aijob).

function rateLimitRows(ctx, depth) {
  const { port } = ctx;
  const windows = ['LIMIT', '1000000', 'PERIOD', '1000', 'LIMIT', '100000000', 'PERIOD', '60000'];
  const hit = () => rbSide(port, depth, 'RATELIMIT.HIT', ['RATELIMIT.HIT', 'rl:__rand_int__', ...windows],
    { unchanged: ['ratelimit_denied'] });
  const row = 'RATELIMIT.HIT, 2 windows, 10k keys';
  return [
    { row: `${row} vs SET`, depth, A: hit(), B: rbSide(port, depth, 'SET', ['SET', 'plain:__rand_int__', 'xxx']),
      target: depth === 16 ? { min: 0.7 } : null },
    { row: `${row} vs INCR`, depth, A: hit(), B: rbSide(port, depth, 'INCR', ['INCR', 'fixed:__rand_int__']),
      target: null, full: true },
    { row: `${row} vs the same check in Lua`, depth, A: hit(),
      B: rbSide(port, depth, 'EVALSHA', ['EVALSHA', ctx.sha.ratelimit, '1', 'rllua:__rand_int__', '1000000', '1000',
        '100000000', '60000', '1']),
      target: depth === 16 ? { min: 2 } : null },
  ];
}

async function fillCache(ctx, q, prefix, count, value) {
  for (let i = 0; i < count; i += 500) {
    const p = ctx.pool[0].pipeline();
    for (let j = i; j < Math.min(count, i + 500); j++) {
      p.call('CACHE.SET', q, hashOf(j), value);
      // the seeds' cache keys carry a TTL (SET ... EX), as aijob's entries do
      p.call('SET', prefix + String(j).padStart(12, '0'), value, 'EX', '86400');
    }
    await p.exec();
  }
}

function cacheHitRows(ctx, depth) {
  const { port } = ctx;
  const out = [];
  for (const [size, keys] of [['1 KB', 10000], ['100 KB', 100]]) {
    const q = `hit${size.replace(' ', '')}`;
    const goq = rbSide(port, depth, 'CACHE.GETORQUEUE',
      ['CACHE.GETORQUEUE', q, 'PAYLOAD', payloads.REQUEST, 'HASH', `${HEX_PREFIX}__rand_int__`],
      { keyspace: keys, unchanged: ['cache_misses', 'coalesced'] });
    const get = rbSide(port, depth, 'GET', ['GET', `${q}:__rand_int__`], { keyspace: keys });
    const setup = () => fillCache(ctx, q, `${q}:`, keys, size === '1 KB' ? payloads.RESULT_1K : payloads.RESULT_100K);
    out.push({ row: `CACHE.GETORQUEUE hit, ${size}, HASH given (${keys} entries) vs GET of ${size} (key with a TTL)`, depth,
      A: goq, B: get, target: depth === 16 ? { min: size === '1 KB' ? 0.7 : 0.6 } : null, full: size !== '1 KB', setup });
    if (size === '1 KB') {
      const lua = rbSide(port, depth, 'EVALSHA', ['EVALSHA', ctx.sha.getorqueue, '3', `${q}:__rand_int__`,
        'job:{x}', 'queue:{x}', '{}', 'x'], { keyspace: keys });
      out.push({ row: `CACHE.GETORQUEUE hit, ${size} vs cache-or-enqueue in Lua (hit)`, depth, A: goq, B: lua,
        target: depth === 16 ? { min: 2 } : null, full: true, setup });
    }
  }
  return out;
}

function seedsJobJson(id, hash) {
  return `{"job_id":"${id}","status":"queued","content_hash":"${hash}","payload":${payloads.PAYLOAD_1K},` +
    `"progress_hint":"Job queued","created_at":"2026-11-27T12:00:00Z"}`;
}

let uniq = 1e9; // ids and hashes unique over the whole run

function cacheMissRows(ctx, depth) {
  const { port, pool } = ctx;
  const moduleFlow = {
    init: () => ({ h: (uniq++).toString(16).padStart(64, 'f') }),
    steps: [{ send: (s) => [['CACHE.GETORQUEUE', 'miss', 'PAYLOAD', payloads.PAYLOAD_1K, 'HASH', s.h]],
      recv: (s, [r]) => { if (r[0] !== 'queued') throw new Error(`miss row: ${r[0]}, not queued`); } }],
  };
  const seedsFlow = {
    init: () => {
      const h = (uniq++).toString(16).padStart(64, 'f');
      return { h, id: h.slice(-16) };
    },
    steps: [
      { send: (s) => [['GET', `cache:${s.h}`]] },
      { send: (s) => [['SET', `job:${s.id}`, seedsJobJson(s.id, s.h), 'EX', '3600']] },
      { send: (s) => [['LPUSH', 'queue:miss', s.id]] },
    ],
  };
  const row = 'CACHE.GETORQUEUE miss (new job, 1 KB payload)';
  return [
    { row: `${row} vs the seeds' GET, SET EX, LPUSH (3 round trips, ioredis)`, depth,
      A: flowSide(pool, depth, 'CACHE.GETORQUEUE', moduleFlow, { counts: ['cache.getorqueue'] }),
      B: flowSide(pool, depth, 'GET+SET+LPUSH', seedsFlow, { counts: ['get', 'set', 'lpush'] }), target: null,
      full: depth === 1 },
    { row: `${row} vs the same in one Lua script`, depth,
      A: rbSide(port, depth, 'CACHE.GETORQUEUE', ['CACHE.GETORQUEUE', 'missrb', 'PAYLOAD', payloads.PAYLOAD_1K,
        'HASH', `${HEX_PREFIX}__rand_int__`], { keyspace: BIG, unchanged: ['cache_hits'] }),
      B: rbSide(port, depth, 'EVALSHA', ['EVALSHA', ctx.sha.getorqueue, '3', 'cache:__rand_int__', 'job:__rand_int__',
        'queue:missrb', seedsJobJson('__rand_int__', '__rand_int__'), '__rand_int__'], { keyspace: BIG }),
      target: depth === 16 ? { min: 2 } : null },
  ];
}

function createRows(ctx, depth) {
  const { port, pool } = ctx;
  const create = () => rbSide(port, depth, 'JOB.CREATE', ['JOB.CREATE', 'create', 'PAYLOAD', payloads.PAYLOAD_1K]);
  const fields = ['id', '__rand_int__', 'queue', 'create', 'status', 'queued', 'priority', 'normal', 'payload',
    payloads.PAYLOAD_1K, 'attempts', '0', 'max_attempts', '3', 'created_at', '1795802400000', 'updated_at',
    '1795802400000'];
  const moduleFlow = {
    init: () => ({}),
    steps: [{ send: () => [['JOB.CREATE', 'createflow', 'PAYLOAD', payloads.PAYLOAD_1K]] }],
  };
  const seedsFlow = {
    init: () => ({ id: (uniq++).toString(16) }),
    steps: [
      { send: (s) => [['SET', `job:${s.id}`, seedsJobJson(s.id, ''), 'EX', '3600']] },
      { send: (s) => [['LPUSH', 'queue:createflow', s.id]] },
    ],
  };
  const row = 'JOB.CREATE, 1 KB payload';
  return [
    { row: `${row} vs HSET of the same fields`, depth, A: create(),
      B: rbSide(port, depth, 'HSET', ['HSET', 'job:__rand_int__', ...fields], { keyspace: BIG }), target: null },
    { row: `${row} vs the seeds' SET EX + LPUSH (2 round trips, ioredis)`, depth,
      A: flowSide(pool, depth, 'JOB.CREATE', moduleFlow, { counts: ['job.create'] }),
      B: flowSide(pool, depth, 'SET+LPUSH', seedsFlow, { counts: ['set', 'lpush'] }), target: null, full: true },
    { row: `${row} vs SET EX + LPUSH in one Lua script`, depth, A: create(),
      B: rbSide(port, depth, 'EVALSHA', ['EVALSHA', ctx.sha.create, '2', 'job:__rand_int__', 'queue:create',
        seedsJobJson('__rand_int__', ''), '__rand_int__'], { keyspace: BIG }),
      target: depth === 16 ? { min: 1.5 } : null },
  ];
}

function field(rec, name) {
  for (let i = 0; i + 1 < rec.length; i += 2) if (rec[i] === name) return rec[i + 1];
  return undefined;
}

async function prefill(conn, n, make) {
  for (let i = 0; i < n; i += 1000) {
    const p = conn.pipeline();
    for (let j = i; j < Math.min(n, i + 1000); j++) p.call(...make(j));
    await p.exec();
  }
}

/** Whether the module knows JOB.UPDATE ... NEXT (a module from before it answers "unknown option"). */
async function knowsNext(admin) {
  try {
    await admin.call('JOB.UPDATE', 'probe', 'none', 'STATUS', 'done', 'RESULT', '{}', 'NEXT');
  } catch (e) {
    return !/unknown option/i.test(String(e.message));
  }
  return true;
}

function claimRows(ctx, depth) {
  const { pool } = ctx;
  const moduleFlow = {
    init: () => ({}),
    steps: [
      { send: () => [['JOB.CLAIM', 'work', 'WORKER', 'w', 'LEASE', '3600000']],
        recv: (s, [got]) => {
          if (!got.length) throw new Error('claim row: the queue ran dry');
          s.id = field(got[0], 'id');
          s.token = field(got[0], 'token');
        } },
      { send: (s) => [['JOB.UPDATE', 'work', s.id, 'TOKEN', s.token, 'STATUS', 'done', 'RESULT', payloads.RESULT_1K]] },
    ],
  };
  const plainFlow = {
    init: () => ({}),
    steps: [
      { send: () => [['LMOVE', 'rq', 'rq:processing', 'RIGHT', 'LEFT']],
        recv: (s, [item]) => {
          if (item === null) throw new Error('claim row: the list ran dry');
          s.id = item.slice(7, 23); // {"id":"<16 hex>",...
        } },
      { send: (s) => [['HSET', `job:${s.id}`, 'status', 'done', 'result', payloads.RESULT_1K, 'finished_at',
        '1795802400000']] },
    ],
  };
  // JOB.UPDATE ... NEXT: every operation finishes a held job and takes the next one, so
  // the workers hold CLIENTS x P jobs throughout (claimed ahead, in `prepare`)
  const held = [];
  const nextFlow = {
    init: () => held.pop(),
    steps: [
      { send: (s) => [['JOB.UPDATE', 'next', s.id, 'TOKEN', s.token, 'STATUS', 'done', 'RESULT', payloads.RESULT_1K,
        'NEXT', 'WORKER', 'w', 'LEASE', '3600000']],
        recv: (s, [[status, got]]) => {
          if (status !== 'done' || !got.length) throw new Error('next row: the queue ran dry');
          held.push({ id: field(got[0], 'id'), token: field(got[0], 'token') });
        } },
    ],
  };
  const holdAhead = async (n) => {
    const ahead = CLIENTS * depth;
    await prefill(pool[0], n + ahead - held.length, () => ['JOB.CREATE', 'next', 'PAYLOAD', payloads.PAYLOAD_1K]);
    while (held.length < ahead) {
      const got = await pool[0].call('JOB.CLAIM', 'next', 'WORKER', 'w', 'LEASE', '3600000',
        'COUNT', String(Math.min(1000, ahead - held.length)));
      for (const rec of got) held.push({ id: field(rec, 'id'), token: field(rec, 'token') });
    }
  };
  const jobJson = (i) => `{"id":"${(uniq + i).toString(16).padStart(16, '0')}","payload":${payloads.PAYLOAD_1K}}`;
  const plain = () => flowSide(pool, depth, 'LMOVE+HSET', plainFlow, {
    counts: ['lmove', 'hset'],
    prepare: async (n) => {
      await prefill(pool[0], n, (i) => ['LPUSH', 'rq', jobJson(i)]);
      uniq += n;
    },
  });
  const rows = [{
    row: 'JOB.CLAIM + JOB.UPDATE done (1 KB payload, 1 KB result) vs LMOVE + HSET', depth,
    A: flowSide(pool, depth, 'CLAIM+UPDATE', moduleFlow, {
      counts: ['job.claim', 'job.update'],
      prepare: (n) => prefill(pool[0], n, () => ['JOB.CREATE', 'work', 'PAYLOAD', payloads.PAYLOAD_1K]),
    }),
    B: plain(),
    target: null,
  }, {
    row: 'JOB.UPDATE done ... NEXT (finish + claim in one command, 1 KB payload, 1 KB result) vs LMOVE + HSET', depth,
    A: flowSide(pool, depth, 'UPDATE NEXT', nextFlow, { counts: ['job.update'], prepare: holdAhead }),
    B: plain(),
    target: null,
  }];
  return ctx.next ? rows : rows.slice(0, 1);
}

/** Fails unless queue `q` was claimed empty (a claim that found nothing is not a claim). */
const drained = (q) => async (admin) => {
  const stats = await admin.call('QUEUE.STATS', q);
  const queued = stats[stats.indexOf('queued') + 1];
  if (queued !== 0) throw new Error(`${q}: ${queued} jobs left unclaimed: some claims found nothing`);
};

function chargeRows(ctx, depth) {
  const { port } = ctx;
  const fillQueue = (q) => async (n) => {
    await prefill(ctx.pool[0], n, () => ['JOB.CREATE', q, 'PAYLOAD', payloads.REQUEST, 'COST', '250']);
  };
  const claim = (q, extra) => ['JOB.CLAIM', q, 'WORKER', 'w', 'LEASE', '3600000', ...extra];
  const charges = ['CHARGE', 'rl:{charged}:rpm', 'REQUESTS', 'LIMIT', '1000000000', 'PERIOD', '60000',
    'CHARGE', 'rl:{charged}:tpm', 'COST', 'LIMIT', '1000000000000', 'PERIOD', '60000'];
  return [{
    row: 'JOB.CLAIM with two CHARGEs (REQUESTS, COST) vs plain JOB.CLAIM', depth,
    A: rbSide(port, depth, 'JOB.CLAIM+CHARGE', claim('charged', charges),
      { counts: ['job.claim'], prepare: fillQueue('charged'), unchanged: ['charges_denied'], after: drained('charged') }),
    B: rbSide(port, depth, 'JOB.CLAIM', claim('plain', []),
      { counts: ['job.claim'], prepare: fillQueue('plain'), after: drained('plain') }),
    target: depth === 16 ? { min: 0.7 } : null,
  }];
}

// ---------------------------------------------------------------------------------------
// Output

const fmtRate = (r) => (r >= 100000 ? `${Math.round(r / 1000)}k` : r >= 10000 ? `${(r / 1000).toFixed(1)}k`
  : `${Math.round(r)}`);
const fmtUs = (u) => (u === null || u === undefined ? '-' : u >= 100 ? u.toFixed(0) : u >= 10 ? u.toFixed(1)
  : u.toFixed(2));

function tableLine(c, m) {
  const target = c.target ? `>= ${c.target.min}x` : '';
  const met = c.target ? (m.ratio >= c.target.min ? 'yes' : '**no**') : '';
  const ratio = `${m.ratio.toFixed(2)}x (${m.lo.toFixed(2)}-${m.hi.toFixed(2)})`;
  const cpu = m.cpuRatio ? `${fmtUs(m.a.cpu)} vs ${fmtUs(m.b.cpu)} (${m.cpuRatio.toFixed(2)}x)` : '-';
  return `| ${c.row} | ${c.depth} | ${fmtRate(m.a.rate)} | ${fmtRate(m.b.rate)} | ${ratio} | ` +
    `${fmtUs(m.a.usec)} vs ${fmtUs(m.b.usec)} | ${cpu} | ${target} | ${met} |`;
}

const HEADER = [
  '| row | P | aijob ops/s | baseline ops/s | ratio (per-round range) | server µs/op (aijob vs baseline) | ' +
    'server CPU µs/op (aijob vs baseline, ratio) | target | met? |',
  '|---|---|---|---|---|---|---|---|---|',
];

function machine() {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) || [])[1] || os.cpus()[0].model;
  return `${os.cpus().length} cores (nproc), ${cpu.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GB RAM, ` +
    `${os.type()} ${os.release()}`;
}

// ---------------------------------------------------------------------------------------

async function loadScripts(admin) {
  const sha = {};
  for (const name of ['ratelimit', 'getorqueue', 'create']) {
    sha[name] = await admin.call('SCRIPT', 'LOAD', fs.readFileSync(path.join(__dirname, 'lua', `${name}.lua`), 'utf8'));
  }
  return sha;
}

async function runComparisons(ctx, lines, log) {
  const families = [rateLimitRows, cacheHitRows, cacheMissRows, createRows, claimRows, chargeRows];
  for (const family of families) {
    for (const depth of PLAN.depths) {
      for (const c of family(ctx, depth)) {
        if (QUICK && c.full) continue;
        if (ONLY && !c.row.includes(ONLY)) continue;
        await ctx.admin.call('FLUSHALL');
        await server.sleep(200); // the module's timer forgets flushed queues
        if (c.setup) await c.setup();
        const m = await pair(ctx.admin, c.A, c.B, PLAN, ctx.pid);
        const line = tableLine(c, m);
        lines.push(line);
        log(line);
      }
    }
  }
}

async function runE2E(ctx, lines, notes, log) {
  const rates = { a: [], b: [] };
  for (let r = 0; r < PLAN.e2eRounds; r++) {
    await ctx.admin.call('FLUSHALL');
    rates.a.push(await e2e.aijob(ctx.port, PLAN.e2eN, E2E_WORKERS, payloads.REQUEST, ctx.next));
    await ctx.admin.call('FLUSHALL');
    rates.b.push(await e2e.bullmq(ctx.port, PLAN.e2eN, E2E_WORKERS, payloads.REQUEST));
  }
  const med = (xs) => require('./lib/pair').median(xs);
  const m = { a: { rate: med(rates.a), usec: null }, b: { rate: med(rates.b), usec: null } };
  const per = rates.a.map((x, i) => x / rates.b[i]);
  Object.assign(m, { ratio: med(per), lo: Math.min(...per), hi: Math.max(...per) });
  const c = { row: `create -> claim -> done, end to end, N=${PLAN.e2eN}, C=${E2E_WORKERS} vs BullMQ (ioredis)`,
    depth: '-', target: { min: 2.5 } };
  const line = tableLine(c, m);
  lines.push(line);
  log(line);
  notes.push(`End to end: jobs/s from the first create to the last completion, ${PLAN.e2eRounds} interleaved ` +
    `round(s) per side; aijob rounds ${rates.a.map(fmtRate).join(', ')}, BullMQ ${rates.b.map(fmtRate).join(', ')}.`);
}

async function runJobLife(ctx, lines, notes, log) {
  const retained = QUICK ? 5000 : 40000;
  for (const next of ctx.next ? [true, false] : [false]) {
    await ctx.admin.call('FLUSHALL');
    await server.sleep(200);
    const m = await e2e.jobLife(ctx.admin, ctx.port, { n: PLAN.e2eN, c: E2E_WORKERS, retained,
      payload: payloads.PAYLOAD_1K, result: payloads.RESULT_1K, next, pid: ctx.pid });
    const target = 15;
    const how = next ? 'JOB.UPDATE ... NEXT' : 'JOB.CLAIM + JOB.UPDATE';
    const line = `| job life, ${how}: server µs per job (every JOB.* command), N=${PLAN.e2eN} created ahead, ` +
      `C=${E2E_WORKERS} blocking workers, ${retained} finished jobs retained, 1 KB payload + 1 KB result | - | - | - | - | ` +
      `${fmtUs(m.perJob)} | ${fmtUs(m.cpuPerJob)} (all the server did) | <= ${target} µs | ${m.perJob <= target ? 'yes' : '**no**'} |`;
    lines.push(line);
    log(line);
    const parts = Object.entries(m.by).sort((a, b) => b[1] - a[1])
      .map(([name, us]) => `${name} ${fmtUs(us)} µs (${m.calls[name].toFixed(2)} calls)`);
    notes.push(`Job life with ${how}: per job, ${parts.join(', ')}.`);
  }
}

// Issue 17's measured prototype: the same life and the same finished record in the fewest
// plain commands (bench/lib/floor.js), the floor of any design on native types.
async function runFloor(ctx, lines, notes, log) {
  const retained = QUICK ? 5000 : 40000;
  await ctx.admin.call('FLUSHALL');
  await server.sleep(200);
  const life = await floor.jobLife(ctx.admin, ctx.port, { n: PLAN.e2eN, c: E2E_WORKERS, retained,
    payload: payloads.PAYLOAD_1K, result: payloads.RESULT_1K, pid: ctx.pid });
  const lifeLine = `| native floor of a job life: the same life in plain HSET, ZADD, BZPOPMIN, ZREM, PEXPIREAT (one index ` +
    `per status, no logic, events, counters or atomicity), N=${PLAN.e2eN} created ahead, C=${E2E_WORKERS} blocking ` +
    `workers, ${retained} retained | - | - | - | - | ${fmtUs(life.perJob)} | ${fmtUs(life.cpuPerJob)} (all the server did) ` +
    `| <= 15 µs | ${life.perJob <= 15 ? 'yes' : '**no**'} |`;
  lines.push(lifeLine);
  log(lifeLine);
  const parts = Object.entries(life.by).sort((a, b) => b[1] - a[1]).map(([name, us]) => `${name} ${fmtUs(us)} µs`);
  notes.push(`Native floor of a job life: per job, ${parts.join(', ')}.`);
  const mem = await floor.memoryPerJob(ctx.admin, ctx.pool[0], PLAN.memN, payloads.PAYLOAD_1K, payloads.RESULT_1K);
  const memLine = `| native floor of memory per finished job: the same record's fields in HSET, one index entry, a TTL, ` +
    `${mem.n} jobs | - | ${Math.round(mem.bytes)} B/job | ${mem.raw} B raw | ${mem.ratio.toFixed(2)}x | - | - | <= 1.3x | ` +
    `${mem.ratio <= 1.3 ? 'yes' : '**no**'} |`;
  lines.push(memLine);
  log(memLine);
}

async function runMemory(ctx, lines, notes, log) {
  const m = await memory.perJob(ctx.admin, ctx.pool[0], PLAN.memN, payloads.PAYLOAD_1K, payloads.RESULT_1K);
  const line = `| memory per finished job (1 KB payload + 1 KB result), ${m.n} jobs | - | ${Math.round(m.bytes)} B/job | ` +
    `${m.raw} B raw | ${m.ratio.toFixed(2)}x (${m.ratioNoStream.toFixed(2)}x without the events stream) | - | - | ` +
    `<= 1.3x | ${m.ratio <= 1.3 ? 'yes' : '**no**'} |`;
  lines.push(line);
  log(line);
  notes.push(`Memory: used_memory delta over ${m.n} finished jobs; the events stream (capped near ` +
    `aijob.events-maxlen = 10000 entries) is ${Math.round(m.stream)} B/job of it at this N.`);
}

/**
 * Flows (docs/flows.md): the server µs of the one JOB.UPDATE STATUS done that finishes a
 * job with `n` dependents, each released to `queued` in that step. Dependents are made
 * ahead (pipelined JOB.CREATE ... AFTER); the parent is the only claimable job.
 */
async function finishWithDependents(ctx, q, n) {
  await ctx.admin.call('JOB.CREATE', q, 'PAYLOAD', payloads.REQUEST, 'ID', 'parent');
  await prefill(ctx.pool[0], n, () => ['JOB.CREATE', q, 'PAYLOAD', payloads.REQUEST, 'AFTER', 'parent']);
  const got = await ctx.admin.call('JOB.CLAIM', q, 'WORKER', 'w', 'LEASE', '3600000');
  if (field(got[0], 'id') !== 'parent') throw new Error(`flows row: claimed ${field(got[0], 'id')}, not the parent`);
  const before = (await server.commandStats(ctx.admin))['job.update'] || { usec: 0, calls: 0 };
  await ctx.admin.call('JOB.UPDATE', q, 'parent', 'TOKEN', field(got[0], 'token'), 'STATUS', 'done',
    'RESULT', payloads.RESULT_1K);
  const after = (await server.commandStats(ctx.admin))['job.update'];
  if (after.calls !== before.calls + 1) throw new Error('flows row: the finish was not counted once');
  const stats = await ctx.admin.call('QUEUE.STATS', q);
  const queued = stats[stats.indexOf('queued') + 1];
  if (queued !== n) throw new Error(`flows row: ${queued} dependents released, not ${n}`);
  return after.usec - before.usec;
}

async function runFlows(ctx, lines, notes, log) {
  const med = (xs) => require('./lib/pair').median(xs);
  for (const n of [1, 100, 10000]) {
    const rounds = n >= 10000 ? Math.min(PLAN.rounds, 3) : PLAN.rounds;
    const a = [];
    const b = [];
    for (let r = 0; r < rounds; r++) {
      await ctx.admin.call('FLUSHALL');
      await server.sleep(200);
      b.push(await finishWithDependents(ctx, 'plainfinish', 0));
      a.push(await finishWithDependents(ctx, 'flowfinish', n));
    }
    const [ua, ub] = [med(a), med(b)];
    const perDependent = (ua - ub) / n;
    const line = `| JOB.UPDATE done of a job with ${n} dependent(s), each released to queued in the step, ` +
      `vs of a job without (${rounds} rounds) | 1 | - | - | ${(ua / ub).toFixed(1)}x | ${fmtUs(ua)} vs ${fmtUs(ub)} | - | ` +
      '- | - |';
    lines.push(line);
    log(line);
    notes.push(`Finishing a job with ${n} dependent(s): ${fmtUs(ua)} µs (rounds ${a.map(fmtUs).join(', ')}), ` +
      `a job without ${fmtUs(ub)} µs: about ${fmtUs(perDependent)} µs per dependent released.`);
  }
}

async function main() {
  if (!fs.existsSync(MODULE)) throw new Error(`no module at ${MODULE} (cargo build --release -p aijob)`);
  const t0 = Date.now();
  const srv = await server.start(MODULE, path.join(__dirname, '..', 'redis.conf'));
  const stop = async () => { await srv.stop(); };
  process.on('SIGINT', () => { stop().finally(() => process.exit(130)); });
  const log = (s) => process.stderr.write(`${s}\n`);
  const pool = Array.from({ length: CLIENTS }, () => new Redis({ port: srv.port }));
  const ctx = { port: srv.port, pid: srv.pid, admin: srv.admin, pool, sha: await loadScripts(srv.admin),
    next: await knowsNext(srv.admin) };
  if (!ctx.next) log('bench: this module has no JOB.UPDATE ... NEXT: its rows are left out, workers claim and update');
  log(`bench: redis-server ${srv.version} (pid ${srv.pid}) on port ${srv.port}, module ${MODULE}`);
  log(`bench: --save "" --appendonly no (no persistence, no replicas), ${srv.settings || 'default data settings'} ` +
    '(from redis.conf): every side runs on this one server');
  const lines = [...HEADER];
  const notes = [];
  try {
    await runComparisons(ctx, lines, log);
    if (!ONLY || 'job life'.includes(ONLY)) await runJobLife(ctx, lines, notes, log);
    if (!ONLY || 'end to end'.includes(ONLY)) await runE2E(ctx, lines, notes, log);
    if (!ONLY || 'memory'.includes(ONLY)) await runMemory(ctx, lines, notes, log);
    if (!ONLY || 'native floor'.includes(ONLY)) await runFloor(ctx, lines, notes, log);
    if (!ONLY || 'flows dependents'.includes(ONLY)) await runFlows(ctx, lines, notes, log);
  } finally {
    for (const c of pool) c.disconnect();
    await stop();
  }
  const minutes = ((Date.now() - t0) / 60000).toFixed(1);
  const report = render(srv, lines, notes, minutes);
  process.stdout.write(report);
  const out = path.join(__dirname, 'results', ONLY ? 'latest-only.md' : QUICK ? 'latest-quick.md' : 'latest.md');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, report);
  log(`bench: wrote ${path.relative(process.cwd(), out)} (${minutes} min)`);
}

function render(srv, lines, notes, minutes) {
  const when = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return [
    `# aijob bench${QUICK ? ' (quick)' : ''}`,
    '',
    `${when}; \`make bench${QUICK ? '-quick' : ''}\`; ${machine()}; redis-server ${srv.version} started by the ` +
      `bench with \`--save "" --appendonly no\` (no persistence, no replicas)` +
      `${srv.settings ? ` and redis.conf's \`${srv.settings}\`` : ''}; node ${process.version}; ${minutes} min.`,
    '',
    ...lines,
    '',
    `Ops/s are medians of ${PLAN.rounds} interleaved rounds (A B A B ...) of about ${PLAN.seconds} s per side; ` +
      'the ratio is the median of the rounds\' A/B ratios, the range in brackets is over the rounds. ' +
      'P is the pipeline depth. ' +
      `Single commands are driven by redis-benchmark (-c ${CLIENTS}); rows naming round trips or ioredis by ioredis ` +
      `(${CLIENTS} connections, P operations per connection at a time, one pipeline per step). Server µs/op: ` +
      'INFO commandstats usec of the commands an operation runs (a script counts as its EVALSHA) per operation. ' +
      'Server CPU µs/op: the CPU time of the server\'s main thread per operation (schedstat), all it did for it; the ' +
      'ratio in brackets is baseline CPU over aijob CPU, the throughput ratio of a server-bound run.',
    ...notes.map((n) => `${n}`),
    '',
  ].join('\n');
}

main().catch((e) => {
  process.stderr.write(`bench: ${e.stack || e}\n`);
  process.exit(1);
});
