// The bench's own redis-server: a free port, the release module, no persistence
// (`--save ""`, `--appendonly no`), shut down at the end (also on Ctrl-C).

'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const Redis = require('ioredis');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitReady(port, proc) {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode})`);
    const c = new Redis({ port, lazyConnect: true, retryStrategy: null, maxRetriesPerRequest: 0 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      return c;
    } catch (_) {
      c.disconnect();
      await sleep(100);
    }
  }
  throw new Error('redis-server did not answer PING within 10 s');
}

/**
 * The data-layout settings of the shipped redis.conf (e.g. hash-max-listpack-value, which
 * keeps job records compact): the bench runs the server the way aijob ships it, minus
 * persistence. Every side of every row runs on that same server.
 */
function shippedSettings(confPath) {
  const keep = /^(hash|zset|list|set|stream)-max-\S+\s+\S+/;
  if (!fs.existsSync(confPath)) return [];
  return fs.readFileSync(confPath, 'utf8').split('\n').map((l) => l.trim()).filter((l) => keep.test(l))
    .flatMap((l) => {
      const [name, value] = l.split(/\s+/);
      return [`--${name}`, value];
    });
}

/** Starts redis-server with the module; returns { port, admin (ioredis), stop(), info } */
async function start(modulePath, confPath) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aijob-bench-'));
  const settings = shippedSettings(confPath);
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--logfile', path.join(dir, 'redis.log'), ...settings, '--loadmodule', modulePath,
  ];
  const proc = spawn('redis-server', args, { stdio: 'ignore' });
  const admin = await waitReady(port, proc);
  const stop = async () => {
    try {
      await admin.call('SHUTDOWN', 'NOSAVE');
    } catch (_) {
      // the connection closes as the server exits
    }
    admin.disconnect();
    if (proc.exitCode === null) proc.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const version = (await admin.info('server')).match(/redis_version:(\S+)/)[1];
  return { port, admin, stop, pid: proc.pid, version, settings: settings.join(' ') };
}

/** INFO commandstats as { name: { calls, usec, failed } } (failed: rejected + failed calls) */
async function commandStats(admin) {
  const text = await admin.info('commandstats');
  const out = {};
  const re = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+),.*rejected_calls=(\d+),failed_calls=(\d+)/gm;
  for (const m of text.matchAll(re)) {
    out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]), failed: Number(m[4]) + Number(m[5]) };
  }
  return out;
}

/** CPU time the server's main thread ran, in µs (Linux: /proc/<pid>/task/<pid>/schedstat); 0 elsewhere */
function cpuMicros(pid) {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
  } catch (_) {
    return 0;
  }
}

/** used_memory in bytes */
async function usedMemory(admin) {
  const text = await admin.info('memory');
  return Number(text.match(/^used_memory:(\d+)/m)[1]);
}

module.exports = { start, commandStats, usedMemory, sleep, cpuMicros };
