"""Follow a job's output as it is made, and resume after a disconnect, with redis-py.

Before (what apps glue on beside their queue): the worker publishes tokens on a pub/sub
channel or keeps them in its own memory; a reader that connects late, or drops for a second,
misses text, and a worker that dies takes the stream with it.

After: the worker appends chunks with JOB.APPEND (fenced by its lease token); they live in
Redis beside the job. A reader calls JOB.READ ... AFTER <offset> BLOCK ms in a loop: it gets
the chunks as they come, and a reader that comes back with its last offset gets exactly the
rest. `ended` says when the job is finished and everything has been read.

Run against `make run`:  python3 examples/python/stream.py --fetcher
With --fetcher, the running aijob-fetcher streams the job: an echo job that asks for a stream
(`"stream": true`), answered word by word over 3 s, or --payload's (an OpenAI or Gemini job
with "stream": true streams the model's tokens); the reader kills its own connection after 3
chunks, resumes from the offset it kept, and checks the text it printed against the job's
result. With neither --fetcher nor --job, the example plays the streaming worker itself (no
fetcher needed). With --job ID it only follows that job's stream. Each step prints one JSON
line.
"""

import argparse
import json
import os
import sys
import threading
import time

import redis

QUEUE = "stream_demo"


def connect():
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), decode_responses=True)


def as_dict(reply):
    """A map reply: redis-py speaks RESP2 by default, so maps come as flat lists."""
    if reply is None or isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2]))


def emit(**fields):
    print(json.dumps(fields), flush=True)


# --- the reader: what a web app's SSE endpoint or a CLI runs ----------------------------


def follow(queue, job_id, after="0", on_chunk=None, disconnect_after=None, block_ms=5000):
    """Reads the job's stream from `after` to its end. Yields nothing; calls `on_chunk`.
    Returns (status, text of the attempt that counts). `disconnect_after`: kill our own
    connection once that many chunks were read (the demo's forced disconnect)."""
    r, admin = connect(), connect()
    text, chunks = [], 0
    while True:
        try:
            reply = as_dict(r.execute_command("JOB.READ", queue, job_id, "AFTER", after, "BLOCK", block_ms))
        except redis.ConnectionError as e:
            # the connection dropped: a new one, and the same offset, is all a resume takes
            emit(step="reconnect", after=after, error=type(e).__name__)
            r = connect()
            emit(step="resumed", after=after)
            continue
        for offset, kind, data in reply["entries"]:
            if kind == "attempt":
                if offset.split("-")[0] != "1":
                    text.clear()  # a new attempt (or a fallback) starts the output over
                emit(step="attempt", offset=offset, attempt=int(data))
            elif kind == "chunk":
                text.append(data)
                chunks += 1
                emit(step="chunk", offset=offset, data=data)
                if on_chunk:
                    on_chunk(data)
            elif kind == "end":
                emit(step="end", offset=offset, status=data)
        after = reply["next"]
        if reply["ended"]:
            return reply["status"], "".join(text)
        if disconnect_after is not None and chunks >= disconnect_after:
            disconnect_after = None
            me = r.execute_command("CLIENT", "ID")
            admin.execute_command("CLIENT", "KILL", "ID", me)
            emit(step="disconnected", after=after)
            r = connect()  # a reader that starts again keeps nothing but its offset
            emit(step="resumed", after=after)


# --- a stand-in for the fetcher's streaming mode ----------------------------------------


def stream_worker(job_id, words, delay):
    """Claims the job and appends its answer a few words at a time, as a model streams."""
    r = connect()
    while True:
        claimed = r.execute_command("JOB.CLAIM", QUEUE, "WORKER", "stream-demo", "LEASE", 30000, "BLOCK", 1000)
        job = as_dict(claimed[0]) if claimed else None
        if job and job["id"] == job_id:
            break
        if job:  # a job an earlier run left behind
            r.execute_command("JOB.CANCEL", QUEUE, job["id"])
    token = job["token"]
    for i in range(0, len(words), 2):
        r.execute_command("JOB.APPEND", QUEUE, job_id, "TOKEN", token, "DATA", "".join(words[i:i + 2]))
        time.sleep(delay)
    result = {"text": "".join(words)}
    r.execute_command("JOB.UPDATE", QUEUE, job_id, "TOKEN", token, "STATUS", "done", "RESULT", json.dumps(result))


ANSWER = ("Streams keep the output where the job is: in Redis, fenced by the lease token, "
          "readable from any offset by any client, and gone with the job.")


def with_fetcher(queue, payload, disconnect_after):
    """Submits a job that asks for a stream; the fetcher streams it; we follow it."""
    r = connect()
    job_id = r.execute_command("JOB.CREATE", queue, "PAYLOAD", json.dumps(payload))
    emit(step="submit", job_id=job_id, queue=queue)
    status, text = follow(queue, job_id, disconnect_after=disconnect_after)
    job = json.loads(r.execute_command("JOB.GET", queue, job_id, "JSON"))
    result = job.get("result") or {}
    emit(step="result", provider=result.get("provider"), text=result.get("text"), usage=result.get("usage"))
    emit(step="finished", job_id=job_id, status=status, text=text)
    return 0 if status == "done" and text == result.get("text") else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queue", help=f"the queue (default: {QUEUE}; with --fetcher, default)")
    ap.add_argument("--job", help="follow this job's stream (default: make a job and stream it)")
    ap.add_argument("--after", default="0", help="the offset to start after")
    ap.add_argument("--fetcher", action="store_true", help="let the running aijob-fetcher stream the job")
    ap.add_argument("--payload", help="with --fetcher: the job's payload (JSON asking for a stream)")
    ap.add_argument("--disconnect-after", type=int, default=3, help="with --fetcher: chunks read before the forced disconnect")
    ap.add_argument("--delay", type=float, default=0.02, help="the stand-in worker's pause between appends")
    args = ap.parse_args()

    if args.job:
        status, text = follow(args.queue or QUEUE, args.job, args.after)
        emit(step="finished", job_id=args.job, status=status, text=text)
        return 0 if status == "done" else 1

    if args.fetcher:
        payload = json.loads(args.payload) if args.payload else {
            "provider": "echo", "stream": True, "delay_ms": 3000, "request": {"text": ANSWER}}
        return with_fetcher(args.queue or "default", payload, args.disconnect_after)

    words = [w + " " for w in ANSWER.split(" ")]
    r = connect()
    job_id = r.execute_command("JOB.CREATE", QUEUE, "PAYLOAD", json.dumps({"prompt": "Why streams?"}))
    emit(step="submit", job_id=job_id)
    worker = threading.Thread(target=stream_worker, args=(job_id, words, args.delay), daemon=True)
    worker.start()
    status, text = follow(QUEUE, job_id, disconnect_after=len(words) // 4)
    worker.join(timeout=10)
    emit(step="produced", text="".join(words))
    emit(step="finished", job_id=job_id, status=status, text=text)
    return 0 if status == "done" and text == "".join(words) else 1


if __name__ == "__main__":
    sys.exit(main())
