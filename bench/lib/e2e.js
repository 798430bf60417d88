// End to end: N jobs through create -> claim -> done with C concurrent workers, from the
// first create to the last completion, in one Node process with ioredis on both sides.
// aijob: a producer pipelines JOB.CREATE in batches of 100 while C workers loop as
// aijob-fetcher does: JOB.CLAIM BLOCK 1000 on a connection of the worker's own for a first
// job and after an empty hand, and JOB.UPDATE ... STATUS done ... NEXT (finish and claim in
// one command, not blocking) on one connection all workers share, auto-pipelined as BullMQ's
// Worker shares its; against a module without NEXT, JOB.CLAIM BLOCK 1000 + JOB.UPDATE.
// BullMQ: Queue.addBulk in batches of 100, one Worker with concurrency C and a no-op
// processor that returns the same small result.

'use strict';

const Redis = require('ioredis');
const { Queue, Worker } = require('bullmq');
const { commandStats, cpuMicros } = require('./server');

const BATCH = 100;
const RESULT = '{"ok":true}';
let serial = 0;

const now = () => process.hrtime.bigint();
const secs = (a, b) => Number(b - a) / 1e9;

function field(rec, name) {
  for (let i = 0; i + 1 < rec.length; i += 2) if (rec[i] === name) return rec[i + 1];
  return undefined;
}

/**
 * One worker's loop until `state.done` reaches `n`: JOB.CLAIM ... BLOCK 1000 for a first
 * job, then (`next`) JOB.UPDATE ... STATUS done ... NEXT ... BLOCK 1000, which finishes it
 * and hands back the next one, or (without `next`) JOB.UPDATE ... STATUS done and a new
 * claim. Calls `onDone` after each finish.
 */
async function workLoop(conn, { q, worker, result, n, state, next, onDone }) {
  let job = null;
  const claimArgs = ['WORKER', worker, 'BLOCK', '1000'];
  while (state.done < n) {
    try {
      if (!job) {
        const got = await conn.call('JOB.CLAIM', q, ...claimArgs);
        if (!got || !got.length) continue;
        [job] = got;
      }
      const finish = ['JOB.UPDATE', q, field(job, 'id'), 'TOKEN', field(job, 'token'), 'STATUS', 'done',
        'RESULT', result];
      if (next) {
        const [, got] = await conn.call(...finish, 'NEXT', ...claimArgs);
        job = got && got.length ? got[0] : null;
      } else {
        await conn.call(...finish);
        job = null;
      }
    } catch (e) {
      if (state.done >= n) return; // disconnected at the end
      throw e;
    }
    state.done += 1;
    onDone();
  }
}

/**
 * One fetcher-like worker until `state.done` reaches `n`: blocking claims on `blocking`, its
 * own connection, only when its hand is empty; each finish with the next claim (NEXT,
 * COUNT 1, no BLOCK) on `shared`.
 */
async function sharedLoop(blocking, shared, { q, worker, result, n, state, onDone }) {
  let job = null;
  while (state.done < n) {
    try {
      if (!job) {
        const got = await blocking.call('JOB.CLAIM', q, 'WORKER', worker, 'BLOCK', '1000');
        if (!got || !got.length) continue;
        [job] = got;
      }
      const [, got] = await shared.call('JOB.UPDATE', q, field(job, 'id'), 'TOKEN', field(job, 'token'),
        'STATUS', 'done', 'RESULT', result, 'NEXT', 'WORKER', worker);
      job = got && got.length ? got[0] : null;
    } catch (e) {
      if (state.done >= n) return; // disconnected at the end
      throw e;
    }
    state.done += 1;
    onDone();
  }
}

async function aijob(port, n, c, payload, next = true) {
  const q = `e2e${serial++}`;
  const producer = new Redis({ port });
  const shared = new Redis({ port, enableAutoPipelining: true });
  const workers = Array.from({ length: c }, () => new Redis({ port }));
  await Promise.all([producer, shared, ...workers].map((r) => r.ping()));
  const state = { done: 0 };
  let end = null;
  const onDone = () => {
    if (state.done === n) {
      end = now();
      for (const w of workers) w.disconnect(); // wakes the others out of BLOCK
    }
  };
  const work = (conn, i) => (next
    ? sharedLoop(conn, shared, { q, worker: `w${i}`, result: RESULT, n, state, onDone })
    : workLoop(conn, { q, worker: `w${i}`, result: RESULT, n, state, next, onDone }));
  const produce = async () => {
    for (let i = 0; i < n; i += BATCH) {
      const p = producer.pipeline();
      for (let j = i; j < Math.min(n, i + BATCH); j++) p.call('JOB.CREATE', q, 'PAYLOAD', payload);
      for (const [err] of await p.exec()) if (err) throw err;
    }
  };
  const start = now();
  await Promise.all([...workers.map(work), produce()]);
  producer.disconnect();
  shared.disconnect();
  return n / secs(start, end);
}

async function bullmq(port, n, c, payload) {
  const name = `e2e${serial++}`;
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const data = JSON.parse(payload);
  const queue = new Queue(name, { connection });
  const worker = new Worker(name, async () => JSON.parse(RESULT), { connection, concurrency: c, autorun: false });
  worker.on('error', (e) => { throw e; });
  let end = null;
  let done = 0;
  const finished = new Promise((resolve) => {
    worker.on('completed', () => {
      if (++done === n) {
        end = now();
        resolve();
      }
    });
  });
  await queue.waitUntilReady();
  await worker.waitUntilReady();
  const start = now();
  const running = worker.run();
  for (let i = 0; i < n; i += BATCH) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) jobs.push({ name: 'job', data });
    await queue.addBulk(jobs);
  }
  await finished;
  await worker.close();
  await running;
  await queue.close();
  return n / secs(start, end);
}

/**
 * Server time of one job's life the way workers really run: `retained` finished jobs of
 * an earlier round stay in the queue (default retention), `n` jobs (1 KB payload) are
 * created ahead of the workers, then `c` workers drain the queue with blocking claims and
 * finish each job with a 1 KB result (`next`: with JOB.UPDATE ... NEXT, else with JOB.CLAIM
 * and JOB.UPDATE). INFO commandstats is reset once before the creates:
 * the usec of every JOB.* command, divided by `n`, is the job's life in server µs.
 * Returns { perJob, by: { 'job.create': usPerJob, ... }, calls: { name: callsPerJob }, cpuPerJob }, the
 * last the server's main-thread CPU time per job over the same span (commands, I/O, all).
 */
async function jobLife(admin, port, { n, c, retained, payload, result, next, pid }) {
  const q = `life${serial++}`;
  const conn = new Redis({ port });
  const workers = Array.from({ length: c }, () => new Redis({ port }));
  await Promise.all([conn, ...workers].map((r) => r.ping()));
  const createAll = async (count) => {
    for (let i = 0; i < count; i += 1000) {
      const p = conn.pipeline();
      for (let j = i; j < Math.min(count, i + 1000); j++) p.call('JOB.CREATE', q, 'PAYLOAD', payload);
      for (const [err] of await p.exec()) if (err) throw err;
    }
  };
  // an earlier round, finished and retained
  await createAll(retained);
  for (let left = retained; left > 0;) {
    const got = await conn.call('JOB.CLAIM', q, 'WORKER', 'w', 'COUNT', String(Math.min(1000, left)));
    if (!got.length) throw new Error('job life: the retained round ran dry');
    const p = conn.pipeline();
    for (const rec of got) {
      p.call('JOB.UPDATE', q, field(rec, 'id'), 'TOKEN', field(rec, 'token'), 'STATUS', 'done', 'RESULT', result);
    }
    for (const [err] of await p.exec()) if (err) throw err;
    left -= got.length;
  }
  await admin.call('CONFIG', 'RESETSTAT');
  const cpu0 = cpuMicros(pid);
  await createAll(n);
  const state = { done: 0 };
  const work = (w, i) => workLoop(w, { q, worker: `w${i}`, result, n, state, next,
    onDone: () => {
      if (state.done === n) for (const x of workers) x.disconnect();
    } });
  await Promise.all(workers.map(work));
  const cpuPerJob = (cpuMicros(pid) - cpu0) / n;
  conn.disconnect();
  const stats = await commandStats(admin);
  const by = {};
  const calls = {};
  let perJob = 0;
  for (const [name, s] of Object.entries(stats)) {
    if (!name.startsWith('job.')) continue;
    if (s.failed > 0) throw new Error(`job life: ${s.failed} ${name} calls answered an error`);
    by[name] = s.usec / n;
    calls[name] = s.calls / n;
    perJob += s.usec / n;
  }
  return { perJob, by, calls, cpuPerJob };
}

module.exports = { aijob, bullmq, jobLife };
