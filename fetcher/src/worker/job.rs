//! A claimed job, as JOB.CLAIM hands it out.

use redis::Value;

use crate::placeholders::Input;
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
    /// Its parents' outcomes, in AFTER order (a job of a flow; empty otherwise).
    pub inputs: Vec<Input>,
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
            inputs: r.0.get("inputs").map(inputs_of).unwrap_or_default(),
        })
    }
}

/// The claim reply's `inputs`: an entry per parent (RESP2 a flat array of field/value
/// pairs, RESP3 a map), `id`, `status`, and `result` (or `result_bytes`, its length, when it
/// did not fit in the claim) or `error`. An entry that cannot be
/// read keeps its place (so `{{parents.N...}}` still names the N-th parent) with no status:
/// a placeholder naming it fails. A map of entries by id is read in its order too.
fn inputs_of(v: &Value) -> Vec<Input> {
    let entries: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, e)| e).collect(),
        _ => Vec::new(),
    };
    entries.into_iter().map(|e| Record::from_value(e).map(|r| input_of(&r)).unwrap_or_default()).collect()
}

fn input_of(r: &Record) -> Input {
    Input {
        id: r.str("id").unwrap_or_default(),
        status: r.str("status").unwrap_or_default(),
        result: r.bytes("result"),
        result_bytes: r.int("result_bytes").and_then(|n| u64::try_from(n).ok()),
        error: r.str("error"),
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
        assert!(j.inputs.is_empty(), "a job without parents has no inputs");
    }

    #[test]
    fn inputs_are_read_in_after_order_from_resp2_and_resp3() {
        let done = Value::Array(["id", "p1", "status", "done", "result", r#"{"text":"hi"}"#].map(bulk).to_vec());
        let failed = Value::Map(vec![
            (bulk("id"), bulk("p2")),
            (bulk("status"), bulk("error")),
            (bulk("error"), bulk("HTTP 500")),
            (bulk("result"), Value::Nil),
        ]);
        let mut flat = ["id", "j", "token", "t"].map(bulk).to_vec();
        flat.extend([bulk("inputs"), Value::Array(vec![done, failed, Value::Int(3)])]);
        let j = Job::from_record("q", &Record::from_value(&Value::Array(flat)).unwrap(), None).unwrap();
        let want = [
            Input {
                id: "p1".into(),
                status: "done".into(),
                result: Some(br#"{"text":"hi"}"#.to_vec()),
                ..Input::default()
            },
            Input { id: "p2".into(), status: "error".into(), error: Some("HTTP 500".into()), ..Input::default() },
            Input::default(),
        ];
        assert_eq!(j.inputs, want, "an unreadable entry keeps its place");

        let entry = Value::Map(vec![(bulk("id"), bulk("p9")), (bulk("status"), bulk("deleted"))]);
        let by_id = Value::Map(vec![(bulk("p9"), entry)]);
        let map = Value::Map(vec![(bulk("id"), bulk("j")), (bulk("token"), bulk("t")), (bulk("inputs"), by_id)]);
        let j = Job::from_record("q", &Record::from_value(&map).unwrap(), None).unwrap();
        assert_eq!((j.inputs.len(), j.inputs[0].id.as_str(), j.inputs[0].status.as_str()), (1, "p9", "deleted"));
    }

    #[test]
    fn a_result_left_out_of_the_claim_gives_its_length() {
        let resp2 = Value::Array(vec![
            bulk("id"),
            bulk("p1"),
            bulk("status"),
            bulk("done"),
            bulk("result_bytes"),
            Value::Int(70000),
        ]);
        let resp3 = Value::Map(vec![
            (bulk("id"), bulk("p2")),
            (bulk("status"), bulk("done")),
            (bulk("result_bytes"), Value::Int(5)),
        ]);
        let as_text = Value::Array(["id", "p3", "status", "done", "result_bytes", "123"].map(bulk).to_vec());
        let odd = Value::Array(["id", "p4", "status", "done", "result_bytes", "-1", "result", "{}"].map(bulk).to_vec());
        let got = inputs_of(&Value::Array(vec![resp2, resp3, as_text, odd]));
        let bytes: Vec<Option<u64>> = got.iter().map(|i| i.result_bytes).collect();
        assert_eq!(bytes, [Some(70000), Some(5), Some(123), None], "a negative length is no length");
        assert!(got[..3].iter().all(|i| i.result.is_none() && i.status == "done"), "{got:?}");
        assert_eq!(got[3].result.as_deref(), Some(&b"{}"[..]));
    }
}
