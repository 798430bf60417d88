"""A three-step AI flow with redis-py: transcribe, then summarize each part, then merge.

Before (what apps glue on beside their queue): a worker finishes step one, then the app
creates step two itself; a crash between the two loses the chain, and a failed step leaves
the next one waiting forever.

After: the whole graph is made up front with JOB.CREATE ... AFTER. Each job waits
(`waiting`) until its parents are done and is released in the same atomic step as its last
parent's finish; its claim carries the parents' results in `inputs`, so the worker has its
inputs in one round trip. A failed parent ends its dependents with class `dependency`
(ONPARENTFAIL fail), or lets them run with its error (ONPARENTFAIL run).

Run against `make run`:  python3 examples/python/flow.py
The example plays the workers itself (any worker that calls JOB.CLAIM would do). Each step
prints one JSON line.
"""

import json
import os
import uuid

import redis

QUEUE = "flow_demo"


def connect():
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), decode_responses=True)


def as_dict(reply):
    """A map reply: redis-py speaks RESP2 by default, so maps come as flat lists."""
    if reply is None or isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2]))


def emit(**fields):
    print(json.dumps(fields), flush=True)


def make_flow(r, run_id, parts):
    """The graph, made up front: one transcription, a summary per part, one merge."""
    ids = {"transcribe": f"{run_id}:transcribe"}
    r.execute_command("JOB.CREATE", QUEUE, "ID", ids["transcribe"],
                      "PAYLOAD", json.dumps({"step": "transcribe", "audio": "talk.mp3", "parts": parts}))
    for i in range(parts):
        ids[f"summarize{i}"] = f"{run_id}:summarize:{i}"
        r.execute_command("JOB.CREATE", QUEUE, "ID", ids[f"summarize{i}"],
                          "PAYLOAD", json.dumps({"step": "summarize", "part": i}),
                          "AFTER", ids["transcribe"])
    summaries = [ids[f"summarize{i}"] for i in range(parts)]
    ids["merge"] = f"{run_id}:merge"
    r.execute_command("JOB.CREATE", QUEUE, "ID", ids["merge"],
                      "PAYLOAD", json.dumps({"step": "merge"}), "AFTER", *summaries)
    return ids


def work(payload, inputs):
    """The 'AI calls': each step uses its parents' results from the claim's inputs."""
    results = [json.loads(i["result"]) for i in inputs]
    if payload["step"] == "transcribe":
        return {"parts": [f"part {n} of the talk" for n in range(payload["parts"])]}
    if payload["step"] == "summarize":
        return {"summary": results[0]["parts"][payload["part"]].upper()}
    return {"merged": " / ".join(r["summary"] for r in results)}


def run_worker(r, until_id):
    """Claims and finishes jobs until `until_id` is done."""
    while True:
        claimed = r.execute_command("JOB.CLAIM", QUEUE, "WORKER", "flow-example", "BLOCK", 5000)
        if not claimed:
            raise SystemExit("nothing to claim: is a waiting job stuck?")
        job = as_dict(claimed[0])
        inputs = [as_dict(i) for i in job.get("inputs", [])]
        emit(step="claimed", id=job["id"], inputs=[{"id": i["id"], "status": i["status"]} for i in inputs])
        result = work(json.loads(job["payload"]), inputs)
        r.execute_command("JOB.UPDATE", QUEUE, job["id"], "TOKEN", job["token"],
                          "STATUS", "done", "RESULT", json.dumps(result))
        emit(step="done", id=job["id"], result=result)
        if job["id"] == until_id:
            return result


def main():
    r = connect()
    run_id = uuid.uuid4().hex[:8]
    ids = make_flow(r, run_id, parts=3)
    merge = as_dict(r.execute_command("JOB.GET", QUEUE, ids["merge"]))
    emit(step="created", ids=ids, merge_status=merge["status"], merge_waiting_on=int(merge["waiting_on"]))
    result = run_worker(r, ids["merge"])
    emit(step="finished", result=result)

    # a failing first step: under ONPARENTFAIL fail its dependents end at once, not hang
    bad = f"{run_id}:bad"
    r.execute_command("JOB.CREATE", QUEUE, "ID", bad, "PAYLOAD", "{}")
    child = r.execute_command("JOB.CREATE", QUEUE, "ID", f"{run_id}:after-bad", "PAYLOAD", "{}", "AFTER", bad)
    job = as_dict(r.execute_command("JOB.CLAIM", QUEUE)[0])
    r.execute_command("JOB.UPDATE", QUEUE, job["id"], "TOKEN", job["token"],
                      "STATUS", "error", "ERROR", "provider refused", "NORETRY")
    rec = as_dict(r.execute_command("JOB.GET", QUEUE, child))
    emit(step="cascade", id=child, status=rec["status"], error_class=rec["error_class"], error=rec["error"])


if __name__ == "__main__":
    main()
