"""The generator API's per-client rate limits on aijob, with redis-py.

Before (the seed): INCR rate_limit:minute:{client}:{endpoint} and rate_limit:hour:... with
EXPIRE, each checked after it was counted: fixed windows let twice the limit through at a
window edge, and a request refused by the hour limit still used up a minute slot.

After: one RATELIMIT.HIT checks both windows strictly (in every 60 s interval at most 60,
in every hour at most 1000), all or nothing, and says when to retry.

Run against `make run`:  python3 examples/python/ratelimit.py
Each request prints one JSON line: the HTTP status the API would answer, and its headers.
"""

import argparse
import json
import math
import os
import sys

import redis

PER_MINUTE = 60
PER_HOUR = 1000


def connect():
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), decode_responses=True)


def check(r, client_id, endpoint, per_minute=PER_MINUTE, per_hour=PER_HOUR):
    """The middleware's check: (allowed, headers). A 429 carries Retry-After."""
    allowed, remaining, retry_after_ms, reset_ms = r.execute_command(
        "RATELIMIT.HIT", f"rl:{{{client_id}}}:{endpoint}",
        "LIMIT", per_minute, "PERIOD", 60_000,
        "LIMIT", per_hour, "PERIOD", 3_600_000,
    )
    headers = {
        "X-RateLimit-Limit": str(per_minute),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(math.ceil(reset_ms / 1000)),
    }
    if not allowed:
        headers["Retry-After"] = str(math.ceil(retry_after_ms / 1000))
    return bool(allowed), headers


# In FastAPI:
#
#   @app.middleware("http")
#   async def rate_limit(request, call_next):
#       ok, headers = check(r, request.client.host, request.url.path.strip("/").replace("/", ":"))
#       if not ok:
#           return JSONResponse({"detail": "rate limit exceeded"}, status_code=429, headers=headers)
#       response = await call_next(request)
#       response.headers.update(headers)
#       return response


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client", default=f"client-{os.getpid()}")
    ap.add_argument("--endpoint", default="generate")
    ap.add_argument("--per-minute", type=int, default=PER_MINUTE)
    ap.add_argument("--per-hour", type=int, default=PER_HOUR)
    ap.add_argument("--requests", type=int, default=PER_MINUTE + 3)
    args = ap.parse_args()
    r = connect()

    for i in range(1, args.requests + 1):
        ok, headers = check(r, args.client, args.endpoint, args.per_minute, args.per_hour)
        print(json.dumps({"client": args.client, "request": i, "status": 200 if ok else 429, "headers": headers}),
              flush=True)
    # Another client has its own budget.
    other = f"{args.client}-other"
    ok, headers = check(r, other, args.endpoint, args.per_minute, args.per_hour)
    print(json.dumps({"client": other, "request": 1, "status": 200 if ok else 429, "headers": headers}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
