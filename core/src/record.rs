//! The job record: field names, which fields are numbers or JSON, and the control
//! fields the logic reads to move a job.

use crate::error::{AiError, Result};
use crate::job::{Priority, Status};
use crate::json::ObjectWriter;

// The fields of a job record, as stored and as replied. `id` and `queue` are not stored
// (the key name holds them): a reply and an event put them first.
pub const ID: &str = "id";
pub const QUEUE: &str = "queue";
pub const STATUS: &str = "status";
pub const PRIORITY: &str = "priority";
pub const GROUP: &str = "group";
pub const PAYLOAD: &str = "payload";
pub const HASH: &str = "hash";
pub const META: &str = "meta";
pub const PROGRESS: &str = "progress";
pub const PERCENT: &str = "percent";
pub const RESULT: &str = "result";
pub const ERROR: &str = "error";
pub const ERROR_CLASS: &str = "error_class";
pub const ATTEMPTS: &str = "attempts";
pub const MAX_ATTEMPTS: &str = "max_attempts";
pub const COST: &str = "cost";
pub const USAGE: &str = "usage";
pub const CREATED_AT: &str = "created_at";
pub const UPDATED_AT: &str = "updated_at";
pub const STARTED_AT: &str = "started_at";
pub const FINISHED_AT: &str = "finished_at";
pub const RUN_AT: &str = "run_at";
pub const DEADLINE_AT: &str = "deadline_at";
pub const WORKER: &str = "worker";
pub const LEASE_UNTIL: &str = "lease_until";
pub const SCHEDULE: &str = "schedule";
/// A job made with AFTER: its parents' ids in AFTER order, joined by `,` (no id holds
/// one); replied as an array.
pub const PARENTS: &str = "parents";
/// A waiting job: how many of its parents are live (docs/flows.md).
pub const WAITING_ON: &str = "waiting_on";
/// A job made with AFTER: `fail` or `run`, what a failed parent does to it.
pub const ON_PARENT_FAIL: &str = "on_parent_fail";
/// A parent: how many jobs named it in AFTER and have not ended; it is kept while any has not.
pub const DEPENDENTS: &str = "dependents";
/// A job ended `error` (class `dependency`) by a parent: that parent's id.
pub const FAILED_BY: &str = "failed_by";
/// Claim replies only: the parents' ids, statuses and results or errors.
pub const INPUTS: &str = "inputs";
/// Replies only: the record's time to live (-1 while the job is live).
pub const TTL: &str = "ttl";
/// Replies only: a claim's lease token (stored as the internal `_token`).
pub const CLAIM_TOKEN: &str = "token";

/// Fields a reply shows, in reply order.
pub const VISIBLE: [&str; 31] = [
    ID,
    QUEUE,
    STATUS,
    PRIORITY,
    GROUP,
    PAYLOAD,
    HASH,
    META,
    PROGRESS,
    PERCENT,
    RESULT,
    ERROR,
    ERROR_CLASS,
    ATTEMPTS,
    MAX_ATTEMPTS,
    COST,
    USAGE,
    CREATED_AT,
    UPDATED_AT,
    STARTED_AT,
    FINISHED_AT,
    RUN_AT,
    DEADLINE_AT,
    WORKER,
    LEASE_UNTIL,
    SCHEDULE,
    PARENTS,
    ON_PARENT_FAIL,
    WAITING_ON,
    FAILED_BY,
    DEPENDENTS,
];

/// Fields replied as integers.
pub fn is_number(field: &str) -> bool {
    matches!(
        field,
        PERCENT
            | ATTEMPTS
            | MAX_ATTEMPTS
            | COST
            | USAGE
            | CREATED_AT
            | UPDATED_AT
            | STARTED_AT
            | FINISHED_AT
            | RUN_AT
            | DEADLINE_AT
            | LEASE_UNTIL
            | TTL
            | WAITING_ON
            | DEPENDENTS
    )
}

/// Fields that hold JSON and are embedded as JSON in JOB.GET ... JSON.
pub fn is_json(field: &str) -> bool {
    matches!(field, PAYLOAD | RESULT | META)
}

/// Internal fields: kept in the hash (so redis-cli shows everything), never replied.
pub const SEQ: &str = "_seq";
pub const TOKEN: &str = "_token";
pub const LEASE_MS: &str = "_lease_ms";
pub const RETENTION: &str = "_retention";
pub const CACHE_TTL: &str = "_cachettl";
pub const CHARGES: &str = "_charges";
pub const EXPIRE_AT: &str = "_expire_at";
/// The job's output stream, when it has one: `<epoch> <next> <bytes>` (`queue::stream`).
pub const STREAM: &str = "_stream";
/// A waiting job made with DELAY: the delay, counted from its release.
pub const START_DELAY: &str = "_start_delay";
/// A waiting job made with DEADLINE: the deadline, counted from its release.
pub const DEADLINE_MS: &str = "_deadline_ms";

/// The fields the logic needs to move a job (everything but the big values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub id: Vec<u8>,
    pub status: Status,
    pub priority: Priority,
    pub group: Vec<u8>,
    pub seq: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub token: Option<Vec<u8>>,
    pub lease_ms: i64,
    pub hash: Option<Vec<u8>>,
    pub retention_ms: Option<i64>,
    pub cache_ttl_ms: Option<i64>,
    pub deadline_at: Option<i64>,
    pub run_at: Option<i64>,
    pub cost: i64,
    pub charges: Option<Vec<u8>>,
    pub schedule: Option<Vec<u8>>,
    pub progress: Option<Vec<u8>>,
    pub percent: i64,
    pub expire_at: Option<i64>,
    /// `STREAM`, as stored.
    pub stream: Option<Vec<u8>>,
    /// `PARENTS`, as stored (ids joined by `,`).
    pub parents: Option<Vec<u8>>,
    /// `DEPENDENTS`: jobs that named it in AFTER and have not ended; None when no job
    /// ever named it (it has no `dependents:<id>` index).
    pub dependents: Option<i64>,
}

/// The fields `JobState::from_fields` reads, in its order.
pub const STATE_FIELDS: [&str; 22] = [
    STATUS,
    PRIORITY,
    GROUP,
    SEQ,
    ATTEMPTS,
    MAX_ATTEMPTS,
    TOKEN,
    LEASE_MS,
    HASH,
    RETENTION,
    CACHE_TTL,
    DEADLINE_AT,
    RUN_AT,
    COST,
    CHARGES,
    SCHEDULE,
    PROGRESS,
    PERCENT,
    EXPIRE_AT,
    STREAM,
    PARENTS,
    DEPENDENTS,
];

/// A stored integer (a record field, a counter, a score kept as text); None when the bytes
/// are not one.
pub fn int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn num(v: &Option<Vec<u8>>, field: &str) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(b) => int(b).map(Some).ok_or_else(|| AiError::corrupt(&format!("job field {field}"))),
    }
}

impl JobState {
    /// From the values of `STATE_FIELDS`, as `Store::hmget` returns them (moved, not copied).
    pub fn from_fields(id: &[u8], v: Vec<Option<Vec<u8>>>) -> Result<JobState> {
        let fields: [Option<Vec<u8>>; STATE_FIELDS.len()] = v.try_into().map_err(|_| AiError::corrupt("job record"))?;
        let [status, priority, group, seq, attempts, max_attempts, token, lease_ms, hash, retention_ms, cache_ttl_ms, deadline_at, run_at, cost, charges, schedule, progress, percent, expire_at, stream, parents, dependents] =
            fields;
        let status = status.as_deref().and_then(Status::parse).ok_or_else(|| AiError::corrupt("job status"))?;
        let priority = priority.as_deref().and_then(Priority::parse).ok_or_else(|| AiError::corrupt("job priority"))?;
        Ok(JobState {
            id: id.to_vec(),
            status,
            priority,
            group: group.unwrap_or_default(),
            seq: num(&seq, SEQ)?.unwrap_or(0),
            attempts: num(&attempts, ATTEMPTS)?.unwrap_or(0),
            max_attempts: num(&max_attempts, MAX_ATTEMPTS)?.unwrap_or(1),
            token,
            lease_ms: num(&lease_ms, LEASE_MS)?.unwrap_or(0),
            hash,
            retention_ms: num(&retention_ms, RETENTION)?,
            cache_ttl_ms: num(&cache_ttl_ms, CACHE_TTL)?,
            deadline_at: num(&deadline_at, DEADLINE_AT)?,
            run_at: num(&run_at, RUN_AT)?,
            cost: num(&cost, COST)?.unwrap_or(1),
            charges,
            schedule,
            progress,
            percent: num(&percent, PERCENT)?.unwrap_or(0),
            expire_at: num(&expire_at, EXPIRE_AT)?,
            stream,
            parents,
            dependents: num(&dependents, DEPENDENTS)?,
        })
    }
}

/// One field of a reply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    /// An array (a job's `parents`, a claim's `inputs`).
    List(Vec<Value>),
    /// A map in RESP3, a flat array in RESP2 (one entry of `inputs`).
    Map(Vec<(&'static str, Value)>),
}

/// A record as replied: visible fields in order, numbers as integers.
pub type Reply = Vec<(&'static str, Value)>;

/// The visible fields of a stored hash, plus `extra` (`ttl`, `token`). The record does not
/// store its id and queue (the key name holds them): they come first from the caller.
pub fn to_reply(id: &[u8], queue: &[u8], fields: &[(Vec<u8>, Vec<u8>)], extra: Vec<(&'static str, Value)>) -> Reply {
    let mut out: Reply = Vec::with_capacity(VISIBLE.len() + extra.len());
    out.push((ID, Value::Bytes(id.to_vec())));
    out.push((QUEUE, Value::Bytes(queue.to_vec())));
    for name in VISIBLE.iter().skip(2) {
        if let Some((_, v)) = fields.iter().find(|(f, _)| f.as_slice() == name.as_bytes()) {
            let value = if *name == PARENTS {
                Value::List(split_ids(v).map(|id| Value::Bytes(id.to_vec())).collect())
            } else if is_number(name) {
                match std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) {
                    Some(n) => Value::Int(n),
                    None => Value::Bytes(v.clone()),
                }
            } else {
                Value::Bytes(v.clone())
            };
            out.push((name, value));
        }
    }
    out.extend(extra);
    out
}

/// The ids of a stored `PARENTS` field.
pub fn split_ids(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').filter(|id| !id.is_empty())
}

/// One JSON document of a reply: payload, result and meta embedded, not quoted.
pub fn to_json(reply: &Reply) -> Vec<u8> {
    let mut w = ObjectWriter::new();
    for (name, value) in reply {
        match value {
            Value::Int(n) => w.int(name, *n),
            Value::Bytes(b) if is_json(name) => w.raw(name, b),
            Value::Bytes(b) => w.string(name, b),
            Value::List(items) => w.raw(name, &json_list(items)),
            Value::Map(pairs) => w.raw(name, &to_json(pairs)),
        };
    }
    w.finish()
}

/// A `List` as a JSON array: strings quoted, maps as objects (inputs nest one level).
fn json_list(items: &[Value]) -> Vec<u8> {
    let mut out = vec![b'['];
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item {
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Bytes(b) => crate::json::write_string(&mut out, b),
            Value::List(inner) => out.extend(json_list(inner)),
            Value::Map(pairs) => out.extend(to_json(pairs)),
        }
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_orders_types_and_hides_internal_fields() {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"_token".to_vec(), b"secret".to_vec()),
            (b"status".to_vec(), b"queued".to_vec()),
            (b"attempts".to_vec(), b"0".to_vec()),
            (b"payload".to_vec(), br#"{"a":1}"#.to_vec()),
        ];
        let r = to_reply(b"j", b"q", &fields, vec![("ttl", Value::Int(-1))]);
        let names: Vec<&str> = r.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["id", "queue", "status", "payload", "attempts", "ttl"]);
        assert_eq!(r[4].1, Value::Int(0));
        let doc: serde_json::Value = serde_json::from_slice(&to_json(&r)).unwrap();
        assert_eq!(doc["payload"]["a"], 1);
        assert_eq!(doc["attempts"], 0);
        assert!(doc.get("_token").is_none());
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_panic() {
        let mut v: Vec<Option<Vec<u8>>> = vec![None; STATE_FIELDS.len()];
        assert!(JobState::from_fields(b"j", v.clone()).is_err());
        v[0] = Some(b"queued".to_vec());
        v[1] = Some(b"normal".to_vec());
        v[4] = Some(b"x".to_vec());
        assert!(JobState::from_fields(b"j", v.clone()).is_err());
        v[4] = Some(b"2".to_vec());
        assert_eq!(JobState::from_fields(b"j", v).unwrap().attempts, 2);
        assert!(JobState::from_fields(b"j", vec![]).is_err());
    }
}
