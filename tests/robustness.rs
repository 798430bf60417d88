//! No input crashes or hangs the server: every command gets thousands of random argument
//! lists (option words, numbers at the edges, broken JSON, binary bytes, names of the wrong
//! shape) from a fixed seed; afterwards the server answers and no command hit a panic.

mod common;

use std::time::{Duration, Instant};

use common::*;

const COMMANDS: [&str; 36] = [
    "JOB.CREATE",
    "JOB.GET",
    "JOB.CLAIM",
    "JOB.UPDATE",
    "JOB.RELEASE",
    "JOB.CANCEL",
    "JOB.RETRY",
    "JOB.DELETE",
    "JOB.LIST",
    "JOB.APPEND",
    "JOB.READ",
    "QUEUE.STATS",
    "QUEUE.PAUSE",
    "QUEUE.RESUME",
    "QUEUE.PURGE",
    "QUEUE.GROUPCAP",
    "QUEUE.GROUPS",
    "CACHE.GETORQUEUE",
    "CACHE.HASH",
    "CACHE.GET",
    "CACHE.SET",
    "CACHE.DEL",
    "CACHE.CLEAR",
    "RATELIMIT.HIT",
    "RATELIMIT.PEEK",
    "RATELIMIT.RESET",
    "LOCK.ACQUIRE",
    "LOCK.RELEASE",
    "LOCK.EXTEND",
    "SCHEDULE.SET",
    "SCHEDULE.GET",
    "SCHEDULE.LIST",
    "SCHEDULE.DEL",
    "SCHEDULE.RUN",
    "SCHEDULE.PAUSE",
    "SCHEDULE.RESUME",
];

const WORDS: [&str; 51] = [
    "PAYLOAD",
    "ID",
    "PRIORITY",
    "DELAY",
    "AT",
    "MAXATTEMPTS",
    "RETENTION",
    "DEADLINE",
    "HASH",
    "META",
    "GROUP",
    "COST",
    "WORKER",
    "LEASE",
    "BLOCK",
    "COUNT",
    "CHARGE",
    "REQUESTS",
    "LIMIT",
    "PERIOD",
    "TOKEN",
    "STATUS",
    "PROGRESS",
    "PERCENT",
    "RESULT",
    "ERROR",
    "CLASS",
    "NORETRY",
    "USAGE",
    "JSON",
    "CURSOR",
    "KEY",
    "CACHETTL",
    "WITHETAG",
    "TTL",
    "IFMATCH",
    "IFNONE",
    "EVERY",
    "CRON",
    "OVERLAP",
    "START",
    "DATA",
    "AFTER",
    "RESTART",
    "high",
    "done",
    "error",
    "running",
    "queued",
    "*",
    "allow",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn arg(&mut self, ids: &[String]) -> Vec<u8> {
        match self.next() % 14 {
            0..=4 => self.pick(&WORDS).as_bytes().to_vec(),
            5 => [
                "0",
                "-1",
                "1",
                "100",
                "9223372036854775807",
                "-9223372036854775808",
                "99999999999999999999",
                "1.5",
                " 1",
            ][(self.next() % 9) as usize]
                .as_bytes()
                .to_vec(),
            6 => ["{}", "{\"a\":[1,{\"b\":null}]}", "{", "[1,2", "\"x\"", "null", "1e999", "{\"a\":\"\\ud800\"}", ""]
                [(self.next() % 9) as usize]
                .as_bytes()
                .to_vec(),
            7 => (0..self.next() % 40).map(|_| (self.next() % 256) as u8).collect(),
            8 => ["q", "q2", "a{b}", "", "x".repeat(200).as_str(), "g:1", "*/5 * * * *", "@hourly", "61 * * * *"]
                [(self.next() % 9) as usize]
                .as_bytes()
                .to_vec(),
            9 => format!("{:064x}", self.next()).into_bytes(),
            10 if !ids.is_empty() => ids[(self.next() % ids.len() as u64) as usize].clone().into_bytes(),
            11 => "[\"nested\",".repeat(200).into_bytes(),
            _ => b"q".to_vec(),
        }
    }
}

#[test]
fn random_arguments_never_crash_the_server() {
    let mut srv = Server::start();
    let mut c = srv.conn();
    let ids: Vec<String> = (0..5).map(|_| create(&mut c, "q", &["GROUP", "g:1", "DEADLINE", "60000"])).collect();
    claim(&mut c, "q", &[]);
    ok(&mut c, &["CACHE.SET", "q", &"ab".repeat(32), "1"]);
    ok(&mut c, &["SCHEDULE.SET", "q", "s", "EVERY", "100000", "PAYLOAD", "{}"]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut sent = 0;
    let mut errors = 0;
    while sent < 20_000 && started.elapsed() < Duration::from_secs(60) {
        let name = rng.pick(&COMMANDS);
        let mut cmd = redis::cmd(name);
        // most argument lists start with a queue or key, as real ones do
        if !rng.next().is_multiple_of(4) {
            cmd.arg("q");
        }
        for _ in 0..(rng.next() % 9) {
            cmd.arg(rng.arg(&ids));
        }
        // no blocking waits here: a random BLOCK 0 would wait forever
        if name == "JOB.CLAIM" || name == "JOB.READ" {
            cmd.arg("BLOCK").arg("1");
        }
        match cmd.query::<Value>(&mut c) {
            Err(e) if e.to_string().contains("arse error") => {
                panic!("unparsable reply to {:?}: {e}", String::from_utf8_lossy(&cmd.get_packed_command()));
            }
            Err(_) => errors += 1,
            Ok(_) => {}
        }
        sent += 1;
    }
    assert!(srv.is_alive(), "the server died; log:\n{}", srv.log_tail());
    assert_eq!(s(&ok(&mut c, &["PING"])), "PONG");
    let info = s(&ok(&mut c, &["INFO", "aijob"]));
    assert!(info.contains("aijob_panics:0"), "a command hit a panic:\n{info}");
    assert!(errors > sent / 4, "most random lists are refused ({errors} of {sent})");
    // the data the module made still holds together: stats answer, claims work
    ok(&mut c, &["QUEUE.STATS", "q"]);
    create(&mut c, "fresh", &[]);
    assert!(claim(&mut c, "fresh", &[]).is_some());
}
