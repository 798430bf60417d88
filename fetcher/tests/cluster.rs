//! The fetcher on a real Redis Cluster (3 masters, the module on each): one fetcher process
//! serves queues spread over every master, named by a pattern or by a list, picks up queues
//! created after it started, takes per-queue budgets in its claims there, and carries on
//! after a master dies and its replica takes over.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::fetcher::Fetcher;
use common::*;

const T: Duration = Duration::from_secs(30);

fn echo(text: &str) -> String {
    serde_json::json!({"provider": "echo", "request": {"text": text}}).to_string()
}

/// Creates `per_queue` echo jobs in each queue; returns (queue, id).
fn create_jobs(
    c: &mut redis::cluster::ClusterConnection,
    queues: &[String],
    per_queue: usize,
) -> Vec<(String, String)> {
    let mut ids = Vec::new();
    for q in queues {
        for i in 0..per_queue {
            let id = s(&cok(c, &["JOB.CREATE", q, "PAYLOAD", &echo(&format!("{q} #{i}"))]));
            ids.push((q.clone(), id));
        }
    }
    ids
}

fn wait_all_done(c: &mut redis::cluster::ClusterConnection, ids: &[(String, String)], f: &Fetcher) {
    let deadline = Instant::now() + T;
    for (q, id) in ids {
        loop {
            let r = cok(c, &["JOB.GET", q, id]);
            if r != Value::Nil && fs(&r, "status") == "done" {
                break;
            }
            assert!(Instant::now() < deadline, "{q}/{id} not done: {r:?}\nfetcher log:\n{}", f.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The masters the queues live on.
fn owners(cl: &mut Cluster, queues: &[String]) -> HashSet<usize> {
    queues.iter().map(|q| cl.master_of(q)).collect()
}

#[test]
fn one_fetcher_serves_twenty_queues_on_three_masters_by_pattern() {
    let mut cl = Cluster::start_with(3, 0);
    let mut c = cl.client();
    let queues: Vec<String> = (0..20).map(|i| format!("q-{i}")).collect();
    assert_eq!(owners(&mut cl, &queues).len(), 3, "20 queues land on all three masters");
    let mut ids = create_jobs(&mut c, &queues, 5);
    // A queue the pattern does not match stays untouched.
    let other = s(&cok(&mut c, &["JOB.CREATE", "other", "PAYLOAD", &echo("no")]));

    let f = Fetcher::start_url(&cl.url(), &["--queues", "q-*:3", "--concurrency", "8"], &[]);
    wait_all_done(&mut c, &ids, &f);
    // Jobs created while the fetcher waits (blocked on one queue) are served too.
    f.wait_ready();
    ids = create_jobs(&mut c, &queues, 1);
    wait_all_done(&mut c, &ids, &f);
    for q in &queues {
        let m = format!("aijob_fetcher_claims_total{{queue=\"{q}\"}}");
        assert_eq!(f.metric(&m), 6.0, "{q}: {}", f.metrics());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fs(&cok(&mut c, &["JOB.GET", "other", &other]), "status"), "queued");
    let r = cok(&mut c, &["JOB.GET", "q-7", &ids[7].1, "JSON"]);
    let j: serde_json::Value = serde_json::from_str(&s(&r)).unwrap();
    assert_eq!(j["result"]["text"], "q-7 #0");
    assert!(f.logs().contains("cluster=true"), "{}", f.logs());
}

#[test]
fn one_fetcher_serves_an_explicit_list_and_a_brace_range_on_three_masters() {
    let mut cl = Cluster::start_with(3, 0);
    let mut c = cl.client();
    let listed: Vec<String> = (0..10).map(|i| format!("list{i}")).collect();
    let ranged: Vec<String> = (0..10).map(|i| format!("r-{i:02}")).collect();
    let all: Vec<String> = listed.iter().chain(&ranged).cloned().collect();
    assert_eq!(owners(&mut cl, &all).len(), 3);
    let ids = create_jobs(&mut c, &all, 4);
    // --cluster with a plain redis:// seed URL (one node is enough to find the others).
    let seed = cl.nodes[1].url();
    let queues = format!("{},r-{{00..09}}:2", listed.join(","));
    let f = Fetcher::start_url(&seed, &["--cluster", "--queues", &queues, "--concurrency", "6"], &[]);
    wait_all_done(&mut c, &ids, &f);
    let claimed: f64 = all.iter().map(|q| f.metric(&format!("aijob_fetcher_claims_total{{queue=\"{q}\"}}"))).sum();
    assert_eq!(claimed, 80.0);
}

#[test]
fn a_pattern_picks_up_a_queue_created_after_the_fetcher_started() {
    let mut cl = Cluster::start_with(3, 0);
    let mut c = cl.client();
    let early = create_jobs(&mut c, &["late-a".to_string()], 2);
    let f = Fetcher::start_url(&cl.url(), &["--queues", "late-*", "--discover-every", "300"], &[]);
    wait_all_done(&mut c, &early, &f);
    // Queues the fetcher has never seen, on every master.
    let fresh: Vec<String> = (0..9).map(|i| format!("late-new{i}")).collect();
    assert_eq!(owners(&mut cl, &fresh).len(), 3);
    let created = Instant::now();
    let ids = create_jobs(&mut c, &fresh, 2);
    wait_all_done(&mut c, &ids, &f);
    assert!(created.elapsed() < Duration::from_secs(10), "found at the next discovery: {:?}", created.elapsed());
    let logs = f.logs();
    assert!(logs.contains("queues of the patterns") && logs.contains("late-new8"), "{logs}");
}

#[test]
fn per_queue_budgets_are_taken_by_the_claims_on_a_cluster() {
    let mut cl = Cluster::start_with(3, 0);
    let mut c = cl.client();
    let queues: Vec<String> = (0..6).map(|i| format!("c-{i}")).collect();
    assert_eq!(owners(&mut cl, &queues).len(), 3);
    let mut ids = Vec::new();
    for q in &queues {
        for i in 0..3 {
            let id =
                s(&cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", &echo(&format!("{i} {}", "x".repeat(40))), "COST", "50"]));
            ids.push((q.clone(), id));
        }
    }
    let args = ["--queues", "c-*", "--queue-provider", "c-*=echo", "--tpm", "echo=100000", "--rl-scope", "queue"];
    let f = Fetcher::start_url(&cl.url(), &args, &[]);
    wait_all_done(&mut c, &ids, &f);
    for q in &queues {
        let key = format!("aijob-rl:{{{q}}}:echo:tpm");
        assert_eq!(int(&cok(&mut c, &["EXISTS", &key])), 1, "{key}; log:\n{}", f.logs());
        // Settled to the echo provider's usage (a token per 4 bytes), not left at the estimate.
        let peek = array(&cok(&mut c, &["RATELIMIT.PEEK", &key, "LIMIT", "100000", "PERIOD", "60000"]));
        let used = 100_000 - int(&peek[1]);
        assert!(used > 0 && used < 150, "{q}: {used} tokens in the window");
    }
    for (q, id) in &ids {
        let r = cok(&mut c, &["JOB.GET", q, id]);
        assert!(fi(&r, "usage") > 0 && fi(&r, "usage") != 50, "{r:?}");
    }
    // No per-call hit: the per-provider key was never written.
    assert_eq!(int(&cok(&mut c, &["EXISTS", "aijob-rl:{echo}:tpm"])), 0);
}

#[test]
fn a_master_killed_mid_workload_the_fetcher_carries_on_after_the_failover() {
    let mut cl = Cluster::start_with(3, 1);
    let mut c = cl.client();
    let queues: Vec<String> = (0..12).map(|i| format!("f-{i}")).collect();
    assert_eq!(owners(&mut cl, &queues).len(), 3);
    // Slow jobs (200 ms each), so that some are running when the master dies.
    let slow = serde_json::json!({"provider": "echo", "delay_ms": 200, "request": {"text": "slow"}}).to_string();
    let mut before = Vec::new();
    for q in &queues {
        for _ in 0..4 {
            before.push((q.clone(), s(&cok(&mut c, &["JOB.CREATE", q, "PAYLOAD", &slow]))));
        }
    }
    for m in 0..cl.nodes.len() {
        let mut n = cl.nodes[m].conn();
        let _ = cmd(&mut n, &["WAIT", "1", "2000"]);
    }
    let f = Fetcher::start_url(&cl.url(), &["--queues", "f-*", "--concurrency", "8", "--lease", "2000"], &[]);
    wait_until(T, "some jobs done", || {
        let done = before.iter().filter(|(q, id)| {
            let r = cok(&mut c, &["JOB.GET", q, id]);
            r != Value::Nil && fs(&r, "status") == "done"
        });
        (done.count() >= 6).then_some(())
    });
    let victim = cl.master_of("f-0");
    cl.nodes[victim].kill();
    let killed = Instant::now();

    // Jobs created after the failover, on every queue, are all done by the same fetcher.
    let mut c = wait_until(Duration::from_secs(30), "a client after the failover", || {
        let mut c = cl.client();
        ccmd(&mut c, &["JOB.CREATE", "f-0", "PAYLOAD", &echo("probe")]).ok().map(|_| c)
    });
    let after = create_jobs(&mut c, &queues, 2);
    wait_all_done(&mut c, &after, &f);
    eprintln!("failover: jobs after it done {:?} after the kill", killed.elapsed());
    // Those created before: done, or lost with the dead master's unreplicated writes (WAIT
    // made that unlikely), never stuck running: leases expire on the promoted replica.
    let deadline = Instant::now() + T;
    for (q, id) in &before {
        loop {
            let r = cok(&mut c, &["JOB.GET", q, id]);
            if r == Value::Nil || fs(&r, "status") == "done" {
                break;
            }
            assert!(Instant::now() < deadline, "{q}/{id} stuck: {r:?}\n{}", f.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(f.get("/healthz").map(|(st, _)| st), Some(200), "{}", f.logs());
}
