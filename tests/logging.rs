//! The module's own lines in the server log: what the timer cannot do is logged, once per
//! kind every 10 s, and the timer goes on when the cause is gone.

mod common;

use std::time::Duration;

use common::*;

fn log_of(srv: &Server) -> String {
    std::fs::read_to_string(srv.dir.join("server.log")).unwrap_or_default()
}

#[test]
fn a_timer_error_is_logged_once_and_the_timer_recovers() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "lg", &["DELAY", "100"]);
    // the index the due job moves into, made a string behind the module's back
    ok(&mut c, &["SET", "aijob:{lg}:s:queued", "not a sorted set"]);
    let line = "timer: queue 'lg' (db 0): moves not made, next try in 1 s: WRONGTYPE";
    wait_until(Duration::from_secs(5), "the timer's error in the server log", || {
        log_of(&srv).contains(line).then_some(())
    });
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "lg", &id]), "status"), "delayed");
    // the timer tries again every second; the log holds one line per 10 s
    wait_ticks(&mut c, 25);
    let log = log_of(&srv);
    assert_eq!(log.matches(line).count(), 1, "rate-limited: {log}");
    assert!(log.lines().any(|l| l.contains("<aijob>") && l.contains(line)), "{log}");
    ok(&mut c, &["DEL", "aijob:{lg}:s:queued"]);
    wait_until(Duration::from_secs(5), "the job to come due", || {
        (fs(&ok(&mut c, &["JOB.GET", "lg", &id]), "status") == "queued").then_some(())
    });
}
