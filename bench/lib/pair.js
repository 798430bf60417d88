// Measures two sides interleaved (A B A B ...) so the machine's drift hits both alike.
// Besides the rates, each run reads the server's main-thread CPU time (Linux schedstat):
// the server's work per operation, which time given to other processes does not move.
// Each side is first calibrated (a short warm-up run), then every round gives each side
// about `seconds` of work. Rates and server µs per operation (from INFO commandstats,
// reset before each run) are the medians over the rounds; the ratio is the median of the
// rounds' A/B ratios.

'use strict';

const { commandStats, cpuMicros } = require('./server');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * Server µs per operation of the commands in `counts` since the last CONFIG RESETSTAT.
 * Fails when any of them answered an error: redis-benchmark does not look at replies, and
 * a fast error must never pass for a fast command.
 */
async function usecPerOp(admin, label, counts, ops) {
  const stats = await commandStats(admin);
  let usec = 0;
  for (const c of counts) {
    const s = stats[c] || { calls: 0, usec: 0, failed: 0 };
    if (s.failed > 0) throw new Error(`${label}: ${s.failed} of ${s.calls} ${c} calls answered an error`);
    if (s.calls === 0) throw new Error(`${label}: no ${c} calls seen`);
    usec += s.usec;
  }
  return usec / ops;
}

/** INFO aijob counters as { name: number } */
async function moduleCounters(admin) {
  const out = {};
  for (const m of (await admin.info('aijob')).matchAll(/^aijob_(\w+):(\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** Fails when a counter in `side.unchanged` (e.g. cache_misses for a hit row) moved. */
async function checkPath(admin, side, before) {
  if (!side.unchanged) return;
  const after = await moduleCounters(admin);
  for (const name of side.unchanged) {
    if (after[name] !== before[name]) {
      throw new Error(`${side.label}: aijob_${name} moved (${before[name]} -> ${after[name]}): not the path meant`);
    }
  }
}

async function measure(admin, side, n, pid) {
  if (side.prepare) await side.prepare(n);
  const before = side.unchanged ? await moduleCounters(admin) : null;
  await admin.call('CONFIG', 'RESETSTAT');
  const cpu0 = cpuMicros(pid);
  const seconds = await side.run(n);
  const cpu = (cpuMicros(pid) - cpu0) / n;
  const usec = await usecPerOp(admin, side.label, side.counts, n);
  await checkPath(admin, side, before);
  if (side.after) await side.after(admin);
  return { rate: n / seconds, usec, cpu };
}

function sizeFor(rate, plan) {
  return Math.max(plan.minOps, Math.min(plan.maxOps, Math.round(rate * plan.seconds)));
}

/**
 * plan: { seconds, rounds, calOps, minOps, maxOps }
 * returns { a, b, ratio, lo, hi } with a/b = { rate, usec } medians; lo/hi the range of
 * the per-round ratios.
 */
async function pair(admin, A, B, plan, pid) {
  const cal = [];
  for (const side of [A, B]) cal.push((await measure(admin, side, plan.calOps, pid)).rate);
  const runs = [[], []];
  for (let r = 0; r < plan.rounds; r++) {
    for (let s = 0; s < 2; s++) {
      const side = s === 0 ? A : B;
      runs[s].push(await measure(admin, side, sizeFor(cal[s], plan), pid));
    }
  }
  const summary = (xs) => ({
    rate: median(xs.map((x) => x.rate)),
    usec: median(xs.map((x) => x.usec)),
    cpu: median(xs.map((x) => x.cpu)),
  });
  const a = summary(runs[0]);
  const b = summary(runs[1]);
  // each round's A and B ran back to back: their ratio cancels what drifted between
  // rounds, and the median drops a round that a burst of other work hit on one side
  const perRound = runs[0].map((x, i) => x.rate / runs[1][i].rate);
  // the server's CPU time per operation, B's over A's: the throughput ratio a server that
  // is the bottleneck would show, unmoved by time the machine gave to other work
  const cpuRatio = median(runs[0].map((x, i) => runs[1][i].cpu / x.cpu));
  return { a, b, ratio: median(perRound), lo: Math.min(...perRound), hi: Math.max(...perRound), cpuRatio };
}

module.exports = { pair, median };
