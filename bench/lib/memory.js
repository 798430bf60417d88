// Memory per finished job: N jobs with a 1 KB payload, claimed and finished with a 1 KB
// result (all pipelined), kept for the default retention; used_memory after minus before,
// divided by N, against the 2 KB of payload and result. The events stream
// (aijob:{Q}:events, capped near aijob.events-maxlen) is reported apart: its size is
// fixed by the cap, so its share per job shrinks as N grows.

'use strict';

const { usedMemory, sleep } = require('./server');

const BATCH = 1000;

function field(rec, name) {
  for (let i = 0; i + 1 < rec.length; i += 2) if (rec[i] === name) return rec[i + 1];
  return undefined;
}

async function fill(conn, q, n, payload, result) {
  for (let i = 0; i < n; i += BATCH) {
    const p = conn.pipeline();
    for (let j = i; j < Math.min(n, i + BATCH); j++) p.call('JOB.CREATE', q, 'PAYLOAD', payload);
    await p.exec();
  }
  for (let left = n; left > 0;) {
    const got = await conn.call('JOB.CLAIM', q, 'WORKER', 'w', 'LEASE', '3600000', 'COUNT', String(Math.min(BATCH, left)));
    if (!got.length) throw new Error('memory: the queue ran dry');
    const p = conn.pipeline();
    for (const rec of got) {
      p.call('JOB.UPDATE', q, field(rec, 'id'), 'TOKEN', field(rec, 'token'), 'STATUS', 'done', 'RESULT', result);
    }
    for (const [err] of await p.exec()) if (err) throw err;
    left -= got.length;
  }
}

async function perJob(admin, conn, n, payload, result) {
  await admin.call('FLUSHALL');
  await sleep(300); // let the module's timer forget the flushed queues
  const before = await usedMemory(admin);
  const q = 'mem';
  await fill(conn, q, n, payload, result);
  const after = await usedMemory(admin);
  const stream = Number(await admin.call('MEMORY', 'USAGE', `aijob:{${q}}:events`, 'SAMPLES', '0')) || 0;
  const raw = Buffer.byteLength(payload) + Buffer.byteLength(result);
  const bytes = (after - before) / n;
  return { n, raw, bytes, stream: stream / n, ratio: bytes / raw, ratioNoStream: (bytes - stream / n) / raw };
}

module.exports = { perJob };
