//! A job's output stream against a real redis-server (docs/streams.md): JOB.APPEND fenced
//! by the lease token, JOB.READ from any offset with BLOCK on Redis's blocked-client
//! machinery, attempts kept apart, caps, raw XREAD on the documented key, and a replica
//! and an AOF reload holding the same data.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cluster::{cok, Cluster};
use common::*;

/// One JOB.READ reply.
#[derive(Debug, Clone)]
struct Read {
    /// (offset, kind, data)
    entries: Vec<(String, String, Vec<u8>)>,
    next: String,
    ended: bool,
    status: String,
}

impl Read {
    fn parse(v: &Value) -> Read {
        let entries = array(&field(v, "entries").expect("entries"))
            .iter()
            .map(|e| {
                let e = array(e);
                let data = match &e[2] {
                    Value::BulkString(b) => b.clone(),
                    other => panic!("data is not a bulk string: {other:?}"),
                };
                (s(&e[0]), s(&e[1]), data)
            })
            .collect();
        Read { entries, next: fs(v, "next"), ended: fi(v, "ended") == 1, status: fs(v, "status") }
    }

    fn chunks(&self) -> Vec<u8> {
        self.entries.iter().filter(|e| e.1 == "chunk").flat_map(|e| e.2.clone()).collect()
    }

    fn kinds(&self) -> Vec<(String, String)> {
        self.entries.iter().map(|e| (e.0.clone(), e.1.clone())).collect()
    }
}

fn read(c: &mut Connection, q: &str, id: &str, extra: &[&str]) -> Read {
    let mut w = vec!["JOB.READ", q, id];
    w.extend_from_slice(extra);
    Read::parse(&ok(c, &w))
}

fn append(c: &mut Connection, q: &str, id: &str, token: &str, chunks: &[&[u8]]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd("JOB.APPEND");
    command.arg(q).arg(id).arg("TOKEN").arg(token);
    for chunk in chunks {
        command.arg("DATA").arg(*chunk);
    }
    command.query(c)
}

fn done(c: &mut Connection, q: &str, id: &str, token: &str) {
    ok(c, &["JOB.UPDATE", q, id, "TOKEN", token, "STATUS", "done", "RESULT", "{}"]);
}

/// A connection of its own for a thread.
fn connect(url: &str) -> Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// A BLOCK ms long enough never to end a test's wait by itself.
fn long_block() -> String {
    (20_000 * timeout_scale()).to_string()
}

/// Reads in a thread with BLOCK; the reply comes on the channel.
fn read_blocked(url: &str, q: &str, id: &str, after: &str) -> mpsc::Receiver<Result<Read, String>> {
    let (tx, rx) = mpsc::channel();
    let (url, q, id, after, block) = (url.to_string(), q.to_string(), id.to_string(), after.to_string(), long_block());
    std::thread::spawn(move || {
        let mut c = connect(&url);
        let r = cmd(&mut c, &["JOB.READ", &q, &id, "AFTER", &after, "BLOCK", &block]);
        let _ = tx.send(r.map(|v| Read::parse(&v)).map_err(|e| error_text(&e)));
    });
    rx
}

fn blocked_readers(c: &mut Connection) -> i64 {
    let info = s(&ok(c, &["INFO", "aijob"]));
    info.lines().find_map(|l| l.strip_prefix("aijob_readers_blocked:")?.trim().parse().ok()).expect("readers_blocked")
}

/// Waits until `n` readers are blocked in JOB.READ.
fn wait_blocked(c: &mut Connection, n: i64) {
    wait_until(Duration::from_secs(5), "readers to block", || (blocked_readers(c) == n).then_some(()));
}

fn recv(rx: &mpsc::Receiver<Result<Read, String>>) -> Result<Read, String> {
    rx.recv_timeout(Duration::from_secs(10) * timeout_scale()).expect("the blocked read answered")
}

#[test]
fn a_reader_follows_a_stream_live() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "live", &[]);
    let (_, token) = claim(&mut c, "live", &[]).unwrap();
    let mut sub = srv.conn();
    let mut ps = sub.as_pubsub();
    ps.subscribe(format!("aijob:{{live}}:job:{id}")).unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let words: Vec<String> = (0..30).map(|i| format!("token{i} ")).collect();
    let writer = {
        let (url, id, token, words) = (srv.url(), id.clone(), token.clone(), words.clone());
        std::thread::spawn(move || {
            let mut c = connect(&url);
            for w in &words {
                append(&mut c, "live", &id, &token, &[w.as_bytes()]).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            done(&mut c, "live", &id, &token);
        })
    };
    let mut reader = srv.conn();
    let (mut text, mut after, mut reads) = (Vec::new(), "0".to_string(), 0);
    let last = loop {
        let r = read(&mut reader, "live", &id, &["AFTER", &after, "BLOCK", &long_block()]);
        reads += 1;
        text.extend(r.chunks());
        after = r.next.clone();
        if r.ended {
            break r;
        }
    };
    writer.join().unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), words.concat());
    assert!(reads > 1, "the reader saw the output as it came, in {reads} reads");
    assert_eq!((last.status.as_str(), last.entries.last().unwrap().1.as_str()), ("done", "end"));
    assert_eq!(last.next, format!("1-{}", words.concat().len() + 1), "the end entry just after the bytes");

    // every chunk was published on the job's channel, in order, beside the done event
    let mut published = String::new();
    loop {
        let m: String = ps.get_message().unwrap().get_payload().unwrap();
        let m: serde_json::Value = serde_json::from_str(&m).unwrap();
        match m["type"].as_str().unwrap() {
            "chunk" => published.push_str(m["data"].as_str().unwrap()),
            "done" => break,
            _ => {}
        }
    }
    assert_eq!(published, words.concat());
    // raw XRANGE on the documented key: one field per entry
    let raw = array(&ok(&mut c, &["XRANGE", &format!("aijob:{{live}}:out:{id}"), "-", "+", "COUNT", "2"]));
    let first: Vec<String> = array(&array(&raw[0])[1]).iter().map(s).collect();
    assert_eq!((s(&array(&raw[0])[0]), first), ("1-0".to_string(), vec!["attempt".to_string(), "1".to_string()]));
    let second: Vec<String> = array(&array(&raw[1])[1]).iter().map(s).collect();
    assert_eq!(second, ["chunk", "token0 "]);
}

#[test]
fn a_reader_that_disconnects_halfway_resumes_with_exact_bytes() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &[]).unwrap();
    // bytes a text protocol would mangle: NUL, CR LF, invalid UTF-8, a split character
    let chunks: Vec<Vec<u8>> = (0..40u8)
        .map(|i| match i % 4 {
            0 => vec![b'a' + i % 26, 0, b'\r', b'\n'],
            1 => vec![0xff, 0xfe, i],
            2 => "é".as_bytes()[..1].to_vec(),
            _ => "é".as_bytes()[1..].to_vec(),
        })
        .collect();
    let mut r1 = srv.conn();
    let mut got = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut after = "0".to_string();
    for (i, chunk) in chunks.iter().enumerate() {
        append(&mut c, "q", &id, &token, &[chunk]).unwrap();
        if i == 17 {
            let r = read(&mut r1, "q", &id, &["AFTER", &after, "COUNT", "7"]);
            for e in &r.entries {
                assert!(seen.insert(e.0.clone()), "offset {} twice", e.0);
            }
            got.extend(r.chunks());
            after = r.next;
        }
    }
    // the reader goes away mid-stream (its connection killed), and comes back with its offset
    let my_id = int(&ok(&mut r1, &["CLIENT", "ID"]));
    ok(&mut c, &["CLIENT", "KILL", "ID", &my_id.to_string()]);
    assert!(cmd(&mut r1, &["PING"]).is_err(), "the reader's connection is gone");
    done(&mut c, "q", &id, &token);
    let mut r2 = srv.conn();
    loop {
        let r = read(&mut r2, "q", &id, &["AFTER", &after, "COUNT", "5"]);
        for e in &r.entries {
            assert!(seen.insert(e.0.clone()), "offset {} twice", e.0);
        }
        got.extend(r.chunks());
        after = r.next;
        if r.ended {
            break;
        }
    }
    assert_eq!(got, chunks.concat(), "exactly the bytes appended, once each");
    assert_eq!(seen.len(), 1 + chunks.len() + 1);
    // a chunk's offset counts the attempt's bytes up to and including it
    let mut total = 0;
    for e in read(&mut r2, "q", &id, &["COUNT", "100"]).entries.iter().filter(|e| e.1 == "chunk") {
        total += e.2.len();
        assert_eq!(e.0, format!("1-{total}"));
    }
}

#[test]
fn a_stale_workers_append_is_refused_and_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    let (_, stale) = claim(&mut c, "q", &["LEASE", "200"]).unwrap();
    append(&mut c, "q", &id, &stale, &[b"first attempt"]).unwrap();
    let (_, fresh) = wait_until(Duration::from_secs(5), "the lease to expire and the job to be claimed again", || {
        claim(&mut c, "q", &["LEASE", "60000"])
    });
    append(&mut c, "q", &id, &fresh, &[b"second"]).unwrap();
    wait_quiet(&mut c);
    let before = digest(&mut c);
    let e = error_text(&append(&mut c, "q", &id, &stale, &[b"late", b"later"]).unwrap_err());
    assert!(e.starts_with("LEASELOST"), "{e}");
    assert!(err(&mut c, &["JOB.APPEND", "q", &id, "DATA", "no token"]).starts_with("LEASELOST"));
    assert_eq!(digest(&mut c), before, "a refused append writes nothing");
    done(&mut c, "q", &id, &fresh);
    let after_done = digest(&mut c);
    let e = error_text(&append(&mut c, "q", &id, &fresh, &[b"after the end"]).unwrap_err());
    assert!(e.starts_with("LEASELOST"), "a finished job keeps no lease: {e}");
    assert_eq!(digest(&mut c), after_done);
}

#[test]
fn a_blocking_read_is_woken_by_an_append_and_by_the_end() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &[]).unwrap();

    // woken by the first append, which makes the stream
    let rx = read_blocked(&srv.url(), "q", &id, "0");
    wait_blocked(&mut c, 1);
    let start = Instant::now();
    append(&mut c, "q", &id, &token, &[b"hello"]).unwrap();
    let r = recv(&rx).unwrap();
    assert!(start.elapsed() < Duration::from_secs(2), "woken at once, not by its timeout");
    assert_eq!(r.kinds(), [("1-0".into(), "attempt".into()), ("1-5".into(), "chunk".into())]);
    assert!(!r.ended);

    // woken by the end
    let rx = read_blocked(&srv.url(), "q", &id, &r.next);
    wait_blocked(&mut c, 1);
    done(&mut c, "q", &id, &token);
    let r = recv(&rx).unwrap();
    assert_eq!(r.kinds(), [("1-6".into(), "end".into())]);
    assert_eq!((r.ended, r.status.as_str()), (true, "done"));
    assert_eq!(blocked_readers(&mut c), 0);

    // a job that never had output: the end alone wakes its reader
    let quiet = create(&mut c, "q", &[]);
    let (_, t2) = claim(&mut c, "q", &[]).unwrap();
    let rx = read_blocked(&srv.url(), "q", &quiet, "0");
    wait_blocked(&mut c, 1);
    ok(&mut c, &["JOB.UPDATE", "q", &quiet, "TOKEN", &t2, "STATUS", "error", "ERROR", "x", "NORETRY"]);
    let r = recv(&rx).unwrap();
    assert!(r.entries.is_empty() && r.ended && r.status == "error", "{r:?}");

    // a job deleted under its readers: they are told at once, not at their timeout
    let doomed = create(&mut c, "q", &[]);
    let rxs: Vec<_> = (0..3).map(|_| read_blocked(&srv.url(), "q", &doomed, "0")).collect();
    wait_blocked(&mut c, 3);
    ok(&mut c, &["JOB.DELETE", "q", &doomed]);
    for rx in &rxs {
        let e = recv(rx).unwrap_err();
        assert!(e.starts_with("NOTFOUND"), "{e}");
    }
    wait_blocked(&mut c, 0);

    // a timeout answers what a read without BLOCK would: nothing new, not ended
    let waiting = create(&mut c, "q", &[]);
    let r = read(&mut c, "q", &waiting, &["BLOCK", "50"]);
    assert!(r.entries.is_empty() && !r.ended && r.next == "0-0" && r.status == "queued", "{r:?}");
    // inside MULTI a read never blocks
    let replies = atomically(&mut c, &[&["JOB.READ", "q", &waiting, "BLOCK", "0"]]);
    assert!(!Read::parse(&replies[0]).ended);
    // a finished job's read answers at once, even with BLOCK 0
    let r = read(&mut c, "q", &quiet, &["BLOCK", "0"]);
    assert!(r.ended);
    assert_eq!(blocked_readers(&mut c), 0);
}

#[test]
fn after_a_lease_expires_readers_see_the_attempt_boundary() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &["MAXATTEMPTS", "3"]);
    let (_, first) = claim(&mut c, "q", &["WORKER", "w1", "LEASE", "200"]).unwrap();
    append(&mut c, "q", &id, &first, &[b"The answer is 4", b"1, no wait"]).unwrap();
    let r = read(&mut c, "q", &id, &[]);
    assert_eq!(r.chunks(), b"The answer is 41, no wait");
    // worker 1 dies; a reader waits for more
    let rx = read_blocked(&srv.url(), "q", &id, &r.next);
    wait_blocked(&mut c, 1);
    let (_, second) = wait_until(Duration::from_secs(5), "another worker to take the job", || {
        claim(&mut c, "q", &["WORKER", "w2", "LEASE", "60000"])
    });
    let boundary = recv(&rx).unwrap();
    assert_eq!(boundary.entries, [("2-0".to_string(), "attempt".to_string(), b"2".to_vec())]);
    assert!(!boundary.ended);
    append(&mut c, "q", &id, &second, &[b"The answer is 42."]).unwrap();
    done(&mut c, "q", &id, &second);
    let rest = read(&mut c, "q", &id, &["AFTER", &boundary.next]);
    assert_eq!(rest.chunks(), b"The answer is 42.");
    assert!(rest.ended);
    // a reader that starts now sees only the attempt that counts, never two mixed
    let fresh = read(&mut c, "q", &id, &[]);
    assert_eq!(fresh.entries[0], ("2-0".to_string(), "attempt".to_string(), b"2".to_vec()));
    assert_eq!(fresh.chunks(), b"The answer is 42.");
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", &id]), "attempts"), 2);
}

/// A worker that moves to another provider mid-answer (a fallback) starts its output over:
/// readers see a boundary of the same attempt, never one text made of two.
#[test]
fn restart_puts_a_boundary_before_a_fallbacks_output() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &[]).unwrap();
    append(&mut c, "q", &id, &token, &[b"Gemini says: th"]).unwrap();
    let r = read(&mut c, "q", &id, &[]);
    let rx = read_blocked(&srv.url(), "q", &id, &r.next);
    wait_blocked(&mut c, 1);
    let restarted = ok(&mut c, &["JOB.APPEND", "q", &id, "TOKEN", &token, "RESTART", "DATA", "OpenAI says: hi"]);
    assert_eq!(s(&restarted), "2-15");
    let woken = recv(&rx).unwrap();
    assert_eq!(woken.entries[0], ("2-0".to_string(), "attempt".to_string(), b"1".to_vec()), "the same attempt");
    assert_eq!(woken.chunks(), b"OpenAI says: hi");
    assert_eq!(read(&mut c, "q", &id, &[]).chunks(), b"OpenAI says: hi", "the first provider's text is gone");
}

#[test]
fn caps_are_enforced_per_attempt() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.stream-max-chunks", "4"]);
    ok(&mut c, &["CONFIG", "SET", "aijob.stream-max-bytes", "12"]);
    assert_eq!(s(&array(&ok(&mut c, &["CONFIG", "GET", "aijob.stream-max-bytes"]))[1]), "12");
    let id = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &[]).unwrap();
    assert_eq!(s(&append(&mut c, "q", &id, &token, &[b"abc", b"def"]).unwrap()), "1-6");
    let before = digest(&mut c);
    let e = error_text(&append(&mut c, "q", &id, &token, &[b"g", b"h", b"i"]).unwrap_err());
    assert!(e.starts_with("TOOBIG") && e.contains("stream-max-chunks 4"), "{e}");
    let e = error_text(&append(&mut c, "q", &id, &token, &[b"0123456789"]).unwrap_err());
    assert!(e.starts_with("TOOBIG") && e.contains("stream-max-bytes 12"), "{e}");
    assert_eq!(digest(&mut c), before, "past a cap nothing is written");
    assert_eq!(s(&append(&mut c, "q", &id, &token, &[b"012345"]).unwrap()), "1-12", "up to the cap is fine");
    // the next attempt (the job given back, and claimed again) starts with the whole budget
    ok(&mut c, &["JOB.RELEASE", "q", &id, "TOKEN", &token]);
    let (_, again) = claim(&mut c, "q", &[]).unwrap();
    assert_eq!(s(&append(&mut c, "q", &id, &again, &[b"0123456789ab"]).unwrap()), "2-12");
    // a CONFIG out of its range is refused by Redis
    assert!(cmd(&mut c, &["CONFIG", "SET", "aijob.stream-max-chunks", "0"]).is_err());
}

/// Streams through every move that writes them: appends, a new attempt's trim, an end,
/// a retry, a delete, a purge and the end of a retention.
fn stream_workload(c: &mut Connection) {
    for i in 0..4 {
        let id = create(c, "s", &["ID", &format!("j{i}"), "RETENTION", "100000"]);
        let (_, token) = claim(c, "s", &["LEASE", "60000"]).unwrap();
        append(c, "s", &id, &token, &[b"out ", format!("{i}").as_bytes()]).unwrap();
        match i {
            0 => done(c, "s", &id, &token),
            1 => drop(ok(c, &["JOB.UPDATE", "s", &id, "TOKEN", &token, "STATUS", "error", "ERROR", "x", "NORETRY"])),
            2 => drop(ok(c, &["JOB.DELETE", "s", &id])),
            _ => {}
        }
    }
    ok(c, &["JOB.RETRY", "s", "j1"]);
    let retried = claim(c, "s", &["LEASE", "60000"]).unwrap();
    append(c, "s", "j1", &retried.1, &[b"retried"]).unwrap();
    let short = create(c, "s", &["ID", "short", "RETENTION", "50"]);
    let (_, token) = claim(c, "s", &["LEASE", "150"]).unwrap();
    append(c, "s", &short, &token, &[b"lost"]).unwrap();
    // the lease runs out; the next attempt trims the first one's output
    let (_, token) =
        wait_until(Duration::from_secs(5), "the short job claimed again", || claim(c, "s", &["LEASE", "60000"]));
    append(c, "s", &short, &token, &[b"kept"]).unwrap();
    done(c, "s", &short, &token);
    let purged = create(c, "p", &[]);
    let (_, token) = claim(c, "p", &[]).unwrap();
    append(c, "p", &purged, &token, &[b"purged"]).unwrap();
    ok(c, &["QUEUE.PURGE", "p", "STATUS", "running"]);
    wait_until(Duration::from_secs(5), "the short job's retention to end", || {
        keys(c).iter().all(|k| !k.contains("short")).then_some(())
    });
    wait_quiet(c);
}

#[test]
fn a_replica_and_an_aof_reload_hold_the_same_streams() {
    let dir = TempDir::new("streams-aof");
    let opts = Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always();
    let mut master = Server::start_with(opts.clone());
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    stream_workload(&mut m);
    let names: Vec<String> = keys(&mut m).into_iter().filter(|k| k.contains(":out:")).collect();
    assert_eq!(names, ["aijob:{s}:out:j0", "aijob:{s}:out:j1", "aijob:{s}:out:j3"], "deleted, purged, expired: gone");
    wait_synced(&master, &replica);
    let mut r = replica.conn();
    let before = digest(&mut m);
    assert_eq!(digest(&mut r), before, "the replica diverged");
    let j1 = read(&mut r, "s", "j1", &[]);
    assert_eq!((j1.entries[0].0.as_str(), j1.chunks()), ("2-0", b"retried".to_vec()), "read on the replica");

    // a read blocked on the replica wakes when the master's append reaches it
    let rx = read_blocked(&replica.url(), "s", "j3", "1-5");
    wait_blocked(&mut r, 1);
    let t3 = s(&ok(&mut m, &["HGET", "aijob:{s}:job:j3", "_token"]));
    append(&mut m, "s", "j3", &t3, &[b" more"]).unwrap();
    let woken = recv(&rx).unwrap();
    assert_eq!(woken.chunks(), b" more");
    wait_synced(&master, &replica);
    let before = digest(&mut m);
    assert_eq!(digest(&mut r), before);

    let port = master.port;
    master.kill();
    drop(m);
    let again = Server::start_with(Opts { port: Some(port), ..opts.clone() });
    let mut c = again.conn();
    assert_eq!(digest(&mut c), before, "the AOF reload differs");
    assert_eq!(read(&mut c, "s", "j0", &[]).chunks(), b"out 0");
    drop(again);
    let plain = Server::start_with(Opts { no_module: true, ..opts });
    let mut c = plain.conn();
    assert_eq!(digest(&mut c), before, "a server without the module loads different data");
    assert_eq!(s(&ok(&mut c, &["TYPE", "aijob:{s}:out:j0"])), "stream");
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &[]).unwrap();
    append(&mut c, "q", &id, &token, &[b"x"]).unwrap();
    let before = digest(&mut c);
    for (words, want) in [
        (vec!["JOB.APPEND", "q", &id], "ERR wrong number of arguments"),
        (vec!["JOB.APPEND", "q", &id, "TOKEN", &token], "ERR DATA is required"),
        (vec!["JOB.APPEND", "q", &id, "TOKEN", &token, "DATA"], "ERR DATA needs a value"),
        (vec!["JOB.APPEND", "q", &id, "TOKEN", &token, "DATA", ""], "ERR DATA must not be empty"),
        (vec!["JOB.APPEND", "q", &id, "TOKEN", &token, "DATA", "a", "BOGUS", "1"], "ERR unknown option 'BOGUS'"),
        (vec!["JOB.APPEND", "q", "nope", "TOKEN", &token, "DATA", "a"], "NOTFOUND"),
        (vec!["JOB.APPEND", "q{", &id, "DATA", "a"], "ERR Q"),
        (vec!["JOB.READ", "q"], "ERR wrong number of arguments"),
        (vec!["JOB.READ", "q", "nope"], "NOTFOUND no job nope"),
        (vec!["JOB.READ", "q", &id, "AFTER", "1-x"], "ERR AFTER must be an offset"),
        (vec!["JOB.READ", "q", &id, "AFTER", "-"], "ERR AFTER must be an offset"),
        (vec!["JOB.READ", "q", &id, "AFTER", "$"], "ERR AFTER must be an offset"),
        (vec!["JOB.READ", "q", &id, "COUNT", "0"], "ERR COUNT must be positive"),
        (vec!["JOB.READ", "q", &id, "COUNT", "10001"], "ERR COUNT must be at most 10000"),
        (vec!["JOB.READ", "q", &id, "BLOCK", "-5"], "ERR BLOCK must not be negative"),
        (vec!["JOB.READ", "q", &id, "BLOCK", "1", "BLOCK", "2"], "ERR BLOCK given twice"),
    ] {
        let e = err(&mut c, &words);
        assert!(e.starts_with(want), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before, "nothing was written");
    // an offset past the end answers nothing, and a bare number reads as <n>-0
    let r = read(&mut c, "q", &id, &["AFTER", "18446744073709551615-18446744073709551615"]);
    assert!(r.entries.is_empty() && r.next == "18446744073709551615-18446744073709551615");
    assert_eq!(read(&mut c, "q", &id, &["AFTER", "1"]).kinds(), [("1-1".to_string(), "chunk".to_string())]);
    // someone else's value at the stream's key
    let other = create(&mut c, "q", &[]);
    ok(&mut c, &["SET", &format!("aijob:{{q}}:out:{other}"), "not a stream"]);
    assert!(err(&mut c, &["JOB.READ", "q", &other]).starts_with("WRONGTYPE"));
    let (_, t2) = claim(&mut c, "q", &[]).unwrap();
    let e = error_text(&append(&mut c, "q", &other, &t2, &[b"x"]).unwrap_err());
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(s(&ok(&mut c, &["GET", &format!("aijob:{{q}}:out:{other}")])), "not a stream");
    // RESP3: the reply is a map
    let mut c3 = srv.conn3();
    assert!(matches!(ok(&mut c3, &["JOB.READ", "q", &id]), Value::Map(_)));
    // appends grow memory: refused by Redis while memory is full; reads are reads
    let flags = |c: &mut Connection, name: &str| -> Vec<String> {
        array(&array(&array(&ok(c, &["COMMAND", "INFO", name]))[0])[2]).iter().map(s).collect()
    };
    assert!(flags(&mut c, "job.append").contains(&"denyoom".to_string()));
    assert!(flags(&mut c, "job.read").contains(&"readonly".to_string()));
    // the command's key is the queue: COMMAND GETKEYS and ACL patterns see Q
    let k = array(&ok(&mut c, &["COMMAND", "GETKEYS", "JOB.READ", "q", &id, "AFTER", "0"]));
    assert_eq!(k.iter().map(s).collect::<Vec<_>>(), ["q"]);
}

#[test]
fn on_a_cluster_the_stream_lives_in_the_queues_slot() {
    let mut cl = Cluster::start();
    let mut c = cl.client();
    let id = s(&cok(&mut c, &["JOB.CREATE", "chat", "PAYLOAD", "{}"]));
    let job = array(&cok(&mut c, &["JOB.CLAIM", "chat"]));
    let token = fs(&job[0], "token");
    let owner = cl.master_of("chat");
    let mut sub = cl.nodes[owner].conn();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let channel = format!("aijob:{{chat}}:job:{id}");
    redis::cmd("SSUBSCRIBE").arg(&channel).exec(&mut sub).unwrap();
    assert_eq!(s(&cok(&mut c, &["JOB.APPEND", "chat", &id, "TOKEN", &token, "DATA", "hi"])), "1-2");
    let r = Read::parse(&cok(&mut c, &["JOB.READ", "chat", &id]));
    assert_eq!(r.chunks(), b"hi");
    // the raw key routes to the queue's node: its hash tag is the queue's
    let raw = array(&cok(&mut c, &["XRANGE", &format!("aijob:{{chat}}:out:{id}"), "-", "+"]));
    assert_eq!(raw.len(), 2);
    let chunk = loop {
        let msg = array(&sub.recv_response().unwrap());
        assert_eq!((s(&msg[0]).as_str(), s(&msg[1])), ("smessage", channel.clone()));
        let m: serde_json::Value = serde_json::from_str(&s(&msg[2])).unwrap();
        if m["type"] == "chunk" {
            break m;
        }
    };
    assert_eq!((chunk["offset"].as_str(), chunk["data"].as_str()), (Some("1-2"), Some("hi")));
}
