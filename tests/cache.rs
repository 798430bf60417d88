//! The result cache and coalescing (docs/cache.md) against a real server.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;

/// CACHE.GETORQUEUE: (kind, id, result).
fn goq(c: &mut Connection, q: &str, extra: &[&str]) -> (String, Option<String>, Option<String>) {
    let mut w = vec!["CACHE.GETORQUEUE", q];
    w.extend_from_slice(extra);
    let r = array(&ok(c, &w));
    let opt = |v: &Value| (v != &Value::Nil).then(|| s(v));
    (s(&r[0]), opt(&r[1]), opt(&r[2]))
}

fn finish(c: &mut Connection, q: &str, id: &str, result: &str) {
    let (cid, tok) = claim(c, q, &[]).expect("the job is claimable");
    assert_eq!(cid, id);
    ok(c, &["JOB.UPDATE", q, id, "TOKEN", &tok, "STATUS", "done", "RESULT", result]);
}

#[test]
fn miss_pending_then_hit_with_no_new_job() {
    let srv = Server::start();
    let mut c = srv.conn();
    let (kind, id, _) = goq(&mut c, "q", &["PAYLOAD", r#"{"model":"m","prompt":"hi","n":[1,2]}"#]);
    assert_eq!(kind, "queued");
    let id = id.unwrap();
    let (kind, same, _) = goq(&mut c, "q", &["PAYLOAD", r#"{ "n" : [1,2], "prompt":"hi", "model":"m" }"#]);
    assert_eq!((kind.as_str(), same.as_deref()), ("pending", Some(id.as_str())), "another key order coalesces");
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!(fs(&rec, "hash").len(), 64);
    finish(&mut c, "q", &id, r#"{"text":"hello"}"#);
    let (kind, none, result) = goq(&mut c, "q", &["PAYLOAD", r#"{"model":"m","prompt":"hi","n":[1,2]}"#]);
    assert_eq!((kind.as_str(), none, result.as_deref()), ("hit", None, Some(r#"{"text":"hello"}"#)));
    assert_eq!(stat(&mut c, "q", "created"), 1, "a hit makes no job");
    let st = ok(&mut c, &["QUEUE.STATS", "q"]);
    assert_eq!((fi(&st, "hits"), fi(&st, "misses"), fi(&st, "coalesced")), (1, 1, 1));
    // the counters reach the queue's own record (INFO and a restart keep them)
    wait_until(Duration::from_secs(2), "hit counters flushed to meta", || {
        (ok(&mut c, &["HGET", "aijob:{q}:meta", "hits"]) == Value::BulkString(b"1".to_vec())).then_some(())
    });
    let st = ok(&mut c, &["QUEUE.STATS", "q"]);
    assert_eq!(fi(&st, "hits"), 1, "not counted twice");
    let info = s(&ok(&mut c, &["INFO", "aijob"]));
    assert!(
        info.contains("aijob_cache_hits:1")
            && info.contains("aijob_cache_misses:1")
            && info.contains("aijob_coalesced:1"),
        "{info}"
    );
}

#[test]
fn a_failure_frees_the_hash_and_a_backoff_keeps_it() {
    let srv = Server::start();
    let mut c = srv.conn();
    let (_, id, _) = goq(&mut c, "q", &["PAYLOAD", "{}", "MAXATTEMPTS", "2"]);
    let id = id.unwrap();
    let (_, tok) = claim(&mut c, "q", &[]).unwrap();
    ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &tok, "STATUS", "error", "ERROR", "503", "DELAY", "100"]);
    assert_eq!(goq(&mut c, "q", &["PAYLOAD", "{}"]).0, "pending");
    let tok = wait_until(Duration::from_secs(3), "the retry", || claim(&mut c, "q", &[]).map(|(_, t)| t));
    ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &tok, "STATUS", "error", "ERROR", "503"]);
    let (kind, id2, _) = goq(&mut c, "q", &["PAYLOAD", "{}"]);
    assert_eq!(kind, "queued");
    assert_ne!(id2.unwrap(), id);
    // a canceled job frees it too
    let (_, id3, _) = goq(&mut c, "q", &["PAYLOAD", "[3]"]);
    ok(&mut c, &["JOB.CANCEL", "q", &id3.unwrap()]);
    assert_eq!(goq(&mut c, "q", &["PAYLOAD", "[3]"]).0, "queued");
}

#[test]
fn key_parts_hash_and_explicit_hash() {
    let srv = Server::start();
    let mut c = srv.conn();
    let a = s(&ok(&mut c, &["CACHE.HASH", "KEY", "a:b", ""]));
    let b = s(&ok(&mut c, &["CACHE.HASH", "KEY", "a", ":b"]));
    assert_ne!(a, b, "parts are length-prefixed");
    assert_eq!(
        s(&ok(&mut c, &["CACHE.HASH", "KEY", ""])),
        "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
    );
    let p1 = s(&ok(&mut c, &["CACHE.HASH", "PAYLOAD", r#"{"b":1,"a":2}"#]));
    let p2 = s(&ok(&mut c, &["CACHE.HASH", "PAYLOAD", r#"{"a":2, "b":1.0}"#]));
    assert_eq!(p1, p2, "canonical JSON: key order, whitespace, 1.0 == 1");
    // the hash GETORQUEUE uses is the one CACHE.HASH reports
    let (_, id, _) = goq(&mut c, "q", &["PAYLOAD", "{}", "KEY", "png-bytes", "<svg/>", "make it round"]);
    let h = s(&ok(&mut c, &["CACHE.HASH", "KEY", "png-bytes", "<svg/>", "make it round"]));
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &id.clone().unwrap()]), "hash"), h);
    let (kind, same, _) = goq(&mut c, "q", &["PAYLOAD", "{\"other\":1}", "HASH", &h.to_uppercase()]);
    assert_eq!((kind.as_str(), same), ("pending", id));
}

#[test]
fn etag_compare_and_set_both_ways() {
    let srv = Server::start();
    let mut c = srv.conn();
    let h = "ab".repeat(32);
    let e1 = s(&ok(&mut c, &["CACHE.SET", "q", &h, r#"{"v":1}"#, "IFNONE"]));
    assert_eq!(ok(&mut c, &["CACHE.SET", "q", &h, r#"{"v":2}"#, "IFNONE"]), Value::Nil);
    let got = array(&ok(&mut c, &["CACHE.GET", "q", &h, "WITHETAG"]));
    assert_eq!((s(&got[0]), s(&got[1])), (r#"{"v":1}"#.to_string(), e1.clone()));
    let e2 = s(&ok(&mut c, &["CACHE.SET", "q", &h, r#"{"v":2}"#, "IFMATCH", &e1]));
    assert_ne!(e2, e1);
    assert_eq!(ok(&mut c, &["CACHE.SET", "q", &h, r#"{"v":3}"#, "IFMATCH", &e1]), Value::Nil, "a stale etag loses");
    assert_eq!(s(&ok(&mut c, &["CACHE.GET", "q", &h])), r#"{"v":2}"#);
    assert_eq!(
        ok(&mut c, &["CACHE.SET", "q", &"cd".repeat(32), "1", "IFMATCH", &e2]),
        Value::Nil,
        "no entry, no match"
    );
    assert_eq!(int(&ok(&mut c, &["CACHE.DEL", "q", &h])), 1);
    assert_eq!(int(&ok(&mut c, &["CACHE.DEL", "q", &h])), 0);
    assert_eq!(ok(&mut c, &["CACHE.GET", "q", &h]), Value::Nil);
}

#[test]
fn cachettl_expires_the_entry() {
    let srv = Server::start();
    let mut c = srv.conn();
    let (_, id, _) = goq(&mut c, "q", &["PAYLOAD", "[1]", "CACHETTL", "300"]);
    finish(&mut c, "q", &id.unwrap(), "\"r\"");
    assert_eq!(goq(&mut c, "q", &["PAYLOAD", "[1]"]).0, "hit");
    let h = s(&ok(&mut c, &["CACHE.HASH", "PAYLOAD", "[1]"]));
    let pttl = int(&ok(&mut c, &["PTTL", &format!("aijob:{{q}}:cache:0:{h}")]));
    assert!(pttl > 0 && pttl <= 300, "{pttl}");
    wait_until(Duration::from_secs(3), "the entry to expire", || {
        (goq(&mut c, "q", &["PAYLOAD", "[1]"]).0 != "hit").then_some(())
    });
    ok(&mut c, &["CACHE.SET", "q", &h, "1", "TTL", "200"]);
    wait_until(Duration::from_secs(3), "a CACHE.SET TTL to expire", || {
        (ok(&mut c, &["CACHE.GET", "q", &h]) == Value::Nil).then_some(())
    });
}

#[test]
fn clear_drops_every_entry_at_once_and_frees_keys_in_the_background() {
    let srv = Server::start();
    let mut c = srv.conn();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("CACHE.SET").arg("q").arg(format!("{i:064x}")).arg("{\"v\":1}").ignore();
    }
    pipe.query::<()>(&mut c).unwrap();
    ok(&mut c, &["CACHE.SET", "other", &"ab".repeat(32), "1"]);
    assert_eq!(int(&ok(&mut c, &["CACHE.CLEAR", "q"])), 5000);
    assert_eq!(ok(&mut c, &["CACHE.GET", "q", &format!("{:064x}", 7)]), Value::Nil, "gone at once");
    assert_eq!(goq(&mut c, "q", &["PAYLOAD", "1", "HASH", &format!("{:064x}", 7)]).0, "queued");
    wait_until(Duration::from_secs(10), "the old generation's keys to be freed", || {
        let left = keys(&mut c).into_iter().filter(|k| k.starts_with("aijob:{q}:cache")).count();
        (left == 0).then_some(())
    });
    assert_eq!(s(&ok(&mut c, &["CACHE.GET", "other", &"ab".repeat(32)])), "1", "other queues keep theirs");
    assert_eq!(int(&ok(&mut c, &["CACHE.CLEAR", "q"])), 0);
}

#[test]
fn bad_cache_input_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    let h = "ab".repeat(32);
    ok(&mut c, &["CACHE.SET", "q", &h, "1"]);
    let before = digest(&mut c);
    for (words, expected) in [
        (vec!["CACHE.GET", "q", "nothex"], "ERR hash"),
        (vec!["CACHE.GET", "q", &h, "BOGUS"], "ERR unknown option"),
        (vec!["CACHE.SET", "q", &h, "{bad"], "ERR json"),
        (vec!["CACHE.SET", "q", &h, "1", "IFNONE", "IFMATCH", "1"], "ERR IFMATCH and IFNONE"),
        (vec!["CACHE.SET", "q", &h, "1", "TTL", "-1"], "ERR TTL"),
        (vec!["CACHE.SET", "q", &h, "1", "TTL", "0"], "ERR TTL"),
        (vec!["CACHE.DEL", "q", "zz"], "ERR hash"),
        (vec!["CACHE.GETORQUEUE", "q", "KEY", "a"], "ERR PAYLOAD"),
        (vec!["CACHE.GETORQUEUE", "q", "PAYLOAD", "{x"], "ERR PAYLOAD"),
        (vec!["CACHE.GETORQUEUE", "q", "PAYLOAD", "1", "KEY"], "ERR KEY"),
        (vec!["CACHE.GETORQUEUE", "q", "PAYLOAD", "1", "HASH", "12"], "ERR HASH"),
        (vec!["CACHE.GETORQUEUE", "q", "PAYLOAD", "1", "CACHETTL", "-5"], "ERR CACHETTL"),
        (vec!["CACHE.GETORQUEUE", "q", "PAYLOAD", "1", "PRIORITY", "x"], "ERR PRIORITY"),
        (vec!["CACHE.GETORQUEUE", "q{", "PAYLOAD", "1"], "ERR Q"),
        (vec!["CACHE.HASH"], "ERR wrong number"),
        (vec!["CACHE.HASH", "PAYLOAD", "{"], "ERR PAYLOAD"),
        (vec!["CACHE.HASH", "NOPE"], "ERR unknown option"),
        (vec!["CACHE.CLEAR", "q", "now"], "ERR unknown option"),
    ] {
        let e = err(&mut c, &words);
        assert!(e.starts_with(expected), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before);
}

/// K identical requests at once make exactly one job.
#[test]
fn a_stampede_makes_exactly_one_job() {
    let srv = Server::start();
    const K: usize = 24;
    let barrier = Arc::new(Barrier::new(K));
    let threads: Vec<_> = (0..K)
        .map(|_| {
            let mut c = srv.conn();
            let b = barrier.clone();
            thread::spawn(move || {
                b.wait();
                goq(&mut c, "q", &["PAYLOAD", r#"{"prompt":"the same"}"#])
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let queued: Vec<_> = results.iter().filter(|r| r.0 == "queued").collect();
    assert_eq!(queued.len(), 1, "{results:?}");
    let id = queued[0].1.clone();
    assert!(results.iter().all(|r| r.1 == id), "everyone shares the one job");
    let mut c = srv.conn();
    assert_eq!(stat(&mut c, "q", "created"), 1);
    assert_eq!(stat(&mut c, "q", "coalesced"), (K - 1) as i64);
}

/// The Rails "improve sketch" flow: hash of PNG + SVG + hints, an async job, the client
/// polls until done, and a second call is a hit.
#[test]
fn seed_flow_rails_improve_sketch() {
    let srv = Server::start();
    let mut app = srv.conn();
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let (svg, hints) = ("<svg><path d='M0 0L10 10'/></svg>", "make it cleaner");
    let payload = format!(r#"{{"provider":"gemini","model":"gemini-2.5-flash","request":{{"hints":"{hints}"}}}}"#);
    let ask = |c: &mut Connection| {
        goq(c, "improve_sketch", &["PAYLOAD", &payload, "CACHETTL", "604800000", "KEY", png, svg, hints])
    };
    let (kind, request_id, _) = ask(&mut app);
    assert_eq!(kind, "queued");
    let request_id = request_id.unwrap();
    // a worker (the app's Sidekiq job, as in the seed) runs it with JOB.UPDATE
    let worker = {
        let mut w = srv.conn();
        let id = request_id.clone();
        thread::spawn(move || {
            ok(&mut w, &["JOB.UPDATE", "improve_sketch", &id, "STATUS", "running"]);
            thread::sleep(Duration::from_millis(100));
            ok(
                &mut w,
                &[
                    "JOB.UPDATE",
                    "improve_sketch",
                    &id,
                    "STATUS",
                    "done",
                    "RESULT",
                    r#"{"image_base64":"AAA","title":"Cleaner"}"#,
                ],
            );
        })
    };
    // the frontend polls improveSketchStatus(requestId)
    let status = wait_until(Duration::from_secs(5), "the job to finish", || {
        let st = fs(&ok(&mut app, &["JOB.GET", "improve_sketch", &request_id]), "status");
        (st == "done").then_some(st)
    });
    worker.join().unwrap();
    assert_eq!(status, "done");
    let (kind, _, result) = ask(&mut app);
    assert_eq!(kind, "hit");
    assert!(result.unwrap().contains("Cleaner"));
    // the seed's ambiguous "#{png}:#{svg}:#{hints}" key would collide here; parts do not
    let (kind, _, _) = goq(&mut app, "improve_sketch", &["PAYLOAD", &payload, "KEY", &format!("{png}:{svg}"), hints]);
    assert_eq!(kind, "queued");
}

/// The FastAPI "analyze artifact" flow: the hash of the content, progress hints while
/// running, the result cached for the next identical artifact.
#[test]
fn seed_flow_fastapi_analyze_artifact() {
    let srv = Server::start();
    let mut api = srv.conn();
    let content = "# Runbook\nRestart the pod when latency > 2s.\n";
    let payload = serde_json::json!({"provider":"gemini","model":"m","request":{"artifact": content}}).to_string();
    let (kind, job_id, _) =
        goq(&mut api, "analyze", &["PAYLOAD", &payload, "META", r#"{"filename":"runbook.md"}"#, "KEY", content]);
    assert_eq!(kind, "queued");
    let job_id = job_id.unwrap();
    let mut sub = srv.conn();
    let mut ps = sub.as_pubsub();
    ps.subscribe(format!("aijob:{{analyze}}:job:{job_id}")).unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = srv.conn();
    let (id, tok) = claim(&mut w, "analyze", &["WORKER", "analyzer-1"]).unwrap();
    for (hint, pct) in [("Parsing artifact", "10"), ("Scoring readiness", "60"), ("Writing report", "90")] {
        ok(&mut w, &["JOB.UPDATE", "analyze", &id, "TOKEN", &tok, "PROGRESS", hint, "PERCENT", pct]);
        let st = ok(&mut api, &["JOB.GET", "analyze", &job_id]);
        assert_eq!((fs(&st, "progress"), fs(&st, "status")), (hint.to_string(), "running".to_string()));
    }
    let report = r##"{"result":{"production_readiness_score":85},"markdown":"# Report"}"##;
    ok(&mut w, &["JOB.UPDATE", "analyze", &id, "TOKEN", &tok, "STATUS", "done", "RESULT", report]);
    let mut seen = vec![];
    for _ in 0..5 {
        let m: String = ps.get_message().unwrap().get_payload().unwrap();
        let e: serde_json::Value = serde_json::from_str(&m).unwrap();
        seen.push((e["type"].as_str().unwrap().to_string(), e["progress"].as_str().unwrap_or("").to_string()));
    }
    assert_eq!(seen[1], ("progress".to_string(), "Parsing artifact".to_string()));
    assert_eq!(seen[4].0, "done");
    let (kind, _, result) = goq(&mut api, "analyze", &["PAYLOAD", &payload, "KEY", content]);
    assert_eq!((kind.as_str(), result.as_deref()), ("hit", Some(report)));
}
