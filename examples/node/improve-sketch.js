// The improve-sketch flow on aijob with ioredis: cache or enqueue, then progress over pub/sub.
//
// Before (the seeds): GET improve_sketch:v1:<sha256("png:svg:hints")>; on a miss enqueue a
// Sidekiq job that SETs status keys and broadcasts each step on its own channel; identical
// requests made one paid Gemini call each, and "a:b"+"" collided with "a"+":b".
//
// After: one CACHE.GETORQUEUE (KEY parts are length-prefixed, so no collisions); every change
// of the job (created, running, progress, done, error...) is published on aijob:{Q}:job:<id>
// by the module itself, whoever the worker is (aijob-fetcher, started by `make run`).
//
// Run against `make run`:  (cd examples/node && npm install && node improve-sketch.js)
// Each step prints one JSON line.

"use strict";

const Redis = require("ioredis");

const QUEUE = "improve_sketch";
const url = process.env.REDIS_URL || "redis://127.0.0.1:6379";

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

// Job events, the way a web process would forward them to its browsers (ActionCable in the
// seed): one connection holds one pattern subscription per queue, made before any job is
// created, and hands each event to whoever follows that job id. Nothing is missed between
// creating a job and following it: events that arrive first wait in a short backlog.
class JobEvents {
  constructor(redis, queue) {
    this.sub = redis.duplicate();
    this.followers = new Map(); // id -> callback
    this.backlog = new Map(); // id -> events not yet followed
    this.sub.on("pmessage", (_pattern, _channel, message) => {
      const e = JSON.parse(message);
      const f = this.followers.get(e.id);
      if (f) return f(e);
      const list = this.backlog.get(e.id) || [];
      list.push(e);
      this.backlog.set(e.id, list);
      setTimeout(() => this.backlog.delete(e.id), 10000).unref();
    });
    this.ready = this.sub.psubscribe(`aijob:{${queue}}:job:*`);
  }

  // Resolves with the job's last event once it finishes.
  follow(id, onEvent, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.followers.delete(id);
        reject(new Error("no worker finished the job: is the fetcher running? (`make run` starts it)"));
      }, timeoutMs);
      const handle = (e) => {
        onEvent(e);
        if (["done", "error", "canceled"].includes(e.type)) {
          clearTimeout(timer);
          this.followers.delete(id);
          resolve(e);
        }
      };
      this.followers.set(id, handle);
      for (const e of this.backlog.get(id) || []) handle(e);
      this.backlog.delete(id);
    });
  }

  close() {
    this.sub.disconnect();
  }
}

// A done event carries the result only up to aijob.event-result-max-bytes (4096); past
// that it says `result_bytes` alone and the result is read from the job.
async function resultOf(redis, end) {
  if (end.type !== "done" || end.result !== undefined) return end.result;
  const fields = await redis.call("JOB.GET", QUEUE, end.id);
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (String(fields[i]) === "result") return JSON.parse(fields[i + 1]);
  }
  return null;
}

async function main() {
  const redis = new Redis(url);
  const events = new JobEvents(redis, QUEUE);
  const sketch = {
    png: "iVBORw0KGgo...",
    svg: '<svg><path d="M0 0L10 10"/></svg>',
    hints: process.env.SKETCH_HINTS || `make it cleaner (${Date.now()})`,
  };
  try {
    await events.ready;
    const first = await improveSketch(redis, sketch);
    emit({ step: "submit", ...first });
    if (first.kind !== "hit") {
      const show = (e) => emit({ step: "event", type: e.type, status: e.status, progress: e.progress, percent: e.percent });
      const end = await events.follow(first.id, show, Number(process.env.TIMEOUT_MS || 30000));
      emit({ step: "finished", status: end.type, result: await resultOf(redis, end), error: end.error });
      if (end.type !== "done") process.exitCode = 1;
      emit({ step: "submit-after", ...(await improveSketch(redis, sketch)) });
    }
  } catch (err) {
    emit({ step: "failed", error: err.message });
    process.exitCode = 1;
  } finally {
    events.close();
    redis.disconnect();
  }
}

main();
