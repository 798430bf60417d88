//! The fetcher's link to Redis: a multiplexed connection that is dropped on any transport
//! error and made again on the next use, so a Redis restart costs a few failed commands,
//! never a stuck worker. Callers retry with backoff ([`Backoff`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Value};
use tokio::sync::Mutex;

/// One logical connection. Clones share it.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// The live connection and its generation (so that a failure seen on an old
    /// connection does not drop a newer one).
    conn: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: AtomicU64,
    up: Arc<AtomicBool>,
}

impl Redis {
    /// `response_timeout` bounds every command (a blocking claim needs more than its BLOCK).
    pub fn new(url: &str, response_timeout: Duration, up: Arc<AtomicBool>) -> anyhow::Result<Redis> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("REDIS_URL is not a Redis URL: {e}"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(response_timeout);
        Ok(Redis {
            inner: Arc::new(Inner { client, config, conn: Mutex::new(None), generation: AtomicU64::new(0), up }),
        })
    }

    async fn conn(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        let mut slot = self.inner.conn.lock().await;
        if let Some((g, c)) = slot.as_ref() {
            return Ok((*g, c.clone()));
        }
        let c = self.inner.client.get_multiplexed_async_connection_with_config(&self.inner.config).await;
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                self.inner.up.store(false, Ordering::Relaxed);
                return Err(e);
            }
        };
        let g = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some((g, c.clone()));
        Ok((g, c))
    }

    /// Runs one command. A transport error drops the connection (the next call reconnects).
    pub async fn query(&self, cmd: &redis::Cmd) -> Result<Value, RedisError> {
        let (g, mut c) = self.conn().await?;
        match cmd.query_async::<Value>(&mut c).await {
            Ok(v) => {
                self.inner.up.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                if is_transport(&e) {
                    self.inner.up.store(false, Ordering::Relaxed);
                    let mut slot = self.inner.conn.lock().await;
                    if slot.as_ref().is_some_and(|(cur, _)| *cur == g) {
                        *slot = None;
                    }
                } else {
                    self.inner.up.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// True for errors of the link (refused, reset, timed out, closed, or a server still
/// loading its data), false for an error reply the server chose to give.
pub fn is_transport(e: &RedisError) -> bool {
    match e.code() {
        Some(code) => matches!(code, "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "READONLY"),
        None => !matches!(e.kind(), redis::ErrorKind::TypeError),
    }
}

/// The error's code word (`LEASELOST`, `CANCELED`, `ERR`...), when the server gave one.
pub fn code(e: &RedisError) -> Option<&str> {
    e.code()
}

/// A short, printable form of a Redis error (never holds the URL).
pub fn describe(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(c), Some(d)) => format!("{c} {d}"),
        (Some(c), None) => c.to_string(),
        _ => {
            let s = e.to_string();
            super::providers::truncate(&s, 200)
        }
    }
}

/// Exponential backoff for retries against Redis: 100 ms doubling to `max`.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff { next: Duration::from_millis(100), max }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }
}

/// A job record from JOB.CLAIM: RESP3 map or RESP2 flat array of field/value pairs.
#[derive(Debug, Clone, Default)]
pub struct Record(pub HashMap<String, Value>);

impl Record {
    pub fn from_value(v: &Value) -> Option<Record> {
        let mut m = HashMap::new();
        match v {
            Value::Map(pairs) => {
                for (k, v) in pairs {
                    m.insert(as_string(k)?, v.clone());
                }
            }
            Value::Array(items) => {
                for p in items.chunks(2) {
                    if let [k, v] = p {
                        m.insert(as_string(k)?, v.clone());
                    }
                }
            }
            _ => return None,
        }
        Some(Record(m))
    }

    pub fn str(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(as_string)
    }

    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        match self.0.get(name)? {
            Value::BulkString(b) => Some(b.clone()),
            Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name)? {
            Value::Int(n) => Some(*n),
            other => as_string(other)?.parse().ok(),
        }
    }
}

pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// The records of a JOB.CLAIM reply (nil and empty both give none).
pub fn records(v: &Value) -> Vec<Record> {
    match v {
        Value::Array(items) => items.iter().filter_map(Record::from_value).collect(),
        _ => Vec::new(),
    }
}
