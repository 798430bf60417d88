//! The aijob commands the dashboard sends, with typed replies. Every page's work is a
//! handful of these: O(1) per queue or one bounded page, never a walk over jobs.

use std::collections::BTreeMap;

use redis::Value;

use crate::backend::{as_int, as_list, as_map, as_text, describe, Backend};

pub type Record = BTreeMap<String, Value>;

/// A failed command, as the operator should read it.
#[derive(Debug)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<redis::RedisError> for Failed {
    fn from(e: redis::RedisError) -> Self {
        Failed(describe(&e))
    }
}

pub type Result<T> = std::result::Result<T, Failed>;

pub const STATUSES: [&str; 7] = ["waiting", "queued", "delayed", "running", "done", "error", "canceled"];

/// The error of a status outside `STATUSES`.
pub fn bad_status() -> String {
    format!("status must be one of {}", STATUSES.join(", "))
}

fn cmd(name: &str, args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(name);
    for a in args {
        c.arg(*a);
    }
    c
}

/// A record field as text ("" when absent).
pub fn text(r: &Record, name: &str) -> String {
    r.get(name).and_then(as_text).unwrap_or_default()
}

pub fn int(r: &Record, name: &str) -> Option<i64> {
    r.get(name).and_then(as_int)
}

/// Names of queues, in name order, from every master (QUEUE.LIST pages of 1000).
pub async fn queues(b: &Backend, limit: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    // Each round asks every master for its next page after the same name. A master that
    // filled its page may hold more names past its last one, so the merged page stops at
    // the smallest such last name, and the next round starts after it.
    loop {
        let mut c = redis::cmd("QUEUE.LIST");
        c.arg("COUNT").arg(1000);
        if let Some(a) = &after {
            c.arg("AFTER").arg(a);
        }
        let replies = b.on_every_master(&c).await?;
        let mut bound: Option<String> = None;
        let mut page: Vec<String> = Vec::new();
        for r in &replies {
            let names: Vec<String> = as_list(r).iter().filter_map(as_text).collect();
            if names.len() == 1000 {
                let last = names.last().cloned().unwrap_or_default();
                bound = Some(bound.map_or(last.clone(), |b| b.min(last)));
            }
            page.extend(names);
        }
        page.sort();
        page.dedup();
        if let Some(b) = &bound {
            page.retain(|n| n <= b);
        }
        out.extend(page);
        if bound.is_none() || out.len() >= limit {
            break;
        }
        after = bound;
    }
    out.truncate(limit);
    Ok(out)
}

pub async fn stats(b: &Backend, q: &str) -> Result<BTreeMap<String, i64>> {
    let v = b.query(&cmd("QUEUE.STATS", &[q])).await?;
    Ok(as_map(&v).into_iter().filter_map(|(k, v)| Some((k, as_int(&v)?))).collect())
}

#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub queued: i64,
    pub running: i64,
    pub cap: i64,
}

impl Group {
    pub fn at_cap(&self) -> bool {
        self.cap > 0 && self.running >= self.cap
    }
}

pub async fn groups(b: &Backend, q: &str, cursor: &str, count: usize) -> Result<(String, Vec<Group>)> {
    let v = b.query(&cmd("QUEUE.GROUPS", &[q, "CURSOR", cursor, "COUNT", &count.to_string()])).await?;
    let items = as_list(&v);
    let next = items.first().and_then(as_text).unwrap_or_else(|| "0".into());
    let groups = items
        .get(1)
        .map(as_list)
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let m = as_map(g);
            Group {
                name: text(&m, "group"),
                queued: int(&m, "queued").unwrap_or(0),
                running: int(&m, "running").unwrap_or(0),
                cap: int(&m, "cap").unwrap_or(0),
            }
        })
        .collect();
    Ok((next, groups))
}

/// One page of JOB.LIST: the next cursor ("0" at the end) and the records.
pub async fn jobs(
    b: &Backend,
    q: &str,
    status: Option<&str>,
    cursor: &str,
    count: usize,
) -> Result<(String, Vec<Record>)> {
    let mut c = cmd("JOB.LIST", &[q]);
    if let Some(s) = status {
        c.arg("STATUS").arg(s);
    }
    c.arg("CURSOR").arg(cursor).arg("COUNT").arg(count);
    let v = b.query(&c).await?;
    let items = as_list(&v);
    let next = items.first().and_then(as_text).unwrap_or_else(|| "0".into());
    let records = items.get(1).map(as_list).unwrap_or_default().iter().map(as_map).collect();
    Ok((next, records))
}

/// The job as one JSON document (JOB.GET ... JSON), None when there is none.
pub async fn job(b: &Backend, q: &str, id: &str) -> Result<Option<serde_json::Value>> {
    match b.query(&cmd("JOB.GET", &[q, id, "JSON"])).await? {
        Value::Nil => Ok(None),
        v => {
            let text = as_text(&v).unwrap_or_default();
            serde_json::from_str(&text).map(Some).map_err(|e| Failed(format!("JOB.GET JSON is not JSON: {e}")))
        }
    }
}

pub async fn schedules(b: &Backend, q: &str) -> Result<Vec<Record>> {
    let v = b.query(&cmd("SCHEDULE.LIST", &[q])).await?;
    Ok(as_list(&v).iter().map(as_map).collect())
}

/// RATELIMIT.PEEK key LIMIT n PERIOD ms ...: [allowed, remaining, retry_after_ms, reset_ms].
pub async fn peek(b: &Backend, words: &[String]) -> Result<Vec<i64>> {
    let mut c = redis::cmd("RATELIMIT.PEEK");
    for w in words {
        c.arg(w);
    }
    let v = b.query(&c).await?;
    Ok(as_list(&v).iter().filter_map(as_int).collect())
}

/// A command whose reply is a short status or count: the reply as text.
pub async fn act(b: &Backend, name: &str, args: &[&str]) -> Result<String> {
    let v = b.query(&cmd(name, args)).await?;
    Ok(match v {
        Value::Nil => "nil".into(),
        v => as_text(&v).unwrap_or_else(|| "OK".into()),
    })
}

/// A job's events from the queue's events stream. Stream ids are times, so one XREAD of
/// `per_window` entries starts at each instant the job records (created, started, updated,
/// finished): each of its moves is near the start of one window, however busy the queue.
/// Each event's JSON, oldest first, and how many entries were read.
pub async fn history(
    b: &Backend,
    q: &str,
    id: &str,
    instants: &[i64],
    per_window: usize,
) -> Result<(Vec<serde_json::Value>, usize)> {
    let key = format!("aijob:{{{q}}}:events");
    let mut starts: Vec<i64> = instants.iter().copied().filter(|t| *t > 0).collect();
    starts.sort_unstable();
    starts.dedup();
    let mut found: BTreeMap<(i64, i64), serde_json::Value> = BTreeMap::new();
    let mut read = 0;
    let mut covered_until = (0i64, 0i64);
    for t in starts {
        // a window that began earlier already read past this instant
        if (t, 0) <= covered_until {
            continue;
        }
        let mut c = redis::cmd("XREAD");
        c.arg("COUNT").arg(per_window).arg("STREAMS").arg(&key).arg(format!("{}-0", t - 1));
        let entries = stream_entries(&b.query(&c).await?);
        read += entries.len();
        for (entry_id, fields) in entries {
            let pos = entry_pos(&entry_id);
            covered_until = covered_until.max(pos);
            if fields.get("id").map(String::as_str) == Some(id) {
                if let Some(data) = fields.get("data").and_then(|d| serde_json::from_str(d).ok()) {
                    found.insert(pos, data);
                }
            }
        }
    }
    Ok((found.into_values().collect(), read))
}

/// A stream id as (ms, sequence), ordered as the stream orders them.
fn entry_pos(id: &str) -> (i64, i64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The entries of an XREAD reply for one stream: (entry id, field -> value).
pub fn stream_entries(v: &Value) -> Vec<(String, BTreeMap<String, String>)> {
    // RESP2: [[key, [[id, [f, v, ...]], ...]]]; RESP3: {key: [[id, [f, v, ...]], ...]}
    let per_stream: Vec<&Value> = match v {
        Value::Array(streams) => streams.iter().filter_map(|s| as_list(s).get(1)).collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for entries in per_stream {
        for e in as_list(entries) {
            let parts = as_list(e);
            let (Some(id), Some(fields)) = (parts.first().and_then(as_text), parts.get(1)) else { continue };
            let map = as_map(fields).into_iter().filter_map(|(k, v)| Some((k, as_text(&v)?))).collect();
            out.push((id, map));
        }
    }
    out
}
