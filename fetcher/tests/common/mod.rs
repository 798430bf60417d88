//! The fetcher's integration-test harness: the module's own harness (tests/common/mod.rs:
//! a real `redis-server --loadmodule` on a free port per test, and its cluster), plus
//! `provider.rs` (a real local HTTP server that speaks the Gemini and OpenAI formats) and
//! `fetcher.rs` (the built `aijob-fetcher` as a child process).

#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod base;

pub use base::*;

pub mod fetcher;
pub mod provider;

use std::time::Duration;

// ---- helpers for the fetcher's tests ----

/// A server whose retries come back fast (backoff base 100 ms).
pub fn start_redis() -> Server {
    let srv = Server::start();
    ok(&mut srv.conn(), &["CONFIG", "SET", "aijob.backoff-base-ms", "100"]);
    srv
}

/// A ready fetcher whose gemini and openai are both `mock`, with keys of the suite's
/// `tag` (a suite's tests look for its keys in logs and streams).
pub fn mock_fetcher(srv: &Server, mock: &provider::MockProvider, tag: &str, extra: &[&str]) -> fetcher::Fetcher {
    let url = mock.url();
    let (gemini_key, openai_key) = (format!("gk-{tag}-123456"), format!("sk-{tag}-654321"));
    let env = [
        ("GEMINI_API_KEY", gemini_key.as_str()),
        ("GEMINI_BASE_URL", url.as_str()),
        ("OPENAI_API_KEY", openai_key.as_str()),
        ("OPENAI_BASE_URL", url.as_str()),
    ];
    let f = fetcher::Fetcher::start(srv, extra, &env);
    f.wait_ready();
    f
}

/// Creates a job with this JSON payload and returns its id.
pub fn create_job(c: &mut Connection, q: &str, payload: &serde_json::Value, extra: &[&str]) -> String {
    let p = payload.to_string();
    let mut w = vec!["JOB.CREATE", q, "PAYLOAD", p.as_str()];
    w.extend_from_slice(extra);
    s(&ok(c, &w))
}

/// A Gemini job's payload whose prompt is `prompt` (the mock provider's script).
pub fn gemini(prompt: &str) -> serde_json::Value {
    serde_json::json!({
        "provider": "gemini",
        "model": "gemini-2.0-flash",
        "request": {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    })
}

/// An OpenAI chat job's payload whose prompt is `prompt`.
pub fn openai(prompt: &str) -> serde_json::Value {
    serde_json::json!({
        "provider": "openai",
        "model": "gpt-4o-mini",
        "request": {"messages": [{"role": "user", "content": prompt}]}
    })
}

/// The job's record (JOB.GET), None when there is none.
pub fn job(c: &mut Connection, q: &str, id: &str) -> Option<Value> {
    match ok(c, &["JOB.GET", q, id]) {
        Value::Nil => None,
        v => Some(v),
    }
}

/// The job as one JSON document (JOB.GET ... JSON).
pub fn job_json(c: &mut Connection, q: &str, id: &str) -> serde_json::Value {
    serde_json::from_str(&s(&ok(c, &["JOB.GET", q, id, "JSON"]))).expect("JOB.GET JSON is JSON")
}

pub fn status(c: &mut Connection, q: &str, id: &str) -> String {
    job(c, q, id).map(|r| fs(&r, "status")).unwrap_or_default()
}

/// Waits until the job has `want` status; returns its record.
pub fn wait_status(c: &mut Connection, q: &str, id: &str, want: &str, timeout: Duration) -> Value {
    wait_until(timeout, &format!("job {id} to be {want}"), || {
        let r = job(c, q, id)?;
        (fs(&r, "status") == want).then_some(r)
    })
}

/// Waits until the job is finished (done, error or canceled); returns its record.
pub fn wait_finished(c: &mut Connection, q: &str, id: &str, timeout: Duration) -> Value {
    wait_until(timeout, &format!("job {id} to finish"), || {
        let r = job(c, q, id)?;
        matches!(fs(&r, "status").as_str(), "done" | "error" | "canceled").then_some(r)
    })
}

/// The events of queue `q` for job `id`, as (type, data JSON), oldest first.
pub fn events(c: &mut Connection, q: &str, id: &str) -> Vec<(String, serde_json::Value)> {
    let key = format!("aijob:{{{q}}}:events");
    let entries = array(&ok(c, &["XRANGE", &key, "-", "+"]));
    let mut out = Vec::new();
    for e in entries {
        let parts = array(&e);
        let fields = array(&parts[1]);
        let get = |name: &str| fields.chunks(2).find(|p| s(&p[0]) == name).map(|p| s(&p[1])).unwrap_or_default();
        if get("id") == id {
            out.push((get("type"), serde_json::from_str(&get("data")).unwrap_or(serde_json::Value::Null)));
        }
    }
    out
}
