//! Replication and persistence with real processes: only native effects are written,
//! so a replica and an AOF reload hold byte-identical data, even without the module.

mod common;

use std::time::Duration;

use common::*;

/// A workload that touches every kind of write: creates with every option, claims,
/// progress, done with a cache write, errors with backoff, cancel, delete, retry,
/// groups, delayed jobs coming due and finished jobs expiring by the timer.
fn mixed_workload(c: &mut Connection) {
    for i in 0..20 {
        let prio = ["high", "normal", "low"][i % 3];
        let group = format!("t{}", i % 4);
        create(c, "mix", &["PRIORITY", prio, "GROUP", &group, "META", "{\"i\":1}"]);
    }
    create(c, "mix", &["HASH", &"b".repeat(64), "RETENTION", "100"]);
    create(c, "mix", &["DELAY", "150"]);
    create(c, "mix", &["DEADLINE", "100", "PRIORITY", "low", "ID", "dl"]);
    let (mut id, mut tok) = claim(c, "mix", &["WORKER", "w"]).expect("a job");
    for i in 0..8 {
        ok(c, &["JOB.UPDATE", "mix", &id, "TOKEN", &tok, "PROGRESS", "p", "PERCENT", "10"]);
        let done = ["JOB.UPDATE", "mix", &id, "TOKEN", &tok, "STATUS", "done", "RESULT", "{\"r\":1}"];
        if i == 7 {
            ok(c, &done);
            break;
        }
        // the finish and the next claim in one step (JOB.UPDATE ... NEXT), charged once
        let mut words = done.to_vec();
        words.extend(["NEXT", "WORKER", "w"]);
        if i == 3 {
            words.extend(["CHARGE", "rl:{mix}", "REQUESTS", "LIMIT", "100", "PERIOD", "60000"]);
        }
        let next = array(&array(&ok(c, &words))[1]).remove(0);
        (id, tok) = (fs(&next, "id"), fs(&next, "token"));
    }
    for _ in 0..3 {
        let (id, tok) = claim(c, "mix", &[]).expect("a job");
        ok(c, &["JOB.UPDATE", "mix", &id, "TOKEN", &tok, "STATUS", "error", "ERROR", "boom", "DELAY", "50"]);
    }
    let (id, tok) = claim(c, "mix", &[]).expect("a job");
    ok(c, &["JOB.UPDATE", "mix", &id, "TOKEN", &tok, "STATUS", "error", "ERROR", "bad", "NORETRY"]);
    ok(c, &["JOB.RETRY", "mix", &id]);
    let victim = create(c, "mix", &[]);
    ok(c, &["JOB.CANCEL", "mix", &victim]);
    let gone = create(c, "mix", &[]);
    ok(c, &["JOB.DELETE", "mix", &gone]);
    ok(c, &["QUEUE.PAUSE", "other"]);
    create(c, "other", &["RETENTION", "50"]);
    // let the timer move the delayed, the backoffs, the deadline and the retention
    wait_until(Duration::from_secs(5), "timer moves to settle", || {
        let delayed = stat(c, "mix", "delayed");
        let dl = fs(&ok(c, &["JOB.GET", "mix", "dl"]), "status");
        (delayed == 0 && dl != "queued").then_some(())
    });
    // and for whatever else the timer has left to do, so later digests compare one state
    wait_quiet(c);
}

#[test]
fn a_replica_holds_the_same_digest() {
    let master = Server::start();
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    mixed_workload(&mut m);
    wait_synced(&master, &replica);
    let mut r = replica.conn();
    assert_eq!(digest(&mut m), digest(&mut r), "replica diverged from master");
    // reads answer on the replica; the replica's timer makes no moves of its own
    let st = ok(&mut r, &["QUEUE.STATS", "mix"]);
    assert_eq!(fi(&st, "done"), fi(&ok(&mut m, &["QUEUE.STATS", "mix"]), "done"));
    let id = create(&mut m, "late", &["DELAY", "100"]);
    wait_synced(&master, &replica);
    wait_until(Duration::from_secs(3), "the delayed job to come due on the master", || {
        (fs(&ok(&mut m, &["JOB.GET", "late", &id]), "status") == "queued").then_some(())
    });
    wait_quiet(&mut m);
    wait_synced(&master, &replica);
    assert_eq!(fs(&ok(&mut r, &["JOB.GET", "late", &id]), "status"), "queued");
    assert_eq!(digest(&mut m), digest(&mut r));
    // writes are refused on the replica
    assert!(cmd(&mut r, &["JOB.CREATE", "q", "PAYLOAD", "{}"]).is_err());
}

#[test]
fn an_aof_restart_after_sigkill_holds_the_same_digest_even_without_the_module() {
    let dir = TempDir::new("aof");
    let opts = Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always();
    let mut srv = Server::start_with(opts.clone());
    let mut c = srv.conn();
    mixed_workload(&mut c);
    let before = digest(&mut c);
    let port = srv.port;
    srv.kill();
    drop(c);
    let again = Server::start_with(Opts { port: Some(port), ..opts.clone() });
    let mut c = again.conn();
    assert_eq!(digest(&mut c), before, "AOF reload differs");
    assert_eq!(stat(&mut c, "mix", "done"), 8);
    drop(again);
    let plain = Server::start_with(Opts { no_module: true, ..opts });
    let mut c = plain.conn();
    assert_eq!(digest(&mut c), before, "a server without the module loads different data");
    assert_eq!(s(&ok(&mut c, &["TYPE", "aijob:{mix}:s:done"])), "zset");
}
