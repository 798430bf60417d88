// End to end: N jobs through create -> claim -> done with C concurrent workers, from the
// first create to the last completion, in one Node process with ioredis on both sides.
// aijob: a producer pipelines JOB.CREATE in batches of 100 while C workers, each on its
// own connection, loop JOB.CLAIM BLOCK 1000 + JOB.UPDATE STATUS done.
// BullMQ: Queue.addBulk in batches of 100, one Worker with concurrency C and a no-op
// processor that returns the same small result.

'use strict';

const Redis = require('ioredis');
const { Queue, Worker } = require('bullmq');

const BATCH = 100;
const RESULT = '{"ok":true}';
let serial = 0;

const now = () => process.hrtime.bigint();
const secs = (a, b) => Number(b - a) / 1e9;

function field(rec, name) {
  for (let i = 0; i + 1 < rec.length; i += 2) if (rec[i] === name) return rec[i + 1];
  return undefined;
}

async function aijob(port, n, c, payload) {
  const q = `e2e${serial++}`;
  const producer = new Redis({ port });
  const workers = Array.from({ length: c }, () => new Redis({ port }));
  await Promise.all([producer, ...workers].map((r) => r.ping()));
  let done = 0;
  let end = null;
  const work = async (conn, i) => {
    while (done < n) {
      let got;
      try {
        got = await conn.call('JOB.CLAIM', q, 'WORKER', `w${i}`, 'BLOCK', '1000');
      } catch (e) {
        if (done >= n) return; // disconnected at the end
        throw e;
      }
      if (!got || !got.length) continue;
      const rec = got[0];
      await conn.call('JOB.UPDATE', q, field(rec, 'id'), 'TOKEN', field(rec, 'token'), 'STATUS', 'done',
        'RESULT', RESULT);
      if (++done === n) {
        end = now();
        for (const w of workers) w.disconnect(); // wakes the others out of BLOCK
      }
    }
  };
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

module.exports = { aijob, bullmq };
