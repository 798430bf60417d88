//! One JSON validator for every place JSON comes in (PAYLOAD, RESULT, META, CACHE.SET's
//! json, and the content hash), and large results carried by reference in events.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

static FRESH: AtomicUsize = AtomicUsize::new(0);

/// A queue name no other call of this test binary uses.
fn fresh(tag: &str) -> String {
    format!("{tag}{}", FRESH.fetch_add(1, Ordering::Relaxed))
}

/// One way JSON reaches the module: its name, the argument the error must name, and the
/// call, which gives `json` (always an object, so META takes it too) in a fresh queue.
struct Entry {
    name: &'static str,
    arg: &'static str,
    call: fn(&mut Connection, &str) -> redis::RedisResult<Value>,
}

const HASH: &str = "00000000000000000000000000000000000000000000000000000000000000aa";

fn entries() -> Vec<Entry> {
    vec![
        Entry {
            name: "JOB.CREATE PAYLOAD",
            arg: "PAYLOAD",
            call: |c, j| cmd(c, &["JOB.CREATE", &fresh("c"), "PAYLOAD", j]),
        },
        Entry {
            name: "JOB.CREATE META",
            arg: "META",
            call: |c, j| cmd(c, &["JOB.CREATE", &fresh("c"), "PAYLOAD", "{}", "META", j]),
        },
        Entry {
            name: "CACHE.GETORQUEUE PAYLOAD",
            arg: "PAYLOAD",
            call: |c, j| cmd(c, &["CACHE.GETORQUEUE", &fresh("g"), "PAYLOAD", j]),
        },
        Entry {
            name: "CACHE.GETORQUEUE PAYLOAD KEY",
            arg: "PAYLOAD",
            call: |c, j| cmd(c, &["CACHE.GETORQUEUE", &fresh("g"), "PAYLOAD", j, "KEY", "k"]),
        },
        Entry {
            name: "CACHE.GETORQUEUE PAYLOAD HASH",
            arg: "PAYLOAD",
            call: |c, j| cmd(c, &["CACHE.GETORQUEUE", &fresh("g"), "PAYLOAD", j, "HASH", HASH]),
        },
        Entry {
            name: "CACHE.GETORQUEUE META",
            arg: "META",
            call: |c, j| cmd(c, &["CACHE.GETORQUEUE", &fresh("g"), "PAYLOAD", "{}", "META", j]),
        },
        Entry { name: "CACHE.HASH PAYLOAD", arg: "PAYLOAD", call: |c, j| cmd(c, &["CACHE.HASH", "PAYLOAD", j]) },
        Entry { name: "CACHE.SET json", arg: "json", call: |c, j| cmd(c, &["CACHE.SET", &fresh("s"), HASH, j]) },
        Entry {
            name: "SCHEDULE.SET PAYLOAD",
            arg: "PAYLOAD",
            call: |c, j| cmd(c, &["SCHEDULE.SET", &fresh("p"), "n", "EVERY", "60000", "PAYLOAD", j]),
        },
        Entry {
            name: "SCHEDULE.SET META",
            arg: "META",
            call: |c, j| cmd(c, &["SCHEDULE.SET", &fresh("p"), "n", "EVERY", "60000", "PAYLOAD", "{}", "META", j]),
        },
        Entry {
            name: "JOB.UPDATE RESULT",
            arg: "RESULT",
            call: |c, j| {
                let (q, id, token) = claimed(c);
                cmd(c, &["JOB.UPDATE", &q, &id, "TOKEN", &token, "STATUS", "done", "RESULT", j])
            },
        },
        Entry {
            name: "JOB.UPDATE META",
            arg: "META",
            call: |c, j| {
                let (q, id, token) = claimed(c);
                cmd(c, &["JOB.UPDATE", &q, &id, "TOKEN", &token, "META", j])
            },
        },
    ]
}

/// A running job in a fresh queue: (queue, id, token).
fn claimed(c: &mut Connection) -> (String, String, String) {
    let q = fresh("u");
    let id = create(c, &q, &[]);
    let (got, token) = claim(c, &q, &[]).expect("a job to claim");
    assert_eq!(got, id);
    (q, id, token)
}

/// Gives `json` to every entry point: (entry name, argument name, the error text if refused).
fn everywhere(c: &mut Connection, json: &str) -> Vec<(&'static str, &'static str, Option<String>)> {
    entries().into_iter().map(|e| (e.name, e.arg, (e.call)(c, json).err().map(|err| error_text(&err)))).collect()
}

fn accepted_everywhere(c: &mut Connection, json: &str, what: &str) {
    let refused: Vec<_> = everywhere(c, json).into_iter().filter(|(_, _, e)| e.is_some()).collect();
    assert!(refused.is_empty(), "{what} must be accepted everywhere; refused by {refused:?}");
}

/// Refused by every entry point with one error text, naming each point's argument;
/// returns that text with the argument name replaced by `<arg>`.
fn refused_everywhere(c: &mut Connection, json: &str, what: &str) -> String {
    let mut texts = Vec::new();
    let mut accepted = Vec::new();
    for (name, arg, e) in everywhere(c, json) {
        match e {
            None => accepted.push(name),
            Some(text) => {
                let code = text.split(' ').next().unwrap_or("").to_string();
                let rest = text
                    .strip_prefix(&format!("{code} {arg} "))
                    .unwrap_or_else(|| panic!("{name}: the error must name {arg}: {text}"));
                texts.push((name, format!("{code} <arg> {rest}")));
            }
        }
    }
    assert!(accepted.is_empty(), "{what} must be refused everywhere; accepted by {accepted:?}; refused: {texts:?}");
    let first = texts[0].1.clone();
    for (name, text) in &texts {
        assert_eq!(text, &first, "{what}: {name} words its error differently from {}", texts[0].0);
    }
    first
}

/// `{"a":{"a":...1...}}`: an object nested `depth` levels deep.
fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

#[test]
fn a_million_nested_brackets_are_refused_everywhere_quickly() {
    let srv = Server::start();
    let mut c = srv.conn();
    let n = 1_000_000;
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
    let started = Instant::now();
    let text = refused_everywhere(&mut c, &deep, "10^6 nested brackets");
    assert!(text.contains("json-max-depth"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(s(&ok(&mut c, &["PING"])), "PONG");
}

#[test]
fn depth_at_the_limit_is_accepted_and_one_past_it_refused() {
    let srv = Server::start();
    let mut c = srv.conn();
    accepted_everywhere(&mut c, &nested_objects(128), "depth 128");
    let text = refused_everywhere(&mut c, &nested_objects(129), "depth 129");
    assert!(text.contains("128"), "{text}");
    // the limit is a config
    ok(&mut c, &["CONFIG", "SET", "aijob.json-max-depth", "4"]);
    let got = array(&ok(&mut c, &["CONFIG", "GET", "aijob.json-max-depth"]));
    assert_eq!(s(&got[1]), "4");
    accepted_everywhere(&mut c, &nested_objects(4), "depth 4 under json-max-depth 4");
    let text = refused_everywhere(&mut c, &nested_objects(5), "depth 5 under json-max-depth 4");
    assert!(text.contains("json-max-depth 4"), "{text}");
    // raised past serde_json's 128, hashing still works (no recursion limit of its own)
    ok(&mut c, &["CONFIG", "SET", "aijob.json-max-depth", "1000"]);
    accepted_everywhere(&mut c, &nested_objects(1000), "depth 1000 under json-max-depth 1000");
}

#[test]
fn lone_surrogates_are_refused_everywhere_and_pairs_accepted() {
    let srv = Server::start();
    let mut c = srv.conn();
    for lone in [r#"{"s":"\ud800"}"#, r#"{"s":"\udc00x"}"#, r#"{"s":"\ud800\u0041"}"#, r#"{"\ud83d":1}"#] {
        let text = refused_everywhere(&mut c, lone, lone);
        assert!(text.contains("surrogate"), "{lone}: {text}");
    }
    accepted_everywhere(&mut c, r#"{"s":"\ud83d\ude00"}"#, "a surrogate pair");
}

#[test]
fn numbers_beyond_a_double_are_refused_everywhere() {
    let srv = Server::start();
    let mut c = srv.conn();
    for big in [r#"{"n":1e999}"#, r#"{"n":-1e400}"#, &format!("{{\"n\":{}}}", "9".repeat(400))] {
        let text = refused_everywhere(&mut c, big, big);
        assert!(text.contains("double"), "{big}: {text}");
    }
    accepted_everywhere(&mut c, r#"{"n":-0,"m":1e308,"t":1e-999}"#, "-0, 1e308, 1e-999");
}

#[test]
fn duplicate_names_are_refused_everywhere() {
    let srv = Server::start();
    let mut c = srv.conn();
    // the issue's case: the hash of {"a":1,"a":2} was the hash of {"a":2}
    let h = cmd(&mut c, &["CACHE.HASH", "PAYLOAD", r#"{"a":1,"a":2}"#]);
    assert!(h.is_err(), "CACHE.HASH of a duplicate name must be refused, got {h:?}");
    for dup in [r#"{"a":1,"a":2}"#, r#"{"a":1,"\u0061":2}"#, r#"{"x":[{"b":1,"c":2,"b":3}]}"#] {
        let text = refused_everywhere(&mut c, dup, dup);
        assert!(text.contains("duplicate"), "{dup}: {text}");
    }
    // the same name in different objects is not a duplicate
    accepted_everywhere(&mut c, r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#, "one name in sibling objects");
}

#[test]
fn invalid_utf8_and_bad_syntax_read_the_same_everywhere() {
    let srv = Server::start();
    let mut c = srv.conn();
    let text = refused_everywhere(&mut c, r#"{"a":[1,2}"#, "a bracket mismatch");
    assert!(text.starts_with("ERR <arg> is not valid JSON"), "{text}");
    refused_everywhere(&mut c, "{\"a\":\"\u{1}\"}", "a raw control character");
    // invalid UTF-8 through a raw command (the helpers take &str)
    let bad = b"{\"a\":\"\xff\"}".to_vec();
    let e = redis::cmd("CACHE.HASH").arg("PAYLOAD").arg(&bad).query::<Value>(&mut c).unwrap_err();
    assert!(error_text(&e).contains("UTF-8"), "{}", error_text(&e));
    let e = redis::cmd("JOB.CREATE").arg("q").arg("PAYLOAD").arg(&bad).query::<Value>(&mut c).unwrap_err();
    assert!(error_text(&e).contains("UTF-8"), "{}", error_text(&e));
}

#[test]
fn the_size_limit_applies_to_every_json_input() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.max-payload-bytes", "100"]);
    let fits = format!("{{\"t\":\"{}\"}}", "x".repeat(92));
    assert_eq!(fits.len(), 100);
    accepted_everywhere(&mut c, &fits, "100 bytes under max-payload-bytes 100");
    let over = format!("{{\"t\":\"{}\"}}", "x".repeat(93));
    let text = refused_everywhere(&mut c, &over, "101 bytes");
    assert!(text.starts_with("TOOBIG <arg> is 101 bytes"), "{text}");
}

/// The done event's JSON from the events stream, for job `id`.
fn done_event(c: &mut Connection, q: &str, id: &str) -> serde_json::Value {
    let entries = array(&ok(c, &["XRANGE", &format!("aijob:{{{q}}}:events"), "-", "+"]));
    entries
        .iter()
        .map(|e| {
            let fields = array(&array(e)[1]);
            let data = fields.chunks(2).find(|p| s(&p[0]) == "data").map(|p| s(&p[1])).expect("a data field");
            serde_json::from_str::<serde_json::Value>(&data).expect("event JSON")
        })
        .find(|v| v["type"] == "done" && v["id"] == id)
        .expect("a done event")
}

fn finish_with(c: &mut Connection, q: &str, result: &str) -> String {
    let id = create(c, q, &[]);
    let (_, token) = claim(c, q, &[]).expect("claimable");
    ok(c, &["JOB.UPDATE", q, &id, "TOKEN", &token, "STATUS", "done", "RESULT", result]);
    id
}

#[test]
fn a_large_result_is_carried_by_reference_in_events() {
    let srv = Server::start();
    let mut c = srv.conn();
    // default threshold 4096 bytes: at it inline, one past it by reference
    let at = format!("{{\"t\":\"{}\"}}", "x".repeat(4096 - 8));
    let past = format!("{{\"t\":\"{}\"}}", "x".repeat(4096 - 7));
    let id = finish_with(&mut c, "q", &at);
    let ev = done_event(&mut c, "q", &id);
    assert_eq!(ev["result"]["t"].as_str().map(str::len), Some(4088), "inline at the threshold");
    assert_eq!(ev["result_bytes"], 4096);
    let id = finish_with(&mut c, "q", &past);
    let ev = done_event(&mut c, "q", &id);
    assert!(ev.get("result").is_none(), "no inline result past the threshold: {ev}");
    assert_eq!(ev["result_bytes"], 4097);
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &id]), "result"), past, "JOB.GET has it whole");

    // a 2 MB result: the published message stays small
    let big = format!("{{\"t\":\"{}\"}}", "y".repeat(2 * 1024 * 1024));
    let id = create(&mut c, "q", &[]);
    let (_, token) = claim(&mut c, "q", &[]).expect("claimable");
    let mut sub = srv.conn();
    let mut ps = sub.as_pubsub();
    ps.subscribe(format!("aijob:{{q}}:job:{id}")).unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ok(&mut c, &["JOB.UPDATE", "q", &id, "TOKEN", &token, "STATUS", "done", "RESULT", &big]);
    let msg: String = ps.get_message().unwrap().get_payload().unwrap();
    assert!(msg.len() < 1024, "published {} bytes", msg.len());
    let ev: serde_json::Value = serde_json::from_str(&msg).unwrap();
    assert_eq!((ev["type"].as_str(), ev["result_bytes"].as_u64()), (Some("done"), Some(big.len() as u64)));
    drop(ps);

    // the threshold is a config; 0 never inlines
    ok(&mut c, &["CONFIG", "SET", "aijob.event-result-max-bytes", "0"]);
    let id = finish_with(&mut c, "q", "{}");
    let ev = done_event(&mut c, "q", &id);
    assert!(ev.get("result").is_none() && ev["result_bytes"] == 2, "{ev}");
}
