// The improve-sketch flow on aijob with ioredis: cache or enqueue, then progress over pub/sub.
//
// Before (the seeds): GET improve_sketch:v1:<sha256("png:svg:hints")>; on a miss enqueue a
// Sidekiq job that SETs status keys and broadcasts each step on its own channel; identical
// requests made one paid Gemini call each, and "a:b"+"" collided with "a"+":b".
//
// After: one CACHE.GETORQUEUE (KEY parts are length-prefixed, so no collisions); every change
// of the job is published on aijob:{Q}:job:<id> by the module itself, whoever the worker is
// (aijob-fetcher, started by `make run`).
//
// Run against `make run`:  (cd examples/node && npm install && node improve-sketch.js)
// Each step prints one JSON line.

"use strict";

const Redis = require("ioredis");

const QUEUE = "improve_sketch";
const url = process.env.REDIS_URL || "redis://127.0.0.1:6379";

// A map reply arrives as a flat array in RESP2 (ioredis's protocol).
function asObject(flat) {
  if (!flat) return null;
  const o = {};
  for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
}

function emit(fields) {
  console.log(JSON.stringify(fields));
}

// The GraphQL mutation's body: the cached result, or the job computing it.
async function improveSketch(redis, { png, svg, hints }) {
  const payload = {
    provider: "echo", // "gemini" in production: the fetcher calls it with its own key
    model: "gemini-2.5-flash",
    request: { text: `Improve this sketch. Hints: ${hints}`, delay_ms: Number(process.env.SKETCH_DELAY_MS || 1500) },
  };
  const [kind, id, result] = await redis.call(
    "CACHE.GETORQUEUE", QUEUE, "PAYLOAD", JSON.stringify(payload),
    "CACHETTL", 7 * 24 * 3600 * 1000, // the seed's 7-day cache
    "KEY", png, svg, hints,
  );
  return kind === "hit" ? { kind, result: JSON.parse(result) } : { kind, id };
}

// Follows one job's events until it finishes. Subscribes first, then reads the job once:
// pub/sub is fire-and-forget, so an event sent before the subscription is caught by the read.
function follow(redis, id, timeoutMs) {
  const channel = `aijob:{${QUEUE}}:job:${id}`;
  const sub = redis.duplicate();
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (how, value) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sub.disconnect();
      how(value);
    };
    const timer = setTimeout(
      () => finish(reject, new Error("no worker finished the job: is the fetcher running? (`make run` starts it)")),
      timeoutMs,
    );
    sub.on("message", (_ch, message) => {
      const e = JSON.parse(message);
      emit({ step: "event", type: e.type, status: e.status, progress: e.progress, percent: e.percent });
      if (["done", "error", "canceled"].includes(e.type)) finish(resolve, e);
    });
    sub
      .subscribe(channel)
      .then(() => redis.call("JOB.GET", QUEUE, id))
      .then((flat) => {
        const job = asObject(flat);
        if (job && ["done", "error", "canceled"].includes(job.status)) {
          finish(resolve, { type: job.status, result: job.result && JSON.parse(job.result), error: job.error });
        }
      })
      .catch((err) => finish(reject, err));
  });
}

async function main() {
  const redis = new Redis(url);
  const sketch = {
    png: "iVBORw0KGgo...",
    svg: '<svg><path d="M0 0L10 10"/></svg>',
    hints: process.env.SKETCH_HINTS || `make it cleaner (${Date.now()})`,
  };
  try {
    const first = await improveSketch(redis, sketch);
    emit({ step: "submit", ...first });
    if (first.kind !== "hit") {
      const end = await follow(redis, first.id, Number(process.env.TIMEOUT_MS || 30000));
      emit({ step: "finished", status: end.type, result: end.result, error: end.error });
      if (end.type !== "done") process.exitCode = 1;
      emit({ step: "submit-after", ...(await improveSketch(redis, sketch)) });
    }
  } catch (err) {
    emit({ step: "failed", error: err.message });
    process.exitCode = 1;
  } finally {
    redis.disconnect();
  }
}

main();
