//! Counters, gauges and a histogram kept in memory, served as Prometheus text on /metrics;
//! /healthz answers 200 when Redis answers PING, 503 otherwise. A small HTTP/1.1 server on
//! tokio's TcpListener: one request per connection, GET only.
//!
//! - `aijob_fetcher_jobs_total{queue,provider,outcome,class}`: finished attempts. outcome is
//!   `done`, `retry` (an error the module retries), `failed` (an error that ends the job),
//!   `released` (given back on shutdown), `lost` (lease lost or job canceled/deleted while
//!   running: nothing written). class is empty for done.
//! - `aijob_fetcher_call_seconds{provider}`: provider call latency histogram.
//! - `aijob_fetcher_in_flight`: jobs held right now.
//! - `aijob_fetcher_ratelimit_waits_total{provider,limit}`: denied RATELIMIT.HITs waited out.
//! - `aijob_fetcher_redis_up`: 1 when the last Redis command got an answer.
//! - `aijob_fetcher_claims_total{queue}`: jobs claimed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::rconn::Redis;
use crate::secret::Redactor;

pub const BUCKETS: [f64; 13] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<(String, String, String, String), u64>>,
    claims: Mutex<BTreeMap<String, u64>>,
    calls: Mutex<BTreeMap<String, Histogram>>,
    rl_waits: Mutex<BTreeMap<(String, String), u64>>,
    in_flight: AtomicI64,
    pub redis_up: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn job(&self, queue: &str, provider: &str, outcome: &str, class: &str) {
        let k = (queue.to_string(), provider.to_string(), outcome.to_string(), class.to_string());
        *lock(&self.jobs).entry(k).or_default() += 1;
    }

    pub fn claimed(&self, queue: &str, n: usize) {
        *lock(&self.claims).entry(queue.to_string()).or_default() += n as u64;
    }

    pub fn call(&self, provider: &str, d: Duration) {
        let secs = d.as_secs_f64();
        let mut calls = lock(&self.calls);
        let h = calls.entry(provider.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn ratelimit_wait(&self, provider: &str, limit: &str) {
        *lock(&self.rl_waits).entry((provider.to_string(), limit.to_string())).or_default() += 1;
    }

    pub fn in_flight_add(&self, n: i64) {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP aijob_fetcher_jobs_total Job attempts finished by this fetcher.\n");
        out.push_str("# TYPE aijob_fetcher_jobs_total counter\n");
        for ((q, p, o, c), n) in lock(&self.jobs).iter() {
            let _ = writeln!(
                out,
                "aijob_fetcher_jobs_total{{queue=\"{}\",provider=\"{}\",outcome=\"{}\",class=\"{}\"}} {n}",
                esc(q),
                esc(p),
                esc(o),
                esc(c)
            );
        }
        out.push_str("# HELP aijob_fetcher_claims_total Jobs claimed.\n# TYPE aijob_fetcher_claims_total counter\n");
        for (q, n) in lock(&self.claims).iter() {
            let _ = writeln!(out, "aijob_fetcher_claims_total{{queue=\"{}\"}} {n}", esc(q));
        }
        out.push_str("# HELP aijob_fetcher_call_seconds Provider call latency.\n");
        out.push_str("# TYPE aijob_fetcher_call_seconds histogram\n");
        for (p, h) in lock(&self.calls).iter() {
            let p = esc(p);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ =
                    writeln!(out, "aijob_fetcher_call_seconds_bucket{{provider=\"{p}\",le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "aijob_fetcher_call_seconds_bucket{{provider=\"{p}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "aijob_fetcher_call_seconds_sum{{provider=\"{p}\"}} {}", h.sum);
            let _ = writeln!(out, "aijob_fetcher_call_seconds_count{{provider=\"{p}\"}} {}", h.count);
        }
        out.push_str("# HELP aijob_fetcher_in_flight Jobs held by this fetcher now.\n");
        out.push_str("# TYPE aijob_fetcher_in_flight gauge\n");
        let _ = writeln!(out, "aijob_fetcher_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out.push_str("# HELP aijob_fetcher_ratelimit_waits_total Calls held back by a denied RATELIMIT.HIT.\n");
        out.push_str("# TYPE aijob_fetcher_ratelimit_waits_total counter\n");
        for ((p, l), n) in lock(&self.rl_waits).iter() {
            let _ = writeln!(
                out,
                "aijob_fetcher_ratelimit_waits_total{{provider=\"{}\",limit=\"{}\"}} {n}",
                esc(p),
                esc(l)
            );
        }
        out.push_str("# HELP aijob_fetcher_redis_up 1 when the last Redis command got an answer.\n");
        out.push_str("# TYPE aijob_fetcher_redis_up gauge\n");
        let _ = writeln!(out, "aijob_fetcher_redis_up {}", u8::from(self.redis_up.load(Ordering::Relaxed)));
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves /healthz and /metrics until `stop`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    redis: Redis,
    redactor: Redactor,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return Ok(()),
        };
        let (m, r, red) = (metrics.clone(), redis.clone(), redactor.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, m, r, red)).await;
        });
    }
}

async fn handle(mut stream: TcpStream, metrics: Arc<Metrics>, redis: Redis, redactor: Redactor) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            (200, "text/plain; version=0.0.4; charset=utf-8", redactor.scrub(&metrics.render()))
        }
        ("GET" | "HEAD", "/healthz") => {
            let ping = tokio::time::timeout(Duration::from_secs(2), redis.query(&redis::cmd("PING"))).await;
            match ping {
                Ok(Ok(_)) => (200, "text/plain; charset=utf-8", "ok\n".to_string()),
                _ => (503, "text/plain; charset=utf-8", "redis unreachable\n".to_string()),
            }
        }
        ("GET" | "HEAD", _) => (404, "text/plain; charset=utf-8", "not found\n".to_string()),
        _ => (405, "text/plain; charset=utf-8", "method not allowed\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        resp.push_str(&body);
    }
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.job("q\"1", "gemini", "failed", "400");
        m.job("q\"1", "gemini", "failed", "400");
        m.call("gemini", Duration::from_millis(300));
        m.ratelimit_wait("gemini", "rpm");
        m.in_flight_add(2);
        let t = m.render();
        assert!(
            t.contains(
                "aijob_fetcher_jobs_total{queue=\"q\\\"1\",provider=\"gemini\",outcome=\"failed\",class=\"400\"} 2"
            ),
            "{t}"
        );
        assert!(t.contains("aijob_fetcher_call_seconds_bucket{provider=\"gemini\",le=\"0.25\"} 0"));
        assert!(t.contains("aijob_fetcher_call_seconds_bucket{provider=\"gemini\",le=\"0.5\"} 1"));
        assert!(t.contains("aijob_fetcher_call_seconds_count{provider=\"gemini\"} 1"));
        assert!(t.contains("aijob_fetcher_in_flight 2"));
        assert!(t.contains("aijob_fetcher_ratelimit_waits_total{provider=\"gemini\",limit=\"rpm\"} 1"));
        assert!(t.contains("aijob_fetcher_redis_up 0"));
    }
}
