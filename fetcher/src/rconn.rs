//! Backoff is hand-written: the retry crates (backon) own the retry loop, and these loops
//! must also stop on shutdown and tell a refusal from a lost link.
//!
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
        let mut keys = Vec::new();
        for route in self.master_routes().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
                let (next, found) = scan_page(&self.run(&cmd, route.clone()).await?);
                keys.extend(found);
                match next {
                    0 => break,
                    n => cursor = n,
                }
            }
        }
        Ok(keys)
    }

    /// One route per master: a slot it serves (a command sent there reaches that master).
    /// On a single node, the one default route.
    async fn master_routes(&self) -> Result<Vec<Option<RoutingInfo>>, RedisError> {
        if !self.is_cluster() {
            return Ok(vec![None]);
        }
        let v = self.query(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        let route =
            |slot| RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
        Ok(master_slots(&v).into_iter().map(|slot| Some(route(slot))).collect())
    }
}

/// A SCAN reply: the next cursor (0: done, also for a reply of another shape) and the keys.
pub fn scan_page(v: &Value) -> (u64, Vec<Vec<u8>>) {
    let Value::Array(items) = v else { return (0, Vec::new()) };
    let next = items.first().and_then(as_string).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let keys = match items.get(1) {
        Some(Value::Array(found)) => found
            .iter()
            .filter_map(|k| match k {
                Value::BulkString(b) => Some(b.clone()),
                Value::SimpleString(s) => Some(s.clone().into_bytes()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (next, keys)
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
#[derive(Debug, Clone, Default, PartialEq)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn scan_pages_give_the_cursor_and_the_keys() {
        let page = Value::Array(vec![
            bulk("17"),
            Value::Array(vec![bulk("a"), Value::SimpleString("b".into()), Value::Int(3)]),
        ]);
        assert_eq!(scan_page(&page), (17, vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(scan_page(&Value::Nil), (0, vec![]));
    }

    #[test]
    fn one_slot_per_master() {
        let node = |host: &str, port: i64| Value::Array(vec![bulk(host), Value::Int(port)]);
        let range = |a: i64, b: i64, n: Value| Value::Array(vec![Value::Int(a), Value::Int(b), n]);
        let slots = Value::Array(vec![
            range(5461, 10922, node("h", 2)),
            range(0, 5460, node("h", 1)),
            range(12000, 16383, node("h", 1)),
        ]);
        assert_eq!(master_slots(&slots), vec![0, 5461]);
    }

    #[test]
    fn link_errors_are_transport_and_replies_are_not() {
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"));
        assert!(is_transport(&io));
        let reply = RedisError::from((
            redis::ErrorKind::ResponseError,
            "An error was signalled by the server",
            "bad".to_string(),
        ));
        assert!(!is_transport(&reply));
        assert_eq!(describe(&reply), "ERR bad");
        assert!(is_transport(&RedisError::from((redis::ErrorKind::BusyLoadingError, "loading"))));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(300));
        let ms: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 300, 300]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn claim_replies_give_records_in_resp2_and_resp3() {
        let flat = Value::Array(vec![bulk("id"), bulk("j"), bulk("attempts"), Value::Int(2)]);
        let map = Value::Map(vec![(bulk("id"), bulk("k"))]);
        let recs = records(&Value::Array(vec![flat, map, Value::Nil]));
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].str("id").as_deref(), recs[0].int("attempts")), (Some("j"), Some(2)));
        assert_eq!(recs[1].str("id").as_deref(), Some("k"));
        assert!(records(&Value::Nil).is_empty());
    }
}
