//! Charged claims end to end (docs/limits.md#charged-claims): three tenants share one queue bound to a provider
//! with a token budget. The fetcher claims with CHARGE (each job's `cost`, its creator's
//! estimate), the local provider reports real usage that differs from the estimate, and the
//! final update's USAGE settles each charge to it. The provider's own log, window by window,
//! never holds more than the budget plus the overrun of the calls that were in flight
//! together: one call's overrun at --concurrency 1.

mod common;

use std::time::{Duration, Instant};

use common::fetcher::Fetcher;
use common::provider::MockProvider;
use common::*;

const T: Duration = Duration::from_secs(60);
const TPM: u64 = 300;
const PERIOD: Duration = Duration::from_millis(1000);
const ESTIMATE: u64 = 60;
/// The real usage the provider reports, job by job in turn: from half to 1.7 times the estimate.
const USAGE: [u64; 8] = [30, 95, 45, 100, 60, 20, 85, 70];
/// Room for the clock checks of the run's length.
const SLACK: Duration = Duration::from_millis(60);

fn info_field(c: &mut Connection, name: &str) -> i64 {
    let info = s(&ok(c, &["INFO", "aijob"]));
    info.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))?.trim().parse().ok()).unwrap_or(0)
}

fn three_tenants_under_one_token_budget(concurrency: usize) {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    // Tenant a floods the queue first; b and c come after.
    let mut jobs = Vec::new();
    for (tenant, n) in [("a", 12), ("b", 4), ("c", 4)] {
        for _ in 0..n {
            let usage = USAGE[jobs.len() % USAGE.len()];
            let prompt = format!("usage={usage} {tenant} #{}", jobs.len());
            let id = create_job(&mut c, "default", &gemini(&prompt), &["GROUP", tenant, "COST", &ESTIMATE.to_string()]);
            jobs.push((tenant, id, usage));
        }
    }
    let url = mock.url();
    let conc = concurrency.to_string();
    let args =
        ["--queue-provider", "default=gemini", "--tpm", "gemini=300", "--rl-period", "1000", "--concurrency", &conc];
    let f = Fetcher::start(&srv, &args, &[("GEMINI_API_KEY", "gk-tenants-123456"), ("GEMINI_BASE_URL", &url)]);
    let mut claimed_at = std::collections::HashMap::new();
    for (i, (_, id, usage)) in jobs.iter().enumerate() {
        let r = wait_finished(&mut c, "default", id, T);
        assert_eq!((fs(&r, "status"), fi(&r, "attempts")), ("done".into(), 1), "{r:?}");
        assert_eq!(fi(&r, "usage") as u64, *usage, "USAGE is the provider's count: {r:?}");
        assert_eq!(fi(&r, "cost") as u64, ESTIMATE);
        claimed_at.insert(format!("#{i}"), fi(&r, "started_at") as u64);
    }
    let logs = f.logs();
    assert!(logs.contains("charged claims (gemini budgets)"), "{logs}");
    // Every job was charged by its claim and settled; no per-call RATELIMIT.HIT.
    assert_eq!(info_field(&mut c, "aijob_usage_settled"), jobs.len() as i64);
    assert_eq!(info_field(&mut c, "aijob_ratelimit_allowed"), 0);
    assert!(keys(&mut c).contains(&"aijob-rl:{gemini}:tpm".to_string()));

    // The provider's own log: tokens served, window by window.
    let requests = mock.requests();
    let mut log: Vec<(Instant, u64, String)> = requests.iter().map(|r| (r.at, r.tokens, r.prompt.clone())).collect();
    log.sort_by_key(|r| r.0);
    assert_eq!(log.len(), jobs.len());
    // A charge is taken at the claim (the job's started_at), a moment before the provider sees
    // the call; the budget holds for claims in any window of PERIOD, so a window of the
    // provider's clock is checked over PERIOD less the longest such delay.
    let delay = requests
        .iter()
        .map(|r| {
            let tag = r.prompt.rsplit(' ').next().unwrap_or("");
            r.unix_ms.saturating_sub(claimed_at[tag]) + 1
        })
        .max()
        .unwrap_or(0);
    assert!(delay < 500, "{delay} ms from a claim to its call");
    let window = PERIOD - Duration::from_millis(delay);
    let mut overruns: Vec<u64> = USAGE.iter().map(|u| u.saturating_sub(ESTIMATE)).collect();
    overruns.sort_unstable_by(|a, b| b.cmp(a));
    // Calls in flight together can each overrun their estimate before any settles: the
    // bound is the budget plus the `concurrency` largest overruns (one call's at 1).
    let bound = TPM + overruns.iter().take(concurrency).sum::<u64>();
    let mut worst = 0;
    for (i, (start, _, _)) in log.iter().enumerate() {
        let in_window: u64 = log[i..].iter().take_while(|(at, _, _)| *at < *start + window).map(|(_, t, _)| t).sum();
        worst = worst.max(in_window);
    }
    eprintln!(
        "concurrency {concurrency}: at most {worst} tokens in a window of {window:?} (budget {TPM}, bound {bound})"
    );
    assert!(worst <= bound, "{worst} tokens in one window: more than {TPM} + the overruns ({bound})");
    // ... and the budget is used, not starved: the run lasts about what the real tokens need.
    let total: u64 = log.iter().map(|r| r.1).sum();
    let span = log[log.len() - 1].0 - log[0].0;
    let least = PERIOD.as_secs_f64() * (total as f64 / bound as f64 - 1.0);
    assert!(span.as_secs_f64() >= least - SLACK.as_secs_f64(), "{total} tokens served in {span:?}");
    assert!(span < Duration::from_secs_f64(PERIOD.as_secs_f64() * (total as f64 / TPM as f64 + 3.0)), "{span:?}");

    // Fair claiming: b and c do not wait behind a's twelve jobs.
    let tenant_at = |k: usize| log[k].2.split(' ').nth(1).unwrap_or("").to_string();
    let first: Vec<String> = (0..12 + concurrency).map(tenant_at).collect();
    for t in ["b", "c"] {
        assert_eq!(first.iter().filter(|x| *x == t).count(), 4, "{t} served early: {first:?}");
    }
}

#[test]
fn three_tenants_one_token_budget_one_call_at_a_time() {
    three_tenants_under_one_token_budget(1);
}

#[test]
fn three_tenants_one_token_budget_four_calls_at_a_time() {
    three_tenants_under_one_token_budget(4);
}

#[test]
fn an_unbound_queue_keeps_the_per_call_hits() {
    let srv = Server::start();
    let mock = MockProvider::start();
    let mut c = srv.conn();
    let url = mock.url();
    let args = ["--queues", "bound,free", "--queue-provider", "bound=gemini", "--tpm", "1000", "--rl-period", "1000"];
    let env = [
        ("GEMINI_API_KEY", "gk-tenants-123456"),
        ("GEMINI_BASE_URL", url.as_str()),
        ("OPENAI_API_KEY", "sk-tenants-123456"),
        ("OPENAI_BASE_URL", url.as_str()),
    ];
    let f = Fetcher::start(&srv, &args, &env);
    let a = create_job(&mut c, "bound", &gemini("usage=40 bound"), &["COST", "50"]);
    let b = create_job(&mut c, "free", &gemini("usage=40 free"), &["COST", "50"]);
    // A job in the bound queue that names another provider: charged per call for that one.
    let o = create_job(&mut c, "bound", &openai("usage=40 other"), &["COST", "50"]);
    for (q, id) in [("bound", &a), ("free", &b)] {
        let r = wait_finished(&mut c, q, id, T);
        assert_eq!((fs(&r, "status"), fi(&r, "usage")), ("done".into(), 40));
    }
    let r = wait_finished(&mut c, "bound", &o, T);
    assert_eq!((fs(&r, "status"), fi(&r, "usage")), ("done".into(), 40));
    assert_eq!(info_field(&mut c, "aijob_usage_settled"), 2, "the bound queue's jobs were charged by their claims");
    // The free queue's job, and the bound queue's job for another provider, are charged per
    // call, each in its own provider's budget.
    assert!(info_field(&mut c, "aijob_ratelimit_allowed") >= 2);
    let k = keys(&mut c);
    assert!(
        k.contains(&"aijob-rl:{openai}:tpm".to_string()) && k.contains(&"aijob-rl:{gemini}:tpm".to_string()),
        "{k:?}"
    );
    let logs = f.logs();
    assert!(logs.contains("names another provider than its queue's --queue-provider"), "{logs}");
    assert!(logs.contains("queue=bound mode=charged claims"), "{logs}");
    assert!(logs.contains("queue=free mode=per-call hits: no --queue-provider binding"), "{logs}");
}
