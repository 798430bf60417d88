//! Fallback and cooldown against real processes: redis-server with the module, the fetcher
//! binary (two of them for the shared cooldown), and a local HTTP server speaking the
//! Gemini and OpenAI formats that counts every request it gets.

mod common;

use std::time::{Duration, Instant};

use common::fetcher::{metric_value, Fetcher};
use common::provider::MockProvider;
use common::*;
use serde_json::{json, Value as Json};

const T: Duration = Duration::from_secs(20);

/// A fetcher whose gemini and openai are both the mock.
fn fetcher(srv: &Server, mock: &MockProvider, extra: &[&str]) -> Fetcher {
    mock_fetcher(srv, mock, "fallback", extra)
}

/// A gemini job whose payload falls back to openai with its own prompt.
fn gemini_then_openai(gemini_prompt: &str, openai_prompt: &str) -> Json {
    let mut p = gemini(gemini_prompt);
    p["fallback"] = json!([openai(openai_prompt)]);
    p
}

fn result_of(c: &mut Connection, q: &str, id: &str) -> Json {
    job_json(c, q, id)["result"].clone()
}

/// Requests the mock got on `path_end` (`:generateContent`, `/chat/completions`).
fn calls_on(mock: &MockProvider, path_end: &str) -> usize {
    mock.requests().iter().filter(|r| r.path.ends_with(path_end)).count()
}

/// The progress texts the job's events carried, in order.
fn progress(c: &mut Connection, q: &str, id: &str) -> Vec<String> {
    events(c, q, id)
        .into_iter()
        .filter(|(kind, _)| kind == "progress")
        .map(|(_, d)| d["progress"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until `sample` of the fetcher's /metrics reaches `want`.
fn wait_metric(f: &Fetcher, sample: &str, want: f64) {
    wait_until(T, &format!("{sample} = {want}"), || (f.metric(sample) == want).then_some(()));
}

#[test]
fn a_503_falls_back_within_the_attempt_and_the_result_names_both() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let f = fetcher(&srv, &mock, &["--fallback", "gemini=openai:gpt-4o-mini"]);
    let mut c = srv.conn();
    let q = "default";

    // The payload's own list: openai with a request of its own.
    let own = create_job(&mut c, q, &gemini_then_openai("503", "secondary ok"), &[]);
    let r = wait_finished(&mut c, q, &own, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1), "one attempt: {r:?}");
    assert_eq!(fi(&r, "usage"), 18, "USAGE is what the answering call used (openai: 13 + 5)");
    let res = result_of(&mut c, q, &own);
    assert_eq!((res["provider"].as_str(), res["model"].as_str()), (Some("openai"), Some("gpt-4o-mini")));
    assert_eq!(res["text"], "echo: secondary ok");
    let tried = res["tried"].as_array().expect("tried").clone();
    assert_eq!(tried.len(), 1, "{res}");
    assert_eq!(
        (&tried[0]["provider"], &tried[0]["model"], &tried[0]["class"]),
        (&json!("gemini"), &json!("gemini-2.0-flash"), &json!("503"))
    );
    assert!(tried[0]["error"].as_str().unwrap().starts_with("HTTP 503: mock status 503"), "{tried:?}");
    assert_eq!((mock.calls("503"), mock.calls("secondary ok")), (1, 1));
    assert_eq!(
        progress(&mut c, q, &own),
        ["calling gemini gemini-2.0-flash", "calling openai gpt-4o-mini (fallback 1, after gemini: 503)"],
        "subscribers see the switch"
    );

    // No list in the payload: --fallback's, with the gemini request written for openai.
    let rule = create_job(&mut c, q, &gemini("503,ok"), &[]);
    let r = wait_finished(&mut c, q, &rule, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    let res = result_of(&mut c, q, &rule);
    assert_eq!((res["provider"].as_str(), res["model"].as_str()), (Some("openai"), Some("gpt-4o-mini")));
    assert_eq!(res["tried"][0]["class"], "503");
    let sent = mock.requests().into_iter().find(|r| r.prompt == "503,ok" && r.path == "/v1/chat/completions");
    assert_eq!(
        sent.expect("openai was called").json(),
        json!({"messages": [{"role": "user", "content": "503,ok"}], "model": "gpt-4o-mini"})
    );

    // `"fallback": []` turns the rules off: the 503 is the job's, retried by the module.
    let mut none = gemini("500");
    none["fallback"] = json!([]);
    let none = create_job(&mut c, q, &none, &["MAXATTEMPTS", "1"]);
    let r = wait_finished(&mut c, q, &none, T);
    assert_eq!((fs(&r, "status"), fs(&r, "error_class")), ("error".into(), "500".into()));
    assert_eq!(fs(&r, "error"), "HTTP 500: mock status 500", "one leg: its own error text");
    assert_eq!(calls_on(&mock, "/chat/completions"), 2, "openai was called for the first two jobs only");

    // Without a fallback the result is unchanged: no `tried`.
    let plain = create_job(&mut c, q, &openai("plain"), &[]);
    wait_finished(&mut c, q, &plain, T);
    assert!(result_of(&mut c, q, &plain).get("tried").is_none());

    wait_metric(&f, "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"openai\",class=\"503\"}", 2.0);
    // a job is counted, and logged, just after its final update lands: wait for both
    let done = "aijob_fetcher_jobs_total{queue=\"default\",provider=\"gemini\",outcome=\"done\",class=\"\"}";
    wait_metric(&f, done, 2.0);
    let m = f.metrics();
    assert_eq!(metric_value(&m, "aijob_fetcher_call_seconds_count{provider=\"openai\"}"), 3.0, "{m}");
    wait_until(T, "the answered_by log line", || f.logs().contains("answered_by=openai gpt-4o-mini").then_some(()));
}

#[test]
fn a_400_tries_no_fallback() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let f = fetcher(&srv, &mock, &["--fallback", "gemini=openai:gpt-4o-mini"]);
    let mut c = srv.conn();
    let q = "default";

    let own = create_job(&mut c, q, &gemini_then_openai("400", "never called"), &["MAXATTEMPTS", "3"]);
    let rule = create_job(&mut c, q, &gemini("400,400"), &["MAXATTEMPTS", "3"]);
    for id in [&own, &rule] {
        let r = wait_finished(&mut c, q, id, T);
        assert_eq!(
            (fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")),
            ("error".into(), 1, "400".into()),
            "a 4xx ends the job at once: {r:?}"
        );
        assert!(fs(&r, "error").starts_with("HTTP 400: mock status 400"), "{}", fs(&r, "error"));
        assert!(!fs(&r, "error").contains("tried"), "{}", fs(&r, "error"));
    }
    assert_eq!(calls_on(&mock, "/chat/completions"), 0, "no fallback was called");
    assert_eq!((mock.calls("400"), mock.calls("400,400")), (1, 1));

    // A fallback that answers 400 after a 503 does not end a job its own provider would retry.
    let worse = create_job(&mut c, q, &gemini_then_openai("503", "400"), &["MAXATTEMPTS", "2"]);
    let r = wait_finished(&mut c, q, &worse, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 2, "400".into()));
    assert!(
        fs(&r, "error").ends_with("(tried gemini gemini-2.0-flash: 503, openai gpt-4o-mini: 400)"),
        "the error names every leg: {}",
        fs(&r, "error")
    );
    assert_eq!((mock.calls("503"), mock.calls("400")), (2, 3));
    wait_metric(&f, "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"openai\",class=\"503\"}", 2.0);
    assert_eq!(f.metric("aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"openai\",class=\"400\"}"), 0.0);
}

#[test]
fn a_timeout_or_a_refused_connection_falls_back() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let dead = format!("dead=http://127.0.0.1:{}/x", free_port());
    let f = fetcher(&srv, &mock, &["--timeout", "1", "--http-endpoint", &dead]);
    let mut c = srv.conn();
    let q = "default";

    let slow = create_job(&mut c, q, &gemini_then_openai("slow=3000", "after the timeout"), &[]);
    let started = Instant::now();
    let r = wait_finished(&mut c, q, &slow, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    assert!(started.elapsed() < Duration::from_millis(2900), "the fallback did not wait for the slow answer");
    let res = result_of(&mut c, q, &slow);
    assert_eq!((res["provider"].as_str(), res["tried"][0]["class"].as_str()), (Some("openai"), Some("timeout")));

    // http to a port where nothing listens, then echo: a chain of providers of any kind.
    let payload = json!({"provider": "http", "endpoint": "dead", "request": {"text": "hello"},
                         "fallback": [{"provider": "echo"}]});
    let refused = create_job(&mut c, q, &payload, &[]);
    let r = wait_finished(&mut c, q, &refused, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    let res = result_of(&mut c, q, &refused);
    assert_eq!((res["provider"].as_str(), res["text"].as_str()), (Some("echo"), Some("hello")));
    assert_eq!(
        (res["tried"][0]["provider"].as_str(), res["tried"][0]["class"].as_str()),
        (Some("http"), Some("connect"))
    );
    assert!(!res["tried"][0]["error"].as_str().unwrap().contains("127.0.0.1"), "no URL in an error text: {res}");

    wait_metric(&f, "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"openai\",class=\"timeout\"}", 1.0);
    assert_eq!(f.metric("aijob_fetcher_fallbacks_total{from=\"http\",to=\"echo\",class=\"connect\"}"), 1.0);
}

#[test]
fn a_429_falls_back_only_past_its_wait() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &["--fallback-429-wait", "1500"]);
    let mut c = srv.conn();
    let q = "default";
    // Retry-After 5 s is past the wait: openai now. 1 s is not: gemini again after it.
    let long = create_job(&mut c, q, &gemini_then_openai("429/ra=5,ok", "instead of waiting"), &[]);
    let short = create_job(&mut c, q, &gemini_then_openai("429/ra=1,ok", "not needed"), &["MAXATTEMPTS", "3"]);

    let r = wait_finished(&mut c, q, &long, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    let res = result_of(&mut c, q, &long);
    assert_eq!((res["provider"].as_str(), res["tried"][0]["class"].as_str()), (Some("openai"), Some("429")));

    let r = wait_finished(&mut c, q, &short, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 2));
    let res = result_of(&mut c, q, &short);
    assert_eq!(res["provider"], "gemini");
    assert!(res.get("tried").is_none(), "the answering attempt tried nothing before: {res}");
    assert_eq!(mock.calls("not needed"), 0);
    let calls: Vec<Instant> = mock.requests().iter().filter(|r| r.prompt == "429/ra=1,ok").map(|r| r.at).collect();
    assert!(calls[1] - calls[0] >= Duration::from_millis(950), "Retry-After honoured: {:?}", calls[1] - calls[0]);
}

const COOL: [&str; 8] =
    ["--cooldown", "60000", "--cooldown-failures", "3", "--cooldown-window", "60000", "--fallback", "gemini=echo"];

#[test]
fn a_cooldown_is_shared_by_two_fetcher_processes() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let a = fetcher(&srv, &mock, &[&COOL[..], &["--queues", "a"]].concat());
    let b = fetcher(&srv, &mock, &[&COOL[..], &["--queues", "b"]].concat());
    let mut c = srv.conn();

    // Three failures on fetcher A: the third trips gemini's breaker.
    let failing: Vec<String> = (0..3).map(|i| create_job(&mut c, "a", &gemini(&format!("503,{i}")), &[])).collect();
    for id in &failing {
        let r = wait_finished(&mut c, "a", id, T);
        assert_eq!(fs(&r, "status"), "done", "echo answered: {r:?}");
        assert_eq!(result_of(&mut c, "a", id)["tried"][0]["class"], "503");
    }
    wait_metric(&a, "aijob_fetcher_cooldowns_total{provider=\"gemini\"}", 1.0);
    assert_eq!(calls_on(&mock, ":generateContent"), 3);
    let cooled = array(&ok(&mut c, &["RATELIMIT.PEEK", "aijob-rl:{gemini}:cooldown", "LIMIT", "1", "PERIOD", "60000"]));
    assert_eq!(int(&cooled[0]), 0, "the cooldown lives in Redis");
    assert!(int(&cooled[2]) > 50_000, "for about --cooldown ms: {cooled:?}");
    assert!(keys(&mut c).contains(&"aijob-rl:{gemini}:failures".to_string()), "{:?}", keys(&mut c));

    // Fetcher B never calls gemini: it goes straight to the fallback.
    let fresh: Vec<String> = (0..5).map(|i| create_job(&mut c, "b", &gemini(&format!("ok #{i}")), &[])).collect();
    for id in &fresh {
        let r = wait_finished(&mut c, "b", id, T);
        assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
        let res = result_of(&mut c, "b", id);
        assert_eq!(res["provider"], "echo");
        assert_eq!(
            (res["tried"][0]["provider"].as_str(), res["tried"][0]["class"].as_str()),
            (Some("gemini"), Some("cooldown"))
        );
    }
    assert_eq!(calls_on(&mock, ":generateContent"), 3, "no call reached the cooled provider");
    assert_eq!(mock.count(), 3);

    wait_metric(&b, "aijob_fetcher_cooldown_skips_total{provider=\"gemini\"}", 5.0);
    let mb = b.metrics();
    assert_eq!(metric_value(&mb, "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"echo\",class=\"cooldown\"}"), 5.0);
    assert_eq!(metric_value(&mb, "aijob_fetcher_cooldowns_total{provider=\"gemini\"}"), 0.0, "A started it, not B");
    let ma = a.metrics();
    assert_eq!(metric_value(&ma, "aijob_fetcher_fallbacks_total{from=\"gemini\",to=\"echo\",class=\"503\"}"), 3.0);
    assert!(a.logs().contains("provider cooled down"), "{}", a.logs());
}

#[test]
fn with_every_provider_cooled_the_job_waits_in_its_queue_without_spending_an_attempt() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let args = ["--cooldown", "1500", "--cooldown-failures", "2", "--cooldown-window", "10000"];
    let f = fetcher(&srv, &mock, &args);
    let mut c = srv.conn();
    let q = "default";
    for i in 0..2 {
        let id = create_job(&mut c, q, &gemini(&format!("503,{i}")), &["MAXATTEMPTS", "1"]);
        assert_eq!(fs(&wait_finished(&mut c, q, &id, T), "error_class"), "503");
    }
    wait_metric(&f, "aijob_fetcher_cooldowns_total{provider=\"gemini\"}", 1.0);
    let asked = Instant::now();
    let peek = array(&ok(&mut c, &["RATELIMIT.PEEK", "aijob-rl:{gemini}:cooldown", "LIMIT", "1", "PERIOD", "1500"]));
    let cool_until = asked + Duration::from_millis(int(&peek[2]) as u64);
    assert_eq!(int(&peek[0]), 0, "cooled down: {peek:?}");

    let late = create_job(&mut c, q, &gemini("ok late"), &["MAXATTEMPTS", "1"]);
    let r = wait_status(&mut c, q, &late, "delayed", T);
    assert_eq!(fi(&r, "attempts"), 0, "given back, the attempt does not count: {r:?}");
    let r = wait_finished(&mut c, q, &late, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1), "called once the cooldown ended: {r:?}");
    let call = mock.requests().into_iter().find(|r| r.prompt == "ok late").expect("the call");
    // Redis counts whole ms: a ms of slack.
    assert!(
        call.at + Duration::from_millis(1) >= cool_until,
        "called {:?} before the cooldown ended",
        cool_until - call.at
    );
    assert_eq!(mock.calls("ok late"), 1);
    let deferred =
        "aijob_fetcher_jobs_total{queue=\"default\",provider=\"gemini\",outcome=\"deferred\",class=\"cooldown\"}";
    assert!(f.metric(deferred) >= 1.0, "{}", f.metrics());
}

#[test]
fn budgets_are_taken_from_the_provider_actually_called() {
    let srv = start_redis();
    let mock = MockProvider::start();
    let args = ["--queues", "bound", "--queue-provider", "bound=gemini", "--tpm", "1000", "--rl-period", "60000"];
    let _f = fetcher(&srv, &mock, &args);
    let mut c = srv.conn();
    let id = create_job(&mut c, "bound", &gemini_then_openai("503", "budget ok"), &["COST", "100"]);
    let r = wait_finished(&mut c, "bound", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "usage")), ("done".into(), 18));
    let remaining = |c: &mut Connection, key: &str| {
        int(&array(&ok(c, &["RATELIMIT.PEEK", key, "LIMIT", "1000", "PERIOD", "60000"]))[1])
    };
    // openai was charged per call, the job's cost; the claim's gemini charge was settled to
    // the tokens the answer used.
    assert_eq!(remaining(&mut c, "aijob-rl:{openai}:tpm"), 900);
    assert_eq!(remaining(&mut c, "aijob-rl:{gemini}:tpm"), 1000 - 18);
}

#[test]
fn bad_fallback_flags_and_payloads_are_refused() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(common::fetcher::exe());
        cmd.args(args).env_remove("OPENAI_API_KEY").env_remove("GEMINI_API_KEY").env_remove("AIJOB_COOLDOWN_MS");
        let out = cmd.envs(env.iter().copied()).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (args, env, want) in [
        (&["--fallback", "gemini=openai"][..], &[][..], "--fallback"),
        (&["--fallback", "gemini"], &[], "not provider=target"),
        (&["--fallback", "gemini=claude:x"], &[], "unknown provider"),
        (&["--fallback", "echo=echo"], &[], "falls back to itself"),
        (&["--fallback", "gemini=openai:gpt-4o-mini"], &[], "OPENAI_API_KEY"),
        (&["--fallback", "gemini=http:nope"], &[], "no such --http-endpoint"),
        (&[], &[("AIJOB_FALLBACK", "gemini=echo,openai=gemini:../x")], "--fallback"),
        (&["--fallback-429-wait", "soon"], &[], "--fallback-429-wait"),
        (&["--cooldown", "0"], &[], "--cooldown"),
        (&["--cooldown-failures", "3"], &[], "--cooldown <MS>"),
        (&["--cooldown", "1000", "--cooldown-window", "0"], &[], "--cooldown-window"),
    ] {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }

    // A payload whose list is malformed calls nothing and ends at once.
    let srv = start_redis();
    let mock = MockProvider::start();
    let _f = fetcher(&srv, &mock, &[]);
    let mut c = srv.conn();
    let mut bad = gemini("never");
    bad["fallback"] = json!([{"provider": "openai"}]);
    let id = create_job(&mut c, "default", &bad, &["MAXATTEMPTS", "3"]);
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts"), fs(&r, "error_class")), ("error".into(), 1, "payload".into()));
    assert!(fs(&r, "error").contains("fallback[0]: openai needs a \"model\""), "{}", fs(&r, "error"));
    assert_eq!(mock.count(), 0);
}
