//! The fetcher's link to Redis: a multiplexed connection (or, with `--cluster`, the redis
//! crate's async cluster connection, which routes each command by its first argument: the
//! queue of every JOB.* command, the key of RATELIMIT.*) that is dropped on any transport
//! error and made again on the next use, so a Redis restart or a failover costs a few failed
//! commands, never a stuck worker. Callers retry with backoff ([`Backoff`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, RedisError, Value};
use tokio::sync::Mutex;

/// One logical connection. Clones share it.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

enum Client {
    Single(redis::Client, AsyncConnectionConfig),
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

struct Inner {
    client: Client,
    /// The live connection and its generation (so that a failure seen on an old
    /// connection does not drop a newer one).
    conn: Mutex<Option<(u64, Conn)>>,
    generation: AtomicU64,
    up: Arc<AtomicBool>,
}

impl Redis {
    /// `response_timeout` bounds every command (a blocking claim needs more than its BLOCK).
    /// `cluster`: the URLs are seed nodes of a Redis Cluster.
    pub fn new(
        urls: &[String],
        cluster: bool,
        response_timeout: Duration,
        up: Arc<AtomicBool>,
    ) -> anyhow::Result<Redis> {
        let bad = |e: RedisError| anyhow::anyhow!("REDIS_URL is not a Redis URL: {}", describe(&e));
        let client = if cluster {
            let c = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(response_timeout)
                // MOVED/ASK and a lost node are retried inside the client a few times, quickly;
                // past that the caller's own backoff takes over.
                .retries(5)
                .min_retry_wait(50)
                .max_retry_wait(1000)
                .build()
                .map_err(bad)?;
            Client::Cluster(c)
        } else {
            let url = urls.first().ok_or_else(|| anyhow::anyhow!("REDIS_URL is empty"))?;
            let client = redis::Client::open(url.as_str()).map_err(bad)?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Duration::from_secs(2))
                .set_response_timeout(response_timeout);
            Client::Single(client, config)
        };
        Ok(Redis { inner: Arc::new(Inner { client, conn: Mutex::new(None), generation: AtomicU64::new(0), up }) })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.client, Client::Cluster(_))
    }

    async fn conn(&self) -> Result<(u64, Conn), RedisError> {
        let mut slot = self.inner.conn.lock().await;
        if let Some((g, c)) = slot.as_ref() {
            return Ok((*g, c.clone()));
        }
        let c = match &self.inner.client {
            Client::Single(client, config) => {
                client.get_multiplexed_async_connection_with_config(config).await.map(Conn::Single)
            }
            Client::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        };
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
        self.run(cmd, None).await
    }

    async fn run(&self, cmd: &redis::Cmd, route: Option<RoutingInfo>) -> Result<Value, RedisError> {
        let (g, c) = self.conn().await?;
        let r = match (c, route) {
            (Conn::Single(mut c), _) => cmd.query_async::<Value>(&mut c).await,
            (Conn::Cluster(mut c), None) => cmd.query_async::<Value>(&mut c).await,
            (Conn::Cluster(mut c), Some(route)) => c.route_command(cmd, route).await,
        };
        match r {
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

    /// Every key matching `pattern` (SCAN MATCH ... COUNT 1000), on every master of a
    /// cluster. The fetcher is a client: SCAN is fine here (the module never scans).
    pub async fn scan_match(&self, pattern: &str) -> Result<Vec<Vec<u8>>, RedisError> {
        // One route per master: a slot it serves (a SCAN sent there reaches that master).
        let routes: Vec<Option<RoutingInfo>> = if self.is_cluster() {
            let v = self.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
            master_slots(&v)
                .into_iter()
                .map(|slot| {
                    Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        slot,
                        SlotAddr::Master,
                    ))))
                })
                .collect()
        } else {
            vec![None]
        };
        let mut keys = Vec::new();
        for route in routes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
                let v = self.run(&cmd, route.clone()).await?;
                let Value::Array(items) = v else { break };
                let next = items.first().and_then(as_string).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
                if let Some(Value::Array(found)) = items.get(1) {
                    keys.extend(found.iter().filter_map(|k| match k {
                        Value::BulkString(b) => Some(b.clone()),
                        Value::SimpleString(s) => Some(s.clone().into_bytes()),
                        _ => None,
                    }));
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }
}

/// From a CLUSTER SLOTS reply: the first slot of each master (by its address).
pub fn master_slots(v: &Value) -> Vec<u16> {
    let mut by_master: BTreeMap<String, u16> = BTreeMap::new();
    let Value::Array(ranges) = v else { return Vec::new() };
    for r in ranges {
        let Value::Array(items) = r else { continue };
        let start = items.first().and_then(as_string).and_then(|s| s.parse::<u16>().ok());
        let master = match items.get(2) {
            Some(Value::Array(node)) => {
                let host = node.first().and_then(as_string).unwrap_or_default();
                let port = node.get(1).and_then(as_string).unwrap_or_default();
                format!("{host}:{port}")
            }
            _ => continue,
        };
        if let Some(start) = start {
            let e = by_master.entry(master).or_insert(start);
            *e = (*e).min(start);
        }
    }
    by_master.into_values().collect()
}

/// The cluster slot of a key (its `{hash tag}` when it has one).
pub fn slot(key: &str) -> u16 {
    redis::cluster_routing::get_slot(key.as_bytes())
}

/// True for errors of the link (refused, reset, timed out, closed, or a server still
/// loading its data), false for an error reply the server chose to give.
pub fn is_transport(e: &RedisError) -> bool {
    match e.code() {
        Some(code) => {
            matches!(code, "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "READONLY" | "CLUSTERDOWN" | "MOVED" | "ASK")
        }
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
        _ => crate::text::truncate(&e.to_string(), 200),
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
