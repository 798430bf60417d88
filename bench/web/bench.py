"""aijob-web under a deep queue: page latency and the Redis work per page.

Fills queue `big` with N jobs (pipelined JOB.CREATE over one socket), a few thousand of
them finished or failed, plus 20 small queues; then requests each page R times over one
keep-alive connection and reports p50/p99 and, from INFO commandstats, the commands (and
server microseconds) per page. No per-job work may show: a page's commands must not grow
with N.
"""
import argparse, http.client, os, shutil, socket, subprocess, sys, tempfile, time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def resp(*words):
    out = [b"*%d\r\n" % len(words)]
    for w in words:
        b = w if isinstance(w, bytes) else str(w).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(1 << 20)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)

    def call(self, *words):
        self.sock.sendall(resp(*words))
        return self._read()

    def pipeline(self, commands, window=2000):
        """Sends commands in windows, reading every reply; returns the replies of errors."""
        errors = 0
        for i in range(0, len(commands), window):
            batch = commands[i:i + window]
            self.sock.sendall(b"".join(resp(*c) for c in batch))
            for _ in batch:
                try:
                    self._read()
                except RuntimeError:
                    errors += 1
        return errors


def commandstats(r):
    out = {}
    for line in r.call("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            kv = dict(f.split("=") for f in fields.split(","))
            out[name] = (int(kv["calls"]), int(kv["usec"]))
    return out


def measure(port, path, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    size = 0
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            raise SystemExit("GET %s: %d %s" % (path, r.status, body[:200]))
        size = len(body)
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return pick(0.50), pick(0.99), size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    ap.add_argument("--web", required=True)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=200)
    a = ap.parse_args()
    for f in (a.module, a.web):
        if not os.path.exists(f):
            raise SystemExit("%s is missing: cargo build --release -p aijob -p aijob-web" % f)
    tmp = tempfile.mkdtemp(prefix="aijob-bench-web-")
    rport, wport = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log"), "--loadmodule", a.module],
            stdout=subprocess.DEVNULL))
        for _ in range(200):
            try:
                r = Redis(rport)
                r.call("PING")
                break
            except OSError:
                time.sleep(0.05)
        t = time.time()
        payload = '{"provider":"echo","request":{"text":"a prompt of a typical size for the bench, about a hundred bytes long......"}}'
        step = 50_000
        for i in range(0, a.jobs, step):
            n = min(step, a.jobs - i)
            errs = r.pipeline([("JOB.CREATE", "big", "PAYLOAD", payload, "GROUP", "tenant-%d" % (j % 50))
                               for j in range(i, i + n)])
            if errs:
                raise SystemExit("%d JOB.CREATE failed" % errs)
        fill = time.time() - t
        # some history: claimed and finished or failed, so every status has jobs
        for k in range(0, 2000, 100):
            got = r.call("JOB.CLAIM", "big", "COUNT", 100, "LEASE", 600000)
            cmds = []
            for rec in got:
                f = dict(zip(rec[0::2], rec[1::2]))
                if k % 400 == 0:
                    cmds.append(("JOB.UPDATE", "big", f["id"], "TOKEN", f["token"], "STATUS", "error", "ERROR", "boom", "NORETRY"))
                else:
                    cmds.append(("JOB.UPDATE", "big", f["id"], "TOKEN", f["token"], "STATUS", "done", "RESULT", '{"ok":1}'))
            r.pipeline(cmds)
        r.pipeline([("JOB.CREATE", "q%02d" % i, "PAYLOAD", "{}") for i in range(20)])
        stats = dict(zip(*[iter(r.call("QUEUE.STATS", "big"))] * 2))
        some_id = r.call("JOB.LIST", "big", "STATUS", "done", "COUNT", 1)[1][0][1]
        mem = [l for l in r.call("INFO", "memory").splitlines() if l.startswith("used_memory_human")][0]
        print("filled queue big with %d jobs in %.1f s (%.0f creates/s); queued %s, done %s, error %s; %s"
              % (a.jobs, fill, a.jobs / fill, stats["queued"], stats["done"], stats["error"], mem))

        procs.append(subprocess.Popen([a.web, "--listen", "127.0.0.1:%d" % wport, "--redis-url",
                                       "redis://127.0.0.1:%d" % rport], stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(tmp, "web.log"), "w")))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", wport)).close()
                break
            except OSError:
                time.sleep(0.05)
        # the first sampling round (and its one-time events-stream read) out of the way
        time.sleep(1.0)
        pages = [
            ("overview (21 queues)", "/"),
            ("queue page, all statuses", "/q/big"),
            ("queue page, queued, page 2", "/q/big?status=queued&cursor=%s" % r.call("JOB.LIST", "big", "STATUS", "queued", "COUNT", 25)[0]),
            ("queue page, filtered by group", "/q/big?group=tenant-7"),
            ("job page", "/q/big/job/%s" % some_id),
            ("groups page", "/q/big/groups"),
        ]
        print()
        print("| page | p50 ms | p99 ms | KB | Redis commands per page | server µs per page |")
        print("|---|---|---|---|---|---|")
        for name, path in pages:
            measure(wport, path, 5)
            before = commandstats(r)
            p50, p99, size = measure(wport, path, a.requests)
            after = commandstats(r)
            # this connection's own INFO calls are not the page's
            per = {}
            usec = 0
            for cmd, (calls, us) in after.items():
                c0, u0 = before.get(cmd, (0, 0))
                if cmd == "info" or calls == c0:
                    continue
                per[cmd] = (calls - c0) / a.requests
                usec += us - u0
            cmds = ", ".join("%s %.2f" % (k.upper(), v) for k, v in sorted(per.items()))
            print("| %s | %.1f | %.1f | %.0f | %s | %.0f |" % (name, p50, p99, size / 1024, cmds, usec / a.requests))
        print()
        print("Commands are INFO commandstats deltas over %d requests per page, divided by %d; they include the"
              " dashboard's background sampler (one QUEUE.LIST and one QUEUE.STATS per queue every 10 s)."
              % (a.requests, a.requests))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
