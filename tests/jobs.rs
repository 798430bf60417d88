//! Job records against a real redis-server with the module (docs/jobs.md, docs/commands.md, docs/events.md, docs/configs.md).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn module_is_named_aijob_and_answers() {
    let srv = Server::start();
    let mut c = srv.conn();
    let list = format!("{:?}", ok(&mut c, &["MODULE", "LIST"]));
    assert!(list.contains("aijob"), "{list}");
    let info = s(&ok(&mut c, &["INFO", "aijob"]));
    assert!(info.contains("aijob_jobs_created:0"), "{info}");
}

#[test]
fn create_and_get_as_map_and_as_json() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &["PRIORITY", "high", "META", "{\"user\":7}", "MAXATTEMPTS", "5"]);
    let u = uuid_v7_ms(&id).expect("a UUIDv7 id");
    let now = int(&array(&ok(&mut c, &["TIME"]))[0]) * 1000;
    assert!((now - u).abs() < 10_000, "the id's time is now");
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!(fs(&rec, "id"), id);
    assert_eq!(fs(&rec, "queue"), "q");
    assert_eq!(fs(&rec, "status"), "queued");
    assert_eq!(fs(&rec, "priority"), "high");
    assert_eq!(fi(&rec, "attempts"), 0);
    assert_eq!(fi(&rec, "max_attempts"), 5);
    assert_eq!(fi(&rec, "ttl"), -1);
    assert!(matches!(field(&rec, "attempts"), Some(Value::Int(0))), "numbers are integers");
    assert!(field(&rec, "result").is_none(), "unset fields are omitted");
    assert!(field(&rec, "_token").is_none() && field(&rec, "_seq").is_none(), "internal fields stay internal");
    let doc: serde_json::Value = serde_json::from_str(&s(&ok(&mut c, &["JOB.GET", "q", &id, "JSON"]))).unwrap();
    assert_eq!(doc["payload"]["n"], 1, "payload embedded as JSON");
    assert_eq!(doc["meta"]["user"], 7);
    assert_eq!(doc["attempts"], 0);
    assert_eq!(doc["ttl"], -1);
    assert_eq!(ok(&mut c, &["JOB.GET", "q", "nope"]), Value::Nil);
    // RESP3 clients get a real map
    let mut c3 = srv.conn3();
    assert!(matches!(ok(&mut c3, &["JOB.GET", "q", &id]), Value::Map(_)));
    assert!(matches!(ok(&mut c3, &["QUEUE.STATS", "q"]), Value::Map(_)));
}

/// The ms timestamp of a UUIDv7 string.
fn uuid_v7_ms(id: &str) -> Option<i64> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if id.len() != 36 || hex.len() != 32 || &hex[12..13] != "7" {
        return None;
    }
    i64::from_str_radix(&hex[..12], 16).ok()
}

#[test]
fn ids_are_time_ordered_and_own_ids_work() {
    let srv = Server::start();
    let mut c = srv.conn();
    let a = create(&mut c, "q", &[]);
    std::thread::sleep(Duration::from_millis(2));
    let b = create(&mut c, "q", &[]);
    assert!(a < b);
    assert_eq!(create(&mut c, "q", &["ID", "order:42"]), "order:42");
    assert!(err(&mut c, &["JOB.CREATE", "q", "PAYLOAD", "{}", "ID", "order:42"]).starts_with("EXISTS"));
}

#[test]
fn every_key_is_under_the_queue_tag_and_declared() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "my.q", &["HASH", &"a".repeat(64), "GROUP", "t1", "DEADLINE", "60000"]);
    create(&mut c, "my.q", &["DELAY", "100000"]);
    let (cid, tok) = claim(&mut c, "my.q", &[]).unwrap();
    assert_eq!(cid, id);
    ok(&mut c, &["JOB.UPDATE", "my.q", &id, "TOKEN", &tok, "STATUS", "done", "RESULT", "{}"]);
    for k in keys(&mut c) {
        assert!(k.starts_with("aijob:{my.q}:"), "{k}");
    }
    for line in [
        vec!["JOB.CREATE", "my.q", "PAYLOAD", "{}"],
        vec!["JOB.GET", "my.q", "x"],
        vec!["JOB.CLAIM", "my.q"],
        vec!["JOB.LIST", "my.q"],
        vec!["QUEUE.STATS", "my.q"],
    ] {
        let mut w = vec!["COMMAND", "GETKEYS"];
        w.extend(line);
        let got: Vec<String> = array(&ok(&mut c, &w)).iter().map(s).collect();
        assert_eq!(got, vec!["my.q"]);
    }
}

#[test]
fn bad_input_answers_its_error_and_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    let queued = create(&mut c, "q", &[]);
    let before = digest(&mut c);
    ok(&mut c, &["CONFIG", "SET", "aijob.max-payload-bytes", "2000"]);
    let big = format!("\"{}\"", "x".repeat(3000));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["JOB.CREATE", "q"], "ERR wrong number of arguments"),
        (vec!["JOB.CREATE", "q", "PAYLOAD"], "ERR wrong number of arguments"),
        (vec!["JOB.CREATE", "bad{q}", "PAYLOAD", "{}"], "ERR Q "),
        (vec!["JOB.CREATE", "", "PAYLOAD", "{}"], "ERR Q "),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{x"], "ERR PAYLOAD"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "DELAY", "-5"], "ERR DELAY"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "DELAY", "1.5"], "ERR DELAY"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "DELAY", "abc"], "ERR DELAY"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "AT", "-1"], "ERR AT"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "PRIORITY", "urgent"], "ERR PRIORITY"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "META", "[1]"], "ERR META"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "META", "{bad"], "ERR META"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "BOGUS", "1"], "ERR unknown option 'BOGUS'"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "ID", "a b"], "ERR ID"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "HASH", "xyz"], "ERR HASH"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "MAXATTEMPTS", "0"], "ERR MAXATTEMPTS"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "RETENTION", "-1"], "ERR RETENTION"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "DEADLINE", "x"], "ERR DEADLINE"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", &big], "TOOBIG PAYLOAD"),
        (vec!["JOB.CREATE", "q", "PAYLOAD", "{}", "ID", &queued], "EXISTS"),
        (vec!["JOB.GET", "q"], "ERR wrong number of arguments"),
        (vec!["JOB.GET", "q", &queued, "XML"], "ERR unknown option"),
        (vec!["JOB.UPDATE", "q", "nosuch", "PERCENT", "5"], "NOTFOUND"),
        (vec!["JOB.UPDATE", "q", &queued, "STATUS", "done"], "ERR RESULT"),
        (vec!["JOB.UPDATE", "q", &queued, "STATUS", "finished"], "ERR STATUS"),
        (vec!["JOB.UPDATE", "q", &queued, "STATUS", "queued"], "ERR STATUS"),
        (vec!["JOB.UPDATE", "q", &queued, "PERCENT", "101"], "ERR PERCENT"),
        (vec!["JOB.UPDATE", "q", &queued, "PERCENT", "-1"], "ERR PERCENT"),
        (vec!["JOB.UPDATE", "q", &queued, "STATUS", "done", "RESULT", "{x"], "ERR RESULT"),
        (vec!["JOB.UPDATE", "q", &queued, "STATUS", "done", "RESULT", &big], "TOOBIG RESULT"),
        (vec!["JOB.UPDATE", "q", &queued, "STATUS", "done", "RESULT", "1"], "BADSTATE"),
        (vec!["JOB.UPDATE", "q", &queued, "PROGRESS", "x"], "BADSTATE"),
        (vec!["JOB.UPDATE", "q", &queued, "META", "3"], "ERR META"),
        (vec!["JOB.UPDATE", "q", &queued, "ERROR", "e"], "ERR ERROR"),
        (vec!["JOB.CANCEL", "q", "nosuch"], "NOTFOUND"),
        (vec!["JOB.CANCEL", "q", &queued, "now"], "ERR unknown option"),
        (vec!["JOB.LIST", "q", "STATUS", "nope"], "ERR STATUS"),
        (vec!["JOB.LIST", "q", "COUNT", "0"], "ERR COUNT"),
        (vec!["JOB.LIST", "q", "CURSOR", "-1"], "ERR CURSOR"),
        (vec!["QUEUE.STATS"], "ERR wrong number of arguments"),
        (vec!["QUEUE.STATS", "q", "extra"], "ERR unknown option"),
        (vec!["QUEUE.PURGE", "q", "STATUS", "x"], "ERR STATUS"),
    ];
    ok(&mut c, &["CONFIG", "SET", "aijob.max-payload-bytes", "2000"]);
    for (words, expected) in &cases {
        let e = err(&mut c, words);
        assert!(e.starts_with(expected), "{words:?}: got '{e}', expected '{expected}...'");
    }
    assert_eq!(digest(&mut c), before, "refused commands changed the data");
    ok(&mut c, &["CONFIG", "SET", "aijob.max-payload-bytes", "16777216"]);
}

#[test]
fn wrong_type_keys_answer_wrongtype_and_the_server_lives() {
    let mut srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &[]);
    ok(&mut c, &["SET", "aijob:{q}:s:queued", "oops"]);
    ok(&mut c, &["SET", &format!("aijob:{{q}}:job:{id}"), "oops"]);
    ok(&mut c, &["SET", "aijob:{w}:meta", "oops"]);
    let before = digest(&mut c);
    for words in [
        vec!["JOB.CREATE", "q", "PAYLOAD", "{}"],
        vec!["JOB.GET", "q", &id],
        vec!["JOB.CANCEL", "q", &id],
        vec!["JOB.CLAIM", "w"],
        vec!["JOB.CREATE", "w", "PAYLOAD", "{}"],
        vec!["QUEUE.STATS", "w"],
        vec!["JOB.LIST", "q"],
    ] {
        let e = err(&mut c, &words);
        assert!(e.starts_with("WRONGTYPE"), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before);
    assert!(srv.is_alive());
    // a record edited by hand into nonsense is an error, not a crash
    ok(&mut c, &["DEL", &format!("aijob:{{q}}:job:{id}")]);
    ok(&mut c, &["HSET", &format!("aijob:{{q}}:job:{id}"), "status", "weird", "priority", "normal"]);
    assert!(err(&mut c, &["JOB.CANCEL", "q", &id]).starts_with("ERR corrupt"));
    assert!(srv.is_alive());
}

#[test]
fn app_workers_move_jobs_with_job_update() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &["MAXATTEMPTS", "1"]);
    assert_eq!(s(&ok(&mut c, &["JOB.UPDATE", "q", &id, "STATUS", "running"])), "running");
    assert_eq!(stat(&mut c, "q", "running"), 1);
    ok(&mut c, &["JOB.UPDATE", "q", &id, "PROGRESS", "reading the PDF", "PERCENT", "40", "META", "{\"pages\":3}"]);
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!(fs(&rec, "progress"), "reading the PDF");
    assert_eq!(fi(&rec, "percent"), 40);
    assert_eq!(fi(&rec, "attempts"), 1);
    assert!(fi(&rec, "started_at") > 0);
    assert_eq!(s(&ok(&mut c, &["JOB.UPDATE", "q", &id, "STATUS", "done", "RESULT", "{\"score\":85}"])), "done");
    let rec = ok(&mut c, &["JOB.GET", "q", &id]);
    assert_eq!(fs(&rec, "result"), "{\"score\":85}");
    assert!(fi(&rec, "finished_at") >= fi(&rec, "started_at"));
    assert!(fi(&rec, "ttl") > 3_500_000, "default retention one hour");
    let e = err(&mut c, &["JOB.UPDATE", "q", &id, "STATUS", "error", "ERROR", "late"]);
    assert!(e.starts_with("BADSTATE") && e.contains("done"), "{e}");
    // error without attempts left ends the job
    let id2 = create(&mut c, "q", &["MAXATTEMPTS", "1"]);
    ok(&mut c, &["JOB.UPDATE", "q", &id2, "STATUS", "running"]);
    assert_eq!(
        s(&ok(
            &mut c,
            &["JOB.UPDATE", "q", &id2, "STATUS", "error", "ERROR", "timeout", "CLASS", "Faraday::TimeoutError"]
        )),
        "error"
    );
    let rec = ok(&mut c, &["JOB.GET", "q", &id2]);
    assert_eq!(fs(&rec, "error_class"), "Faraday::TimeoutError");
    assert_eq!(stat(&mut c, "q", "failed"), 1);
    assert_eq!(stat(&mut c, "q", "completed"), 1);
}

#[test]
fn cancel_and_delete() {
    let srv = Server::start();
    let mut c = srv.conn();
    let a = create(&mut c, "q", &["GROUP", "g1"]);
    let b = create(&mut c, "q", &["DELAY", "60000"]);
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "q", &a])), 1);
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "q", &a])), 0);
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &a]), "status"), "canceled");
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "q", &b])), 1);
    assert_eq!(stat(&mut c, "q", "canceled"), 2);
    assert_eq!(stat(&mut c, "q", "queued") + stat(&mut c, "q", "delayed"), 0);
    assert_eq!(int(&ok(&mut c, &["JOB.DELETE", "q", &a])), 1);
    assert_eq!(int(&ok(&mut c, &["JOB.DELETE", "q", &a])), 0);
    assert_eq!(ok(&mut c, &["JOB.GET", "q", &a]), Value::Nil);
    assert_eq!(stat(&mut c, "q", "canceled"), 1);
    let rest: Vec<String> = keys(&mut c).into_iter().filter(|k| k.contains(&a) || k.contains("g1")).collect();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn retention_expires_finished_jobs_without_ghosts() {
    let srv = Server::start();
    let mut c = srv.conn();
    let done = create(&mut c, "q", &["RETENTION", "300"]);
    let live = create(&mut c, "q", &["RETENTION", "300", "PRIORITY", "low"]);
    ok(&mut c, &["JOB.UPDATE", "q", &done, "STATUS", "running"]);
    ok(&mut c, &["JOB.UPDATE", "q", &done, "STATUS", "done", "RESULT", "1"]);
    let ttl = fi(&ok(&mut c, &["JOB.GET", "q", &done]), "ttl");
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", &live]), "ttl"), -1);
    wait_until(Duration::from_secs(3), "the finished job to expire", || {
        (ok(&mut c, &["JOB.GET", "q", &done]) == Value::Nil).then_some(())
    });
    assert_eq!(stat(&mut c, "q", "done"), 0);
    let listed = array(&array(&ok(&mut c, &["JOB.LIST", "q"]))[1]);
    assert_eq!(listed.len(), 1);
    assert_eq!(fs(&listed[0], "id"), live);
    assert!(array(&array(&ok(&mut c, &["JOB.LIST", "q", "STATUS", "done"]))[1]).is_empty());
    for k in keys(&mut c) {
        assert!(!k.contains(&done), "{k}");
        let t = s(&ok(&mut c, &["TYPE", &k]));
        if t == "zset" {
            assert_eq!(ok(&mut c, &["ZSCORE", &k, &done]), Value::Nil, "{k} holds a ghost");
        }
        if t == "hash" {
            let vals: Vec<String> = array(&ok(&mut c, &["HVALS", &k])).iter().map(s).collect();
            assert!(!vals.contains(&done), "{k} holds a ghost");
        }
    }
    // a live job never expires
    assert_eq!(int(&ok(&mut c, &["PTTL", &format!("aijob:{{q}}:job:{live}")])), -1);
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", &live]), "status"), "queued");
}

#[test]
fn list_pages_newest_first_by_status() {
    let srv = Server::start();
    let mut c = srv.conn();
    let ids: Vec<String> = (0..23).map(|_| create(&mut c, "q", &[])).collect();
    let canceled = ids[5].clone();
    ok(&mut c, &["JOB.CANCEL", "q", &canceled]);
    let mut seen = vec![];
    let mut cursor = "0".to_string();
    loop {
        let page = array(&ok(&mut c, &["JOB.LIST", "q", "CURSOR", &cursor, "COUNT", "5"]));
        cursor = s(&page[0]);
        seen.extend(array(&page[1]).iter().map(|r| fs(r, "id")));
        if cursor == "0" {
            break;
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
    let page = array(&ok(&mut c, &["JOB.LIST", "q", "STATUS", "canceled"]));
    assert_eq!(s(&page[0]), "0");
    let only: Vec<String> = array(&page[1]).iter().map(|r| fs(r, "id")).collect();
    assert_eq!(only, vec![canceled]);
}

#[test]
fn stats_hold_every_field() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "q", &["PRIORITY", "high"]);
    create(&mut c, "q", &["PRIORITY", "low"]);
    create(&mut c, "q", &["DELAY", "60000"]);
    let st = ok(&mut c, &["QUEUE.STATS", "q"]);
    let names: Vec<String> = pairs(&st).into_iter().map(|(k, _)| k).collect();
    for n in [
        "queued",
        "delayed",
        "running",
        "done",
        "error",
        "canceled",
        "queued_high",
        "queued_normal",
        "queued_low",
        "created",
        "completed",
        "failed",
        "retried",
        "hits",
        "misses",
        "coalesced",
        "oldest_queued_ms",
        "schedules",
        "groups",
        "paused",
    ] {
        assert!(names.iter().any(|x| x == n), "QUEUE.STATS lacks {n}: {names:?}");
    }
    assert_eq!((fi(&st, "queued"), fi(&st, "delayed"), fi(&st, "queued_high"), fi(&st, "queued_low")), (2, 1, 1, 1));
    assert_eq!(fi(&st, "created"), 3);
    std::thread::sleep(Duration::from_millis(30));
    assert!(stat(&mut c, "q", "oldest_queued_ms") >= 30);
    // a queue nobody used answers zeros
    let empty = ok(&mut c, &["QUEUE.STATS", "never"]);
    assert!(pairs(&empty).iter().all(|(_, v)| int(v) == 0));
}

#[test]
fn events_are_published_in_order_and_streamed() {
    let srv = Server::start();
    let mut c = srv.conn();
    let id = create(&mut c, "q", &["ID", "j1"]);
    let mut sub = srv.conn();
    let mut ps = sub.as_pubsub();
    ps.subscribe("aijob:{q}:job:j1").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ok(&mut c, &["JOB.UPDATE", "q", &id, "STATUS", "running"]);
    ok(&mut c, &["JOB.UPDATE", "q", &id, "PROGRESS", "half", "PERCENT", "50"]);
    ok(&mut c, &["JOB.UPDATE", "q", &id, "STATUS", "done", "RESULT", "{\"x\":[1]}"]);
    let mut got = vec![];
    for _ in 0..3 {
        let msg = ps.get_message().unwrap();
        let payload: String = msg.get_payload().unwrap();
        got.push(serde_json::from_str::<serde_json::Value>(&payload).unwrap());
    }
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["running", "progress", "done"]);
    assert_eq!(got[1]["progress"], "half");
    assert_eq!(got[1]["percent"], 50);
    assert_eq!(got[2]["result"]["x"][0], 1, "result embedded as JSON");
    assert_eq!(got[2]["queue"], "q");
    assert!(got[2]["at"].as_i64().unwrap() > 0);
    let entries = array(&ok(&mut c, &["XRANGE", "aijob:{q}:events", "-", "+"]));
    assert_eq!(entries.len(), 4, "created, running, progress, done");
    // the stream stays capped near events-maxlen
    ok(&mut c, &["CONFIG", "SET", "aijob.events-maxlen", "100"]);
    for _ in 0..500 {
        create(&mut c, "q", &[]);
    }
    let len = int(&ok(&mut c, &["XLEN", "aijob:{q}:events"]));
    assert!((100..300).contains(&len), "{len}");
}

#[test]
fn configs_are_settable_at_load_and_at_runtime() {
    let srv =
        Server::start_with(Opts { module_args: vec!["retention-ms".into(), "5000".into()], ..Default::default() });
    let mut c = srv.conn();
    let got = array(&ok(&mut c, &["CONFIG", "GET", "aijob.retention-ms"]));
    assert_eq!(s(&got[1]), "5000");
    for (name, value) in [
        ("retention-ms", "1"),
        ("cache-ttl-ms", "1000"),
        ("lease-ms", "100"),
        ("max-attempts", "10"),
        ("backoff-base-ms", "3600000"),
        ("backoff-max-ms", "7200000"),
        ("max-payload-bytes", "2000"),
        ("events-maxlen", "50"),
    ] {
        ok(&mut c, &["CONFIG", "SET", &format!("aijob.{name}"), value]);
        assert_eq!(s(&array(&ok(&mut c, &["CONFIG", "GET", &format!("aijob.{name}")]))[1]), value);
    }
    assert!(cmd(&mut c, &["CONFIG", "SET", "aijob.max-attempts", "0"]).is_err());
    assert!(cmd(&mut c, &["CONFIG", "SET", "aijob.lease-ms", "-5"]).is_err());
    ok(&mut c, &["CONFIG", "SET", "aijob.max-attempts", "7"]);
    let id = create(&mut c, "q", &[]);
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", &id]), "max_attempts"), 7);
}

#[test]
fn info_counts_module_wide() {
    let srv = Server::start();
    let mut c = srv.conn();
    create(&mut c, "a", &[]);
    let id = create(&mut c, "b", &[]);
    ok(&mut c, &["JOB.UPDATE", "b", &id, "STATUS", "running"]);
    ok(&mut c, &["JOB.UPDATE", "b", &id, "STATUS", "done", "RESULT", "1"]);
    let info = s(&ok(&mut c, &["INFO", "aijob"]));
    assert!(info.contains("aijob_jobs_created:2"), "{info}");
    assert!(info.contains("aijob_jobs_completed:1"), "{info}");
}
