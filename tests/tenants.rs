//! Tenants, fairness, caps and token budgets (docs/limits.md#tenants-and-fair-claiming) against a real server.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn group_of(rec: &Value) -> String {
    field(rec, "group").map(|v| s(&v)).unwrap_or_default()
}

#[test]
fn a_heavy_tenant_does_not_starve_the_others() {
    let srv = Server::start();
    let mut c = srv.conn();
    let mut p = redis::pipe();
    for _ in 0..1000 {
        p.cmd("JOB.CREATE").arg("q").arg("PAYLOAD").arg("{}").arg("GROUP").arg("A").ignore();
    }
    p.query::<()>(&mut c).unwrap();
    for g in ["B", "C"] {
        for _ in 0..10 {
            create(&mut c, "q", &["GROUP", g]);
        }
    }
    let urgent = create(&mut c, "q", &["GROUP", "A", "PRIORITY", "high"]);
    let first = array(&ok(&mut c, &["JOB.CLAIM", "q", "COUNT", "31"]));
    assert_eq!(fs(&first[0], "id"), urgent, "strict priority across groups");
    let mut per: HashMap<String, usize> = HashMap::new();
    for r in &first[1..] {
        *per.entry(group_of(r)).or_default() += 1;
    }
    assert_eq!((per["B"], per["C"]), (10, 10), "{per:?}");
    assert_eq!(per["A"], 10);
    let groups = array(&array(&ok(&mut c, &["QUEUE.GROUPS", "q"]))[1]);
    let a = groups.iter().find(|g| fs(g, "group") == "A").unwrap();
    assert_eq!((fi(a, "queued"), fi(a, "running"), fi(a, "cap")), (990, 11, 0));
    assert_eq!(stat(&mut c, "q", "groups"), 3);
}

#[test]
fn groups_page_like_job_list() {
    let srv = Server::start();
    let mut c = srv.conn();
    for i in 0..25 {
        create(&mut c, "q", &["GROUP", &format!("tenant-{i:02}")]);
    }
    ok(&mut c, &["QUEUE.GROUPCAP", "q", "tenant-03", "2"]);
    let mut seen = vec![];
    let mut cursor = "0".to_string();
    loop {
        let page = array(&ok(&mut c, &["QUEUE.GROUPS", "q", "CURSOR", &cursor, "COUNT", "7"]));
        cursor = s(&page[0]);
        for g in array(&page[1]) {
            seen.push((fs(&g, "group"), fi(&g, "cap")));
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.contains(&("tenant-03".to_string(), 2)));
    assert!(err(&mut c, &["QUEUE.GROUPCAP", "q", "bad group", "2"]).starts_with("ERR group"));
    assert!(err(&mut c, &["QUEUE.GROUPCAP", "q", "g", "-1"]).starts_with("ERR n"));
}

/// 16 connections claim in a loop and finish, fail, release or abandon at random; a
/// monitor samples QUEUE.GROUPS: the capped group never runs more than 2, nothing is lost.
#[test]
fn a_cap_holds_under_concurrency_expiries_and_releases() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.backoff-base-ms", "20"]);
    ok(&mut c, &["CONFIG", "SET", "aijob.backoff-max-ms", "50"]);
    ok(&mut c, &["QUEUE.GROUPCAP", "q", "capped", "2"]);
    for i in 0..60 {
        let g = if i % 3 == 0 { "free" } else { "capped" };
        create(&mut c, "q", &["GROUP", g, "MAXATTEMPTS", "1000"]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let mut m = srv.conn();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                let groups = array(&array(&ok(&mut m, &["QUEUE.GROUPS", "q", "COUNT", "100"]))[1]);
                for g in groups.iter().filter(|g| fs(g, "group") == "capped") {
                    most = most.max(fi(g, "running"));
                }
            }
            most
        })
    };
    let workers: Vec<_> = (0..16u64)
        .map(|w| {
            let mut c = srv.conn();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut rng = w.wrapping_mul(0x9e3779b97f4a7c15) | 1;
                while !stop.load(Ordering::Relaxed) {
                    let Some((id, tok)) = claim(&mut c, "q", &["LEASE", "150", "WORKER", &w.to_string()]) else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    thread::sleep(Duration::from_millis(rng % 20));
                    let _ = match rng % 10 {
                        0..=4 => cmd(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &tok, "STATUS", "done", "RESULT", "1"]),
                        5 | 6 => cmd(&mut c, &["JOB.RELEASE", "q", &id, "TOKEN", &tok]),
                        7 => cmd(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &tok, "STATUS", "error", "ERROR", "x"]),
                        _ => Ok(Value::Nil), // abandoned: the lease expires
                    };
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(60), "every job to finish", || (stat(&mut c, "q", "done") == 60).then_some(()));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let most = monitor.join().unwrap();
    assert!(most <= 2, "the capped group ran {most} at once");
    assert!(most >= 1);
    let st = ok(&mut c, &["QUEUE.STATS", "q"]);
    assert_eq!(
        (fi(&st, "running"), fi(&st, "queued"), fi(&st, "delayed"), fi(&st, "error")),
        (0, 0, 0, 0),
        "nothing lost"
    );
    assert!(s(&ok(&mut c, &["INFO", "aijob"]))
        .lines()
        .any(|l| l.starts_with("aijob_expired_leases:") && !l.ends_with(":0")));
}

fn peek(c: &mut Connection, key: &str, limit: &str) -> i64 {
    let r = array(&ok(c, &["RATELIMIT.PEEK", key, "LIMIT", limit, "PERIOD", "60000", "COST", "0"]));
    limit.parse::<i64>().unwrap() - int(&r[1])
}

#[test]
fn a_denied_charged_claim_touches_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "q", &["COST", "700"]);
    create(&mut c, "q", &["COST", "700"]);
    let charge = [
        "CHARGE", "tpm:{q}", "COST", "LIMIT", "1000", "PERIOD", "60000", "CHARGE", "rpm:{q}", "REQUESTS", "LIMIT",
        "10", "PERIOD", "60000",
    ];
    let mut words = vec!["JOB.CLAIM", "q"];
    words.extend_from_slice(&charge);
    assert_eq!(array(&ok(&mut c, &words)).len(), 1);
    assert_eq!((peek(&mut c, "tpm:{q}", "1000"), peek(&mut c, "rpm:{q}", "10")), (700, 1));
    let before = (s(&ok(&mut c, &["GET", "tpm:{q}"])), s(&ok(&mut c, &["GET", "rpm:{q}"])));
    assert!(array(&ok(&mut c, &words)).is_empty(), "the second job does not fit the token budget");
    let after = (s(&ok(&mut c, &["GET", "tpm:{q}"])), s(&ok(&mut c, &["GET", "rpm:{q}"])));
    assert_eq!(before, after, "nothing charged");
    assert_eq!(stat(&mut c, "q", "queued"), 1, "nothing claimed");
    assert!(s(&ok(&mut c, &["INFO", "aijob"])).contains("aijob_charges_denied:1"));
    // the keys are declared: GETKEYS names Q and every CHARGE key
    let mut gk = vec!["COMMAND", "GETKEYS", "JOB.CLAIM", "q", "WORKER", "CHARGE"];
    gk.extend_from_slice(&charge);
    let keys: Vec<String> = array(&ok(&mut c, &gk)).iter().map(s).collect();
    assert_eq!(keys, ["q", "tpm:{q}", "rpm:{q}"]);
}

#[test]
fn a_blocked_charged_claim_wakes_when_the_window_frees() {
    let srv = Server::start();
    let mut c = srv.conn();
    for _ in 0..3 {
        create(&mut c, "q", &[]);
    }
    let charge = ["CHARGE", "rpm:{q}", "REQUESTS", "LIMIT", "2", "PERIOD", "600"];
    let mut words = vec!["JOB.CLAIM", "q", "BLOCK", "5000"];
    words.extend_from_slice(&charge);
    let t0 = Instant::now();
    assert_eq!(array(&ok(&mut c, &words)).len(), 1);
    assert_eq!(array(&ok(&mut c, &words)).len(), 1);
    let got = array(&ok(&mut c, &words));
    let waited = t0.elapsed();
    assert_eq!(got.len(), 1, "woken with the job, not timed out");
    assert!(waited >= Duration::from_millis(550), "admitted only when the window freed: {waited:?}");
    assert!(waited < Duration::from_millis(1500), "woken by the timer promptly: {waited:?}");
}

#[test]
fn usage_settles_the_charged_window_down_and_up() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "q", &["COST", "500"]);
    create(&mut c, "q", &["COST", "500"]);
    let charge = ["CHARGE", "tpm:{q}", "COST", "LIMIT", "100000", "PERIOD", "60000"];
    let mut words = vec!["JOB.CLAIM", "q", "COUNT", "2"];
    words.extend_from_slice(&charge);
    let got = array(&ok(&mut c, &words));
    assert_eq!(peek(&mut c, "tpm:{q}", "100000"), 1000);
    let (a, ta) = (fs(&got[0], "id"), fs(&got[0], "token"));
    let (b, tb) = (fs(&got[1], "id"), fs(&got[1], "token"));
    ok(
        &mut c,
        &["JOB.UPDATE", "q", &a, "TOKEN", &ta, "STATUS", "done", "RESULT", "1", "USAGE", "120", "CHARGE", "tpm:{q}"],
    );
    assert_eq!(peek(&mut c, "tpm:{q}", "100000"), 620);
    let error = ["STATUS", "error", "ERROR", "x", "NORETRY", "USAGE", "3000", "CHARGE", "tpm:{q}"];
    ok(&mut c, &[&["JOB.UPDATE", "q", &b, "TOKEN", &tb][..], &error].concat());
    assert_eq!(peek(&mut c, "tpm:{q}", "100000"), 3120);
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", &b]), "usage"), 3000);
    assert!(s(&ok(&mut c, &["INFO", "aijob"])).contains("aijob_usage_settled:2"));
}

#[test]
fn a_next_claims_against_the_usage_its_own_finish_settled() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "q", &["COST", "100"]);
    let second = create(&mut c, "q", &["COST", "100"]);
    let charge = ["CHARGE", "tpm:{q}", "COST", "LIMIT", "300", "PERIOD", "60000"];
    let got = array(&ok(&mut c, &[&["JOB.CLAIM", "q"][..], &charge].concat()));
    let (a, ta) = (fs(&got[0], "id"), fs(&got[0], "token"));
    let finish = ["JOB.UPDATE", "q", &a, "TOKEN", &ta, "STATUS", "done", "RESULT", "1", "USAGE", "250"];
    let words = [&finish[..], &["CHARGE", "tpm:{q}", "NEXT"], &charge].concat();
    let r = array(&ok(&mut c, &words));
    assert_eq!(s(&r[0]), "done");
    assert!(array(&r[1]).is_empty(), "250 used + 100 charged would pass the 300 budget: {r:?}");
    assert_eq!(peek(&mut c, "tpm:{q}", "300"), 250, "only the settled usage is held");
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &second]), "status"), "queued");
}

#[test]
fn digests_match_after_a_charged_workload() {
    let dir = TempDir::new("charged");
    let master = Server::start_with(Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always());
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    for i in 0..30 {
        create(&mut m, "q", &["GROUP", &format!("t{}", i % 3), "COST", &(100 + i).to_string()]);
    }
    ok(&mut m, &["QUEUE.GROUPCAP", "q", "*", "3"]);
    let charge = [
        "CHARGE", "tpm:{q}", "COST", "LIMIT", "2500", "PERIOD", "60000", "CHARGE", "rpm:{q}", "REQUESTS", "LIMIT",
        "50", "PERIOD", "60000",
    ];
    let mut words = vec!["JOB.CLAIM", "q", "COUNT", "4"];
    words.extend_from_slice(&charge);
    for round in 0..10 {
        for r in array(&ok(&mut m, &words)) {
            let usage = (50 + round * 13).to_string();
            ok(
                &mut m,
                &[
                    "JOB.UPDATE",
                    "q",
                    &fs(&r, "id"),
                    "TOKEN",
                    &fs(&r, "token"),
                    "STATUS",
                    "done",
                    "RESULT",
                    "1",
                    "USAGE",
                    &usage,
                    "CHARGE",
                    "tpm:{q}",
                ],
            );
        }
    }
    wait_synced(&master, &replica);
    let d = digest(&mut m);
    assert_eq!(d, digest(&mut replica.conn()));
    let port = master.port;
    drop(master);
    let again =
        Server::start_with(Opts { dir: Some(dir.0.clone()), port: Some(port), ..Default::default() }.aof_always());
    assert_eq!(digest(&mut again.conn()), d);
}
