//! Flows through the fetcher, against real processes (redis-server with the module, the
//! fetcher binary, the mock provider): a job made with AFTER gets its parents' results in
//! its request through the placeholders of README "Flows: a parent's result in the request",
//! so a chain of AI calls runs with no app in the middle; a placeholder that its parents
//! cannot fill ends the job with class `input`, no call made.

mod common;

use std::time::Duration;

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);
const Q: &str = "flow";

/// A fetcher on `queues`: with Q alone a finished job claims the next itself (JOB.UPDATE
/// ... NEXT), with another queue beside it every job comes from JOB.CLAIM; both replies
/// carry `inputs`.
fn start_fetcher(srv: &Server, mock: &MockProvider, queues: &str) -> Fetcher {
    let url = mock.url();
    let env = [("GEMINI_API_KEY", "gk-flow"), ("GEMINI_BASE_URL", &url), ("OPENAI_API_KEY", "sk-flow")];
    Fetcher::start(srv, &["--queues", queues], &[env[0], env[1], env[2], ("OPENAI_BASE_URL", &url)])
}

/// An OpenAI chat job whose one user message is `content`.
fn chat(content: &str) -> serde_json::Value {
    json!({"provider": "openai", "model": "gpt-4o-mini", "request": {"messages": [{"role": "user", "content": content}]}})
}

/// The bodies of the chat requests the mock got, as JSON.
fn chat_requests(mock: &MockProvider) -> Vec<serde_json::Value> {
    mock.requests().iter().filter(|r| r.path == "/v1/chat/completions").map(|r| r.json()).collect()
}

#[test]
fn a_two_step_flow_runs_with_the_first_answer_in_the_second_request() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    // Both steps exist before any runs: the second waits for the first.
    let s1 = create_job(&mut c, Q, &gemini("Describe the sketch"), &["ID", "s1"]);
    let s2 = create_job(&mut c, Q, &chat("Improve this design: {{parents.0.text}}"), &["AFTER", &s1]);
    assert_eq!(status(&mut c, Q, &s2), "waiting");

    let _f = start_fetcher(&srv, &mock, Q);
    let r = wait_finished(&mut c, Q, &s2, T);
    assert_eq!(fs(&r, "status"), "done", "{r:?}");
    assert_eq!(fs(&wait_finished(&mut c, Q, &s1, T), "status"), "done");

    let first = job_json(&mut c, Q, &s1)["result"]["text"].as_str().unwrap_or_default().to_string();
    assert_eq!(first, "echo: Describe the sketch", "the mock's first answer");
    let asked = chat_requests(&mock);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["messages"][0]["content"], format!("Improve this design: {first}"));
    let second = &job_json(&mut c, Q, &s2)["result"];
    assert_eq!(second["text"], format!("echo: Improve this design: {first}"), "step 2's result is stored");
    assert_eq!(second["provider"], "openai");
    let order: Vec<&str> =
        mock.requests().iter().map(|r| if r.path.contains("generateContent") { "g" } else { "o" }).collect();
    assert_eq!(order, ["g", "o"], "the second call after the first answered");
}

#[test]
fn fan_in_by_position_and_id_and_a_parents_whole_result() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let a = create_job(&mut c, Q, &gemini("part A"), &["ID", "part:a"]);
    let b = create_job(&mut c, Q, &chat("part B"), &["ID", "part.b"]);
    let merge = json!({"provider": "echo", "request": {
        "text": "{{parents[part.b].text}} + {{parents.0.text}}",
        "raw": ["{{ parents[part:a].result }}"]
    }});
    let m = create_job(&mut c, Q, &merge, &["AFTER", &a, &b]);

    let _f = start_fetcher(&srv, &mock, "flow,other");
    let r = wait_finished(&mut c, Q, &m, T);
    assert_eq!(fs(&r, "status"), "done", "{r:?}");
    let out = &job_json(&mut c, Q, &m)["result"]["output"];
    assert_eq!(out["text"], "echo: part B + echo: part A");
    let raw: serde_json::Value = serde_json::from_str(out["raw"][0].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(raw, job_json(&mut c, Q, &a)["result"], "the parent's stored result, whole");
}

#[test]
fn a_placeholder_naming_a_missing_parent_ends_the_job_without_a_call() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let s1 = create_job(&mut c, Q, &gemini("first"), &[]);
    let beyond = create_job(&mut c, Q, &chat("Use {{parents.1.text}}"), &["AFTER", &s1]);
    let by_id = create_job(&mut c, Q, &chat("Use {{parents[nope].text}}"), &["AFTER", &s1]);
    let no_after = create_job(&mut c, Q, &chat("Use {{parents.0.text}}"), &[]);
    let typo = create_job(&mut c, Q, &chat("Use {{parents.0.txt}}"), &["AFTER", &s1]);

    let _f = start_fetcher(&srv, &mock, Q);
    for (id, why) in [
        (&beyond, "{{parents.1.text}}: no such parent: the job has 1 parent"),
        (&by_id, "{{parents[nope].text}}: nope is not a parent of this job"),
        (&no_after, "{{parents.0.text}}: no such parent: the job has no parents"),
        (&typo, "{{parents.0.txt}}: not a placeholder"),
    ] {
        let r = wait_finished(&mut c, Q, id, T);
        let got = (fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class"));
        assert_eq!(got, ("error".into(), 1, "input".into()), "{why}: {r:?}");
        assert!(fs(&r, "error").starts_with(why), "{why}: {}", fs(&r, "error"));
    }
    assert_eq!(fs(&wait_finished(&mut c, Q, &s1, T), "status"), "done");
    assert!(chat_requests(&mock).is_empty(), "no call with a hole in its request: {:?}", chat_requests(&mock));
}

#[test]
fn under_onparentfail_run_a_child_gets_its_failed_parents_error_and_text_of_it_fails() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    // The mock answers 400 to this prompt: the parent ends error at once (NORETRY).
    let p = create_job(&mut c, Q, &gemini("400"), &[]);
    let explain = create_job(&mut c, Q, &chat("Explain: {{parents.0.error}}"), &["AFTER", &p, "ONPARENTFAIL", "run"]);
    let uses_text = create_job(&mut c, Q, &chat("Use: {{parents.0.text}}"), &["AFTER", &p, "ONPARENTFAIL", "run"]);

    let _f = start_fetcher(&srv, &mock, Q);
    let r = wait_finished(&mut c, Q, &explain, T);
    assert_eq!(fs(&r, "status"), "done", "{r:?}");
    let parent_error = fs(&wait_finished(&mut c, Q, &p, T), "error");
    assert!(parent_error.starts_with("HTTP 400"), "{parent_error}");
    let asked = chat_requests(&mock);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["messages"][0]["content"], format!("Explain: {parent_error}"));

    let r = wait_finished(&mut c, Q, &uses_text, T);
    assert_eq!((fs(&r, "status"), fs(&r, "error_class")), ("error".into(), "input".into()), "{r:?}");
    assert!(fs(&r, "error").contains("has status error (not done), so no result"), "{}", fs(&r, "error"));
}

#[test]
fn a_parents_result_left_out_of_the_claim_is_read_with_job_get() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    // Each parent's result (about 1,500 bytes: its 600-character answer, twice, with the
    // fetcher's fields) is under the limit, so each is stored; both together pass it, so the
    // child's claim carries the first and announces the second by its size alone.
    let limit: usize = 2000;
    ok(&mut c, &["CONFIG", "SET", "aijob.max-payload-bytes", &limit.to_string()]);
    let (long_a, long_b) = ("A".repeat(600), "B".repeat(600));
    let a = create_job(&mut c, Q, &gemini(&long_a), &["ID", "big:a"]);
    let b = create_job(&mut c, Q, &gemini(&long_b), &["ID", "big:b"]);
    // The mock answers the last message: the child's own result stays small.
    let messages = json!([{"role": "user", "content": "1: {{parents.0.text}} 2: {{parents.1.text}}"},
        {"role": "user", "content": "Compare them"}]);
    let mut compare = chat("");
    compare["request"]["messages"] = messages;
    let both = create_job(&mut c, Q, &compare, &["AFTER", &a, &b]);

    let mut f = start_fetcher(&srv, &mock, Q);
    for id in [&a, &b] {
        let r = wait_finished(&mut c, Q, id, T);
        assert_eq!(fs(&r, "status"), "done", "{r:?}");
    }
    let r = wait_finished(&mut c, Q, &both, T);
    assert_eq!(fs(&r, "status"), "done", "{r:?}");
    let results: Vec<String> = [&a, &b].map(|id| fs(&job(&mut c, Q, id).unwrap_or(Value::Nil), "result")).to_vec();
    let lens = (results[0].len(), results[1].len());
    assert!(lens.0 < limit && lens.1 < limit && lens.0 + lens.1 > limit, "{lens:?} against {limit}");
    let asked = chat_requests(&mock);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let want = format!("1: echo: {long_a} 2: echo: {long_b}");
    assert_eq!(asked[0]["messages"][0]["content"], want, "both parents' texts in the request");

    // What such a claim carries: a job like the child, claimed here with the fetcher gone.
    f.kill();
    let probe = create_job(&mut c, Q, &chat("probe"), &["AFTER", &a, &b]);
    let claimed = ok(&mut c, &["JOB.CLAIM", Q]);
    let record = array(&claimed).into_iter().next().unwrap_or(Value::Nil);
    assert_eq!(fs(&record, "id"), probe);
    let inputs = array(&field(&record, "inputs").unwrap_or(Value::Nil));
    assert_eq!(inputs.len(), 2, "{record:?}");
    assert_eq!(fs(&inputs[0], "result"), results[0], "the first result fits");
    assert_eq!(field(&inputs[1], "result"), None, "the second does not: {:?}", inputs[1]);
    assert_eq!(fi(&inputs[1], "result_bytes"), lens.1 as i64);
}
