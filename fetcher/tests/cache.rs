//! End to end through the cache: CACHE.GETORQUEUE -> the fetcher calls the provider once ->
//! the job is done -> the same CACHE.GETORQUEUE is a hit; 20 identical concurrent requests
//! make exactly one provider call.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn fetcher(srv: &Server, mock: &MockProvider) -> Fetcher {
    let url = mock.url();
    Fetcher::start(srv, &[], &[("GEMINI_API_KEY", "gk-cache-123456"), ("GEMINI_BASE_URL", &url)])
}

/// CACHE.GETORQUEUE: (kind, id, result).
fn get_or_queue(c: &mut Connection, q: &str, payload: &str) -> (String, Option<String>, Option<String>) {
    let v = array(&ok(c, &["CACHE.GETORQUEUE", q, "PAYLOAD", payload]));
    let opt = |x: &Value| if matches!(x, Value::Nil) { None } else { Some(s(x)) };
    (s(&v[0]), opt(&v[1]), opt(&v[2]))
}

#[test]
fn getorqueue_calls_once_then_hits() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock);
    let mut c = srv.conn();
    let payload = gemini("cached question").to_string();

    let (kind, id, _) = get_or_queue(&mut c, "default", &payload);
    assert_eq!(kind, "queued");
    let id = id.unwrap();
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!(fs(&r, "status"), "done");
    assert_eq!(mock.calls("cached question"), 1);

    let (kind, hit_id, result) = get_or_queue(&mut c, "default", &payload);
    assert_eq!((kind.as_str(), hit_id), ("hit", None));
    let result: serde_json::Value = serde_json::from_str(&result.unwrap()).unwrap();
    assert_eq!(result, job_json(&mut c, "default", &id)["result"]);
    assert_eq!(result["text"], "echo: cached question");

    // The same request with its keys in another order is the same request (canonical JSON).
    let reordered = json!({
        "request": {"contents": [{"parts": [{"text": "cached question"}], "role": "user"}]},
        "model": "gemini-2.0-flash",
        "provider": "gemini"
    })
    .to_string();
    assert_eq!(get_or_queue(&mut c, "default", &reordered).0, "hit");
    assert_eq!(mock.calls("cached question"), 1, "no second call");
}

#[test]
fn twenty_identical_concurrent_requests_make_one_call() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock);
    let prompt = "slow=800,ok";
    let payload = gemini(prompt).to_string();
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let mut c = srv.conn();
            let (b, p) = (barrier.clone(), payload.clone());
            std::thread::spawn(move || {
                b.wait();
                get_or_queue(&mut c, "default", &p)
            })
        })
        .collect();
    let replies: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let queued: Vec<_> = replies.iter().filter(|r| r.0 == "queued").collect();
    assert_eq!(queued.len(), 1, "{replies:?}");
    let id = queued[0].1.clone().unwrap();
    for r in &replies {
        assert!(r.0 == "queued" || (r.0 == "pending" && r.1.as_deref() == Some(id.as_str())), "{r:?}");
    }
    let mut c = srv.conn();
    assert_eq!(fs(&wait_finished(&mut c, "default", &id, T), "status"), "done");
    assert_eq!(get_or_queue(&mut c, "default", &payload).0, "hit");
    assert_eq!(mock.calls(prompt), 1, "exactly one provider call");
    assert_eq!(mock.count(), 1);
}
