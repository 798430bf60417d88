//! The soak (issue 18): N mixed commands from 8 connections against a master with a
//! replica, both `appendonly yes` and `appendfsync always`. The mix is a realistic job
//! life (create, claim, progress, done or error, the cache, rate limits, locks, schedules,
//! listings), near-valid commands that must be refused (wrong arity, a missing value, a bad
//! integer, bad JSON, an unknown option, a stale token, unknown ids, values just past the
//! limits) and garbage (random bytes as the arguments of every aijob command).
//!
//! At the end: both servers are alive and no command hit a panic; the caught-up replica's
//! DEBUG DIGEST equals the master's; after QUEUE.PURGE of every status of every queue,
//! CACHE.CLEAR, and the test's own rate-limit and lock keys deleted, `used_memory` is back
//! within `MEMORY_TOLERANCE` of a baseline taken the same way after a warm-up; and neither
//! server logged a warning (`#` line) after startup.
//!
//! `AIJOB_SOAK_COMMANDS` (default 20,000) sets N, `AIJOB_SOAK_SEED` the seed (printed).
//! The seed fixes each connection's choices; the interleaving of the eight, and so what a
//! claim finds, is up to the scheduler. `make soak` runs 10^6 on the release build.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CONNECTIONS: usize = 8;
const DEFAULT_COMMANDS: usize = 20_000;
const DEFAULT_SEED: u64 = 0x50a4_0018;
/// The mix: near-valid and garbage commands in percent, the rest valid.
const NEAR_PERCENT: u32 = 25;
const GARBAGE_PERCENT: u32 = 20;
/// Commands per connection in the warm-up before the baseline.
const WARMUP_PER_CONNECTION: usize = 500;
/// `aijob.max-payload-bytes` for the soak: small, so "just past the limit" is cheap to send.
const MAX_PAYLOAD: usize = 64 * 1024;
/// `aijob.events-maxlen` and Redis's `stream-node-max-entries`: the events streams are
/// bounded buffers that stay full after the warm-up; the approximate trim leaves up to one
/// node (16 entries) more or less per queue between two measurements.
const EVENTS_MAXLEN: usize = 64;
const STREAM_NODE_ENTRIES: usize = 16;
/// How far above the baseline `used_memory` (without the replication buffers) may end. What may honestly differ, none of it
/// growing with N: up to one stream node per queue (16 events of ~300 B, about 5 KB, over
/// ~10 queues); the replica link's output buffer (0 to ~40 KB at any instant); the meta
/// hashes of the few queues garbage names by chance (`QUEUE.PAUSE Z` is a valid command);
/// group hashes a purge leaves (~100 B each, see the report). Runs measure +8 to +50 KB.
/// A leak of 7 B a command (or ~50 B a job) fails at the default N, 0.13 B at N = 10^6.
const MEMORY_TOLERANCE: i64 = 128 * 1024;

/// Written into both logs once the replica is in sync: startup ends there.
const LOG_MARK: &str = "aijob soak: startup done";
const SHARED: &str = "soak-shared";
const CACHE_Q: &str = "soak-cache";
const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];
const SCHEDULES: [&str; 3] = ["s0", "s1", "s2"];
const LIMITER_KEYS: usize = 8;
const LOCK_KEYS: usize = 8;
const CHARGE_KEY: &str = "soak:charge:{soak-shared}";
const STATUSES: [&str; 7] = ["waiting", "queued", "delayed", "running", "done", "error", "canceled"];
const CACHE_PROMPTS: u64 = 300;

fn own_queue(n: usize) -> String {
    format!("soak-{n}")
}

fn soak_queues() -> Vec<String> {
    let mut q: Vec<String> = (0..CONNECTIONS).map(own_queue).collect();
    q.push(SHARED.to_string());
    q.push(CACHE_Q.to_string());
    q
}

fn limiter_key(k: usize) -> String {
    format!("soak:rl:{k}")
}

fn lock_key(k: usize) -> String {
    format!("soak:lock:{k}")
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// One command as its words.
#[derive(Clone)]
struct Line(Vec<Vec<u8>>);

impl Line {
    fn new(name: &str) -> Line {
        Line(vec![name.as_bytes().to_vec()])
    }

    fn a(mut self, arg: impl AsRef<[u8]>) -> Line {
        self.0.push(arg.as_ref().to_vec());
        self
    }

    fn cmd(&self) -> redis::Cmd {
        let mut c = redis::Cmd::new();
        for w in &self.0 {
            c.arg(&w[..]);
        }
        c
    }

    /// The command for a failure message: each word lossy and cut at 60 bytes.
    fn show(&self) -> String {
        let words: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                let t = String::from_utf8_lossy(&w[..w.len().min(60)]).into_owned();
                if w.len() > 60 {
                    format!("{t}...({} bytes)", w.len())
                } else {
                    t
                }
            })
            .collect();
        format!("{words:?}")
    }
}

/// What a command's reply must be.
#[derive(Clone, Copy)]
enum Expect {
    /// A reply, or an error with one of these codes (what a race with the clock, another
    /// connection or garbage can honestly cause).
    Reply(&'static [&'static str]),
    /// An error reply: the command is refused.
    Refused,
    /// Nil or 0: an answer that says "no such thing".
    Nothing,
    /// Whatever the server answers, as long as it answers.
    Any,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Valid,
    Near,
    Garbage,
}

#[derive(Default)]
struct Tally {
    valid: u64,
    near: u64,
    garbage: u64,
    valid_errors: u64,
    garbage_errors: u64,
    failures: Vec<String>,
    failure_count: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.valid += other.valid;
        self.near += other.near;
        self.garbage += other.garbage;
        self.valid_errors += other.valid_errors;
        self.garbage_errors += other.garbage_errors;
        self.failure_count += other.failure_count;
        for f in other.failures {
            if self.failures.len() < 20 {
                self.failures.push(f);
            }
        }
    }
}

/// A job this connection holds under a lease.
#[derive(Clone)]
struct Held {
    queue: String,
    id: String,
    token: String,
}

/// One of the eight connections, with what it knows: the jobs it holds, tokens gone stale,
/// ids it made, locks it holds.
struct Worker {
    n: usize,
    rng: StdRng,
    c: Connection,
    own: String,
    held: Vec<Held>,
    stale: VecDeque<Held>,
    made: VecDeque<(String, String)>,
    locks: Vec<(String, String)>,
    own_paused: bool,
    next_id: u64,
    commands: Vec<String>,
    tally: Tally,
}

type Outcome = Result<(), String>;

impl Worker {
    fn new(n: usize, seed: u64, c: Connection, commands: Vec<String>) -> Worker {
        Worker {
            n,
            rng: StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(n as u64)),
            c,
            own: own_queue(n),
            held: Vec::new(),
            stale: VecDeque::new(),
            made: VecDeque::new(),
            locks: Vec::new(),
            own_paused: false,
            next_id: 0,
            commands,
            tally: Tally::default(),
        }
    }

    /// Sends `steps` commands: `near` and `garbage` in percent, the rest valid.
    fn run(&mut self, steps: usize, near: u32, garbage: u32) -> Outcome {
        for _ in 0..steps {
            let roll = self.rng.gen_range(0..100);
            if roll < garbage {
                self.garbage()?;
            } else if roll < garbage + near {
                self.near_valid()?;
            } else {
                self.valid()?;
            }
        }
        Ok(())
    }

    /// Finishes every held job and releases every lock, as a worker shutting down does.
    fn finish(&mut self) -> Outcome {
        while !self.held.is_empty() {
            self.finish_job(0)?;
        }
        while let Some((key, token)) = self.locks.pop() {
            self.send(Kind::Valid, Line::new("LOCK.RELEASE").a(key).a(token), Expect::Reply(&[]))?;
        }
        if self.own_paused {
            let own = self.own.clone();
            self.send(Kind::Valid, Line::new("QUEUE.RESUME").a(own), Expect::Reply(&[]))?;
        }
        Ok(())
    }

    /// Runs one command and checks its reply; Err only when the server stops answering.
    fn send(&mut self, kind: Kind, line: Line, expect: Expect) -> Result<Option<Value>, String> {
        match kind {
            Kind::Valid => self.tally.valid += 1,
            Kind::Near => self.tally.near += 1,
            Kind::Garbage => self.tally.garbage += 1,
        }
        let got = line.cmd().query::<Value>(&mut self.c);
        let code = match &got {
            Ok(_) => None,
            Err(e) => match e.code() {
                Some(code) => Some(code.to_string()),
                None => return Err(format!("connection {}: {} got no reply: {e}", self.n, line.show())),
            },
        };
        match kind {
            Kind::Valid if code.is_some() => self.tally.valid_errors += 1,
            Kind::Garbage if code.is_some() => self.tally.garbage_errors += 1,
            _ => {}
        }
        let fine = match (expect, &got, &code) {
            (Expect::Any, _, _) => true,
            (Expect::Reply(_), Ok(_), _) => true,
            (Expect::Reply(allowed), Err(_), Some(code)) => allowed.contains(&code.as_str()),
            (Expect::Refused, Err(_), _) => true,
            (Expect::Nothing, Ok(Value::Nil | Value::Int(0)), _) => true,
            _ => false,
        };
        if !fine {
            self.fail(format!("{}: {}", line.show(), reply_text(&got)));
        }
        Ok(got.ok())
    }

    fn fail(&mut self, what: String) {
        self.tally.failure_count += 1;
        if self.tally.failures.len() < 20 {
            self.tally.failures.push(format!("connection {}: {what}", self.n));
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.gen_range(0..items.len())]
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.gen_range(0..100) < percent
    }

    /// A queue this connection makes jobs in: mostly its own, else the shared one.
    fn some_queue(&mut self) -> String {
        if self.chance(60) {
            self.own.clone()
        } else {
            SHARED.to_string()
        }
    }

    // ---- valid commands: a realistic mix ----

    fn valid(&mut self) -> Outcome {
        match self.rng.gen_range(0..100) {
            0..=13 => self.create(),
            14..=25 => self.claim(),
            26..=39 if !self.held.is_empty() => {
                let i = self.rng.gen_range(0..self.held.len());
                self.finish_job(i)
            }
            26..=39 => self.claim(),
            40..=44 => self.progress(),
            45..=52 => self.read(),
            53..=56 => self.manage_job(),
            57..=59 => self.manage_queue(),
            60..=71 => self.cache(),
            72..=81 => self.rate_limit(),
            82..=89 => self.lock(),
            _ => self.schedule(),
        }
    }

    fn payload(&mut self) -> String {
        let len = if self.chance(1) { self.rng.gen_range(1000..MAX_PAYLOAD - 100) } else { self.rng.gen_range(0..400) };
        let k: u32 = self.rng.gen();
        format!("{{\"n\":{k},\"text\":\"{}\",\"tags\":[1,2.5,null,true]}}", "x".repeat(len))
    }

    fn create(&mut self) -> Outcome {
        let q = self.some_queue();
        let mut line = Line::new("JOB.CREATE").a(&q).a("PAYLOAD").a(self.payload());
        let custom_id = self.chance(20).then(|| {
            self.next_id += 1;
            format!("w{}-{}", self.n, self.next_id)
        });
        if let Some(id) = &custom_id {
            line = line.a("ID").a(id);
        }
        line = self.job_options(line);
        if self.chance(15) {
            line = line.a("DELAY").a(self.rng.gen_range(1..800).to_string());
        }
        if self.chance(10) {
            line = line.a("DEADLINE").a(self.rng.gen_range(300..5000).to_string());
        }
        // a step of a flow: after jobs made earlier in this queue (gone by now: NOTFOUND)
        let parents = if self.chance(15) { self.made_in(&q, 2) } else { Vec::new() };
        if !parents.is_empty() {
            line = line.a("AFTER");
            for id in &parents {
                line = line.a(id);
            }
            if self.chance(50) {
                line = line.a("ONPARENTFAIL").a(self.pick(&["fail", "run"]));
            }
        }
        if let Some(id) = self.send(Kind::Valid, line, Expect::Reply(&["NOTFOUND"]))? {
            self.remember(q, s(&id));
        }
        Ok(())
    }

    /// The options JOB.CREATE, CACHE.GETORQUEUE and SCHEDULE.SET share.
    fn job_options(&mut self, mut line: Line) -> Line {
        if self.chance(50) {
            line = line.a("PRIORITY").a(self.pick(&["high", "normal", "low"]));
        }
        if self.chance(50) {
            line = line.a("GROUP").a(self.pick(&GROUPS));
        }
        if self.chance(60) {
            line = line.a("RETENTION").a(self.rng.gen_range(100..3000).to_string());
        }
        if self.chance(30) {
            line = line.a("MAXATTEMPTS").a(self.rng.gen_range(1..4).to_string());
        }
        if self.chance(20) {
            line = line.a("META").a(format!("{{\"user\":{},\"trace\":\"t\"}}", self.rng.gen_range(0..100)));
        }
        if self.chance(20) {
            line = line.a("COST").a(self.rng.gen_range(1..500).to_string());
        }
        line
    }

    /// Up to `most` ids of jobs this connection made in `queue`, newest first.
    fn made_in(&mut self, queue: &str, most: usize) -> Vec<String> {
        let take = self.rng.gen_range(1..=most);
        self.made.iter().rev().filter(|(q, _)| q == queue).take(take).map(|(_, id)| id.clone()).collect()
    }

    fn remember(&mut self, queue: String, id: String) {
        if self.made.len() >= 64 {
            self.made.pop_front();
        }
        self.made.push_back((queue, id));
    }

    fn claim(&mut self) -> Outcome {
        let q = match self.rng.gen_range(0..10) {
            0..=4 => self.own.clone(),
            5..=7 => SHARED.to_string(),
            _ => CACHE_Q.to_string(),
        };
        // A worker that dies holding its job: a short lease nobody renews.
        let abandon = self.chance(8);
        let lease = if abandon { self.rng.gen_range(100..400) } else { 60_000 };
        let mut line = Line::new("JOB.CLAIM").a(&q).a("LEASE").a(lease.to_string());
        if self.chance(50) {
            line = line.a("WORKER").a(format!("w{}", self.n));
        }
        if self.held.len() < 3 && self.chance(30) {
            line = line.a("COUNT").a(self.rng.gen_range(1..4).to_string());
        }
        if self.chance(10) {
            line = line.a("BLOCK").a(self.rng.gen_range(1..20).to_string());
        }
        if q == SHARED && self.chance(20) {
            line = line.a("CHARGE").a(CHARGE_KEY).a("REQUESTS").a("LIMIT").a("200").a("PERIOD").a("100");
        }
        let Some(reply) = self.send(Kind::Valid, line, Expect::Reply(&[]))? else { return Ok(()) };
        for job in array(&reply) {
            if !abandon {
                self.held.push(Held { queue: q.clone(), id: fs(&job, "id"), token: fs(&job, "token") });
            }
        }
        Ok(())
    }

    /// Ends a held job: done (most), error (with or without a retry), or released.
    fn finish_job(&mut self, i: usize) -> Outcome {
        let job = self.held.swap_remove(i);
        let base = Line::new("JOB.UPDATE").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token);
        let line = match self.rng.gen_range(0..10) {
            0..=6 => base.a("STATUS").a("done").a("RESULT").a(self.result()),
            7 | 8 => self.error_update(base),
            _ => {
                let mut release = Line::new("JOB.RELEASE").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token);
                if self.chance(50) {
                    release = release.a("DELAY").a(self.rng.gen_range(10..300).to_string());
                }
                release
            }
        };
        self.send(Kind::Valid, line, Expect::Reply(&[]))?;
        if self.stale.len() >= 32 {
            self.stale.pop_front();
        }
        self.stale.push_back(job);
        Ok(())
    }

    /// A result small enough to ride in the done event, or one past
    /// `aijob.event-result-max-bytes` (4096) that the event carries by reference.
    fn result(&mut self) -> String {
        let len = if self.chance(3) { self.rng.gen_range(5000..20_000) } else { self.rng.gen_range(0..120) };
        format!("{{\"text\":\"{}\",\"usage\":{{\"in\":3,\"out\":5}}}}", "r".repeat(len))
    }

    fn error_update(&mut self, base: Line) -> Line {
        let mut line = base.a("STATUS").a("error").a("ERROR").a("provider said 503");
        if self.chance(50) {
            line = line.a("CLASS").a(self.pick(&["http_5xx", "timeout", "rate_limited"]));
        }
        if self.chance(30) {
            line = line.a("NORETRY");
        } else if self.chance(50) {
            line = line.a("DELAY").a(self.rng.gen_range(10..500).to_string());
        }
        line
    }

    fn progress(&mut self) -> Outcome {
        if self.held.is_empty() {
            return self.claim();
        }
        let job = self.held[self.rng.gen_range(0..self.held.len())].clone();
        if self.chance(30) {
            // output as it is made: the stream's caps may refuse more (TOOBIG)
            let mut line = Line::new("JOB.APPEND").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token);
            for _ in 0..self.rng.gen_range(1..4) {
                line = line.a("DATA").a(format!("piece {} ", self.rng.gen_range(0..1000)));
            }
            self.send(Kind::Valid, line, Expect::Reply(&["TOOBIG"]))?;
            return Ok(());
        }
        let mut line = Line::new("JOB.UPDATE").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token);
        if self.chance(80) {
            line = line.a("PROGRESS").a(format!("step {}", self.rng.gen_range(0..10)));
        }
        if self.chance(60) {
            line = line.a("PERCENT").a(self.rng.gen_range(0..=100).to_string());
        }
        if self.chance(20) {
            line = line.a("LEASE").a("60000");
        }
        self.send(Kind::Valid, line, Expect::Reply(&[]))?;
        Ok(())
    }

    /// Reads: a job, a page of jobs, stats, groups, the queue list.
    fn read(&mut self) -> Outcome {
        let q = self.some_queue();
        let line = match self.rng.gen_range(0..6) {
            0 | 1 if !self.made.is_empty() => {
                let (q, id) = self.made[self.rng.gen_range(0..self.made.len())].clone();
                let line = Line::new("JOB.GET").a(q).a(id);
                if self.chance(30) {
                    line.a("JSON")
                } else {
                    line
                }
            }
            0..=2 => {
                let mut line = Line::new("JOB.LIST").a(&q).a("COUNT").a(self.rng.gen_range(1..50).to_string());
                if self.chance(60) {
                    line = line.a("STATUS").a(self.pick(&STATUSES));
                }
                line
            }
            3 if !self.made.is_empty() && self.chance(50) => {
                let (q, id) = self.made[self.rng.gen_range(0..self.made.len())].clone();
                let line = Line::new("JOB.READ").a(q).a(id).a("AFTER").a("0").a("COUNT").a("10");
                return self.send(Kind::Valid, line, Expect::Reply(&["NOTFOUND"])).map(|_| ());
            }
            3 => Line::new("QUEUE.STATS").a(&q),
            4 => Line::new("QUEUE.GROUPS").a(&q).a("COUNT").a("20"),
            _ => Line::new("QUEUE.LIST").a("MATCH").a("soak-*").a("COUNT").a("50"),
        };
        self.send(Kind::Valid, line, Expect::Reply(&[]))?;
        Ok(())
    }

    /// Cancel, retry or delete a job this connection made in its own queue and does not
    /// hold (whatever happened to it since: NOTFOUND once purged or expired, BADSTATE for a
    /// retry of a done job).
    fn manage_job(&mut self) -> Outcome {
        let held: BTreeSet<String> = self.held.iter().map(|h| h.id.clone()).collect();
        let own: Vec<String> =
            self.made.iter().filter(|(q, id)| *q == self.own && !held.contains(id)).map(|(_, id)| id.clone()).collect();
        if own.is_empty() {
            return self.create();
        }
        let id = own[self.rng.gen_range(0..own.len())].clone();
        let verb = self.pick(&["JOB.CANCEL", "JOB.CANCEL", "JOB.RETRY", "JOB.RETRY", "JOB.DELETE"]);
        self.send(Kind::Valid, Line::new(verb).a(&self.own).a(id), Expect::Reply(&["NOTFOUND", "BADSTATE"]))?;
        Ok(())
    }

    /// Pause and resume the own queue, set group caps; now and then resume the shared queue
    /// (garbage may pause it: a `QUEUE.PAUSE soak-shared` of random arguments is a valid one).
    fn manage_queue(&mut self) -> Outcome {
        let own = self.own.clone();
        let line = match self.rng.gen_range(0..6) {
            _ if self.own_paused => {
                self.own_paused = false;
                Line::new("QUEUE.RESUME").a(own)
            }
            0 => {
                self.own_paused = true;
                Line::new("QUEUE.PAUSE").a(own)
            }
            1 | 2 => {
                let group = if self.chance(20) { "*" } else { self.pick(&GROUPS) };
                Line::new("QUEUE.GROUPCAP").a(own).a(group).a(self.rng.gen_range(0..4).to_string())
            }
            _ => Line::new("QUEUE.RESUME").a(self.pick(&[SHARED, CACHE_Q])),
        };
        self.send(Kind::Valid, line, Expect::Reply(&[]))?;
        Ok(())
    }

    fn cache(&mut self) -> Outcome {
        let prompt = self.rng.gen_range(0..CACHE_PROMPTS);
        let hash = format!("{prompt:064x}");
        let line = match self.rng.gen_range(0..100) {
            0..=39 => self.get_or_queue(prompt),
            40..=54 => {
                let mut line = Line::new("CACHE.SET").a(CACHE_Q).a(&hash).a(format!("{{\"cached\":{prompt}}}"));
                if self.chance(50) {
                    line = line.a("TTL").a(self.rng.gen_range(100..10_000).to_string());
                }
                if self.chance(30) {
                    line = line.a("IFNONE");
                }
                line
            }
            55..=74 => {
                let line = Line::new("CACHE.GET").a(CACHE_Q).a(&hash);
                if self.chance(50) {
                    line.a("WITHETAG")
                } else {
                    line
                }
            }
            75..=84 => Line::new("CACHE.DEL").a(CACHE_Q).a(&hash),
            85..=97 if self.chance(50) => Line::new("CACHE.HASH").a("KEY").a("model-a").a(prompt.to_string()),
            85..=97 => Line::new("CACHE.HASH").a("PAYLOAD").a(format!("{{\"b\":[{prompt},2],\"a\":\"\\u00e9\"}}")),
            _ => Line::new("CACHE.CLEAR").a(CACHE_Q),
        };
        self.send(Kind::Valid, line, Expect::Reply(&[]))?;
        Ok(())
    }

    /// CACHE.GETORQUEUE of one of a few hundred prompts, so hits, pending jobs and misses all
    /// happen; the hash comes from the payload, KEY parts or HASH.
    fn get_or_queue(&mut self, prompt: u64) -> Line {
        let mut line = Line::new("CACHE.GETORQUEUE").a(CACHE_Q).a("PAYLOAD").a(format!("{{\"prompt\":{prompt}}}"));
        line = self.job_options(line);
        if self.chance(40) {
            line = line.a("CACHETTL").a(self.rng.gen_range(200..10_000).to_string());
        }
        match self.rng.gen_range(0..3) {
            0 => line.a("HASH").a(format!("{prompt:064x}")),
            1 => line.a("KEY").a("model-a").a(prompt.to_string()),
            _ => line,
        }
    }

    fn rate_limit(&mut self) -> Outcome {
        let k = self.rng.gen_range(0..LIMITER_KEYS);
        // each key keeps one set of windows, as a real caller's would
        let windows = [("20", "200"), ("50", "1000"), ("200", "5000")];
        let mut line = Line::new(self.pick(&["RATELIMIT.HIT", "RATELIMIT.HIT", "RATELIMIT.HIT", "RATELIMIT.PEEK"]))
            .a(limiter_key(k));
        for (limit, period) in &windows[..1 + k % 3] {
            line = line.a("LIMIT").a(limit).a("PERIOD").a(period);
        }
        if self.chance(30) {
            line = line.a("COST").a(self.rng.gen_range(0..6).to_string());
        }
        if self.chance(3) {
            line = Line::new("RATELIMIT.RESET").a(limiter_key(k));
        }
        self.send(Kind::Valid, line, Expect::Reply(&[]))?;
        Ok(())
    }

    fn lock(&mut self) -> Outcome {
        if !self.locks.is_empty() && self.chance(60) {
            let i = self.rng.gen_range(0..self.locks.len());
            let (key, token) = self.locks[i].clone();
            if self.chance(50) {
                self.locks.swap_remove(i);
                self.send(Kind::Valid, Line::new("LOCK.RELEASE").a(key).a(token), Expect::Reply(&[]))?;
            } else {
                let ttl = self.rng.gen_range(100..2000).to_string();
                self.send(Kind::Valid, Line::new("LOCK.EXTEND").a(key).a(token).a("TTL").a(ttl), Expect::Reply(&[]))?;
            }
            return Ok(());
        }
        let key = lock_key(self.rng.gen_range(0..LOCK_KEYS));
        let ttl = self.rng.gen_range(50..2000).to_string();
        let got = self.send(Kind::Valid, Line::new("LOCK.ACQUIRE").a(&key).a("TTL").a(ttl), Expect::Reply(&[]))?;
        if let Some(token @ Value::BulkString(_)) = got {
            self.locks.push((key, s(&token)));
        }
        Ok(())
    }

    fn schedule(&mut self) -> Outcome {
        let own = self.own.clone();
        let name = self.pick(&SCHEDULES);
        let line = match self.rng.gen_range(0..10) {
            0..=2 => {
                let timing = if self.chance(80) {
                    vec!["EVERY".to_string(), self.rng.gen_range(300..3000).to_string()]
                } else {
                    vec!["CRON".to_string(), self.pick(&["* * * * *", "*/5 * * * *", "0 9 * * 1-5"]).to_string()]
                };
                let mut line = Line::new("SCHEDULE.SET").a(&own).a(name).a(&timing[0]).a(&timing[1]);
                line = line.a("PAYLOAD").a(format!("{{\"task\":\"{name}\"}}")).a("RETENTION").a("1000");
                if self.chance(30) {
                    line = line.a("OVERLAP").a(self.pick(&["skip", "allow"]));
                }
                line
            }
            3 => Line::new("SCHEDULE.GET").a(&own).a(name),
            4 => Line::new("SCHEDULE.LIST").a(&own),
            5 | 6 => Line::new("SCHEDULE.RUN").a(&own).a(name),
            7 => Line::new("SCHEDULE.PAUSE").a(&own).a(name),
            8 => Line::new("SCHEDULE.RESUME").a(&own).a(name),
            _ => Line::new("SCHEDULE.DEL").a(&own).a(name),
        };
        // SCHEDULE.RUN of a schedule deleted (or never set) is NOTFOUND
        self.send(Kind::Valid, line, Expect::Reply(&["NOTFOUND"]))?;
        Ok(())
    }

    // ---- near-valid commands: each must be refused (or answer "no such thing") ----

    fn near_valid(&mut self) -> Outcome {
        let q = self.some_queue();
        let (line, expect) = match self.rng.gen_range(0..12) {
            0 => self.near_arity(&q),
            1 => self.near_missing_value(&q),
            2 => self.near_bad_integer(&q),
            3 => self.near_bad_json(&q),
            4 => self.near_unknown_option(&q),
            5 | 6 => self.near_stale_or_wrong_token(),
            7 => self.near_unknown_id(&q),
            8 | 9 => self.near_past_limit(&q),
            10 => self.near_bad_update(),
            _ => self.near_bad_choice(&q),
        };
        self.send(Kind::Near, line, expect)?;
        Ok(())
    }

    fn near_arity(&mut self, q: &str) -> (Line, Expect) {
        let line = match self.rng.gen_range(0..8) {
            0 => Line::new("JOB.CREATE").a(q),
            1 => Line::new("JOB.GET").a(q),
            2 => Line::new("JOB.CLAIM"),
            3 => Line::new("JOB.CANCEL").a(q),
            4 => Line::new("LOCK.ACQUIRE").a(lock_key(0)),
            5 => Line::new("LOCK.RELEASE").a(lock_key(0)),
            6 => Line::new("CACHE.GET").a(q),
            _ => Line::new("SCHEDULE.RUN").a(q),
        };
        (line, Expect::Refused)
    }

    fn near_missing_value(&mut self, q: &str) -> (Line, Expect) {
        let line = match self.rng.gen_range(0..7) {
            0 => Line::new("JOB.CREATE").a(q).a("PAYLOAD"),
            1 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("PRIORITY"),
            2 => Line::new("JOB.CLAIM").a(q).a("LEASE"),
            3 => Line::new("JOB.LIST").a(q).a("STATUS"),
            4 => Line::new("RATELIMIT.HIT").a(limiter_key(0)).a("LIMIT").a("5").a("PERIOD"),
            5 => Line::new("CACHE.GETORQUEUE").a(CACHE_Q).a("PAYLOAD").a("{}").a("KEY"),
            _ => Line::new("SCHEDULE.SET").a(q).a("s9").a("EVERY").a("1000").a("PAYLOAD"),
        };
        (line, Expect::Refused)
    }

    fn near_bad_integer(&mut self, q: &str) -> (Line, Expect) {
        let bad = self.pick(&["abc", "-5", "1.5", "99999999999999999999", " 7", "", "0x10", "1e3"]);
        let line = match self.rng.gen_range(0..7) {
            0 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("DELAY").a(bad),
            1 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("MAXATTEMPTS").a(bad),
            2 => Line::new("JOB.CLAIM").a(q).a("LEASE").a(bad),
            3 => Line::new("JOB.CLAIM").a(q).a("COUNT").a(bad),
            4 => Line::new("RATELIMIT.HIT").a(limiter_key(1)).a("LIMIT").a(bad).a("PERIOD").a("1000"),
            5 => Line::new("LOCK.ACQUIRE").a(lock_key(1)).a("TTL").a(bad),
            _ => Line::new("CACHE.SET").a(CACHE_Q).a(format!("{:064x}", 7)).a("{}").a("TTL").a(bad),
        };
        (line, Expect::Refused)
    }

    fn near_bad_json(&mut self, q: &str) -> (Line, Expect) {
        let bad = self.pick(&[
            "{\"a\":",
            "[1,2",
            "{\"a\":1,}",
            "{'a':1}",
            "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"\\u0061\":2}",
            "\"\\ud800\"",
            "1e999",
            "{} {}",
            "\u{0}",
            "nul",
        ]);
        let line = match self.rng.gen_range(0..5) {
            0 | 1 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a(bad),
            2 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("META").a(self.pick(&["[]", "1", "\"s\"", "{"])),
            3 => Line::new("CACHE.SET").a(CACHE_Q).a(format!("{:064x}", 9)).a(bad),
            _ => Line::new("CACHE.HASH").a("PAYLOAD").a(bad),
        };
        (line, Expect::Refused)
    }

    fn near_unknown_option(&mut self, q: &str) -> (Line, Expect) {
        let line = match self.rng.gen_range(0..5) {
            0 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("COLOUR").a("red"),
            1 => Line::new("JOB.CLAIM").a(q).a("SPEED").a("3"),
            2 => Line::new("JOB.LIST").a(q).a("ORDER").a("asc"),
            3 => Line::new("CACHE.SET").a(CACHE_Q).a(format!("{:064x}", 3)).a("{}").a("IFNEVER"),
            _ => Line::new("RATELIMIT.HIT").a(limiter_key(2)).a("LIMIT").a("5").a("PERIOD").a("1000").a("BURST").a("2"),
        };
        (line, Expect::Refused)
    }

    /// A token that is no longer (or never was) the job's: the update is fenced off.
    fn near_stale_or_wrong_token(&mut self) -> (Line, Expect) {
        if let Some(job) = self.stale.get(self.rng.gen_range(0..self.stale.len().max(1))).cloned() {
            let line = match self.rng.gen_range(0..3) {
                0 => Line::new("JOB.UPDATE")
                    .a(&job.queue)
                    .a(&job.id)
                    .a("TOKEN")
                    .a(&job.token)
                    .a("STATUS")
                    .a("done")
                    .a("RESULT")
                    .a("{}"),
                1 => Line::new("JOB.UPDATE").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token).a("PROGRESS").a("late"),
                _ => Line::new("JOB.RELEASE").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token),
            };
            return (line, Expect::Refused);
        }
        if let Some(job) = self.held.first().cloned() {
            let wrong = format!("{:032x}", self.rng.gen::<u128>());
            return (
                Line::new("JOB.UPDATE").a(&job.queue).a(&job.id).a("TOKEN").a(wrong).a("PROGRESS").a("x"),
                Expect::Refused,
            );
        }
        let wrong = format!("{:032x}", self.rng.gen::<u128>());
        (Line::new("LOCK.RELEASE").a(lock_key(self.rng.gen_range(0..LOCK_KEYS))).a(wrong), Expect::Nothing)
    }

    fn near_unknown_id(&mut self, q: &str) -> (Line, Expect) {
        let id = format!("nosuch-{}", self.rng.gen::<u32>());
        let token = format!("{:032x}", self.rng.gen::<u128>());
        let hash = format!("{:032x}{:032x}", self.rng.gen::<u128>(), self.rng.gen::<u128>());
        match self.rng.gen_range(0..9) {
            0 => (
                Line::new("JOB.UPDATE").a(q).a(&id).a("TOKEN").a(token).a("STATUS").a("done").a("RESULT").a("{}"),
                Expect::Refused,
            ),
            1 => (Line::new("JOB.CANCEL").a(q).a(&id), Expect::Refused),
            2 => (Line::new("JOB.RETRY").a(q).a(&id), Expect::Refused),
            3 => (Line::new("JOB.RELEASE").a(q).a(&id).a("TOKEN").a(token), Expect::Refused),
            4 => (Line::new("JOB.GET").a(q).a(&id), Expect::Nothing),
            5 => (Line::new("JOB.DELETE").a(q).a(&id), Expect::Nothing),
            6 => (Line::new("SCHEDULE.RUN").a(q).a(&id), Expect::Refused),
            7 => (Line::new("SCHEDULE.GET").a(q).a(&id), Expect::Nothing),
            _ => (Line::new("CACHE.GET").a(CACHE_Q).a(hash), Expect::Nothing),
        }
    }

    /// Values just past a documented limit.
    fn near_past_limit(&mut self, q: &str) -> (Line, Expect) {
        let name_129 = "n".repeat(129);
        let line = match self.rng.gen_range(0..12) {
            0 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a(json_of_size(MAX_PAYLOAD + 1)),
            1 => Line::new("CACHE.GETORQUEUE").a(CACHE_Q).a("PAYLOAD").a(json_of_size(MAX_PAYLOAD + 1)),
            2 => Line::new("CACHE.HASH").a("PAYLOAD").a(json_of_size(MAX_PAYLOAD + 1)),
            3 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a(format!("{}{}", "[".repeat(129), "]".repeat(129))),
            4 => Line::new("JOB.CREATE").a(name_129).a("PAYLOAD").a("{}"),
            5 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("ID").a(name_129),
            6 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("GROUP").a(name_129),
            7 => Line::new("JOB.CLAIM").a(q).a("COUNT").a("1001"),
            8 => Line::new("JOB.LIST").a(q).a("COUNT").a("10001"),
            9 => {
                let mut line = Line::new("RATELIMIT.HIT").a(limiter_key(3));
                for p in 1..=9 {
                    line = line.a("LIMIT").a("10").a("PERIOD").a((p * 1000).to_string());
                }
                line
            }
            10 => {
                Line::new("RATELIMIT.HIT").a(limiter_key(3)).a("LIMIT").a("10").a("PERIOD").a("1000").a("COST").a("11")
            }
            _ => Line::new("SCHEDULE.SET").a(q).a("s9").a("CRON").a("61 * * * *").a("PAYLOAD").a("{}"),
        };
        (line, Expect::Refused)
    }

    /// Updates of a held job, with its right token, that break the rules: refused, and the
    /// job stays as it was (the connection finishes it later with a valid update).
    fn near_bad_update(&mut self) -> (Line, Expect) {
        let Some(job) = self.held.first().cloned() else {
            return (Line::new("JOB.UPDATE").a(SHARED).a("nosuch").a("PERCENT").a("101"), Expect::Refused);
        };
        let base = Line::new("JOB.UPDATE").a(&job.queue).a(&job.id).a("TOKEN").a(&job.token);
        let line = match self.rng.gen_range(0..7) {
            0 => base.a("STATUS").a("done"),
            1 => base.a("STATUS").a("error"),
            2 => base.a("STATUS").a("done").a("RESULT").a("{\"a\":"),
            3 => base.a("PERCENT").a("101"),
            4 => base.a("RESULT").a("{}"),
            5 => base.a("STATUS").a("done").a("RESULT").a(json_of_size(MAX_PAYLOAD + 1)),
            _ => base.a("STATUS").a("finished").a("RESULT").a("{}"),
        };
        (line, Expect::Refused)
    }

    fn near_bad_choice(&mut self, q: &str) -> (Line, Expect) {
        let line = match self.rng.gen_range(0..8) {
            0 => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("PRIORITY").a("urgent"),
            1 => Line::new("JOB.LIST").a(q).a("STATUS").a("lost"),
            2 => Line::new("QUEUE.PURGE").a(q).a("STATUS").a("done").a("PRIORITY").a("high"),
            3 => Line::new("QUEUE.GROUPCAP").a(q).a("g0").a("-1"),
            4 => Line::new("CACHE.SET").a(CACHE_Q).a("not-a-hash").a("{}"),
            5 => Line::new("CACHE.GETORQUEUE")
                .a(CACHE_Q)
                .a("PAYLOAD")
                .a("{}")
                .a("HASH")
                .a(format!("{:064x}", 1))
                .a("KEY")
                .a("k"),
            6 => Line::new("SCHEDULE.SET")
                .a(q)
                .a("s9")
                .a("EVERY")
                .a("1000")
                .a("CRON")
                .a("* * * * *")
                .a("PAYLOAD")
                .a("{}"),
            _ => match self.held.first().cloned() {
                // an ID that names a live job
                Some(job) => Line::new("JOB.CREATE").a(&job.queue).a("PAYLOAD").a("{}").a("ID").a(&job.id),
                None => Line::new("JOB.CREATE").a(q).a("PAYLOAD").a("{}").a("AT").a("soon"),
            },
        };
        (line, Expect::Refused)
    }

    // ---- garbage: random bytes as the arguments of every aijob command ----

    fn garbage(&mut self) -> Outcome {
        let name = self.commands[self.rng.gen_range(0..self.commands.len())].clone();
        let mut line = Line::new(&name);
        let args = self.rng.gen_range(0..9);
        for i in 0..args {
            // half the time the first argument names a real queue or key, as a real
            // (broken) client's would
            if i == 0 && self.chance(50) {
                let real = [self.own.clone(), SHARED.to_string(), CACHE_Q.to_string(), limiter_key(0), lock_key(0)];
                line = line.a(&real[self.rng.gen_range(0..real.len())]);
            } else {
                line = line.a(self.random_bytes());
            }
        }
        self.send(Kind::Garbage, line, Expect::Any)?;
        Ok(())
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let len = if self.chance(1) { self.rng.gen_range(64..8192) } else { self.rng.gen_range(0..64) };
        let mut b = vec![0u8; len];
        self.rng.fill(&mut b[..]);
        b
    }
}

/// A JSON object of exactly `size` bytes.
fn json_of_size(size: usize) -> String {
    format!("{{\"a\":\"{}\"}}", "z".repeat(size - 8))
}

fn reply_text(got: &redis::RedisResult<Value>) -> String {
    match got {
        Ok(v) => {
            let t = format!("{v:?}");
            t.chars().take(300).collect()
        }
        Err(e) => error_text(e),
    }
}

/// Runs `steps` commands on each of the eight connections at once and adds up the tallies.
fn run_connections(srv: &Server, seed: u64, steps: usize, near: u32, garbage: u32, commands: &[String]) -> Tally {
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let c = srv.conn();
            let commands = commands.to_vec();
            std::thread::spawn(move || {
                let mut w = Worker::new(n, seed, c, commands);
                let outcome = w.run(steps, near, garbage).and_then(|_| w.finish());
                (outcome, w.tally)
            })
        })
        .collect();
    let mut total = Tally::default();
    for h in handles {
        let (outcome, tally) = h.join().expect("a connection's thread panicked");
        if let Err(e) = outcome {
            panic!("{e}");
        }
        total.add(tally);
    }
    total
}

/// Blocks a JOB.CLAIM on each of the eight connections at the same moment. Redis 7.0 keeps
/// a pool of the internal clients a module's blocked client uses (two each, ~17 KB apiece)
/// and never shrinks it, so the pool is as large as the most claims ever blocked at once:
/// reaching that high-water mark in the warm-up keeps it out of the comparison.
fn block_every_connection_at_once(srv: &Server) {
    let start = std::sync::Arc::new(std::sync::Barrier::new(CONNECTIONS));
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (mut c, start) = (srv.conn(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                ok(&mut c, &["JOB.CLAIM", "soak-idle", "BLOCK", "300"])
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("a blocked claim's thread"), Value::Nil, "a claim on an empty queue timed out");
    }
}

/// Every aijob command, asked of the server, so commands added later are fuzzed too.
fn aijob_commands(c: &mut Connection) -> Vec<String> {
    let mut names: Vec<String> =
        array(&ok(c, &["COMMAND", "LIST", "FILTERBY", "MODULE", "aijob"])).iter().map(s).collect();
    names.sort();
    assert!(names.len() >= 30, "COMMAND LIST FILTERBY MODULE aijob: {names:?}");
    names
}

/// Everything the test made goes, as an operator would clear it: schedules deleted, caps
/// removed, queues resumed, every status of every queue purged, caches cleared (and their
/// old generations freed by the timer), the test's rate-limit and lock keys deleted.
fn clear_everything(c: &mut Connection) {
    let queues = all_queues(c);
    for q in &queues {
        for sched in array(&ok(c, &["SCHEDULE.LIST", q])) {
            ok(c, &["SCHEDULE.DEL", q, &fs(&sched, "name")]);
        }
        ok(c, &["QUEUE.RESUME", q]);
        ok(c, &["QUEUE.GROUPCAP", q, "*", "0"]);
        for g in GROUPS {
            ok(c, &["QUEUE.GROUPCAP", q, g, "0"]);
        }
    }
    // the clock may bring a delayed job back between two purges: purge until all are empty
    wait_until(Duration::from_secs(30), "every queue to be empty", || {
        let mut left = 0;
        for q in &queues {
            for status in STATUSES {
                ok(c, &["QUEUE.PURGE", q, "STATUS", status]);
            }
            left += STATUSES.iter().map(|st| stat(c, q, st)).sum::<i64>();
        }
        (left == 0).then_some(())
    });
    for q in &queues {
        ok(c, &["CACHE.CLEAR", q]);
    }
    wait_until(Duration::from_secs(30), "cleared caches to be freed", || {
        queues.iter().all(|q| int(&ok(c, &["EXISTS", &format!("aijob:{{{q}}}:cachedrop")])) == 0).then_some(())
    });
    let mut own_keys: Vec<String> = (0..LIMITER_KEYS).map(limiter_key).chain((0..LOCK_KEYS).map(lock_key)).collect();
    own_keys.push(CHARGE_KEY.to_string());
    let mut del = vec!["DEL"];
    del.extend(own_keys.iter().map(|k| k.as_str()));
    ok(c, &del);
}

fn pause_schedules(c: &mut Connection) {
    for q in all_queues(c) {
        for sched in array(&ok(c, &["SCHEDULE.LIST", &q])) {
            ok(c, &["SCHEDULE.PAUSE", &q, &fs(&sched, "name")]);
        }
    }
}

/// Every queue the master knows: the test's and any a random name made.
fn all_queues(c: &mut Connection) -> Vec<String> {
    let mut queues: BTreeSet<String> = soak_queues().into_iter().collect();
    queues.extend(array(&ok(c, &["QUEUE.LIST", "COUNT", "10000"])).iter().map(s));
    queues.into_iter().collect()
}

/// Fills each soak queue's events stream to its cap (jobs made and deleted in one pipeline),
/// before the warm-up: the warm-up's events then replace these, so the streams hold the
/// same mix of events at the baseline as at the end.
fn fill_event_streams(c: &mut Connection) {
    for q in soak_queues() {
        let mut p = redis::pipe();
        // two events (created, deleted) a job
        for k in 0..(EVENTS_MAXLEN + 2 * STREAM_NODE_ENTRIES) / 2 + 1 {
            let id = format!("fill-{k}");
            p.cmd("JOB.CREATE").arg(&q).arg("PAYLOAD").arg("{}").arg("ID").arg(&id).ignore();
            p.cmd("JOB.DELETE").arg(&q).arg(&id).ignore();
        }
        p.query::<()>(c).unwrap_or_else(|e| panic!("filling the events stream of {q}: {e}"));
    }
}

fn info_memory(c: &mut Connection, name: &str) -> i64 {
    info_int(c, "memory", name).unwrap_or_else(|| panic!("INFO memory has no {name}"))
}

/// Empties the slowlog and answers how many entries it held. It is Redis's own bounded
/// buffer (128 entries of up to 32 arguments), and on a loaded machine a long soak fills it
/// with its own commands (the clock of a descheduled command runs on), up to a few hundred
/// KB that say nothing about aijob: it is emptied before both measurements.
fn empty_slowlog(c: &mut Connection) -> i64 {
    let held = int(&ok(c, &["SLOWLOG", "LEN"]));
    ok(c, &["SLOWLOG", "RESET"]);
    held
}

/// `used_memory` without the replication buffers (the backlog and the replica's output
/// buffer): they are sized by the traffic, not by what aijob keeps; Valkey 9 grows its
/// backlog by megabytes over a soak and keeps it.
fn kept_memory(c: &mut Connection) -> i64 {
    info_memory(c, "used_memory") - info_memory(c, "mem_replication_backlog") - info_memory(c, "mem_clients_slaves")
}

/// `kept_memory` once it has stopped falling: Redis frees and shrinks dicts in its cron,
/// so read it until two readings a few timer ticks apart are within 16 KB.
fn settled_memory(c: &mut Connection) -> i64 {
    let mut last = kept_memory(c);
    wait_until(Duration::from_secs(20), "used_memory to settle", || {
        wait_ticks(c, 3);
        let now = kept_memory(c);
        let settled = (now - last).abs() < 16 * 1024;
        last = now;
        settled.then_some(now)
    })
}

fn memory_breakdown(c: &mut Connection) -> String {
    let fields = [
        "used_memory",
        "used_memory_peak",
        "used_memory_dataset",
        "mem_replication_backlog",
        "mem_clients_normal",
        "mem_clients_slaves",
        "mem_aof_buffer",
    ];
    let parts: Vec<String> = fields.iter().map(|f| format!("{f}={}", info_int(c, "memory", f).unwrap_or(-1))).collect();
    let keys = int(&ok(c, &["DBSIZE"]));
    format!("{} keys={keys}", parts.join(" "))
}

fn start_node() -> Server {
    Server::start_with(
        Opts::default()
            .aof_always()
            .with("aijob.max-payload-bytes", &MAX_PAYLOAD.to_string())
            .with("aijob.events-maxlen", &EVENTS_MAXLEN.to_string())
            .with("stream-node-max-entries", &STREAM_NODE_ENTRIES.to_string()),
    )
}

#[test]
fn a_soak_of_mixed_commands_leaves_the_server_whole() {
    let commands_total = env_number("AIJOB_SOAK_COMMANDS", DEFAULT_COMMANDS as u64) as usize;
    let seed = env_number("AIJOB_SOAK_SEED", DEFAULT_SEED);
    println!("soak: {commands_total} commands from {CONNECTIONS} connections, AIJOB_SOAK_SEED={seed}");
    let mut master = start_node();
    let mut replica = start_node();
    replicate(&master, &replica);
    wait_synced(&master, &replica);
    let mut m = master.conn();
    for srv in [&master, &replica] {
        mark_log(&mut srv.conn(), LOG_MARK);
    }
    let commands = aijob_commands(&mut m);

    // A warm-up of the same mix, so every path has made the allocations it keeps (a buffer
    // grown for the largest value; Redis 7's latency histogram, ~24 KB, made for each
    // command name on its first call), then the baseline after the same clearing as at the
    // end. The checks' own commands run before the baseline for the same reason.
    let warm_started = Instant::now();
    fill_event_streams(&mut m);
    let warm = run_connections(&master, seed ^ 0xffff, WARMUP_PER_CONNECTION, NEAR_PERCENT, GARBAGE_PERCENT, &commands);
    assert_eq!(warm.failure_count, 0, "warm-up (seed {seed}): {:#?}", warm.failures);
    block_every_connection_at_once(&master);
    pause_schedules(&mut m);
    assert_replica_matches(&master, &replica, "after the warm-up");
    clear_everything(&mut m);
    wait_synced(&master, &replica);
    let baseline_keys = key_report(&mut m);
    empty_slowlog(&mut m);
    let baseline = settled_memory(&mut m);
    let baseline_detail = memory_breakdown(&mut m);
    println!("soak: warm-up and baseline took {:.1} s", warm_started.elapsed().as_secs_f64());

    let started = Instant::now();
    let tally = run_connections(&master, seed, commands_total / CONNECTIONS, NEAR_PERCENT, GARBAGE_PERCENT, &commands);
    let elapsed = started.elapsed();
    let sent = tally.valid + tally.near + tally.garbage;
    println!(
        "soak: {sent} commands in {:.1} s = {:.0} commands/s ({} valid, {} of them errors the races allow; {} near-valid; {} garbage, {} refused)",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        tally.valid,
        tally.valid_errors,
        tally.near,
        tally.garbage,
        tally.garbage_errors
    );
    assert_eq!(
        tally.failure_count, 0,
        "{} replies broke their expectation (seed {seed}), the first: {:#?}",
        tally.failure_count, tally.failures
    );

    // 1. alive, no panic, the replica never fell back to a full resync
    for (name, srv) in [("master", &mut master), ("replica", &mut replica)] {
        assert!(srv.is_alive(), "the {name} died; log:\n{}", srv.log_tail());
        let mut c = srv.conn();
        assert_eq!(s(&ok(&mut c, &["PING"])), "PONG");
        assert_eq!(info_int(&mut c, "aijob", "aijob_panics"), Some(0), "the {name} hit a panic");
    }
    assert_eq!(info_int(&mut m, "stats", "sync_full"), Some(1), "the replica had to resync in full");

    // 2. the caught-up replica holds the master's data (schedules paused first: they run
    // every few hundred ms, and the digests need a moment the master writes nothing)
    pause_schedules(&mut m);
    assert_replica_matches(&master, &replica, "after the soak");

    // 3. memory back near its start: measured first, explained after
    clear_everything(&mut m);
    wait_synced(&master, &replica);
    let slow = empty_slowlog(&mut m);
    let end = wait_until_memory_near(&mut m, baseline);
    let end_detail = memory_breakdown(&mut m);
    let changed = changed_keys(&baseline_keys, &key_report(&mut m));
    println!(
        "soak: used_memory baseline {baseline} B, end {end} B, difference {:+} B (tolerance {MEMORY_TOLERANCE} B)",
        end - baseline
    );
    println!("soak: baseline {baseline_detail}");
    println!("soak: the slowlog held {slow} entries at the end (emptied before both measurements)");
    println!("soak: end      {end_detail}");
    println!("soak: keys new or grown by more than 1 KB since the baseline: {changed:#?}");
    assert!(
        end - baseline <= MEMORY_TOLERANCE,
        "memory did not come back (seed {seed}): baseline {baseline} B, end {end} B ({:+} B); keys new or grown: {changed:#?}",
        end - baseline
    );
    assert_replica_matches(&master, &replica, "after the clearing");

    // 4. no warning in either log since startup
    for (name, srv) in [("master", &master), ("replica", &replica)] {
        let warnings = warnings_after(srv, LOG_MARK);
        assert!(warnings.is_empty(), "the {name} logged warnings:\n{}", warnings.join("\n"));
    }
}

fn assert_replica_matches(master: &Server, replica: &Server, when: &str) {
    let (master_digest, replica_digest) = digests_at_one_offset(master, replica);
    assert_eq!(master_digest, replica_digest, "the replica's DEBUG DIGEST differs from the master's {when}");
}

/// Every key with its MEMORY USAGE and a short description (a test may list the keyspace).
fn key_report(c: &mut Connection) -> BTreeMap<String, (i64, String)> {
    keys(c)
        .into_iter()
        .map(|k| {
            let usage = int(&ok(c, &["MEMORY", "USAGE", &k, "SAMPLES", "0"]));
            let kind = s(&ok(c, &["TYPE", &k]));
            let about = match kind.as_str() {
                "hash" => {
                    let fields: Vec<String> =
                        pairs(&ok(c, &["HGETALL", &k])).iter().take(6).map(|(f, v)| format!("{f}={}", s(v))).collect();
                    format!("hash {}", fields.join(" "))
                }
                other => other.to_string(),
            };
            (k, (usage, about))
        })
        .collect()
}

/// The keys that are new since `before`, or grew by more than 1 KB.
fn changed_keys(before: &BTreeMap<String, (i64, String)>, after: &BTreeMap<String, (i64, String)>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(k, (usage, about))| match before.get(k) {
            None => Some(format!("{k}: new, {usage} B, {about}")),
            Some((was, _)) if usage - was > 1024 => Some(format!("{k}: {was} -> {usage} B")),
            Some(_) => None,
        })
        .collect()
}

/// `used_memory` once it is within the tolerance of `baseline`, or, after 30 s of Redis's
/// cron shrinking its dicts, whatever it is then (the caller's assertion reports it).
fn wait_until_memory_near(c: &mut Connection, baseline: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = settled_memory(c);
        if now - baseline <= MEMORY_TOLERANCE || Instant::now() > deadline {
            return now;
        }
    }
}
