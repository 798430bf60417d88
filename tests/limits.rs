//! Rate limits and locks (docs/limits.md#rate-limits, docs/limits.md#locks) against a real server.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// RATELIMIT.HIT as (allowed, remaining, retry_after_ms, reset_ms).
fn hit(c: &mut Connection, key: &str, spec: &[&str]) -> (bool, i64, i64, i64) {
    let mut w = vec!["RATELIMIT.HIT", key];
    w.extend_from_slice(spec);
    let r: Vec<i64> = array(&ok(c, &w)).iter().map(int).collect();
    (r[0] == 1, r[1], r[2], r[3])
}

fn peek(c: &mut Connection, key: &str, spec: &[&str]) -> (bool, i64, i64, i64) {
    let mut w = vec!["RATELIMIT.PEEK", key];
    w.extend_from_slice(spec);
    let r: Vec<i64> = array(&ok(c, &w)).iter().map(int).collect();
    (r[0] == 1, r[1], r[2], r[3])
}

#[test]
fn counts_costs_and_resets() {
    let srv = Server::start();
    let mut c = srv.conn();
    let spec = ["LIMIT", "3", "PERIOD", "60000"];
    assert!(hit(&mut c, "rl:a", &spec).0);
    assert!(hit(&mut c, "rl:a", &spec).0);
    let (allowed, remaining, retry, reset) = hit(&mut c, "rl:a", &spec);
    assert!(allowed && remaining == 0 && retry == 0 && reset > 59_000);
    let (allowed, remaining, retry, _) = hit(&mut c, "rl:a", &spec);
    assert!(!allowed && remaining == 0 && retry > 59_000, "{retry}");
    let pttl = int(&ok(&mut c, &["PTTL", "rl:a"]));
    assert!(pttl > 0 && pttl <= reset, "PTTL {pttl} within reset_ms {reset}");
    assert_eq!(int(&ok(&mut c, &["RATELIMIT.RESET", "rl:a"])), 1);
    assert_eq!(int(&ok(&mut c, &["RATELIMIT.RESET", "rl:a"])), 0);
    assert!(hit(&mut c, "rl:a", &spec).0);
    // token budgets: COST
    let tpm = ["LIMIT", "2000000", "PERIOD", "60000", "COST", "1500000"];
    assert!(hit(&mut c, "rl:tpm", &tpm).0);
    let (allowed, remaining, _, _) = hit(&mut c, "rl:tpm", &tpm);
    assert!(!allowed && remaining == 500_000);
    assert!(hit(&mut c, "rl:tpm", &["LIMIT", "2000000", "PERIOD", "60000", "COST", "500000"]).0);
    assert!(err(&mut c, &["RATELIMIT.HIT", "rl:x", "LIMIT", "5", "PERIOD", "100", "COST", "6"]).starts_with("ERR COST"));
}

#[test]
fn windows_are_all_or_nothing_and_peek_consumes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    let spec = ["LIMIT", "5", "PERIOD", "1000", "LIMIT", "2", "PERIOD", "60000"];
    assert!(hit(&mut c, "rl:m", &spec).0);
    assert!(hit(&mut c, "rl:m", &spec).0);
    let denied = hit(&mut c, "rl:m", &spec);
    assert!(!denied.0, "the hour window refuses");
    // the refusal consumed nothing in the per-second window: 3 more fit there alone
    for _ in 0..3 {
        assert!(hit(&mut c, "rl:m", &["LIMIT", "5", "PERIOD", "1000"]).0);
    }
    assert!(!hit(&mut c, "rl:m", &["LIMIT", "5", "PERIOD", "1000"]).0);
    let before = s(&ok(&mut c, &["GET", "rl:m"]));
    for _ in 0..5 {
        peek(&mut c, "rl:m", &spec);
    }
    assert_eq!(s(&ok(&mut c, &["GET", "rl:m"])), before, "PEEK writes nothing");
    assert_eq!(peek(&mut c, "rl:fresh", &spec), (true, 2, 0, 0), "an empty key: all admissible, nothing to reset");
    assert_eq!(int(&ok(&mut c, &["EXISTS", "rl:fresh"])), 0);
}

/// Server time in ms and the HIT's verdict, in one MULTI so both read the same moment.
fn timed_hit(c: &mut Connection, key: &str, spec: &[&str]) -> (i64, bool) {
    let mut p = redis::pipe();
    p.atomic().cmd("TIME");
    let cmd = p.cmd("RATELIMIT.HIT").arg(key);
    for w in spec {
        cmd.arg(*w);
    }
    let (time, r): (Vec<String>, Vec<i64>) = p.query(c).unwrap();
    let ms = time[0].parse::<i64>().unwrap() * 1000 + time[1].parse::<i64>().unwrap() / 1000;
    (ms, r[0] == 1)
}

#[test]
fn eight_hammering_connections_never_get_more_than_the_limit_in_any_period() {
    let srv = Server::start();
    let (limit, period) = (40i64, 200i64);
    let spec: Vec<String> = vec!["LIMIT".into(), limit.to_string(), "PERIOD".into(), period.to_string()];
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut c = srv.conn();
            let (b, spec) = (barrier.clone(), spec.clone());
            thread::spawn(move || {
                let words: Vec<&str> = spec.iter().map(|s| s.as_str()).collect();
                b.wait();
                let start = Instant::now();
                let mut admitted = vec![];
                while start.elapsed() < Duration::from_millis(1500) {
                    let (t, ok) = timed_hit(&mut c, "rl:hammer", &words);
                    if ok {
                        admitted.push(t);
                    }
                }
                admitted
            })
        })
        .collect();
    let mut all: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort();
    assert!(all.len() as i64 >= limit * 5, "the limiter admits about its limit: {}", all.len());
    // TIME and the module's clock may differ by under a ms at an edge: check windows 2 ms short
    let checked = period - 2;
    for (i, t) in all.iter().enumerate() {
        let in_window = all[i..].iter().take_while(|u| **u < t + checked).count() as i64;
        assert!(in_window <= limit, "{in_window} admitted in {checked} ms from {t}");
    }
}

#[test]
fn retry_after_is_when_the_hit_is_admitted_again() {
    let srv = Server::start();
    let mut c = srv.conn();
    let spec = ["LIMIT", "2", "PERIOD", "300"];
    hit(&mut c, "rl:r", &spec);
    hit(&mut c, "rl:r", &spec);
    let mut p = redis::pipe();
    p.atomic().cmd("TIME").cmd("RATELIMIT.PEEK").arg("rl:r").arg("LIMIT").arg("2").arg("PERIOD").arg("300");
    let (time, r): (Vec<String>, Vec<i64>) = p.query(&mut c).unwrap();
    let denied_at = time[0].parse::<i64>().unwrap() * 1000 + time[1].parse::<i64>().unwrap() / 1000;
    assert_eq!(r[0], 0);
    let admit_at = denied_at + r[2];
    let mut first_ok = None;
    while first_ok.is_none() {
        let (t, ok) = {
            let mut p = redis::pipe();
            p.atomic().cmd("TIME").cmd("RATELIMIT.PEEK").arg("rl:r").arg("LIMIT").arg("2").arg("PERIOD").arg("300");
            let (time, r): (Vec<String>, Vec<i64>) = p.query(&mut c).unwrap();
            (time[0].parse::<i64>().unwrap() * 1000 + time[1].parse::<i64>().unwrap() / 1000, r[0] == 1)
        };
        if ok {
            first_ok = Some(t);
        } else {
            // TIME and the module's clock are read one after the other: they may straddle
            // a millisecond, so admit_at may be one ms early
            assert!(t <= admit_at + 1, "still denied at {t}, after retry_after said {admit_at}");
        }
    }
    let got = first_ok.unwrap();
    assert!(got >= admit_at - 1, "admitted at {got}, before retry_after's {admit_at}");
}

#[test]
fn memory_per_key_stays_small_for_huge_limits() {
    let srv = Server::start();
    let mut c = srv.conn();
    let mut p = redis::pipe();
    for i in 0..20_000 {
        p.cmd("RATELIMIT.HIT").arg("rl:big").arg("LIMIT").arg("1000000").arg("PERIOD").arg("60000");
        p.arg("LIMIT").arg("20000000").arg("PERIOD").arg("3600000").arg("COST").arg(1 + i % 3000).ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let bytes = int(&ok(&mut c, &["MEMORY", "USAGE", "rl:big"]));
    assert!(bytes < 4096, "{bytes} bytes");
}

#[test]
fn corrupt_and_wrong_type_keys_answer_errors() {
    let mut srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["SET", "k", "notanumber"]);
    ok(&mut c, &["HSET", "h", "f", "v"]);
    let spec = ["LIMIT", "1", "PERIOD", "1000"];
    let before = digest(&mut c);
    for words in [
        vec!["RATELIMIT.HIT", "k", "LIMIT", "1", "PERIOD", "1000"],
        vec!["RATELIMIT.PEEK", "k", "LIMIT", "1", "PERIOD", "1000"],
    ] {
        assert!(err(&mut c, &words).starts_with("ERR corrupt"), "{words:?}");
    }
    let mut h = vec!["RATELIMIT.HIT", "h"];
    h.extend_from_slice(&spec);
    assert!(err(&mut c, &h).starts_with("WRONGTYPE"));
    assert!(err(&mut c, &["LOCK.ACQUIRE", "h", "TTL", "100"]).starts_with("WRONGTYPE"));
    for (words, expected) in [
        (vec!["RATELIMIT.HIT", "k"], "ERR wrong number"),
        (vec!["RATELIMIT.HIT", "x", "LIMIT", "0", "PERIOD", "10"], "ERR LIMIT"),
        (vec!["RATELIMIT.HIT", "x", "LIMIT", "5", "PERIOD", "-10"], "ERR PERIOD"),
        (vec!["RATELIMIT.HIT", "x", "LIMIT", "5", "PERIOD", "10", "COST", "-1"], "ERR COST"),
        (vec!["RATELIMIT.HIT", "x", "LIMIT", "5", "PERIOD", "10", "BURST", "1"], "ERR unknown option"),
        (vec!["RATELIMIT.HIT", "x", "LIMIT", "5", "TIME", "10"], "ERR LIMIT"),
        (vec!["LOCK.ACQUIRE", "l", "TTL", "0"], "ERR TTL"),
        (vec!["LOCK.ACQUIRE", "l", "FOR", "10"], "ERR TTL"),
        (vec!["LOCK.EXTEND", "l", "t", "TTL", "x"], "ERR TTL"),
    ] {
        let e = err(&mut c, &words);
        assert!(e.starts_with(expected), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before);
    assert!(srv.is_alive());
}

#[test]
fn a_replica_holds_the_same_limiter_state() {
    let master = Server::start();
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    for i in 0..300 {
        let key = format!("rl:{{c{}}}:gen", i % 7);
        hit(
            &mut m,
            &key,
            &["LIMIT", "20", "PERIOD", "60000", "LIMIT", "100", "PERIOD", "3600000", "COST", &(1 + i % 3).to_string()],
        );
    }
    let token = s(&ok(&mut m, &["LOCK.ACQUIRE", "lock:x", "TTL", "60000"]));
    ok(&mut m, &["LOCK.EXTEND", "lock:x", &token, "TTL", "90000"]);
    wait_synced(&master, &replica);
    let mut r = replica.conn();
    assert_eq!(digest(&mut m), digest(&mut r));
    for k in ["rl:{c0}:gen", "lock:x"] {
        let (pm, pr) = (int(&ok(&mut m, &["PEXPIRETIME", k])), int(&ok(&mut r, &["PEXPIRETIME", k])));
        assert_eq!(pm, pr, "{k}: absolute expiry, not recomputed on the replica");
    }
    // PEEK answers on the replica
    assert!(array(&ok(&mut r, &["RATELIMIT.PEEK", "rl:{c0}:gen", "LIMIT", "20", "PERIOD", "60000"])).len() == 4);
}

#[test]
fn locks_under_contention() {
    let srv = Server::start();
    let barrier = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let mut c = srv.conn();
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                ok(&mut c, &["LOCK.ACQUIRE", "lock:job", "TTL", "5000"])
            })
        })
        .collect();
    let tokens: Vec<String> =
        threads.into_iter().map(|t| t.join().unwrap()).filter(|v| *v != Value::Nil).map(|v| s(&v)).collect();
    assert_eq!(tokens.len(), 1, "exactly one holder");
    let token = &tokens[0];
    assert_eq!(token.len(), 32);
    let mut c = srv.conn();
    assert_eq!(int(&ok(&mut c, &["LOCK.RELEASE", "lock:job", "not-the-token"])), 0);
    assert_eq!(int(&ok(&mut c, &["LOCK.EXTEND", "lock:job", "not-the-token", "TTL", "100"])), 0);
    assert_eq!(int(&ok(&mut c, &["LOCK.EXTEND", "lock:job", token, "TTL", "300"])), 1);
    let pttl = int(&ok(&mut c, &["PTTL", "lock:job"]));
    assert!(pttl <= 300 && pttl > 0);
    assert_eq!(ok(&mut c, &["LOCK.ACQUIRE", "lock:job", "TTL", "100"]), Value::Nil);
    wait_until(Duration::from_secs(3), "the lock to expire", || {
        (ok(&mut c, &["LOCK.ACQUIRE", "lock:job", "TTL", "1000"]) != Value::Nil).then_some(())
    });
    assert_eq!(int(&ok(&mut c, &["LOCK.RELEASE", "lock:job", token])), 0, "an expired holder releases nothing");
}
