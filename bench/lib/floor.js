// The floor of native types (issue 17's measured prototype): a job's life and a finished
// job's memory written with the fewest plain Redis commands that still keep what aijob keeps
// (the record as a hash HGETALL shows, one index per status, the finished job's TTL), with no
// logic at all: no validation, no events, no counters, no groups, no fencing, no atomicity.
// Whatever aijob does on native types costs at least this; a target below the floor needs
// another storage model.

'use strict';

const Redis = require('ioredis');
const { commandStats, cpuMicros, usedMemory, sleep } = require('./server');

let serial = 0;

function recordFields(id, seq, payload, now) {
  return ['status', 'queued', 'priority', 'normal', 'payload', payload, 'attempts', '0', 'max_attempts', '3',
    'cost', '1', 'percent', '0', 'created_at', now, 'updated_at', now, 'seq', String(seq)];
}

function create(p, key, q, seq, payload) {
  const id = `${q}-${seq}`;
  const now = String(Date.now());
  p.hset(key(id), ...recordFields(id, seq, payload, now));
  p.zadd(`${q}:queued`, seq, id);
}

// The claim's writes for `id` (popped from the queued index already).
function start(p, key, q, id, worker) {
  const now = Date.now();
  p.hset(key(id), 'status', 'running', 'attempts', '1', 'token', 'f'.repeat(32), 'worker', worker,
    'started_at', String(now), 'lease_until', String(now + 30000), 'updated_at', String(now));
  p.zadd(`${q}:leases`, now + 30000, id);
}

function finish(p, key, q, id, result) {
  const now = Date.now();
  const until = now + 86400000;
  p.hset(key(id), 'status', 'done', 'result', result, 'finished_at', String(now), 'updated_at', String(now),
    'expire_at', String(until));
  p.zrem(`${q}:leases`, id);
  p.zadd(`${q}:expiry`, until, id);
  p.pexpireat(key(id), until + 60000);
}

async function createAll(conn, key, q, from, count, payload) {
  for (let i = 0; i < count; i += 1000) {
    const p = conn.pipeline();
    for (let j = i; j < Math.min(count, i + 1000); j++) create(p, key, q, from + j, payload);
    for (const [err] of await p.exec()) if (err) throw err;
  }
}

/**
 * A job's life in native commands, measured as bench/lib/e2e.js's jobLife measures aijob's:
 * `retained` finished jobs first, `n` created ahead, `c` workers that block on BZPOPMIN and
 * send a job's finish with their next pop in one pipeline (one round trip per job, as
 * JOB.UPDATE ... NEXT). Returns { perJob, cpuPerJob, by }: the commandstats usec of every
 * command per job, and the server's main-thread CPU per job.
 */
async function jobLife(admin, port, { n, c, retained, payload, result, pid }) {
  const q = `{floor${serial++}}`;
  const key = (id) => `${q}:job:${id}`;
  const conn = new Redis({ port });
  await createAll(conn, key, q, 0, retained, payload);
  for (let left = retained; left > 0;) {
    const got = await conn.zpopmin(`${q}:queued`, Math.min(1000, left));
    const p = conn.pipeline();
    for (let i = 0; i < got.length; i += 2) {
      start(p, key, q, got[i], 'w');
      finish(p, key, q, got[i], result);
    }
    await p.exec();
    left -= got.length / 2;
  }
  await admin.call('CONFIG', 'RESETSTAT');
  const cpu0 = cpuMicros(pid);
  await createAll(conn, key, q, retained, n, payload);
  const state = { done: 0 };
  const workers = Array.from({ length: c }, () => new Redis({ port }));
  const work = async (w, i) => {
    let popped = await w.bzpopmin(`${q}:queued`, 1);
    while (state.done < n) {
      if (!popped) {
        popped = await w.bzpopmin(`${q}:queued`, 1);
        continue;
      }
      const id = popped[1];
      const p = w.pipeline();
      start(p, key, q, id, `w${i}`);
      finish(p, key, q, id, result);
      await p.exec();
      state.done += 1;
      if (state.done >= n) break;
      popped = await w.bzpopmin(`${q}:queued`, 1);
    }
  };
  await Promise.all(workers.map(work));
  const cpuPerJob = (cpuMicros(pid) - cpu0) / n;
  for (const w of workers) w.disconnect();
  conn.disconnect();
  const stats = await commandStats(admin);
  const by = {};
  let perJob = 0;
  for (const name of ['hset', 'zadd', 'bzpopmin', 'zrem', 'pexpireat']) {
    const s = stats[name];
    if (!s) continue;
    if (s.failed > 0) throw new Error(`native floor: ${s.failed} ${name} calls answered an error`);
    by[name] = s.usec / n;
    perJob += s.usec / n;
  }
  return { perJob, cpuPerJob, by };
}

/**
 * Memory of a finished job in native types: the very fields of a finished aijob record
 * (HGETALL of one made by the module), written N times under new keys with one index entry
 * (expiry) and a TTL, and nothing else. Returns bytes per job and the ratio to the raw bytes.
 */
async function memoryPerJob(admin, conn, n, payload, result) {
  await admin.call('FLUSHALL');
  await sleep(300);
  await conn.call('JOB.CREATE', 'floormodel', 'PAYLOAD', payload);
  const [rec] = await conn.call('JOB.CLAIM', 'floormodel', 'WORKER', 'w');
  const get = (name) => { for (let i = 0; i + 1 < rec.length; i += 2) if (rec[i] === name) return rec[i + 1]; };
  await conn.call('JOB.UPDATE', 'floormodel', get('id'), 'TOKEN', get('token'), 'STATUS', 'done', 'RESULT', result);
  const fields = await conn.call('HGETALL', `aijob:{floormodel}:job:${get('id')}`);
  await admin.call('FLUSHALL');
  await sleep(300);
  const before = await usedMemory(admin);
  const until = Date.now() + 86400000;
  for (let i = 0; i < n; i += 1000) {
    const p = conn.pipeline();
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      const id = `0192f0c1-7e4b-7c2a-9a1d-${String(j).padStart(12, '0')}`;
      const key = `aijob:{mem}:job:${id}`;
      p.hset(key, ...fields);
      p.zadd('aijob:{mem}:expiry', until + j, id);
      p.pexpireat(key, until + 60000);
    }
    for (const [err] of await p.exec()) if (err) throw err;
  }
  const after = await usedMemory(admin);
  const raw = Buffer.byteLength(payload) + Buffer.byteLength(result);
  const bytes = (after - before) / n;
  return { n, raw, bytes, ratio: bytes / raw };
}

module.exports = { jobLife, memoryPerJob };
