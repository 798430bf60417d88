//! The fetcher's life against real processes: SIGKILL in the middle of a call, SIGTERM's
//! drain and release, and Redis going away in the middle of a call.

mod common;

use std::time::{Duration, Instant};

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;

const T: Duration = Duration::from_secs(20);

fn fetcher(srv: &Server, mock: &MockProvider, extra: &[&str]) -> Fetcher {
    let url = mock.url();
    Fetcher::start(srv, extra, &[("GEMINI_API_KEY", "gk-lifecycle-123456"), ("GEMINI_BASE_URL", &url)])
}

/// INFO commandstats calls of one command since the last CONFIG RESETSTAT.
fn calls(c: &mut Connection, name: &str) -> i64 {
    let info = s(&ok(c, &["INFO", "commandstats"]));
    let line = format!("cmdstat_{name}:calls=");
    info.lines().find_map(|l| l.strip_prefix(&line)?.split(',').next()?.parse().ok()).unwrap_or(0)
}

#[test]
fn a_finished_job_claims_its_successor_in_the_same_command() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let ids: Vec<String> = (0..6).map(|i| create_job(&mut c, "default", &gemini(&format!("ok {i}")), &[])).collect();
    ok(&mut c, &["CONFIG", "RESETSTAT"]);
    // one slot, one queue: each final update (JOB.UPDATE ... NEXT) hands over the next job
    let f = fetcher(&srv, &mock, &["--concurrency", "1"]);
    for id in &ids {
        assert_eq!(fs(&wait_finished(&mut c, "default", id, T), "status"), "done", "{}", f.logs());
    }
    assert_eq!(mock.count(), 6);
    // the first job's claim, then the idle loop's (a non-blocking pass and a blocking claim
    // a second) once the queue ran dry: the final updates claimed the other five
    let claims = calls(&mut c, "job.claim");
    assert!(claims < 6, "{claims} JOB.CLAIM calls for 6 jobs: the updates should have claimed the rest");
    assert_eq!(f.metric("aijob_fetcher_claims_total{queue=\"default\"}"), 6.0, "{}", f.metrics());
}

#[test]
fn sigkill_mid_call_a_second_fetcher_finishes_the_job_once() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let mut a = fetcher(&srv, &mock, &["--lease", "1000"]);
    // The first call hangs for 10 s; the second (by the next fetcher) answers at once.
    let prompt = "slow=10000,ok";
    let id = create_job(&mut c, "default", &gemini(prompt), &[]);
    wait_until(T, "the first call", || (mock.calls(prompt) == 1).then_some(()));
    a.kill();
    let killed = Instant::now();

    let _b = fetcher(&srv, &mock, &["--lease", "1000"]);
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!(fs(&r, "status"), "done");
    assert_eq!(fi(&r, "attempts"), 2, "the killed attempt counts");
    assert!(killed.elapsed() >= Duration::from_millis(500), "finished only after the lease expired");
    assert!(mock.calls(prompt) <= 2, "the provider saw {} calls", mock.calls(prompt));
    let done_events = events(&mut c, "default", &id).iter().filter(|(_, d)| d["status"] == "done").count();
    assert_eq!(done_events, 1, "the job finished once");
    assert_eq!(stat(&mut c, "default", "completed"), 1);
}

#[test]
fn sigterm_drains_releases_and_another_fetcher_takes_the_job_at_once() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let mut a = fetcher(&srv, &mock, &["--grace", "1"]);
    let quick = create_job(&mut c, "default", &gemini("slow=600"), &[]);
    let long = create_job(&mut c, "default", &gemini("slow=30000,ok"), &[]);
    wait_until(T, "both calls", || (mock.calls("slow=600") == 1 && mock.calls("slow=30000,ok") == 1).then_some(()));
    // A second fetcher, idle (the queue is empty), blocked in its claim.
    let b = fetcher(&srv, &mock, &[]);
    b.wait_ready();

    a.sigterm();
    let st = a.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "exit 0 after the drain; log:\n{}", a.logs());
    let exited = Instant::now();

    // The quick call finished inside the grace; the long one was given back.
    let r = wait_finished(&mut c, "default", &quick, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1));
    let r = wait_finished(&mut c, "default", &long, T);
    assert_eq!(fs(&r, "status"), "done");
    assert_eq!(fi(&r, "attempts"), 1, "a released attempt does not count");
    assert_eq!(mock.calls("slow=30000,ok"), 2);
    let second_call = mock.requests().into_iter().filter(|r| r.prompt == "slow=30000,ok").nth(1).unwrap().at;
    assert!(
        second_call.saturating_duration_since(exited) < Duration::from_millis(1500),
        "claimed by the other fetcher at once, not after a lease: {:?}",
        second_call.saturating_duration_since(exited)
    );
    let logs = a.logs();
    assert!(logs.contains("released"), "{logs}");
    let types: Vec<String> = events(&mut c, "default", &long).into_iter().map(|(t, _)| t).collect();
    assert!(types.iter().any(|t| t == "queued" || t == "released"), "a release event: {types:?}");
}

#[test]
fn sigterm_with_nothing_running_exits_at_once() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut a = fetcher(&srv, &mock, &["--queues", "a:2,b:1"]);
    a.wait_ready();
    let t = Instant::now();
    a.sigterm();
    assert_eq!(a.wait_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());
}

#[test]
fn redis_restart_mid_call_the_result_still_lands() {
    let dir = TempDir::new("restart");
    let port = free_port();
    let opts = Opts { dir: Some(dir.0.clone()), port: Some(port), ..Default::default() }.aof_always();
    let mut srv = Server::start_with(opts.clone());
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let f = fetcher(&srv, &mock, &[]);
    let id = create_job(&mut c, "default", &gemini("slow=2500"), &[]);
    wait_until(T, "the call", || (mock.calls("slow=2500") == 1).then_some(()));
    srv.kill();
    wait_until(T, "the fetcher to notice", || (f.metric("aijob_fetcher_redis_up") == 0.0).then_some(()));
    // The call ends while Redis is down; the final update waits for it.
    wait_until(T, "the final update to find Redis down", || {
        f.logs().contains("Redis unreachable; retrying").then_some(())
    });
    let srv2 = Server::start_with(opts);
    let mut c = srv2.conn();
    let r = wait_finished(&mut c, "default", &id, T);
    assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1), "{r:?}");
    assert_eq!(job_json(&mut c, "default", &id)["result"]["text"], "echo: slow=2500");
    assert_eq!(mock.calls("slow=2500"), 1);
    // the log line follows the command that landed: wait for it
    wait_until(T, "the 'landed after reconnecting' log line", || {
        f.logs().contains("landed after reconnecting").then_some(())
    });
}
