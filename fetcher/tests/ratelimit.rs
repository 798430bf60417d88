//! Provider budgets shared through RATELIMIT.HIT: two fetcher processes with the same
//! --rpm never let the provider see more than the limit in any window; --tpm charges each
//! job's cost.

mod common;

use std::time::{Duration, Instant};

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;

const T: Duration = Duration::from_secs(30);
/// Requests are charged in Redis a moment before they reach the provider; this much of the
/// window is left to that jitter when the provider's clock is checked.
/// How much closer than a window two requests may arrive at the provider: the budget is
/// taken when the fetcher claims, the request arrives after it, and a busy machine delays
/// one arrival more than another. A limiter that let one request too many through would
/// still put it well inside the window (6 jobs at 2 per 1 s: 3 in one window span < 700 ms).
const SLACK: Duration = Duration::from_millis(250);

fn fetcher(srv: &Server, mock: &MockProvider, extra: &[&str]) -> Fetcher {
    let url = mock.url();
    Fetcher::start(srv, extra, &[("GEMINI_API_KEY", "gk-rl-123456"), ("GEMINI_BASE_URL", &url)])
}

/// These tests need the module's RATELIMIT.HIT (docs/limits.md#rate-limits): say so at once when it is missing.
fn require_ratelimit(srv: &Server) {
    let mut c = srv.conn();
    let v = array(&ok(&mut c, &["COMMAND", "INFO", "RATELIMIT.HIT"]));
    assert!(!matches!(v.first(), None | Some(Value::Nil)), "the module under test has no RATELIMIT.HIT");
}

/// Asserts that no `limit + 1` requests reached the provider within one window.
fn assert_never_more_than(times: &mut [Instant], limit: usize, period: Duration) {
    times.sort();
    for w in times.windows(limit + 1) {
        let span = w[limit] - w[0];
        assert!(span + SLACK >= period, "{} requests within {span:?} (limit {limit} per {period:?})", limit + 1);
    }
}

#[test]
fn two_fetchers_share_one_rpm_budget() {
    let srv = Server::start();
    require_ratelimit(&srv);
    let mock = MockProvider::start();
    let args = ["--rpm", "3", "--rl-period", "1000", "--concurrency", "4"];
    let a = fetcher(&srv, &mock, &args);
    let b = fetcher(&srv, &mock, &args);
    let mut c = srv.conn();
    let started = Instant::now();
    let ids: Vec<String> = (0..12).map(|i| create_job(&mut c, "default", &gemini(&format!("ok #{i}")), &[])).collect();
    for id in &ids {
        let r = wait_finished(&mut c, "default", id, T);
        assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1), "a denied hit waits, it does not fail");
    }
    assert!(started.elapsed() >= Duration::from_millis(2900), "12 calls at 3 a second: {:?}", started.elapsed());
    let mut times: Vec<Instant> = mock.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 12);
    assert_never_more_than(&mut times, 3, Duration::from_secs(1));
    let waits = |f: &Fetcher| f.metric("aijob_fetcher_ratelimit_waits_total{provider=\"gemini\",limit=\"rpm\"}");
    assert!(waits(&a) + waits(&b) > 0.0);
    assert!(keys(&mut c).contains(&"aijob-rl:{gemini}:rpm".to_string()), "{:?}", keys(&mut c));
}

#[test]
fn tpm_charges_each_jobs_cost() {
    let srv = Server::start();
    require_ratelimit(&srv);
    let mock = MockProvider::start();
    let _a = fetcher(&srv, &mock, &["--tpm", "100", "--rl-period", "1000", "--rl-prefix", "budget"]);
    let mut c = srv.conn();
    let ids: Vec<String> =
        (0..6).map(|i| create_job(&mut c, "default", &gemini(&format!("ok #{i}")), &["COST", "40"])).collect();
    for id in &ids {
        assert_eq!(fs(&wait_finished(&mut c, "default", id, T), "status"), "done");
    }
    let mut times: Vec<Instant> = mock.requests().iter().map(|r| r.at).collect();
    assert_never_more_than(&mut times, 2, Duration::from_secs(1));
    assert!(keys(&mut c).contains(&"budget:{gemini}:tpm".to_string()), "{:?}", keys(&mut c));
}

#[test]
fn rpm_without_ratelimit_commands_refuses_to_start() {
    let srv = Server::start_with(Opts { no_module: true, ..Default::default() });
    let mut f = Fetcher::start(&srv, &["--rpm", "10"], &[]);
    let st = f.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(1));
    assert!(f.logs().contains("RATELIMIT.HIT"), "{}", f.logs());
}
