//! Issue 18, finding 1: eviction. A server whose maxmemory-policy can evict aijob's keys is
//! detected (at load and on CONFIG SET), logged, shown in INFO aijob, and new work is
//! refused unless the operator opts in; what went missing is healed by QUEUE.REPAIR and the
//! timer. DEL stands in for an eviction where the test needs to choose the key.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;

/// A field of `INFO aijob`.
fn info(c: &mut Connection, name: &str) -> String {
    let text = s(&ok(c, &["INFO", "aijob"]));
    let key = format!("aijob_{name}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&key).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("INFO aijob has no {key}\n{text}"))
}

fn info_i(c: &mut Connection, name: &str) -> i64 {
    info(c, name).parse().expect("an integer field")
}

fn status(c: &mut Connection, q: &str, id: &str) -> String {
    fs(&ok(c, &["JOB.GET", q, id]), "status")
}

/// Runs QUEUE.REPAIR until its pass ends; the replies.
fn repair_pass(c: &mut Connection, q: &str) -> Vec<Value> {
    let mut replies = Vec::new();
    loop {
        let r = ok(c, &["QUEUE.REPAIR", q, "COUNT", "100000"]);
        let done = fi(&r, "done") == 1;
        replies.push(r);
        if done {
            return replies;
        }
        assert!(replies.len() < 100, "the pass never ends");
    }
}

fn total(replies: &[Value], field: &str) -> i64 {
    replies.iter().map(|r| fi(r, field)).sum()
}

/// The first reproduction: a running job whose `leases` key was evicted is found
/// again, its lease expires and it is queued again, within a bounded time.
#[test]
fn a_running_job_whose_leases_key_was_deleted_comes_back() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "qa", &[]);
    let (claimed, _) = claim(&mut c, "qa", &["LEASE", "500"]).expect("a job");
    assert_eq!(claimed, id);
    assert_eq!(int(&ok(&mut c, &["DEL", "aijob:{qa}:leases"])), 1);
    let started = Instant::now();
    wait_until(Duration::from_secs(10), "the job to be queued again", || {
        (status(&mut c, "qa", &id) == "queued").then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "qa", &id]), "attempts"), 1);
    assert!(info_i(&mut c, "records_reindexed") >= 1);
    assert_eq!(claim(&mut c, "qa", &[]).map(|j| j.0), Some(id));
}

/// The second reproduction: a delayed job whose `delayed` key was evicted fires.
#[test]
fn a_delayed_job_whose_delayed_key_was_deleted_fires() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "qb", &["DELAY", "300"]);
    assert_eq!(int(&ok(&mut c, &["DEL", "aijob:{qb}:delayed"])), 1);
    let started = Instant::now();
    wait_until(Duration::from_secs(10), "the delayed job to fire", || {
        (status(&mut c, "qb", &id) == "queued").then_some(())
    });
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(claim(&mut c, "qb", &[]).map(|j| j.0), Some(id));
}

/// An index entry naming a job whose record was evicted is dropped and counted, and
/// QUEUE.STATS stops counting the job.
#[test]
fn an_entry_of_an_evicted_record_is_dropped_and_counted() {
    let srv = Server::start();
    let mut c = srv.conn();
    let keep = create(&mut c, "qc", &[]);
    let gone = create(&mut c, "qc", &[]);
    ok(&mut c, &["DEL", &format!("aijob:{{qc}}:job:{gone}")]);
    assert_eq!(stat(&mut c, "qc", "queued"), 2);
    let replies = repair_pass(&mut c, "qc");
    assert_eq!(total(&replies, "dropped"), 1);
    assert_eq!(total(&replies, "checked"), 2);
    assert_eq!((stat(&mut c, "qc", "queued"), stat(&mut c, "qc", "queued_normal")), (1, 1));
    assert!(info_i(&mut c, "index_entries_dropped") >= 1);
    assert_eq!(claim(&mut c, "qc", &["COUNT", "5"]).map(|j| j.0), Some(keep));
}

const REFUSED: &str = "EVICTION maxmemory-policy";

/// The writes that start new work, each of which must be refused under the guard (the
/// cache lookup a miss each time: no job computes its payload yet).
fn new_work(c: &mut Connection, q: &str) -> Vec<redis::RedisResult<Value>> {
    static MISSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let miss = format!("{{\"new\":{}}}", MISSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    vec![
        cmd(c, &["JOB.CREATE", q, "PAYLOAD", "{}"]),
        cmd(c, &["CACHE.GETORQUEUE", q, "PAYLOAD", &miss]),
        cmd(c, &["JOB.CLAIM", q]),
        cmd(c, &["SCHEDULE.RUN", q, "tick"]),
    ]
}

fn assert_refused(c: &mut Connection, q: &str, policy: &str) {
    for (i, r) in new_work(c, q).into_iter().enumerate() {
        let e = error_text(&r.expect_err(&format!("new work {i} must be refused")));
        assert!(e.starts_with(&format!("{REFUSED} {policy} ")), "write {i}: {e}");
        assert!(e.contains("aijob.allow-eviction"), "write {i} names the config: {e}");
    }
}

fn assert_accepted(c: &mut Connection, q: &str) {
    for r in new_work(c, q) {
        if let Err(e) = r {
            panic!("new work refused: {}", error_text(&e));
        }
    }
}

#[test]
fn an_evicting_policy_refuses_new_work_and_config_set_flips_it_both_ways() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["SCHEDULE.SET", "ev", "tick", "EVERY", "3600000", "PAYLOAD", "{}"]);
    let goq = ok(&mut c, &["CACHE.GETORQUEUE", "ev", "PAYLOAD", "{\"a\":1}"]);
    let cached = s(&array(&goq)[1]);
    let (id, token) = claim(&mut c, "ev", &["LEASE", "60000"]).expect("a job");
    assert_eq!(id, cached);
    let spare = create(&mut c, "ev", &[]);
    let created = stat(&mut c, "ev", "created");
    assert_eq!(info_i(&mut c, "eviction_risk"), 0);

    ok(&mut c, &["CONFIG", "SET", "maxmemory", "200mb"]);
    ok(&mut c, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert_refused(&mut c, "ev", "allkeys-lru");
    assert_eq!(info_i(&mut c, "eviction_risk"), 1);
    assert_eq!(info(&mut c, "eviction_policy"), "allkeys-lru");
    assert_eq!(info_i(&mut c, "eviction_new_work_refused"), 1);
    let logged = wait_until(Duration::from_secs(5), "the warning in the log", || {
        let log = std::fs::read_to_string(srv.dir.join("server.log")).unwrap_or_default();
        log.lines()
            .find(|l| l.contains("maxmemory-policy allkeys-lru") && l.contains("evict aijob's keys"))
            .map(String::from)
    });
    assert!(logged.contains(" # "), "logged as a warning: {logged}");
    assert!(logged.contains("aijob.allow-eviction"), "{logged}");

    // work in progress goes on: the worker reports, a hit is served, jobs can be canceled
    ok(&mut c, &["JOB.UPDATE", "ev", &id, "TOKEN", &token, "PROGRESS", "half"]);
    ok(&mut c, &["JOB.UPDATE", "ev", &id, "TOKEN", &token, "STATUS", "done", "RESULT", "{\"r\":1}"]);
    let hit = ok(&mut c, &["CACHE.GETORQUEUE", "ev", "PAYLOAD", "{\"a\":1}"]);
    assert_eq!(s(&array(&hit)[0]), "hit");
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "ev", &spare])), 1);
    assert_eq!(stat(&mut c, "ev", "created"), created, "nothing new was made");

    ok(&mut c, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    assert_eq!(info_i(&mut c, "eviction_risk"), 0);
    assert_accepted(&mut c, "ev");
    // the volatile policies evict finished jobs' records, which carry a TTL
    ok(&mut c, &["CONFIG", "SET", "maxmemory-policy", "volatile-lru"]);
    assert_refused(&mut c, "ev", "volatile-lru");
    // a policy only matters with a limit
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(info_i(&mut c, "eviction_risk"), 0);
    assert_accepted(&mut c, "ev");
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "200mb"]);
    assert_refused(&mut c, "ev", "volatile-lru");

    // the operator accepts the risk: writes go through, the risk is still shown
    ok(&mut c, &["CONFIG", "SET", "aijob.allow-eviction", "yes"]);
    assert_accepted(&mut c, "ev");
    assert_eq!((info_i(&mut c, "eviction_risk"), info_i(&mut c, "eviction_new_work_refused")), (1, 0));
    assert_eq!(s(&array(&ok(&mut c, &["CONFIG", "GET", "aijob.allow-eviction"]))[1]), "yes");
    ok(&mut c, &["CONFIG", "SET", "aijob.allow-eviction", "no"]);
    assert_refused(&mut c, "ev", "volatile-lru");
}

#[test]
fn a_policy_set_at_startup_is_detected_at_load() {
    let opts = Opts::default().with("maxmemory", "300mb").with("maxmemory-policy", "allkeys-lfu");
    let srv = Server::start_with(opts.clone());
    let mut c = srv.conn();
    let e = err(&mut c, &["JOB.CREATE", "q", "PAYLOAD", "{}"]);
    assert!(e.starts_with(&format!("{REFUSED} allkeys-lfu ")), "{e}");
    assert_eq!(info(&mut c, "eviction_policy"), "allkeys-lfu");
    assert!(srv.log_tail().contains("maxmemory-policy allkeys-lfu with maxmemory 314572800"), "{}", srv.log_tail());
    // opted in at load
    let srv = Server::start_with(opts.with("aijob.allow-eviction", "yes"));
    let mut c = srv.conn();
    create(&mut c, "q", &[]);
    assert_eq!((info_i(&mut c, "eviction_risk"), info_i(&mut c, "eviction_new_work_refused")), (1, 0));
}

#[test]
fn queue_repair_refuses_bad_input_and_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "q", &[]);
    ok(&mut c, &["SET", "aijob:{w}:meta", "not a hash"]);
    wait_quiet(&mut c);
    let before = digest(&mut c);
    for (words, expect) in [
        (&["QUEUE.REPAIR"][..], "wrong number of arguments"),
        (&["QUEUE.REPAIR", "q", "COUNT"][..], "ERR COUNT needs a value"),
        (&["QUEUE.REPAIR", "q", "COUNT", "0"][..], "ERR COUNT must be positive"),
        (&["QUEUE.REPAIR", "q", "COUNT", "-5"][..], "ERR COUNT must be positive"),
        (&["QUEUE.REPAIR", "q", "COUNT", "ten"][..], "ERR COUNT"),
        (&["QUEUE.REPAIR", "q", "COUNT", "100001"][..], "ERR COUNT must be at most 100000"),
        (&["QUEUE.REPAIR", "q", "COUNT", "1", "COUNT", "2"][..], "ERR COUNT given twice"),
        (&["QUEUE.REPAIR", "q", "BOGUS"][..], "ERR unknown option 'BOGUS'"),
        (&["QUEUE.REPAIR", "a b"][..], "ERR Q"),
        (&["QUEUE.REPAIR", "w"][..], "WRONGTYPE"),
    ] {
        let e = err(&mut c, words);
        assert!(e.starts_with(expect) || (expect.starts_with("wrong") && e.contains(expect)), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before, "a refused QUEUE.REPAIR changes nothing");
    // a healthy queue: one call walks it, finds nothing and ends the pass
    let r = ok(&mut c, &["QUEUE.REPAIR", "q"]);
    let got: Vec<(String, i64)> = pairs(&r).into_iter().map(|(k, v)| (k, int(&v))).collect();
    let want = [("checked", 1), ("dropped", 0), ("reindexed", 0), ("counters", 0), ("skipped", 0), ("done", 1)];
    assert_eq!(got, want.map(|(k, v)| (k.to_string(), v)));
    assert_eq!(digest(&mut c), before, "nothing to repair, nothing written");
    let r = ok(&mut c, &["QUEUE.REPAIR", "nobody"]);
    assert_eq!((fi(&r, "checked"), fi(&r, "done")), (0, 1));
}

/// A job of the eviction run: its id, priority and group.
struct Made {
    id: String,
    priority: &'static str,
    group: String,
}

/// Jobs in every status, with payloads big enough that records are worth evicting.
fn fill_queue(c: &mut Connection, q: &str) -> Vec<Made> {
    let payload = format!("{{\"text\":\"{}\"}}", "x".repeat(300));
    let mut made = Vec::new();
    for i in 0..480 {
        let priority = ["high", "normal", "low"][i % 3];
        let group = format!("g{}", i % 5);
        let mut words = vec!["JOB.CREATE", q, "PAYLOAD", &payload, "PRIORITY", priority, "GROUP", &group];
        if i % 8 == 0 {
            words.extend(["DELAY", "3600000"]);
        }
        let id = s(&ok(c, &words));
        made.push(Made { id, priority, group });
    }
    for n in 0..120 {
        let (id, token) = claim(c, q, &["LEASE", "3600000"]).expect("a job to claim");
        if n % 2 == 0 {
            ok(c, &["JOB.UPDATE", q, &id, "TOKEN", &token, "STATUS", "done", "RESULT", "{\"ok\":true}"]);
        }
    }
    made
}

fn aijob_keys(c: &mut Connection) -> usize {
    array(&ok(c, &["KEYS", "aijob:*"])).len()
}

fn used_memory(c: &mut Connection) -> i64 {
    let text = s(&ok(c, &["INFO", "memory"]));
    text.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()).expect("used_memory")
}

/// The index a job of `st` must be in besides `s:<status>`, and the member's presence.
fn in_status_index(c: &mut Connection, q: &str, m: &Made, st: &str) -> bool {
    let index = match st {
        "queued" => format!("aijob:{{{q}}}:q:{}:{}", m.priority, m.group),
        "delayed" => format!("aijob:{{{q}}}:delayed"),
        "running" => format!("aijob:{{{q}}}:leases"),
        _ => format!("aijob:{{{q}}}:expiry"),
    };
    let own = ok(c, &["ZSCORE", &format!("aijob:{{{q}}}:s:{st}"), &m.id]);
    let other = ok(c, &["ZSCORE", &index, &m.id]);
    own != Value::Nil && other != Value::Nil
}

/// A real eviction: a small maxmemory, allkeys-lru, the operator opted in, junk keys until
/// a good part of aijob's keys is gone. After the repair no job that kept its record is
/// lost (each is in its indexes, every queued one is claimed), and QUEUE.STATS agrees with
/// the records.
#[test]
fn a_real_eviction_loses_no_job_that_kept_its_record() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.allow-eviction", "yes"]);
    let q = "ev";
    let made = fill_queue(&mut c, q);
    let keys_before = aijob_keys(&mut c);
    ok(&mut c, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let limit = used_memory(&mut c) + 2_000_000;
    ok(&mut c, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    let junk = "j".repeat(1024);
    let mut n = 0;
    while aijob_keys(&mut c) * 100 > keys_before * 70 {
        let mut p = redis::pipe();
        for _ in 0..200 {
            p.cmd("SET").arg(format!("junk:{n}")).arg(&junk).ignore();
            n += 1;
        }
        p.query::<()>(&mut c).expect("junk written");
        assert!(n < 400_000, "aijob's keys are not being evicted");
    }
    assert!(int(&field_of_info(&mut c, "stats", "evicted_keys")) > 0);
    // stop evicting (an operator gives the server memory), then heal
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    repair_pass(&mut c, q);
    wait_until(Duration::from_secs(60), "the keyspace sweep to end", || {
        (info_i(&mut c, "repair_sweeping") == 0).then_some(())
    });
    repair_pass(&mut c, q);
    assert!(info_i(&mut c, "records_reindexed") + info_i(&mut c, "index_entries_dropped") > 0);

    let mut by_status: BTreeMap<String, Vec<&Made>> = BTreeMap::new();
    for m in &made {
        let fields = ok(&mut c, &["HMGET", &format!("aijob:{{{q}}}:job:{}", m.id), "status"]);
        let Some(Value::BulkString(st)) = array(&fields).into_iter().next() else { continue };
        let st = String::from_utf8(st).unwrap();
        assert!(in_status_index(&mut c, q, m, &st), "job {} ({st}) kept its record but not its indexes", m.id);
        by_status.entry(st).or_default().push(m);
    }
    let kept: usize = by_status.values().map(Vec::len).sum();
    assert!(kept > 0 && kept < made.len(), "kept {kept} of {} records", made.len());
    let stats = ok(&mut c, &["QUEUE.STATS", q]);
    for st in ["queued", "delayed", "running", "done", "error", "canceled"] {
        let records = by_status.get(st).map_or(0, Vec::len) as i64;
        assert_eq!(fi(&stats, st), records, "QUEUE.STATS {st}");
    }
    let queued = by_status.remove("queued").unwrap_or_default();
    for p in ["high", "normal", "low"] {
        let records = queued.iter().filter(|m| m.priority == p).count() as i64;
        assert_eq!(fi(&stats, &format!("queued_{p}")), records, "QUEUE.STATS queued_{p}");
    }
    let want: BTreeSet<String> = queued.iter().map(|m| m.id.clone()).collect();
    let mut got = BTreeSet::new();
    loop {
        let page = array(&ok(&mut c, &["JOB.CLAIM", q, "COUNT", "1000"]));
        if page.is_empty() {
            break;
        }
        got.extend(page.iter().map(|r| fs(r, "id")));
    }
    assert_eq!(got, want, "every queued job that kept its record is claimed, and only those");
}

fn field_of_info(c: &mut Connection, section: &str, name: &str) -> Value {
    let text = s(&ok(c, &["INFO", section]));
    let v = text.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).expect("the INFO field");
    Value::BulkString(v.trim().as_bytes().to_vec())
}

#[test]
fn a_replica_holds_the_masters_data_after_a_repair() {
    let master = Server::start();
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    for i in 0..30 {
        let group = format!("g{}", i % 3);
        create(&mut m, "rq", &["GROUP", &group, "PRIORITY", ["high", "low"][i % 2]]);
    }
    create(&mut m, "rq", &["DELAY", "3600000"]);
    for _ in 0..5 {
        claim(&mut m, "rq", &["LEASE", "3600000"]).expect("a job");
    }
    // the keys go and the repair runs in one MULTI: no timer round heals anything first
    let keys: Vec<String> = ["leases", "delayed", "meta", "rr:high", "q:low:g1", "s:running"]
        .iter()
        .map(|k| format!("aijob:{{rq}}:{k}"))
        .collect();
    let mut commands: Vec<Vec<&str>> = keys.iter().map(|k| vec!["DEL", k.as_str()]).collect();
    commands.push(vec!["QUEUE.REPAIR", "rq", "COUNT", "100000"]);
    let commands: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
    let replies = atomically(&mut m, &commands);
    let repaired = replies.last().expect("the repair's reply");
    assert_eq!(fi(repaired, "done"), 1);
    assert!(fi(repaired, "reindexed") > 0 && fi(repaired, "counters") > 0, "{repaired:?}");
    wait_until(Duration::from_secs(30), "the keyspace sweep to end", || {
        (info_i(&mut m, "repair_sweeping") == 0).then_some(())
    });
    repair_pass(&mut m, "rq");
    assert_eq!(stat(&mut m, "rq", "running"), 5, "the sweep found the running jobs again");
    assert_eq!(stat(&mut m, "rq", "queued"), 25);
    wait_quiet(&mut m);
    wait_synced(&master, &replica);
    let mut r = replica.conn();
    assert_eq!(digest(&mut r), digest(&mut m));
    let stats = |c: &mut Connection| -> Vec<(String, Value)> {
        pairs(&ok(c, &["QUEUE.STATS", "rq"])).into_iter().filter(|(k, _)| k != "oldest_queued_ms").collect()
    };
    assert_eq!(stats(&mut r), stats(&mut m));
}
