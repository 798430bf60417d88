//! The dashboard's only way to Redis: aijob commands (and XREAD of the events stream for
//! live updates). One shared multiplexed connection serves every page; on a cluster the
//! redis crate's cluster connection routes each command by its queue, and keyless
//! QUEUE.LIST is sent to every master.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisError, Value};
use tokio::sync::Mutex;

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

pub struct Backend {
    client: Client,
    conn: Mutex<Option<Conn>>,
}

/// The seed URLs of `redis+cluster://[auth@]h1:p1,h2:p2[/...]`, or the URL itself.
pub fn seeds(url: &str) -> anyhow::Result<(Vec<String>, bool)> {
    let Some(rest) = url.strip_prefix("redis+cluster://") else {
        return Ok((vec![url.to_string()], false));
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), authority),
    };
    let urls: Vec<String> =
        hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| format!("redis://{auth}{h}{tail}")).collect();
    anyhow::ensure!(!urls.is_empty(), "REDIS_URL: redis+cluster:// names no host");
    Ok((urls, true))
}

impl Backend {
    pub fn new(url: &str) -> anyhow::Result<Backend> {
        let (urls, cluster) = seeds(url)?;
        let client = if cluster {
            Client::Cluster(
                redis::cluster::ClusterClientBuilder::new(urls)
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(10))
                    .retries(3)
                    .build()?,
            )
        } else {
            let url = urls.first().ok_or_else(|| anyhow::anyhow!("REDIS_URL names no server"))?;
            Client::Single(redis::Client::open(url.as_str())?)
        };
        Ok(Backend { client, conn: Mutex::new(None) })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.client, Client::Cluster(_))
    }

    async fn conn(&self) -> Result<Conn, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = match &self.client {
            Client::Single(c) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(10));
                Conn::Single(c.get_multiplexed_async_connection_with_config(&cfg).await?)
            }
            Client::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
        };
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one command (routed by its first argument on a cluster). A broken connection
    /// is dropped so that the next call reconnects.
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        self.run(cmd, None).await
    }

    async fn run(&self, cmd: &Cmd, route: Option<RoutingInfo>) -> Result<Value, RedisError> {
        let c = self.conn().await?;
        let r = match (c, route) {
            (Conn::Single(mut c), _) => c.req_packed_command(cmd).await,
            (Conn::Cluster(mut c), None) => c.req_packed_command(cmd).await,
            (Conn::Cluster(mut c), Some(r)) => c.route_command(cmd, r).await,
        };
        if let Err(e) = &r {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                *self.conn.lock().await = None;
            }
        }
        r
    }

    /// Runs a keyless command on every master (once on a single server).
    pub async fn on_every_master(&self, cmd: &Cmd) -> Result<Vec<Value>, RedisError> {
        if !self.is_cluster() {
            return Ok(vec![self.query(cmd).await?]);
        }
        let slots = master_slots(&self.query(redis::cmd("CLUSTER").arg("SLOTS")).await?);
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let route =
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
            out.push(self.run(cmd, Some(route)).await?);
        }
        Ok(out)
    }

    /// A connection of its own for one blocking reader (XREAD BLOCK), never shared with
    /// the pages' commands.
    pub async fn reader(&self) -> Result<Reader, RedisError> {
        Ok(match &self.client {
            Client::Single(c) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Duration::from_secs(2))
                    .set_response_timeout(Duration::from_secs(30));
                Reader(Conn::Single(c.get_multiplexed_async_connection_with_config(&cfg).await?))
            }
            Client::Cluster(c) => Reader(Conn::Cluster(c.get_async_connection().await?)),
        })
    }
}

/// A dedicated connection for XREAD BLOCK.
pub struct Reader(Conn);

impl Reader {
    pub async fn query(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_command(cmd).await,
            Conn::Cluster(c) => c.req_packed_command(cmd).await,
        }
    }
}

/// From a CLUSTER SLOTS reply: one slot of each master (its lowest), one per master.
pub fn master_slots(v: &Value) -> Vec<u16> {
    let mut by_master: BTreeMap<String, u16> = BTreeMap::new();
    let Value::Array(ranges) = v else { return Vec::new() };
    for r in ranges {
        let Value::Array(items) = r else { continue };
        let start = items.first().and_then(as_int).and_then(|s| u16::try_from(s).ok());
        let Some(Value::Array(node)) = items.get(2) else { continue };
        let addr = format!(
            "{}:{}",
            node.first().and_then(as_text).unwrap_or_default(),
            node.get(1).and_then(as_int).unwrap_or_default()
        );
        if let Some(start) = start {
            let e = by_master.entry(addr).or_insert(start);
            *e = (*e).min(start);
        }
    }
    by_master.into_values().collect()
}

// ---- reading replies (RESP2 flat arrays and RESP3 maps alike) ----

pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => as_text(other)?.parse().ok(),
    }
}

pub fn as_list(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// A map reply as name -> value.
pub fn as_map(v: &Value) -> BTreeMap<String, Value> {
    match v {
        Value::Map(pairs) => pairs.iter().filter_map(|(k, v)| Some((as_text(k)?, v.clone()))).collect(),
        Value::Array(flat) => flat.chunks(2).filter_map(|p| Some((as_text(p.first()?)?, p.get(1)?.clone()))).collect(),
        _ => BTreeMap::new(),
    }
}

/// An error's text as the server gave it (code first), for showing to the operator.
pub fn describe(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_become_seeds() {
        let (u, c) = seeds("redis+cluster://pw@h1:1,h2:2/0").unwrap();
        assert!(c);
        assert_eq!(u, ["redis://pw@h1:1/0", "redis://pw@h2:2/0"]);
        assert_eq!(seeds("redis://h:1").unwrap(), (vec!["redis://h:1".to_string()], false));
        assert!(seeds("redis+cluster://").is_err());
    }

    #[test]
    fn maps_read_in_both_protocols() {
        let flat = Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Int(1)]);
        let map = Value::Map(vec![(Value::BulkString(b"a".to_vec()), Value::Int(1))]);
        assert_eq!(as_map(&flat).get("a").and_then(as_int), Some(1));
        assert_eq!(as_map(&map).get("a").and_then(as_int), Some(1));
    }
}
