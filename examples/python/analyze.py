"""The FastAPI "analyze artifact" flow on aijob, with redis-py.

Before (the seed): compute sha256(content), GET cache:{hash}; on a miss SET job:{id} with a
TTL, run the analysis in a background task that rewrites the job JSON at every step, SET
cache:{hash}; list jobs with SCAN job:* and guess created_at from the TTL.

After: one CACHE.GETORQUEUE answers the cached result, or the job already computing it
(identical uploads share one AI call), or makes the job. A worker (aijob-fetcher, started by
`make run`) claims it and calls the provider; the API polls JOB.GET and lists with JOB.LIST.

Run against `make run`:  python3 examples/python/analyze.py
Each step prints one JSON line.
"""

import argparse
import json
import os
import sys
import time

import redis

QUEUE = "analyze"


def connect():
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), decode_responses=True)


def as_dict(reply):
    """A map reply: redis-py speaks RESP2 by default, so maps come as flat lists."""
    if reply is None or isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2]))


# --- what the FastAPI routes call -------------------------------------------------------


def analyze(r, content, metadata=None):
    """POST /artifacts/analyze: the cached report, or the job computing it."""
    payload = {
        "provider": "echo",  # "gemini" or "openai" in production: the fetcher calls it
        "request": {"text": f"Assess the production readiness of this artifact:\n{content}", "delay_ms": 500},
    }
    kind, job_id, result = r.execute_command(
        "CACHE.GETORQUEUE", QUEUE,
        "PAYLOAD", json.dumps(payload),
        "META", json.dumps(metadata or {}),
        "CACHETTL", 86_400_000,          # the seed's CACHE_EXPIRATION, 24 h
        "RETENTION", 3_600_000,          # the seed's JOB_EXPIRATION, 1 h after it finishes
        "KEY", content,                  # cache by the artifact's content, as the seed did
    )
    if kind == "hit":
        return {"outcome": "hit", "result": json.loads(result)}
    return {"outcome": kind, "job_id": job_id}  # "queued" (new) or "pending" (shared)


def get_job(r, job_id):
    """GET /jobs/{job_id}: None is the seed's 404."""
    job = as_dict(r.execute_command("JOB.GET", QUEUE, job_id))
    if job is None:
        return None
    out = {"job_id": job_id, "status": job["status"], "progress": job.get("progress"),
           "created_at": int(job["created_at"])}
    if job["status"] == "done":
        out["result"] = json.loads(job["result"])
    if job["status"] == "error":
        out["error"] = job.get("error")
    return out


def list_jobs(r, count=20):
    """GET /jobs: newest first, from the queue's own index (no SCAN of the keyspace)."""
    _cursor, records = r.execute_command("JOB.LIST", QUEUE, "COUNT", count)
    return [{"job_id": j["id"], "status": j["status"], "created_at": int(j["created_at"])}
            for j in map(as_dict, records)]


# --- the flow, as a client of those routes would see it ---------------------------------


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", default=f"service: checkout\nreplicas: 1\nrun: {time.time_ns()}",
                    help="the artifact (default: a new one each run, so the flow starts with a miss)")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    r = connect()

    first = analyze(r, args.content, {"filename": "deploy.yaml"})
    emit(step="submit", **first)
    if first["outcome"] != "hit":
        again = analyze(r, args.content, {"filename": "deploy.yaml"})
        emit(step="submit-again", **again)  # the same upload while it runs: the same job

        job_id, seen, deadline = first["job_id"], None, time.monotonic() + args.timeout
        while True:
            job = get_job(r, job_id)
            if (job["status"], job["progress"]) != seen:
                seen = (job["status"], job["progress"])
                emit(step="poll", job_id=job_id, status=job["status"], progress=job["progress"])
            if job["status"] in ("done", "error", "canceled"):
                break
            if time.monotonic() > deadline:
                emit(step="timeout", job_id=job_id, status=job["status"],
                     hint="no worker finished the job: is the fetcher running? (`make run` starts it)")
                return 1
            time.sleep(0.1)
        emit(step="finished", job_id=job_id, status=job["status"], result=job.get("result"), error=job.get("error"))
        if job["status"] != "done":
            return 1
        emit(step="submit-after", **analyze(r, args.content, {"filename": "deploy.yaml"}))

    emit(step="list", jobs=list_jobs(r, 5))
    stats = as_dict(r.execute_command("QUEUE.STATS", QUEUE))
    emit(step="stats", **{k: stats[k] for k in ("created", "completed", "hits", "misses", "coalesced")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
