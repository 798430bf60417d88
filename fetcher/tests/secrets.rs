//! The secret scan: the API keys (and the Redis password) never appear in the fetcher's
//! logs, in any Redis key (job records, results, errors, events stream), in a published
//! event, or in /metrics, even when a provider echoes the key back.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;

const GKEY: &str = "gk-SECRET-4f1b2c3d5e";
const OKEY: &str = "sk-SECRET-9a8b7c6d5e";
const REDIS_PW: &str = "rpw-SECRET-77aa88bb";
const T: Duration = Duration::from_secs(20);

/// Every value of every key, as text.
fn dump_keys(c: &mut Connection) -> String {
    let mut out = String::new();
    for k in keys(c) {
        let t = s(&ok(c, &["TYPE", &k]));
        let v = match t.as_str() {
            "string" => ok(c, &["GET", &k]),
            "hash" => ok(c, &["HGETALL", &k]),
            "list" => ok(c, &["LRANGE", &k, "0", "-1"]),
            "set" => ok(c, &["SMEMBERS", &k]),
            "zset" => ok(c, &["ZRANGE", &k, "0", "-1", "WITHSCORES"]),
            "stream" => ok(c, &["XRANGE", &k, "-", "+"]),
            other => panic!("unexpected type {other} of {k}"),
        };
        out.push_str(&format!("{k} => {}\n", flatten(&v)));
    }
    out
}

fn flatten(v: &Value) -> String {
    match v {
        Value::Array(a) => a.iter().map(flatten).collect::<Vec<_>>().join(" "),
        Value::Map(m) => m.iter().map(|(k, v)| format!("{} {}", flatten(k), flatten(v))).collect::<Vec<_>>().join(" "),
        Value::Nil => "nil".into(),
        other => s(other),
    }
}

#[test]
fn no_secret_in_logs_records_events_or_metrics() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.backoff-base-ms", "50"]);

    // Every published event, from before the first job.
    let mut sub = srv.conn();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2) = (seen.clone(), stop.clone());
    let subscribed = Arc::new(AtomicBool::new(false));
    let sub2 = subscribed.clone();
    let listener = std::thread::spawn(move || {
        let mut ps = sub.as_pubsub();
        ps.psubscribe("aijob:*").unwrap();
        ps.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        sub2.store(true, Ordering::SeqCst);
        while !stop2.load(Ordering::SeqCst) {
            if let Ok(m) = ps.get_message() {
                let payload: String = m.get_payload().unwrap_or_default();
                seen2.lock().unwrap().push(format!("{} {payload}", m.get_channel_name()));
            }
        }
    });
    wait_until(T, "the subscriber", || subscribed.load(Ordering::SeqCst).then_some(()));
    ok(&mut c, &["CONFIG", "SET", "requirepass", REDIS_PW]);

    let url = mock.url();
    let redis_url = format!("redis://:{REDIS_PW}@127.0.0.1:{}/", srv.port);
    let f = Fetcher::start_url(
        &redis_url,
        &["--log-level", "debug", "--timeout", "1", "--rpm", "1000", "--tpm", "100000"],
        &[("GEMINI_API_KEY", GKEY), ("GEMINI_BASE_URL", &url), ("OPENAI_API_KEY", OKEY), ("OPENAI_BASE_URL", &url)],
    );
    let q = "default";
    let two = ["MAXATTEMPTS", "2"];
    let ids = [
        create_job(&mut c, q, &gemini("ok"), &[]),
        create_job(&mut c, q, &gemini("okkey"), &[]),
        create_job(&mut c, q, &gemini("echokey"), &[]),
        create_job(&mut c, q, &openai("ok"), &[]),
        create_job(&mut c, q, &openai("okkey"), &[]),
        create_job(&mut c, q, &openai("echokey"), &[]),
        create_job(&mut c, q, &openai("500"), &two),
        create_job(&mut c, q, &gemini("429/ra=0,slow=3000"), &two),
    ];
    for id in &ids {
        wait_finished(&mut c, q, id, T);
    }
    // The provider did get the keys (the scan below is not vacuous).
    let reqs = mock.requests();
    assert!(reqs.iter().any(|r| r.header("x-goog-api-key") == Some(GKEY)));
    assert!(reqs.iter().any(|r| r.header("authorization") == Some(&format!("Bearer {OKEY}"))));
    let leaky = job_json(&mut c, q, &ids[2]);
    assert!(leaky["error"].as_str().unwrap().contains("[redacted]"), "{leaky}");
    let leaky_ok = job_json(&mut c, q, &ids[1]);
    assert!(leaky_ok["result"]["text"].as_str().unwrap().contains("[redacted]"), "{leaky_ok}");

    let metrics = f.metrics();
    let healthz = f.get("/healthz");
    assert_eq!(healthz.as_ref().map(|h| h.0), Some(200));
    stop.store(true, Ordering::SeqCst);
    listener.join().unwrap();
    let events = seen.lock().unwrap().join("\n");
    assert!(events.contains("\"status\":\"done\""), "the subscriber saw the events: {events}");
    let stored = dump_keys(&mut c);
    assert!(stored.contains("[redacted]"));
    // the log line follows the job's final update
    let logs = wait_until(T, "the job's log line", || {
        let logs = f.logs();
        logs.contains("job finished").then_some(logs)
    });

    for secret in [GKEY, OKEY, REDIS_PW] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!stored.contains(secret), "{secret} in Redis:\n{stored}");
        assert!(!events.contains(secret), "{secret} in an event:\n{events}");
        assert!(!metrics.contains(secret), "{secret} in /metrics:\n{metrics}");
    }
}
