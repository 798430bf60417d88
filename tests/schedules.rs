//! Schedules (docs/schedules.md) fired by the master's timer, against real servers.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn jobs_of(c: &mut Connection, q: &str) -> Vec<Value> {
    let page = array(&ok(c, &["JOB.LIST", q, "COUNT", "10000"]));
    array(&page[1])
}

#[test]
fn every_200_fires_on_time() {
    let srv = Server::start();
    let mut c = srv.conn();
    let t0 = Instant::now();
    let next = int(&ok(
        &mut c,
        &["SCHEDULE.SET", "poll", "gen", "EVERY", "200", "PAYLOAD", "{\"poll\":1}", "OVERLAP", "allow"],
    ));
    let now = int(&array(&ok(&mut c, &["TIME"]))[0]) * 1000;
    assert!((next - now - 200).abs() < 1100, "first run one period away: {}", next - now);
    wait_until(Duration::from_secs(5), "runs to pile up", || {
        (t0.elapsed() >= Duration::from_millis(2000)).then_some(())
    });
    let n = stat(&mut c, "poll", "created");
    assert!((7..=11).contains(&n), "about ten runs in two seconds, got {n}");
    let jobs = jobs_of(&mut c, "poll");
    assert!(jobs.iter().all(|j| fs(j, "schedule") == "gen"));
    // one MULTI: the timer fires every 200 ms and must not fire between the two reads
    let both = atomically(&mut c, &[&["SCHEDULE.GET", "poll", "gen"], &["QUEUE.STATS", "poll"]]);
    let sc = &both[0];
    assert_eq!(fi(sc, "runs"), fi(&both[1], "created"));
    assert_eq!(fi(sc, "every"), 200);
    assert_eq!(fs(sc, "overlap"), "allow");
    assert_eq!(stat(&mut c, "poll", "schedules"), 1);
    assert!(s(&ok(&mut c, &["INFO", "aijob"])).contains("aijob_schedule_runs:"));
}

#[test]
fn cron_next_run_is_the_next_matching_minute() {
    let srv = Server::start();
    let mut c = srv.conn();
    let next = int(&ok(&mut c, &["SCHEDULE.SET", "ops", "cleanup", "CRON", "@hourly", "PAYLOAD", "{}"]));
    let now = int(&array(&ok(&mut c, &["TIME"]))[0]) * 1000;
    assert_eq!(next % 3_600_000, 0);
    assert!(next > now - 1000 && next <= now + 3_600_000);
    let next = int(&ok(&mut c, &["SCHEDULE.SET", "ops", "reconcile", "CRON", "*/15 * * * *", "PAYLOAD", "{}"]));
    assert_eq!(next % 900_000, 0);
    assert!(next <= now + 900_000);
    let got = ok(&mut c, &["SCHEDULE.GET", "ops", "reconcile"]);
    assert_eq!(fs(&got, "cron"), "*/15 * * * *");
    assert!(field(&got, "every").is_none());
    let names: Vec<String> = array(&ok(&mut c, &["SCHEDULE.LIST", "ops"])).iter().map(|m| fs(m, "name")).collect();
    assert_eq!(names, ["cleanup", "reconcile"]);
}

#[test]
fn overlap_skip_holds_runs_back_while_the_last_job_runs() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["SCHEDULE.SET", "q", "s", "EVERY", "100", "PAYLOAD", "{}"]);
    let (id, tok) = wait_until(Duration::from_secs(3), "the first run", || claim(&mut c, "q", &["LEASE", "60000"]));
    wait_until(Duration::from_secs(5), "three skipped runs", || {
        (fi(&ok(&mut c, &["SCHEDULE.GET", "q", "s"]), "skipped") >= 3).then_some(())
    });
    assert_eq!(stat(&mut c, "q", "created"), 1, "no run while the first one's job runs");
    ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &tok, "STATUS", "done", "RESULT", "1"]);
    wait_until(Duration::from_secs(3), "the next run", || (stat(&mut c, "q", "created") == 2).then_some(()));
}

#[test]
fn run_pause_resume_and_del() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(
        &mut c,
        &["SCHEDULE.SET", "q", "s", "EVERY", "3600000", "PAYLOAD", "{\"x\":1}", "PRIORITY", "high", "GROUP", "ops"],
    );
    let id = s(&ok(&mut c, &["SCHEDULE.RUN", "q", "s"]));
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!(
        (fs(&rec, "schedule"), fs(&rec, "priority"), fs(&rec, "group")),
        ("s".into(), "high".into(), "ops".into())
    );
    assert_eq!(ok(&mut c, &["SCHEDULE.RUN", "q", "s"]), Value::Nil, "OVERLAP skip holds it back");
    assert!(err(&mut c, &["SCHEDULE.RUN", "q", "nope"]).starts_with("NOTFOUND"));
    ok(&mut c, &["SCHEDULE.SET", "q", "fast", "EVERY", "100", "PAYLOAD", "{}", "OVERLAP", "allow"]);
    assert_eq!(int(&ok(&mut c, &["SCHEDULE.PAUSE", "q", "fast"])), 1);
    let before = stat(&mut c, "q", "created");
    wait_ticks(&mut c, 4);
    assert_eq!(stat(&mut c, "q", "created"), before, "a paused schedule does not fire");
    assert_eq!(fi(&ok(&mut c, &["SCHEDULE.GET", "q", "fast"]), "paused"), 1);
    assert_eq!(int(&ok(&mut c, &["SCHEDULE.RESUME", "q", "fast"])), 1);
    wait_until(Duration::from_secs(3), "runs after RESUME", || (stat(&mut c, "q", "created") > before).then_some(()));
    assert_eq!(int(&ok(&mut c, &["SCHEDULE.DEL", "q", "fast"])), 1);
    let after = stat(&mut c, "q", "created");
    wait_ticks(&mut c, 4);
    assert_eq!(stat(&mut c, "q", "created"), after, "DEL stops it");
    assert_eq!(int(&ok(&mut c, &["SCHEDULE.DEL", "q", "fast"])), 0);
    assert_eq!(int(&ok(&mut c, &["SCHEDULE.PAUSE", "q", "fast"])), 0);
    assert_eq!(ok(&mut c, &["SCHEDULE.GET", "q", "fast"]), Value::Nil);
    assert_eq!(stat(&mut c, "q", "schedules"), 1);
}

#[test]
fn bad_schedules_change_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["SCHEDULE.SET", "q", "keep", "EVERY", "3600000", "PAYLOAD", "{}"]);
    let before = digest(&mut c);
    for (words, expected) in [
        (vec!["SCHEDULE.SET", "q", "s", "CRON", "61 * * * *", "PAYLOAD", "{}"], "ERR CRON"),
        (vec!["SCHEDULE.SET", "q", "s", "CRON", "* * *", "PAYLOAD", "{}"], "ERR CRON"),
        (vec!["SCHEDULE.SET", "q", "s", "CRON", "0 0 30 2 *", "PAYLOAD", "{}"], "ERR CRON"),
        (vec!["SCHEDULE.SET", "q", "s", "CRON", "@sometimes", "PAYLOAD", "{}"], "ERR CRON"),
        (vec!["SCHEDULE.SET", "q", "s", "EVERY", "0", "PAYLOAD", "{}"], "ERR EVERY"),
        (vec!["SCHEDULE.SET", "q", "s", "EVERY", "-5", "PAYLOAD", "{}"], "ERR EVERY"),
        (vec!["SCHEDULE.SET", "q", "s", "EVERY", "10", "PAYLOAD", "{bad"], "ERR PAYLOAD"),
        (vec!["SCHEDULE.SET", "q", "s", "EVERY", "10", "PAYLOAD", "{}", "OVERLAP", "x"], "ERR OVERLAP"),
        (vec!["SCHEDULE.SET", "q", "s", "EVERY", "10", "PAYLOAD", "{}", "START", "-1"], "ERR START"),
        (vec!["SCHEDULE.SET", "q", "s", "PAYLOAD", "{}", "PRIORITY", "low"], "ERR EVERY ms or CRON"),
        (vec!["SCHEDULE.SET", "q", "a b", "EVERY", "10", "PAYLOAD", "{}"], "ERR name"),
        (vec!["SCHEDULE.GET", "q"], "ERR wrong number"),
        (vec!["SCHEDULE.GET", "q", "keep", "extra"], "ERR unknown option"),
    ] {
        let e = err(&mut c, &words);
        assert!(e.starts_with(expected), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before);
}

/// A replica never fires; promoted, it goes on firing without a duplicate.
#[test]
fn a_schedule_fires_once_across_a_failover() {
    let mut master = Server::start();
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    ok(&mut m, &["SCHEDULE.SET", "fo", "tick", "EVERY", "200", "PAYLOAD", "{}", "OVERLAP", "allow", "START", "0"]);
    let on_master =
        wait_until(Duration::from_secs(5), "five runs", || Some(stat(&mut m, "fo", "created")).filter(|n| *n >= 5));
    wait_synced(&master, &replica);
    let mut r = replica.conn();
    // hold the schedule, then the replica must hold exactly the master's runs and make none
    ok(&mut m, &["SCHEDULE.PAUSE", "fo", "tick"]);
    wait_synced(&master, &replica);
    wait_ticks(&mut r, 4);
    wait_synced(&master, &replica);
    assert_eq!(digest(&mut r), digest(&mut m), "the replica holds exactly the master's runs");
    assert_eq!(stat(&mut r, "fo", "created"), stat(&mut m, "fo", "created"));
    assert!(stat(&mut m, "fo", "created") >= on_master);
    let paused = stat(&mut m, "fo", "created");
    ok(&mut m, &["SCHEDULE.RESUME", "fo", "tick"]);
    wait_until(Duration::from_secs(5), "runs after RESUME", || (stat(&mut m, "fo", "created") > paused).then_some(()));
    wait_synced(&master, &replica);
    master.kill();
    let before_promotion = stat(&mut r, "fo", "created");
    ok(&mut r, &["REPLICAOF", "NO", "ONE"]);
    let promoted_at = Instant::now();
    wait_until(Duration::from_secs(3), "the promoted replica to fire", || {
        (stat(&mut r, "fo", "created") > before_promotion).then_some(())
    });
    assert!(promoted_at.elapsed() < Duration::from_millis(1500));
    wait_until(Duration::from_secs(5), "more runs on the promoted replica", || {
        (stat(&mut r, "fo", "created") >= before_promotion + 5).then_some(())
    });
    ok(&mut r, &["SCHEDULE.PAUSE", "fo", "tick"]);
    // each run belongs to one 200 ms slot of the timetable: no slot twice
    let mut slots: Vec<i64> = jobs_of(&mut r, "fo").iter().map(|j| fi(j, "created_at") / 200).collect();
    slots.sort();
    let n = slots.len();
    slots.dedup();
    assert_eq!(
        slots.len(),
        n,
        "a slot ran twice: {:?}",
        jobs_of(&mut r, "fo").iter().map(|j| fi(j, "created_at")).collect::<Vec<_>>()
    );
    assert_eq!(fi(&ok(&mut r, &["SCHEDULE.GET", "fo", "tick"]), "runs") as usize, n);
}

#[test]
fn schedules_survive_an_aof_restart() {
    let dir = TempDir::new("sched-aof");
    let opts = Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always();
    let mut srv = Server::start_with(opts.clone());
    let mut c = srv.conn();
    let next = int(&ok(&mut c, &["SCHEDULE.SET", "q", "s", "EVERY", "300", "PAYLOAD", "{}", "OVERLAP", "allow"]));
    ok(&mut c, &["SCHEDULE.SET", "q", "daily", "CRON", "@daily", "PAYLOAD", "{}"]);
    let daily = fi(&ok(&mut c, &["SCHEDULE.GET", "q", "daily"]), "next_run_at");
    assert!(next > 0);
    let port = srv.port;
    srv.kill();
    let again = Server::start_with(Opts { port: Some(port), ..opts });
    let mut c = again.conn();
    assert_eq!(fi(&ok(&mut c, &["SCHEDULE.GET", "q", "daily"]), "next_run_at"), daily);
    let before = stat(&mut c, "q", "created");
    wait_until(Duration::from_secs(3), "the restarted master to fire", || {
        (stat(&mut c, "q", "created") > before + 1).then_some(())
    });
}
