//! SIGKILL under `appendfsync always` in the middle of a worker load (issue 18): after the
//! restart on the same AOF, no acknowledged create, claim or done is lost or undone.
//!
//! Producers create jobs and workers claim them (most with a long lease, some with a short
//! one that they abandon) and finish most of them; every reply received is written down with
//! what it acknowledged. A command in flight when the server dies has no reply: it is "in
//! doubt" and may or may not have happened, so it only widens what the counts may be.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

const Q: &str = "crash";
const LONG_LEASE: i64 = 120_000;
const SHORT_LEASE: i64 = 300;
const PRODUCERS: usize = 2;
const WORKERS: usize = 3;

/// One acknowledged claim.
#[derive(Debug, Clone)]
struct Claimed {
    id: String,
    token: String,
    attempts: i64,
    lease_ms: i64,
}

/// What one thread was told by the server.
#[derive(Debug, Default)]
struct Ledger {
    /// Acknowledged creates: id and payload.
    created: Vec<(String, String)>,
    creates_in_doubt: usize,
    claims: Vec<Claimed>,
    claims_in_doubt: usize,
    /// Acknowledged dones: id and result.
    done: Vec<(String, String)>,
    dones_in_doubt: Vec<String>,
    /// Error replies while the server was up: none is expected.
    refused: Vec<String>,
}

/// Shared between the threads and the one that kills the server.
#[derive(Default)]
struct Load {
    killed: AtomicBool,
    done: AtomicUsize,
    left_running: AtomicUsize,
    abandoned: AtomicUsize,
}

/// A command's reply, or None when the server went away before answering (in doubt).
fn send(c: &mut Connection, load: &Load, words: &[&str], ledger: &mut Ledger) -> Option<Value> {
    match cmd(c, words) {
        Ok(v) => Some(v),
        Err(e) if load.killed.load(Relaxed) || e.is_io_error() || e.is_connection_dropped() => None,
        Err(e) => {
            ledger.refused.push(format!("{words:?}: {}", error_text(&e)));
            None
        }
    }
}

fn produce(url: String, n: usize, load: Arc<Load>) -> Ledger {
    let mut c = connect(&url);
    let mut ledger = Ledger::default();
    for i in 0.. {
        let payload = format!("{{\"producer\":{n},\"i\":{i}}}");
        match send(&mut c, &load, &["JOB.CREATE", Q, "PAYLOAD", &payload, "MAXATTEMPTS", "100"], &mut ledger) {
            Some(v) => ledger.created.push((s(&v), payload)),
            None => {
                ledger.creates_in_doubt += 1;
                break;
            }
        }
    }
    ledger
}

fn work(url: String, n: usize, load: Arc<Load>) -> Ledger {
    let mut c = connect(&url);
    let mut ledger = Ledger::default();
    let worker = format!("w{n}");
    for round in 0.. {
        // every 7th claim is abandoned under a short lease; every 5th other one is kept
        // running under a long lease; the rest are finished
        let abandon = round % 7 == 3;
        let lease = if abandon { SHORT_LEASE } else { LONG_LEASE }.to_string();
        let words = ["JOB.CLAIM", Q, "WORKER", &worker, "LEASE", &lease, "BLOCK", "100"];
        let Some(reply) = send(&mut c, &load, &words, &mut ledger) else {
            ledger.claims_in_doubt += 1;
            break;
        };
        let Some(job) = array(&reply).into_iter().next() else { continue };
        let claimed =
            Claimed { id: fs(&job, "id"), token: fs(&job, "token"), attempts: fi(&job, "attempts"), lease_ms: 0 };
        let claimed = Claimed { lease_ms: lease.parse().unwrap(), ..claimed };
        ledger.claims.push(claimed.clone());
        if abandon {
            load.abandoned.fetch_add(1, Relaxed);
            continue;
        }
        if round % 5 == 1 {
            load.left_running.fetch_add(1, Relaxed);
            continue;
        }
        let result = format!("{{\"by\":\"{worker}\",\"job\":\"{}\"}}", claimed.id);
        let done = ["JOB.UPDATE", Q, &claimed.id, "TOKEN", &claimed.token, "STATUS", "done", "RESULT", &result];
        match send(&mut c, &load, &done, &mut ledger) {
            Some(_) => {
                ledger.done.push((claimed.id, result));
                load.done.fetch_add(1, Relaxed);
            }
            None => {
                ledger.dones_in_doubt.push(claimed.id);
                break;
            }
        }
        if load.killed.load(Relaxed) {
            break;
        }
    }
    ledger
}

fn connect(url: &str) -> Connection {
    let c = redis::Client::open(url).expect("client").get_connection().expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    c
}

fn merge(parts: Vec<Ledger>) -> Ledger {
    let mut all = Ledger::default();
    for p in parts {
        all.created.extend(p.created);
        all.creates_in_doubt += p.creates_in_doubt;
        all.claims.extend(p.claims);
        all.claims_in_doubt += p.claims_in_doubt;
        all.done.extend(p.done);
        all.dones_in_doubt.extend(p.dones_in_doubt);
        all.refused.extend(p.refused);
    }
    all
}

/// Runs the load until it has done enough of everything, then kills the server with SIGKILL.
fn load_then_kill(srv: &mut Server) -> Ledger {
    let load = Arc::new(Load::default());
    let mut threads = Vec::new();
    for n in 0..PRODUCERS {
        let (url, load) = (srv.url(), load.clone());
        threads.push(thread::spawn(move || produce(url, n, load)));
    }
    for n in 0..WORKERS {
        let (url, load) = (srv.url(), load.clone());
        threads.push(thread::spawn(move || work(url, n, load)));
    }
    wait_until(Duration::from_secs(60), "the load to create, finish, keep and abandon jobs", || {
        let enough = load.done.load(Relaxed) >= 150
            && load.left_running.load(Relaxed) >= 15
            && load.abandoned.load(Relaxed) >= 10;
        enough.then_some(())
    });
    load.killed.store(true, Relaxed);
    srv.kill();
    merge(threads.into_iter().map(|t| t.join().expect("a load thread")).collect())
}

fn job(c: &mut Connection, id: &str) -> Value {
    let v = ok(c, &["JOB.GET", Q, id]);
    assert_ne!(v, Value::Nil, "acknowledged job {id} is gone");
    v
}

#[test]
fn sigkill_under_appendfsync_always_loses_no_acknowledged_create_claim_or_done() {
    let dir = TempDir::new("crash-aof");
    let opts = Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always();
    let mut srv = Server::start_with(opts.clone());
    let ledger = load_then_kill(&mut srv);
    assert!(ledger.refused.is_empty(), "error replies while the server was up: {:?}", ledger.refused);

    let again = Server::start_with(Opts { port: Some(srv.port), ..opts });
    let mut c = again.conn();

    // Every acknowledged create exists with its payload.
    for (id, payload) in &ledger.created {
        assert_eq!(&fs(&job(&mut c, id), "payload"), payload, "job {id}");
    }
    // Every acknowledged done is done, with its result.
    let mut finished: HashMap<&str, &str> = HashMap::new();
    for (id, result) in &ledger.done {
        let j = job(&mut c, id);
        assert_eq!((fs(&j, "status"), fs(&j, "result")), ("done".to_string(), result.clone()), "job {id}");
        finished.insert(id, result);
    }
    // Every acknowledged claim not finished is still running under that claim's lease, or
    // (short leases) requeued by the lease's expiry with its attempt counted: never back
    // in the queue with the attempt rolled back.
    let mut latest: HashMap<&str, &Claimed> = HashMap::new();
    for cl in &ledger.claims {
        let e = latest.entry(cl.id.as_str()).or_insert(cl);
        if cl.attempts > e.attempts {
            *e = cl;
        }
    }
    let (mut kept, mut abandoned_running) = (0, Vec::new());
    for (id, cl) in &latest {
        if finished.contains_key(id) || ledger.dones_in_doubt.iter().any(|d| d == id) {
            continue;
        }
        let j = job(&mut c, id);
        let (status, attempts) = (fs(&j, "status"), fi(&j, "attempts"));
        assert!(attempts >= cl.attempts, "job {id}: attempts rolled back from {} to {attempts}", cl.attempts);
        if cl.lease_ms == LONG_LEASE {
            assert_eq!((status.as_str(), attempts), ("running", cl.attempts), "job {id}");
            // the worker still holds the lease: its heartbeat is accepted
            assert_eq!(s(&ok(&mut c, &["JOB.UPDATE", Q, id, "TOKEN", &cl.token])), "running", "job {id}");
            kept += 1;
        } else if status == "running" && attempts == cl.attempts {
            abandoned_running.push((*id, cl.attempts));
        } else if status == "running" {
            // taken again by a claim whose reply the kill cut off (in doubt)
            assert!(ledger.claims_in_doubt > 0, "job {id}: running on attempt {attempts} nobody claimed");
        } else {
            assert_eq!(status, "queued", "job {id}: an abandoned claim is requeued by its lease");
        }
    }
    // The abandoned short leases still running at the restart expire now, attempts counted.
    for (id, claimed_attempts) in &abandoned_running {
        let status = wait_until(Duration::from_secs(10), "an abandoned lease to expire", || {
            let j = job(&mut c, id);
            (fs(&j, "status") != "running").then(|| (fs(&j, "status"), fi(&j, "attempts")))
        });
        assert_eq!(status.0, "queued", "job {id}");
        assert!(status.1 >= *claimed_attempts, "job {id}: attempts rolled back to {}", status.1);
    }

    // The counts: QUEUE.STATS after the restart agrees with what was acknowledged.
    let st = ok(&mut c, &["QUEUE.STATS", Q]);
    let (created, done, completed) = (fi(&st, "created"), fi(&st, "done"), fi(&st, "completed"));
    let acked_created = ledger.created.len() as i64;
    let acked_done = ledger.done.len() as i64;
    let in_doubt_done = ledger.dones_in_doubt.len() as i64;
    assert!((acked_created..=acked_created + ledger.creates_in_doubt as i64).contains(&created), "created {created}");
    assert!((acked_done..=acked_done + in_doubt_done).contains(&done), "done {done}");
    assert_eq!(completed, done, "every done counted once");
    let live: i64 = ["queued", "delayed", "running", "done", "error", "canceled"].iter().map(|f| fi(&st, f)).sum();
    assert_eq!(live, created, "every job created is in exactly one status");
    assert!(fi(&st, "running") >= kept, "running {} < kept {kept}", fi(&st, "running"));
    // INFO aijob counts (in memory since this start) the leases that expired after it.
    let info = s(&ok(&mut c, &["INFO", "aijob"]));
    let expired: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("aijob_expired_leases:")?.trim().parse().ok())
        .expect("INFO aijob shows aijob_expired_leases");
    assert!(expired >= abandoned_running.len() as i64, "expired {expired}");

    println!(
        "crash_aof: acknowledged {} creates ({} in doubt), {} claims ({} in doubt, {} jobs), {} dones ({} in doubt); \
         after the restart: created {created}, done {done}, running {} ({kept} kept leases answered a heartbeat), \
         queued {}, {} abandoned leases expired after the restart (INFO aijob_expired_leases {expired}); lost 0",
        ledger.created.len(),
        ledger.creates_in_doubt,
        ledger.claims.len(),
        ledger.claims_in_doubt,
        latest.len(),
        ledger.done.len(),
        in_doubt_done,
        fi(&st, "running"),
        fi(&st, "queued"),
        abandoned_running.len(),
    );
}
