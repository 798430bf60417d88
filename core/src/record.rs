//! The job record: field names, which fields are numbers or JSON, and the control
//! fields the logic reads to move a job.

use crate::error::{AiError, Result};
use crate::job::{Priority, Status};
use crate::json::ObjectWriter;

/// Fields a reply shows, in reply order.
pub const VISIBLE: [&str; 26] = [
    "id",
    "queue",
    "status",
    "priority",
    "group",
    "payload",
    "hash",
    "meta",
    "progress",
    "percent",
    "result",
    "error",
    "error_class",
    "attempts",
    "max_attempts",
    "cost",
    "usage",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "run_at",
    "deadline_at",
    "worker",
    "lease_until",
    "schedule",
];

/// Fields replied as integers.
pub fn is_number(field: &str) -> bool {
    matches!(
        field,
        "percent"
            | "attempts"
            | "max_attempts"
            | "cost"
            | "usage"
            | "created_at"
            | "updated_at"
            | "started_at"
            | "finished_at"
            | "run_at"
            | "deadline_at"
            | "lease_until"
            | "ttl"
    )
}

/// Fields that hold JSON and are embedded as JSON in JOB.GET ... JSON.
pub fn is_json(field: &str) -> bool {
    matches!(field, "payload" | "result" | "meta")
}

/// Internal fields: kept in the hash (so redis-cli shows everything), never replied.
pub const SEQ: &str = "_seq";
pub const TOKEN: &str = "_token";
pub const LEASE_MS: &str = "_lease_ms";
pub const RETENTION: &str = "_retention";
pub const CACHE_TTL: &str = "_cachettl";
pub const CHARGES: &str = "_charges";
pub const EXPIRE_AT: &str = "_expire_at";

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
}

/// The fields `JobState::from_fields` reads, in its order.
pub const STATE_FIELDS: [&str; 19] = [
    "status",
    "priority",
    "group",
    SEQ,
    "attempts",
    "max_attempts",
    TOKEN,
    LEASE_MS,
    "hash",
    RETENTION,
    CACHE_TTL,
    "deadline_at",
    "run_at",
    "cost",
    CHARGES,
    "schedule",
    "progress",
    "percent",
    EXPIRE_AT,
];

fn num(v: &Option<Vec<u8>>, field: &str) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| AiError::corrupt(&format!("job field {field}"))),
    }
}

impl JobState {
    /// From the values of `STATE_FIELDS`, as `Store::hmget` returns them.
    pub fn from_fields(id: &[u8], v: Vec<Option<Vec<u8>>>) -> Result<JobState> {
        if v.len() != STATE_FIELDS.len() {
            return Err(AiError::corrupt("job record"));
        }
        let status = v[0].as_deref().and_then(Status::parse).ok_or_else(|| AiError::corrupt("job status"))?;
        let priority = v[1].as_deref().and_then(Priority::parse).ok_or_else(|| AiError::corrupt("job priority"))?;
        Ok(JobState {
            id: id.to_vec(),
            status,
            priority,
            group: v[2].clone().unwrap_or_default(),
            seq: num(&v[3], SEQ)?.unwrap_or(0),
            attempts: num(&v[4], "attempts")?.unwrap_or(0),
            max_attempts: num(&v[5], "max_attempts")?.unwrap_or(1),
            token: v[6].clone(),
            lease_ms: num(&v[7], LEASE_MS)?.unwrap_or(0),
            hash: v[8].clone(),
            retention_ms: num(&v[9], RETENTION)?,
            cache_ttl_ms: num(&v[10], CACHE_TTL)?,
            deadline_at: num(&v[11], "deadline_at")?,
            run_at: num(&v[12], "run_at")?,
            cost: num(&v[13], "cost")?.unwrap_or(1),
            charges: v[14].clone(),
            schedule: v[15].clone(),
            progress: v[16].clone(),
            percent: num(&v[17], "percent")?.unwrap_or(0),
            expire_at: num(&v[18], EXPIRE_AT)?,
        })
    }
}

/// One field of a reply.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
}

/// A record as replied: visible fields in order, numbers as integers.
pub type Reply = Vec<(&'static str, Value)>;

/// The visible fields of a stored hash, plus `extra` (`ttl`, `token`). The record does not
/// store its id and queue (the key name holds them): they come first from the caller.
pub fn to_reply(id: &[u8], queue: &[u8], fields: &[(Vec<u8>, Vec<u8>)], extra: Vec<(&'static str, Value)>) -> Reply {
    let mut out: Reply = Vec::with_capacity(VISIBLE.len() + extra.len());
    out.push(("id", Value::Bytes(id.to_vec())));
    out.push(("queue", Value::Bytes(queue.to_vec())));
    for name in VISIBLE.iter().skip(2) {
        if let Some((_, v)) = fields.iter().find(|(f, _)| f.as_slice() == name.as_bytes()) {
            let value = if is_number(name) {
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

/// One JSON document of a reply: payload, result and meta embedded, not quoted.
pub fn to_json(reply: &Reply) -> Vec<u8> {
    let mut w = ObjectWriter::new();
    for (name, value) in reply {
        match value {
            Value::Int(n) => w.int(name, *n),
            Value::Bytes(b) if is_json(name) => w.raw(name, b),
            Value::Bytes(b) => w.string(name, b),
        };
    }
    w.finish()
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
