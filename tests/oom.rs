//! Memory pressure (issue 18, finding 2): a real redis-server with a small `maxmemory` and
//! `noeviction`, filled with junk strings until writes are refused for OOM. Work in
//! progress finishes; new work is refused and changes nothing; the timer grows no memory
//! and burns no attempt (docs/operations.md, "Memory pressure").

mod common;

use std::time::Duration;

use common::*;

/// A server with room for the test's jobs, and little more. Redis 7 allocates a 24 KB
/// latency histogram on each command's first call: tracking is off, so that used memory
/// moves with the data only.
fn start() -> Server {
    let opts = Opts::default().with("maxmemory", "12mb").with("maxmemory-policy", "noeviction");
    Server::start_with(opts.with("latency-tracking", "no"))
}

fn info_field(c: &mut Connection, section: &str, name: &str) -> i64 {
    let info = s(&ok(c, &["INFO", section]));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:"))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} shows no {name}"))
}

fn used_memory(c: &mut Connection) -> i64 {
    info_field(c, "memory", "used_memory")
}

fn is_full(c: &mut Connection) -> bool {
    used_memory(c) > info_field(c, "memory", "maxmemory")
}

/// Writes 256 KB strings until Redis refuses one for OOM (on a connection of its own, closed
/// then, so its buffers are not freed later in the test), then lowers `maxmemory` 1 MB
/// under what is used, so that no noise ends the spell while a test runs. Returns the
/// junk keys: deleting them frees the server.
fn fill(srv: &Server, c: &mut Connection) -> Vec<String> {
    let value = vec![b'j'; 256 * 1024];
    let mut junk = Vec::new();
    let others = info_field(c, "clients", "connected_clients");
    let mut filler = srv.conn();
    loop {
        let key = format!("junk:{}", junk.len());
        match redis::cmd("SET").arg(&key).arg(&value).query::<()>(&mut filler) {
            Ok(()) => junk.push(key),
            Err(e) if e.code() == Some("OOM") => break,
            Err(e) => panic!("SET {key}: {e}"),
        }
        assert!(junk.len() < 1000, "maxmemory never refused a write");
    }
    drop(filler);
    wait_until(Duration::from_secs(10), "the filler to be gone", || {
        (info_field(c, "clients", "connected_clients") == others).then_some(())
    });
    let limit = used_memory(c) - 1024 * 1024;
    ok(c, &["CONFIG", "SET", "maxmemory", &limit.to_string()]);
    assert!(is_full(c));
    junk
}

/// Deletes the junk and waits until used memory is under `maxmemory` again.
fn free(c: &mut Connection, junk: &[String]) {
    let mut del = redis::cmd("DEL");
    for k in junk {
        del.arg(k);
    }
    del.query::<i64>(c).expect("DEL the junk");
    wait_until(Duration::from_secs(10), "memory under maxmemory", || (!is_full(c)).then_some(()));
}

fn aijob(c: &mut Connection, name: &str) -> i64 {
    info_field(c, "aijob", &format!("aijob_{name}"))
}

/// The server's clock in ms.
fn server_ms(c: &mut Connection) -> i64 {
    let t = array(&ok(c, &["TIME"]));
    int(&t[0]) * 1000 + int(&t[1]) / 1000
}

fn status(c: &mut Connection, q: &str, id: &str) -> String {
    fs(&ok(c, &["JOB.GET", q, id]), "status")
}

fn oom_error(c: &mut Connection, words: &[&str]) -> String {
    let e = err(c, words);
    assert!(e.starts_with("OOM command not allowed when used memory > 'maxmemory'"), "{words:?}: {e}");
    e
}

#[test]
fn the_flags_say_which_commands_run_when_memory_is_full() {
    let srv = start();
    let mut c = srv.conn();
    let flags = |c: &mut Connection, name: &str| -> Vec<String> {
        let info = array(&ok(c, &["COMMAND", "INFO", name]));
        array(&array(&info[0])[2]).iter().map(s).collect()
    };
    for finishing in ["job.update", "job.release", "job.cancel", "job.delete", "cache.getorqueue", "cache.del"] {
        assert!(!flags(&mut c, finishing).contains(&"denyoom".to_string()), "{finishing}");
    }
    for starting in ["job.create", "job.claim", "job.retry", "schedule.run"] {
        assert!(flags(&mut c, starting).contains(&"denyoom".to_string()), "{starting}");
    }
}

#[test]
fn a_worker_reports_under_oom_and_a_single_attempt_job_ends_done() {
    let srv = start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &["MAXATTEMPTS", "1"]);
    let (_, token) = claim(&mut c, "q", &["LEASE", "60000"]).expect("a job to claim");
    fill(&srv, &mut c);
    // a pure heartbeat, and progress within the bound
    assert_eq!(s(&ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token])), "running");
    assert_eq!(
        s(&ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token, "PROGRESS", "half", "PERCENT", "50"])),
        "running"
    );
    // over the bound: refused, nothing changed, the lease kept
    let big = "p".repeat(70_000);
    let e = oom_error(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token, "PROGRESS", &big]);
    assert!(e.contains("PROGRESS carries 70000 bytes"), "{e}");
    let big_result = format!("{{\"text\":\"{big}\"}}");
    let e = oom_error(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token, "STATUS", "done", "RESULT", &big_result]);
    assert!(e.contains("RESULT carries"), "{e}");
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!((fs(&rec, "status"), fs(&rec, "progress")), ("running".to_string(), "half".to_string()));
    // the result within the bound lands: the job's only attempt ends done
    let done = ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token, "STATUS", "done", "RESULT", "{\"answer\":42}"]);
    assert_eq!(s(&done), "done");
    let rec = ok(&mut c, &["JOB.GET", "q", &id, "JSON"]);
    let doc: serde_json::Value = serde_json::from_str(&s(&rec)).unwrap();
    assert_eq!((doc["status"].as_str(), doc["attempts"].as_i64()), (Some("done"), Some(1)));
    assert_eq!(doc["result"]["answer"], 42);
    assert_eq!(aijob(&mut c, "oom_refusals"), 2);
    assert!(is_full(&mut c), "the whole test ran with memory full");
}

#[test]
fn a_finish_with_next_lands_under_oom_and_claims_nothing() {
    let srv = start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    let waiting = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &["LEASE", "60000"]).expect("a job to claim");
    fill(&srv, &mut c);
    // the finish is work in progress: it lands; the claim would start new work: none
    let words = ["JOB.UPDATE", "q", &id, "TOKEN", &token, "STATUS", "done", "RESULT", "{}", "NEXT", "BLOCK", "5000"];
    let r = array(&ok(&mut c, &words));
    assert_eq!((s(&r[0]), array(&r[1]).len()), ("done".to_string(), 0), "no block, no claim");
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &id]), "status"), "done");
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &waiting]), "status"), "queued");
    assert!(is_full(&mut c), "the whole test ran with memory full");
}

#[test]
fn release_cancel_and_delete_work_under_oom() {
    let srv = start();
    let mut c = srv.conn();
    let ids: Vec<String> = (0..4).map(|_| create(&mut c, "q", &[])).collect();
    let (a, ta) = claim(&mut c, "q", &[]).unwrap();
    let (b, _) = claim(&mut c, "q", &[]).unwrap();
    assert_eq!((&a, &b), (&ids[0], &ids[1]));
    let hash = s(&ok(&mut c, &["CACHE.HASH", "KEY", "k"]));
    ok(&mut c, &["CACHE.SET", "q", &hash, "{\"v\":1}"]);
    let lock = s(&ok(&mut c, &["LOCK.ACQUIRE", "lk", "TTL", "60000"]));
    fill(&srv, &mut c);
    assert_eq!(s(&ok(&mut c, &["JOB.RELEASE", "q", &a, "TOKEN", &ta])), "queued");
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "q", &b])), 1, "a running job");
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "q", &ids[2]])), 1, "a queued job");
    assert_eq!(int(&ok(&mut c, &["JOB.DELETE", "q", &ids[3]])), 1);
    assert_eq!(status(&mut c, "q", &a), "queued");
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", &a]), "attempts"), 0, "a released attempt does not count");
    assert_eq!(status(&mut c, "q", &b), "canceled");
    assert_eq!(status(&mut c, "q", &ids[2]), "canceled");
    assert_eq!(ok(&mut c, &["JOB.GET", "q", &ids[3]]), Value::Nil);
    assert_eq!(int(&ok(&mut c, &["LOCK.EXTEND", "lk", &lock, "TTL", "60000"])), 1);
    assert_eq!(int(&ok(&mut c, &["LOCK.RELEASE", "lk", &lock])), 1);
    assert_eq!(int(&ok(&mut c, &["CACHE.DEL", "q", &hash])), 1);
    assert_eq!(int(&ok(&mut c, &["CACHE.CLEAR", "q"])), 0);
    assert!(is_full(&mut c));
}

#[test]
fn new_work_is_refused_under_oom_and_changes_nothing() {
    let srv = start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    ok(&mut c, &["QUEUE.PAUSE", "q"]);
    // a worker waits on the paused queue from before the server filled up
    let url = srv.url();
    let waiter = std::thread::spawn(move || {
        let mut w = redis::Client::open(url).unwrap().get_connection().unwrap();
        cmd(&mut w, &["JOB.CLAIM", "q", "BLOCK", "10000"])
    });
    wait_until(Duration::from_secs(10), "the claim to block", || {
        (info_field(&mut c, "clients", "blocked_clients") == 1).then_some(())
    });
    fill(&srv, &mut c);
    // resuming the queue wakes the waiter: its claim is refused, and the job stays queued
    ok(&mut c, &["QUEUE.RESUME", "q"]);
    let woken = waiter.join().unwrap();
    let e = error_text(&woken.expect_err("the woken claim is refused"));
    assert!(e.starts_with("OOM"), "{e}");
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!((fs(&rec, "status"), fi(&rec, "attempts")), ("queued".to_string(), 0));
    assert_eq!(aijob(&mut c, "claims"), 0);
    let before = digest(&mut c);
    oom_error(&mut c, &["JOB.CREATE", "q", "PAYLOAD", "{}"]);
    oom_error(&mut c, &["JOB.CLAIM", "q"]);
    let e = oom_error(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{\"new\":1}"]);
    assert!(e.contains("cache miss"), "{e}");
    let e = oom_error(&mut c, &["JOB.UPDATE", "q", &id, "STATUS", "running"]);
    assert!(e.contains("STATUS running"), "{e}");
    assert_eq!(digest(&mut c), before, "the refusals wrote nothing");
    assert_eq!(aijob(&mut c, "oom_refusals"), 3, "the woken claim, the cache miss and STATUS running");
}

#[test]
fn a_cache_hit_and_a_pending_job_answer_under_oom() {
    let srv = start();
    let mut c = srv.conn();
    let first = array(&ok(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{\"p\":1}"]));
    let id = s(&first[1]);
    let (_, token) = claim(&mut c, "q", &[]).unwrap();
    ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token, "STATUS", "done", "RESULT", "{\"r\":1}"]);
    let live = s(&array(&ok(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{\"p\":2}"]))[1]);
    fill(&srv, &mut c);
    let hit = array(&ok(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{\"p\":1}"]));
    assert_eq!((s(&hit[0]), &hit[1], s(&hit[2])), ("hit".to_string(), &Value::Nil, "{\"r\":1}".to_string()));
    let pending = array(&ok(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{\"p\":2}"]));
    assert_eq!((s(&pending[0]), s(&pending[1])), ("pending".to_string(), live));
    oom_error(&mut c, &["CACHE.GETORQUEUE", "q", "PAYLOAD", "{\"p\":3}"]);
    assert_eq!(stat(&mut c, "q", "created"), 2);
}

#[test]
fn a_lease_that_runs_out_under_oom_does_not_burn_the_attempt() {
    let srv = start();
    let mut c = srv.conn();
    // one worker will report late, one is gone for good
    let kept = create(&mut c, "q", &["MAXATTEMPTS", "1"]);
    let (_, token) = claim(&mut c, "q", &["LEASE", "2000"]).unwrap();
    let gone = create(&mut c, "q", &["MAXATTEMPTS", "1"]);
    claim(&mut c, "q", &["LEASE", "300"]).unwrap();
    let junk = fill(&srv, &mut c);
    let lease_until = fi(&ok(&mut c, &["JOB.GET", "q", &kept]), "lease_until");
    wait_until(Duration::from_secs(10), "both leases to run out", || {
        (server_ms(&mut c) > lease_until + 200).then_some(())
    });
    wait_ticks(&mut c, 5);
    assert_eq!((status(&mut c, "q", &kept), status(&mut c, "q", &gone)), ("running".into(), "running".into()));
    assert!(aijob(&mut c, "timer_paused_oom") >= 5);
    assert_eq!(aijob(&mut c, "expired_leases"), 0);
    // memory freed: each lease that ran out meanwhile gets one more lease length
    free(&mut c, &junk);
    wait_until(Duration::from_secs(10), "the leases to be renewed", || {
        (aijob(&mut c, "oom_lease_renewals") == 2).then_some(())
    });
    let rec = ok(&mut c, &["JOB.GET", "q", &kept]);
    assert_eq!((fs(&rec, "status"), fi(&rec, "attempts")), ("running".to_string(), 1));
    assert!(fi(&rec, "lease_until") > lease_until + 200, "renewed from when memory was freed");
    assert_eq!(s(&ok(&mut c, &["JOB.UPDATE", "q", &kept, "TOKEN", &token, "STATUS", "done", "RESULT", "{}"])), "done");
    // nobody reports for the other one: its renewed lease runs out as any lease does
    wait_until(Duration::from_secs(10), "the abandoned lease to expire", || {
        (status(&mut c, "q", &gone) == "error").then_some(())
    });
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &gone]), "error_class"), "lease_expired");
    assert_eq!(status(&mut c, "q", &kept), "done");
}

/// Used memory without the clients' buffers (`MEMORY STATS`): those grow and shrink with
/// the test's own commands; the least of a few readings.
fn settled_used_memory(c: &mut Connection) -> i64 {
    let reading = |c: &mut Connection| {
        let stats = ok(c, &["MEMORY", "STATS"]);
        fi(&stats, "total.allocated") - fi(&stats, "clients.normal")
    };
    (0..5).map(|_| reading(c)).min().unwrap()
}

#[test]
fn the_timer_grows_no_memory_under_oom() {
    let srv = start();
    let mut c = srv.conn();
    // work for the timer, all coming due while the server is full
    let payload = format!("{{\"text\":\"{}\"}}", "s".repeat(8 * 1024));
    ok(&mut c, &["SCHEDULE.SET", "q", "often", "EVERY", "100", "PAYLOAD", &payload, "OVERLAP", "allow"]);
    let mut delayed = Vec::new();
    for i in 0..300 {
        delayed.push(create(&mut c, "q", &["DELAY", "1500", "DEADLINE", "1000000", "META", &format!("{{\"i\":{i}}}")]));
    }
    for _ in 0..100 {
        create(&mut c, "leased", &[]);
        claim(&mut c, "leased", &["LEASE", "1500"]).unwrap();
    }
    let junk = fill(&srv, &mut c);
    let runs_before = fi(&ok(&mut c, &["SCHEDULE.GET", "q", "often"]), "runs");
    let before = settled_used_memory(&mut c);
    let due = server_ms(&mut c) + 1600;
    wait_until(Duration::from_secs(10), "the delays and leases to run out", || (server_ms(&mut c) > due).then_some(()));
    wait_ticks(&mut c, 20);
    let after = settled_used_memory(&mut c);
    // 32 KB: room for the slow log, should a command of the test's own be slow on a busy machine
    assert!(after <= before + 32 * 1024, "used memory grew from {before} to {after} while full");
    assert_eq!(fi(&ok(&mut c, &["SCHEDULE.GET", "q", "often"]), "runs"), runs_before, "no schedule fired");
    assert_eq!(status(&mut c, "q", &delayed[0]), "delayed");
    assert_eq!(stat(&mut c, "leased", "running"), 100);
    assert!(aijob(&mut c, "timer_paused_oom") >= 20);
    // memory freed: the timer makes the moves it held back
    free(&mut c, &junk);
    wait_until(Duration::from_secs(10), "the delayed jobs to come due", || {
        (stat(&mut c, "q", "delayed") == 0).then_some(())
    });
    wait_until(Duration::from_secs(10), "the schedule to fire", || {
        (fi(&ok(&mut c, &["SCHEDULE.GET", "q", "often"]), "runs") > runs_before).then_some(())
    });
}
