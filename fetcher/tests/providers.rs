//! Provider calls against real processes: redis-server with the module, the fetcher binary,
//! and a local HTTP server speaking the Gemini and OpenAI formats. Each outcome (200, 429
//! with Retry-After, 500, 400, a call slower than the timeout, no key, no endpoint) ends in
//! the right job status, attempts and error class.

mod common;

use std::time::Duration;

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;
use serde_json::json;

const KEY_G: &str = "gk-test-0123456789";
const KEY_O: &str = "sk-test-9876543210";

fn fetcher_with_keys(srv: &Server, mock: &MockProvider, extra: &[&str]) -> Fetcher {
    let url = mock.url();
    let endpoint = format!("summarize={}/summarize", mock.url());
    let mut args = vec!["--http-endpoint", endpoint.as_str()];
    args.extend_from_slice(extra);
    Fetcher::start(
        srv,
        &args,
        &[("GEMINI_API_KEY", KEY_G), ("GEMINI_BASE_URL", &url), ("OPENAI_API_KEY", KEY_O), ("OPENAI_BASE_URL", &url)],
    )
}

fn result_of(c: &mut Connection, q: &str, id: &str) -> serde_json::Value {
    job_json(c, q, id)["result"].clone()
}

const T: Duration = Duration::from_secs(20);

#[test]
fn every_provider_answers_and_the_result_has_the_documented_shape() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher_with_keys(&srv, &mock, &[]);
    let mut c = srv.conn();

    let g = create_job(&mut c, "default", &gemini("hello gemini"), &[]);
    let o = create_job(&mut c, "default", &openai("hello openai"), &[]);
    let img = create_job(
        &mut c,
        "default",
        &json!({"provider": "openai", "model": "gpt-image-1", "request": {"prompt": "a red fox", "size": "256x256"}}),
        &[],
    );
    let h = create_job(
        &mut c,
        "default",
        &json!({"provider": "http", "endpoint": "summarize", "request": {"text": "hello http"}}),
        &[],
    );
    let e = create_job(&mut c, "default", &json!({"provider": "echo", "request": {"prompt": "hi", "n": 1}}), &[]);

    for id in [&g, &o, &img, &h, &e] {
        let r = wait_finished(&mut c, "default", id, T);
        assert_eq!(fs(&r, "status"), "done", "{id}: {r:?}");
        assert_eq!(fi(&r, "attempts"), 1);
    }
    // subscribers see what each call waits on, before it is done
    let kinds: Vec<(String, String)> = events(&mut c, "default", &g)
        .into_iter()
        .map(|(k, d)| (k, d["progress"].as_str().unwrap_or("").to_string()))
        .collect();
    let progress = kinds.iter().position(|(k, p)| k == "progress" && p == "calling gemini gemini-2.0-flash");
    let done = kinds.iter().position(|(k, _)| k == "done");
    assert!(progress.is_some() && progress < done, "{kinds:?}");

    let rg = result_of(&mut c, "default", &g);
    assert_eq!(rg["provider"], "gemini");
    assert_eq!(rg["model"], "gemini-2.0-flash");
    assert_eq!(rg["text"], "echo: hello gemini");
    assert_eq!(rg["usage"], json!({"input_tokens": 11, "output_tokens": 7}));
    assert_eq!(rg["output"]["candidates"][0]["content"]["parts"][0]["text"], "echo: hello gemini");
    let rec = job(&mut c, "default", &g).unwrap();
    assert_eq!(fi(&rec, "usage"), 18, "the final update reports USAGE = input + output tokens");

    let ro = result_of(&mut c, "default", &o);
    assert_eq!(ro["provider"], "openai");
    assert_eq!(ro["model"], "gpt-4o-mini");
    assert_eq!(ro["text"], "echo: hello openai");
    assert_eq!(ro["usage"], json!({"input_tokens": 13, "output_tokens": 5}));

    let ri = result_of(&mut c, "default", &img);
    assert_eq!(ri["output"]["data"][0]["b64_json"], "iVBORw0KGgo=");
    assert!(ri.get("text").is_none(), "an image has no text: {ri}");
    assert_eq!(ri["usage"], json!({"input_tokens": 3, "output_tokens": 100}));

    let rh = result_of(&mut c, "default", &h);
    assert_eq!(rh["provider"], "http");
    assert_eq!(rh["text"], "echo: hello http");
    assert_eq!(rh["usage"], json!({"input_tokens": 2, "output_tokens": 3}));

    let re = result_of(&mut c, "default", &e);
    assert_eq!(re["output"], json!({"prompt": "hi", "n": 1}));
    assert_eq!(re["text"], "hi");

    // What the provider server saw: the documented paths, headers and bodies.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 4, "echo calls nothing");
    let gr = reqs.iter().find(|r| r.prompt == "hello gemini").unwrap();
    assert_eq!(gr.method, "POST");
    assert_eq!(gr.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(gr.header("x-goog-api-key"), Some(KEY_G));
    assert_eq!(gr.header("authorization"), None);
    assert_eq!(gr.json(), gemini("hello gemini")["request"]);
    let or = reqs.iter().find(|r| r.prompt == "hello openai").unwrap();
    assert_eq!(or.path, "/v1/chat/completions");
    assert_eq!(or.header("authorization"), Some(format!("Bearer {KEY_O}").as_str()));
    assert_eq!(or.json()["model"], "gpt-4o-mini");
    let ir = reqs.iter().find(|r| r.prompt == "a red fox").unwrap();
    assert_eq!(ir.path, "/v1/images/generations");
    let hr = reqs.iter().find(|r| r.prompt == "hello http").unwrap();
    assert_eq!(hr.path, "/summarize");
    assert_eq!(hr.header("authorization"), None, "no key goes to an http endpoint");
    assert_eq!(hr.header("x-goog-api-key"), None);
}

#[test]
fn failures_end_in_the_right_status_attempts_and_class() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher_with_keys(&srv, &mock, &["--timeout", "1"]);
    let mut c = srv.conn();
    let q = "default";
    let three = ["MAXATTEMPTS", "3"];
    let two = ["MAXATTEMPTS", "2"];

    let ra = create_job(&mut c, q, &gemini("429/ra=2,ok"), &three);
    let date = create_job(&mut c, q, &openai("429/date=2,ok"), &three);
    let e500 = create_job(&mut c, q, &gemini("500"), &two);
    let e503 = create_job(&mut c, q, &openai("503,ok"), &three);
    let e400 = create_job(&mut c, q, &gemini("400"), &three);
    let o404 = create_job(&mut c, q, &openai("404"), &three);
    let slow = create_job(&mut c, q, &gemini("slow=3000"), &two);
    let slow_then_ok = create_job(&mut c, q, &gemini("slow=3000,ok"), &three);

    // 429 with Retry-After: 2 s -> retried after 2 s, not after the module's 100 ms backoff.
    let r = wait_finished(&mut c, q, &ra, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 2));
    let calls: Vec<_> = mock.requests().into_iter().filter(|x| x.prompt == "429/ra=2,ok").collect();
    assert_eq!(calls.len(), 2);
    let gap = calls[1].at - calls[0].at;
    assert!(gap >= Duration::from_millis(1950), "Retry-After 2 s honoured, got {gap:?}");
    let ev = events(&mut c, q, &ra);
    let retry = ev.iter().find(|(_, d)| d["status"] == "delayed").expect("a retry event");
    assert!(retry.1["error"].as_str().unwrap_or("").contains("HTTP 429"), "{:?}", retry.1);

    // Retry-After as an HTTP date (whole seconds): more than a second later.
    let r = wait_finished(&mut c, q, &date, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 2));
    let calls: Vec<_> = mock.requests().into_iter().filter(|x| x.prompt == "429/date=2,ok").collect();
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(900), "{:?}", calls[1].at - calls[0].at);

    // 5xx: retried through the backoff until the attempts run out; class = the status.
    let r = wait_finished(&mut c, q, &e500, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 2, "500".into()));
    assert!(fs(&r, "error").starts_with("HTTP 500: mock status 500"), "{}", fs(&r, "error"));
    assert_eq!(mock.calls("500"), 2);
    let r = wait_finished(&mut c, q, &e503, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 2));

    // Other 4xx: the job ends at once, NORETRY, class = the status code.
    let r = wait_finished(&mut c, q, &e400, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 1, "400".into()));
    assert_eq!(mock.calls("400"), 1);
    let r = wait_finished(&mut c, q, &o404, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 1, "404".into()));

    // Slower than --timeout 1: class timeout, retried.
    let r = wait_finished(&mut c, q, &slow, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 2, "timeout".into()));
    assert_eq!(mock.calls("slow=3000"), 2);
    let r = wait_finished(&mut c, q, &slow_then_ok, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 2));
}

#[test]
fn missing_keys_endpoints_and_bad_payloads_fail_at_once() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    // No Gemini key; OpenAI pointed at a port where nothing listens.
    let f = Fetcher::start(
        &srv,
        &["--http-endpoint", &format!("known={}/x", mock.url())],
        &[("OPENAI_API_KEY", KEY_O), ("OPENAI_BASE_URL", &dead)],
    );
    let mut c = srv.conn();
    let q = "default";
    let g = create_job(&mut c, q, &gemini("ok"), &[]);
    let h = create_job(&mut c, q, &json!({"provider": "http", "endpoint": "nope", "request": {"text": "x"}}), &[]);
    let h_url = create_job(
        &mut c,
        q,
        &json!({"provider": "http", "url": "http://example.com/", "request": {"text": "x"}}),
        &[],
    );
    let bad = create_job(&mut c, q, &json!({"model": "x"}), &[]);
    let unknown = create_job(&mut c, q, &json!({"provider": "claude", "request": {}}), &[]);
    let conn = create_job(&mut c, q, &openai("ok"), &["MAXATTEMPTS", "2"]);

    for (id, class) in [(&g, "config"), (&h, "config"), (&h_url, "config"), (&bad, "payload"), (&unknown, "payload")] {
        let r = wait_finished(&mut c, q, id, T);
        assert_eq!(
            (fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")),
            ("error".into(), 1, class.into()),
            "{r:?}"
        );
    }
    let r = wait_finished(&mut c, q, &g, T);
    assert!(fs(&r, "error").contains("GEMINI_API_KEY"), "a clear message: {}", fs(&r, "error"));
    let r = wait_finished(&mut c, q, &conn, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 2, "connect".into()));
    assert!(!fs(&r, "error").contains("127.0.0.1"), "no URL in the error text: {}", fs(&r, "error"));
    assert_eq!(mock.count(), 0, "no call was made");
    let logs = f.logs();
    assert!(logs.contains("provider enabled") && logs.contains("openai"), "{logs}");
}

#[test]
fn echo_only_says_so_and_runs_echo_jobs() {
    let srv = start_redis();
    let f = Fetcher::start(&srv, &["--queues", "demo"], &[]);
    let mut c = srv.conn();
    let id = create_job(&mut c, "demo", &json!({"provider": "echo", "delay_ms": 50, "request": {"text": "hey"}}), &[]);
    let r = wait_finished(&mut c, "demo", &id, T);
    assert_eq!(fs(&r, "status"), "done");
    assert_eq!(job_json(&mut c, "demo", &id)["result"]["text"], "hey");
    // the log line follows the job's JOB.UPDATE: wait for it
    let logs = wait_until(Duration::from_secs(5), "the job's log line", || {
        let logs = f.logs();
        (logs.contains("job finished") && logs.contains(&id)).then_some(logs)
    });
    assert!(logs.contains("echo only: no API keys set"), "{logs}");
}

#[test]
fn a_result_larger_than_the_module_allows_fails_the_job() {
    let srv = start_redis();
    ok(&mut srv.conn(), &["CONFIG", "SET", "aijob.max-payload-bytes", "400"]);
    let _f = Fetcher::start(&srv, &[], &[]);
    let mut c = srv.conn();
    let id = create_job(&mut c, "default", &json!({"provider": "echo", "request": {"text": "x".repeat(200)}}), &[]);
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 1, "toobig".into()));
}

#[test]
fn heartbeats_keep_a_short_lease_through_a_long_call() {
    let srv = start_redis();
    let mock = MockProvider::start();
    // Two fetchers: if the lease lapsed, the second would claim the job again.
    let _a = fetcher_with_keys(&srv, &mock, &["--lease", "600"]);
    let _b = fetcher_with_keys(&srv, &mock, &["--lease", "600"]);
    let mut c = srv.conn();
    let id = create_job(&mut c, "default", &gemini("slow=2500"), &[]);
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    assert_eq!(mock.calls("slow=2500"), 1);
}

#[test]
fn a_canceled_job_stops_its_call_and_writes_nothing() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let f = fetcher_with_keys(&srv, &mock, &["--lease", "600"]);
    f.wait_ready();
    let mut c = srv.conn();
    let id = create_job(&mut c, "default", &gemini("slow=8000"), &[]);
    wait_until(T, "the call to start", || (mock.calls("slow=8000") == 1).then_some(()));
    assert_eq!(s(&ok(&mut c, &["JOB.CANCEL", "default", &id])), "1");
    wait_until(T, "the fetcher to drop the call", || {
        (f.metric(
            "aijob_fetcher_jobs_total{queue=\"default\",provider=\"gemini\",outcome=\"lost\",class=\"canceled\"}",
        ) == 1.0)
            .then_some(())
    });
    assert_eq!(f.metric("aijob_fetcher_in_flight"), 0.0);
    assert_eq!(status(&mut c, "default", &id), "canceled");
}

#[test]
fn at_most_concurrency_calls_run_at_once() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher_with_keys(&srv, &mock, &["--concurrency", "3"]);
    let mut c = srv.conn();
    let ids: Vec<String> =
        (0..9).map(|i| create_job(&mut c, "default", &gemini(&format!("slow=400,ok #{i}")), &[])).collect();
    for id in &ids {
        assert_eq!(fs(&wait_finished(&mut c, "default", id, T), "status"), "done");
    }
    assert_eq!(mock.max_in_flight(), 3);
}

#[test]
fn weighted_queues_are_served_by_their_weights() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(("a", create_job(&mut c, "a", &gemini(&format!("a{i}")), &[])));
        ids.push(("b", create_job(&mut c, "b", &gemini(&format!("b{i}")), &[])));
    }
    let _f = fetcher_with_keys(&srv, &mock, &["--queues", "a:3,b:1", "--concurrency", "1"]);
    for (q, id) in &ids {
        wait_finished(&mut c, q, id, T);
    }
    let order: String = mock.requests().iter().map(|r| r.prompt.chars().next().unwrap()).collect();
    // Smooth weighted round robin: a a b a, then b takes what a leaves once a is empty.
    assert_eq!(&order[..8], "aabaaaba", "{order}");
    assert_eq!(order.len(), 16);
}

#[test]
fn healthz_and_metrics() {
    let mut srv = start_redis();
    let mock = MockProvider::start();
    let f = fetcher_with_keys(&srv, &mock, &[]);
    f.wait_ready();
    let mut c = srv.conn();
    let ok_id = create_job(&mut c, "default", &gemini("ok"), &[]);
    let bad = create_job(&mut c, "default", &gemini("400"), &[]);
    wait_finished(&mut c, "default", &ok_id, T);
    wait_finished(&mut c, "default", &bad, T);
    let done = "aijob_fetcher_jobs_total{queue=\"default\",provider=\"gemini\",outcome=\"done\",class=\"\"}";
    let failed = "aijob_fetcher_jobs_total{queue=\"default\",provider=\"gemini\",outcome=\"failed\",class=\"400\"}";
    // a job is done in Redis a moment before the fetcher has read the reply and counted it
    let m = wait_until(T, "metrics to count both jobs", || {
        let m = f.metrics();
        (m.contains(done) && m.contains(failed)).then_some(m)
    });
    assert_eq!(common::fetcher::metric_value(&m, done), 1.0, "{m}");
    assert_eq!(common::fetcher::metric_value(&m, failed), 1.0, "{m}");
    assert_eq!(common::fetcher::metric_value(&m, "aijob_fetcher_call_seconds_count{provider=\"gemini\"}"), 2.0);
    assert!(m.contains("aijob_fetcher_call_seconds_bucket{provider=\"gemini\",le=\"+Inf\"} 2"), "{m}");
    assert!(m.contains("# TYPE aijob_fetcher_call_seconds histogram"));
    assert_eq!(common::fetcher::metric_value(&m, "aijob_fetcher_in_flight"), 0.0);
    assert_eq!(common::fetcher::metric_value(&m, "aijob_fetcher_redis_up"), 1.0);
    assert_eq!(f.get("/healthz"), Some((200, "ok\n".into())));
    assert_eq!(f.get("/nope").map(|x| x.0), Some(404));

    srv.kill();
    wait_until(T, "/healthz to see Redis gone", || (f.get("/healthz").map(|x| x.0) == Some(503)).then_some(()));
    assert_eq!(f.metric("aijob_fetcher_redis_up"), 0.0);
}

#[test]
fn help_documents_every_flag_and_shows_no_secret() {
    let out = std::process::Command::new(common::fetcher::exe())
        .arg("--help")
        .env("GEMINI_API_KEY", "gk-help-secret-123")
        .env("OPENAI_API_KEY", "sk-help-secret-456")
        .env("REDIS_URL", "redis://:redis-help-secret-789@127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--redis-url",
        "--cluster",
        "--queues",
        "--discover-every",
        "--queue-provider",
        "--rl-scope",
        "--concurrency",
        "--lease",
        "--grace",
        "--timeout",
        "--rpm",
        "--tpm",
        "--rl-prefix",
        "--rl-period",
        "--fallback",
        "--fallback-429-wait",
        "--cooldown",
        "--cooldown-failures",
        "--cooldown-window",
        "--listen",
        "--gemini-api-key",
        "--gemini-base-url",
        "--openai-api-key",
        "--openai-base-url",
        "--http-endpoint",
        "--worker",
        "--claim-block",
        "--log-format",
        "--log-level",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    for env in
        ["REDIS_URL", "AIJOB_QUEUES", "AIJOB_CONCURRENCY", "AIJOB_RPM", "AIJOB_TPM", "AIJOB_LISTEN", "GEMINI_API_KEY"]
    {
        assert!(help.contains(env), "{env} missing from --help");
    }
    assert!(!help.contains("help-secret"), "{help}");

    let bad = std::process::Command::new(common::fetcher::exe()).args(["--queues", "a:0"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--queues"));
}
