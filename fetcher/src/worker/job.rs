//! A claimed job, as JOB.CLAIM hands it out.

use crate::providers::ProviderName;
use crate::rconn::Record;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub queue: String,
    pub id: String,
    /// The lease token that fences every command on the job.
    pub token: String,
    pub payload: Vec<u8>,
    pub attempts: i64,
    pub max_attempts: i64,
    /// The creator's estimate of the tokens the call takes (1 when unset).
    pub cost: u64,
    /// The provider whose budgets the claim itself charged (a charged claim), if any.
    pub charged: Option<ProviderName>,
}

impl Job {
    /// None when the record lacks its id or token (it comes back when its lease expires).
    pub fn from_record(queue: &str, r: &Record, charged: Option<ProviderName>) -> Option<Job> {
        Some(Job {
            queue: queue.to_string(),
            id: r.str("id")?,
            token: r.str("token")?,
            payload: r.bytes("payload").unwrap_or_default(),
            attempts: r.int("attempts").unwrap_or(0),
            max_attempts: r.int("max_attempts").unwrap_or(0),
            cost: r.int("cost").unwrap_or(1).max(0) as u64,
            charged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn records_with_id_and_token_become_jobs() {
        let flat = Value::Array(
            ["id", "j1", "token", "t1", "payload", "{}", "attempts", "2", "cost", "-5"].map(bulk).to_vec(),
        );
        let r = Record::from_value(&flat).unwrap();
        let j = Job::from_record("q", &r, Some(ProviderName::Gemini)).unwrap();
        assert_eq!((j.id.as_str(), j.token.as_str(), j.payload.as_slice()), ("j1", "t1", &b"{}"[..]));
        assert_eq!((j.attempts, j.max_attempts, j.cost, j.charged), (2, 0, 0, Some(ProviderName::Gemini)));
        let map =
            Value::Map(vec![(bulk("id"), bulk("j2")), (bulk("token"), bulk("t2")), (bulk("cost"), Value::Int(7))]);
        let j = Job::from_record("q", &Record::from_value(&map).unwrap(), None).unwrap();
        assert_eq!((j.cost, j.payload.len()), (7, 0));
        let no_token = Value::Array(["id", "j3"].map(bulk).to_vec());
        assert_eq!(Job::from_record("q", &Record::from_value(&no_token).unwrap(), None), None);
    }
}
