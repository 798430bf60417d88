//! Flows (docs/flows.md) against a real redis-server: jobs that wait for other jobs with
//! AFTER, are released in the step their last parent finishes, fail or run on a failed
//! parent, and get their parents' results with their claim.

mod common;

use std::time::Duration;

use common::*;

/// Creates job `id` in `q` after `parents` (none: a plain job), with `extra` options.
fn mk(c: &mut Connection, q: &str, id: &str, parents: &[&str], extra: &[&str]) -> String {
    let mut w = vec!["JOB.CREATE", q, "PAYLOAD", r#"{"step":1}"#, "ID", id];
    if !parents.is_empty() {
        w.push("AFTER");
        w.extend_from_slice(parents);
    }
    w.extend_from_slice(extra);
    s(&ok(c, &w))
}

/// Claims the next job of `q`, which must be `id`: the claimed record.
fn take(c: &mut Connection, q: &str, id: &str) -> Value {
    let got = array(&ok(c, &["JOB.CLAIM", q]));
    let job = got.first().unwrap_or_else(|| panic!("{id} should be claimable")).clone();
    assert_eq!(fs(&job, "id"), id);
    job
}

fn done(c: &mut Connection, q: &str, job: &Value, result: &str) {
    let (id, token) = (fs(job, "id"), fs(job, "token"));
    assert_eq!(s(&ok(c, &["JOB.UPDATE", q, &id, "TOKEN", &token, "STATUS", "done", "RESULT", result])), "done");
}

fn fail(c: &mut Connection, q: &str, job: &Value) {
    let (id, token) = (fs(job, "id"), fs(job, "token"));
    let words = ["JOB.UPDATE", q, &id, "TOKEN", &token, "STATUS", "error", "ERROR", "model refused", "NORETRY"];
    assert_eq!(s(&ok(c, &words)), "error");
}

fn run(c: &mut Connection, q: &str, id: &str, result: &str) -> Value {
    let job = take(c, q, id);
    done(c, q, &job, result);
    job
}

fn status(c: &mut Connection, q: &str, id: &str) -> String {
    fs(&ok(c, &["JOB.GET", q, id]), "status")
}

fn field_of(c: &mut Connection, q: &str, id: &str, name: &str) -> Option<Value> {
    field(&ok(c, &["JOB.GET", q, id]), name)
}

/// A claim's `inputs` as (id, status, result or error).
fn inputs(job: &Value) -> Vec<(String, String, Option<String>)> {
    let list = field(job, "inputs").unwrap_or_else(|| panic!("no inputs in {job:?}"));
    array(&list)
        .iter()
        .map(|e| (fs(e, "id"), fs(e, "status"), field(e, "result").or_else(|| field(e, "error")).map(|v| s(&v))))
        .collect()
}

fn input(id: &str, status: &str, value: Option<&str>) -> (String, String, Option<String>) {
    (id.to_string(), status.to_string(), value.map(str::to_string))
}

#[test]
fn a_chain_runs_step_by_step_and_each_step_gets_its_parents_result() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &[]);
    mk(&mut c, "q", "c", &["b"], &[]);
    assert_eq!(status(&mut c, "q", "b"), "waiting");
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", "b"]), "waiting_on"), 1);
    assert_eq!(array(&field_of(&mut c, "q", "c", "parents").unwrap()).iter().map(s).collect::<Vec<_>>(), ["b"]);
    assert_eq!(stat(&mut c, "q", "waiting"), 2);
    assert_eq!(stat(&mut c, "q", "queued"), 1);
    let a = take(&mut c, "q", "a");
    assert!(field(&a, "inputs").is_none(), "a job without AFTER has no inputs");
    assert!(array(&ok(&mut c, &["JOB.CLAIM", "q"])).is_empty(), "waiting jobs are never claimed");
    done(&mut c, "q", &a, r#"{"text":"draft"}"#);
    assert_eq!(status(&mut c, "q", "b"), "queued");
    let b = take(&mut c, "q", "b");
    assert_eq!(inputs(&b), [input("a", "done", Some(r#"{"text":"draft"}"#))]);
    done(&mut c, "q", &b, r#"{"text":"better"}"#);
    let cj = take(&mut c, "q", "c");
    assert_eq!(inputs(&cj), [input("b", "done", Some(r#"{"text":"better"}"#))]);
    // the same in RESP3: inputs is an array of maps
    let mut c3 = srv.conn3();
    mk(&mut c3, "q", "d", &["c"], &[]);
    done(&mut c3, "q", &cj, r#"{"n":3}"#);
    let got = array(&ok(&mut c3, &["JOB.CLAIM", "q"]));
    let inputs_value = field(&got[0], "inputs").unwrap();
    let Value::Array(entries) = inputs_value else { panic!("{inputs_value:?}") };
    assert!(matches!(entries[0], Value::Map(_)), "{entries:?}");
    assert_eq!(inputs(&got[0]), [input("c", "done", Some(r#"{"n":3}"#))]);
}

#[test]
fn fan_out_fan_in_and_a_diamond() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "split", &[], &[]);
    for part in ["p1", "p2", "p3"] {
        mk(&mut c, "q", part, &["split"], &[]);
    }
    mk(&mut c, "q", "merge", &["p1", "p2", "p3"], &[]);
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", "split"]), "dependents"), 3);
    run(&mut c, "q", "split", r#""audio""#);
    for part in ["p1", "p2", "p3"] {
        assert_eq!(status(&mut c, "q", part), "queued", "{part}");
    }
    run(&mut c, "q", "p1", "1");
    run(&mut c, "q", "p2", "2");
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", "merge"]), "waiting_on"), 1);
    run(&mut c, "q", "p3", "3");
    let merge = take(&mut c, "q", "merge");
    assert_eq!(
        inputs(&merge),
        [input("p1", "done", Some("1")), input("p2", "done", Some("2")), input("p3", "done", Some("3"))]
    );

    // a diamond: d is released once, by the second of its parents
    mk(&mut c, "d", "a", &[], &[]);
    mk(&mut c, "d", "b", &["a"], &[]);
    mk(&mut c, "d", "c", &["a"], &[]);
    mk(&mut c, "d", "d", &["b", "c"], &[]);
    run(&mut c, "d", "a", "0");
    run(&mut c, "d", "b", "1");
    assert_eq!(status(&mut c, "d", "d"), "waiting");
    run(&mut c, "d", "c", "2");
    let d = take(&mut c, "d", "d");
    assert_eq!(inputs(&d), [input("b", "done", Some("1")), input("c", "done", Some("2"))]);
}

#[test]
fn a_failed_parent_under_fail_ends_its_descendants_three_levels_deep() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &[]);
    mk(&mut c, "q", "c", &["b"], &[]);
    mk(&mut c, "q", "d", &["c"], &[]);
    let a = take(&mut c, "q", "a");
    fail(&mut c, "q", &a);
    for (id, by) in [("b", "a"), ("c", "b"), ("d", "c")] {
        let rec = ok(&mut c, &["JOB.GET", "q", id]);
        assert_eq!(fs(&rec, "status"), "error", "{id}");
        assert_eq!(fs(&rec, "error_class"), "dependency");
        assert_eq!(fs(&rec, "failed_by"), by);
        assert_eq!(fs(&rec, "error"), format!("parent {by} ended error"));
    }
    assert_eq!(stat(&mut c, "q", "waiting"), 0);
    assert_eq!(stat(&mut c, "q", "error"), 4);
    assert_eq!(stat(&mut c, "q", "failed"), 4);
}

#[test]
fn a_failed_parent_under_run_lets_three_levels_run_with_its_error() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &["ONPARENTFAIL", "run"]);
    mk(&mut c, "q", "c", &["b"], &["ONPARENTFAIL", "RUN"]);
    mk(&mut c, "q", "d", &["c"], &["ONPARENTFAIL", "run"]);
    let a = take(&mut c, "q", "a");
    fail(&mut c, "q", &a);
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", "b"]), "on_parent_fail"), "run");
    let b = take(&mut c, "q", "b");
    assert_eq!(inputs(&b), [input("a", "error", Some("model refused"))]);
    fail(&mut c, "q", &b);
    let cj = take(&mut c, "q", "c");
    assert_eq!(inputs(&cj), [input("b", "error", Some("model refused"))]);
    fail(&mut c, "q", &cj);
    let d = take(&mut c, "q", "d");
    assert_eq!(inputs(&d), [input("c", "error", Some("model refused"))]);
}

#[test]
fn cancel_delete_and_retry_of_a_parent() {
    let srv = Server::start();
    let mut c = srv.conn();
    // cancel: the rule, as for a failure
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &[]);
    mk(&mut c, "q", "r", &["a"], &["ONPARENTFAIL", "run"]);
    assert_eq!(int(&ok(&mut c, &["JOB.CANCEL", "q", "a"])), 1);
    assert_eq!(status(&mut c, "q", "b"), "error");
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "q", "b"]), "error"), "parent a ended canceled");
    assert_eq!(status(&mut c, "q", "r"), "queued");

    // retry: what the parent's failure ended waits again, down the cascade
    mk(&mut c, "t", "a", &[], &[]);
    mk(&mut c, "t", "b", &["a"], &[]);
    mk(&mut c, "t", "c", &["b"], &[]);
    let a = take(&mut c, "t", "a");
    fail(&mut c, "t", &a);
    assert_eq!(status(&mut c, "t", "c"), "error");
    assert_eq!(int(&ok(&mut c, &["JOB.RETRY", "t", "a"])), 1);
    for id in ["b", "c"] {
        let rec = ok(&mut c, &["JOB.GET", "t", id]);
        assert_eq!(fs(&rec, "status"), "waiting", "{id}");
        assert_eq!(fi(&rec, "waiting_on"), 1);
        assert!(field(&rec, "failed_by").is_none() && field(&rec, "error_class").is_none());
    }
    run(&mut c, "t", "a", "1");
    run(&mut c, "t", "b", "2");
    let cj = take(&mut c, "t", "c");
    assert_eq!(inputs(&cj), [input("b", "done", Some("2"))]);

    // delete: under fail the waiting child ends, under run it runs without the input
    mk(&mut c, "u", "a", &[], &[]);
    mk(&mut c, "u", "b", &["a"], &[]);
    mk(&mut c, "u", "r", &["a"], &["ONPARENTFAIL", "run"]);
    assert_eq!(int(&ok(&mut c, &["JOB.DELETE", "u", "a"])), 1);
    assert_eq!(fs(&ok(&mut c, &["JOB.GET", "u", "b"]), "error"), "parent a was deleted");
    let r = take(&mut c, "u", "r");
    assert_eq!(inputs(&r), [input("a", "deleted", None)]);
    assert!(!keys(&mut c).iter().any(|k| k.contains("dependents:a") && k.contains("{u}")), "{:?}", keys(&mut c));
}

#[test]
fn a_parent_finished_before_its_child_is_made() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "ok", &[], &[]);
    run(&mut c, "q", "ok", r#""yes""#);
    mk(&mut c, "q", "after-ok", &["ok"], &[]);
    assert_eq!(status(&mut c, "q", "after-ok"), "queued");
    let j = take(&mut c, "q", "after-ok");
    assert_eq!(inputs(&j), [input("ok", "done", Some(r#""yes""#))]);
    mk(&mut c, "r", "bad", &[], &[]);
    let bad = take(&mut c, "r", "bad");
    fail(&mut c, "r", &bad);
    mk(&mut c, "r", "after-bad", &["bad"], &[]);
    let rec = ok(&mut c, &["JOB.GET", "r", "after-bad"]);
    assert_eq!(fs(&rec, "status"), "error", "made and ended at once, visible");
    assert_eq!(fs(&rec, "error_class"), "dependency");
    mk(&mut c, "r", "after-bad-run", &["bad"], &["ONPARENTFAIL", "run"]);
    let j = take(&mut c, "r", "after-bad-run");
    assert_eq!(inputs(&j), [input("bad", "error", Some("model refused"))]);
}

#[test]
fn a_parent_is_kept_past_its_retention_until_its_child_ended() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &["RETENTION", "100"]);
    mk(&mut c, "q", "b", &["a"], &[]);
    run(&mut c, "q", "a", r#""kept""#);
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", "a"]), "ttl"), -1, "no end while b has not ended");
    assert_eq!(int(&ok(&mut c, &["PTTL", "aijob:{q}:job:a"])), -1);
    wait_ticks(&mut c, 5);
    assert_eq!(status(&mut c, "q", "a"), "done", "kept past its 100 ms");
    let b = take(&mut c, "q", "b");
    // b fails and retries: a is still kept, so the next attempt sees its input again
    let token = fs(&b, "token");
    ok(&mut c, &["JOB.UPDATE", "q", "b", "TOKEN", &token, "STATUS", "error", "ERROR", "x", "DELAY", "0"]);
    wait_until(Duration::from_secs(5), "b queued again", || (status(&mut c, "q", "b") == "queued").then_some(()));
    let b = take(&mut c, "q", "b");
    assert_eq!(inputs(&b), [input("a", "done", Some(r#""kept""#))]);
    done(&mut c, "q", &b, "1");
    wait_until(Duration::from_secs(5), "a to go 100 ms after b ended", || {
        ok(&mut c, &["JOB.GET", "q", "a"]).eq(&Value::Nil).then_some(())
    });
    assert!(!keys(&mut c).iter().any(|k| k.contains("dependents:a")));
    assert_eq!(array(&field_of(&mut c, "q", "b", "parents").unwrap()).len(), 1);
}

#[test]
fn waiting_jobs_are_listed_counted_and_announced() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &[]);
    let page = array(&ok(&mut c, &["JOB.LIST", "q", "STATUS", "waiting"]));
    let listed: Vec<String> = array(&page[1]).iter().map(|r| fs(r, "id")).collect();
    assert_eq!(listed, ["b"]);
    assert_eq!(stat(&mut c, "q", "waiting"), 1);
    run(&mut c, "q", "a", "1");
    let entries = array(&ok(&mut c, &["XRANGE", "aijob:{q}:events", "-", "+"]));
    let events: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let f = array(&array(e)[1]);
            let doc: serde_json::Value = serde_json::from_str(&s(&f[5])).unwrap();
            (doc["id"].as_str().unwrap().to_string(), format!("{}/{}", doc["type"], doc["status"]).replace('"', ""))
        })
        .collect();
    let of_b: Vec<&str> = events.iter().filter(|(id, _)| id == "b").map(|(_, t)| t.as_str()).collect();
    assert_eq!(of_b, ["created/waiting", "queued/queued"]);
    let pos = |want: &str| events.iter().position(|(id, t)| format!("{id} {t}") == want).unwrap();
    assert!(pos("a done/done") < pos("b queued/queued"), "{events:?}");
    // a cascade announces error with class dependency
    mk(&mut c, "q", "x", &[], &[]);
    mk(&mut c, "q", "y", &["x"], &[]);
    ok(&mut c, &["JOB.CANCEL", "q", "x"]);
    let last = array(&ok(&mut c, &["XREVRANGE", "aijob:{q}:events", "+", "-", "COUNT", "1"]));
    let f = array(&array(&last[0])[1]);
    let doc: serde_json::Value = serde_json::from_str(&s(&f[5])).unwrap();
    assert_eq!((doc["id"].as_str(), doc["type"].as_str()), (Some("y"), Some("error")));
    assert_eq!(doc["error_class"], "dependency");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    ok(&mut c, &["CONFIG", "SET", "aijob.flow-max-parents", "2"]);
    let before = digest(&mut c);
    let many = ["JOB.CREATE", "q", "PAYLOAD", "{}", "AFTER", "a", "b", "c"];
    for (words, want) in [
        (&["JOB.CREATE", "q", "PAYLOAD", "{}", "AFTER"][..], "ERR AFTER needs at least one id"),
        (&["JOB.CREATE", "q", "PAYLOAD", "{}", "AFTER", "GROUP", "g"][..], "ERR AFTER needs at least one id"),
        (
            &["JOB.CREATE", "q", "PAYLOAD", "{}", "AFTER", "a", "nope"][..],
            "NOTFOUND parent nope is not a job of queue q",
        ),
        (&many[..], "ERR AFTER names 3 parents, the most aijob.flow-max-parents allows is 2"),
        (
            &["JOB.CREATE", "q", "PAYLOAD", "{}", "AFTER", "a", "ONPARENTFAIL", "maybe"][..],
            "ERR ONPARENTFAIL must be fail or run",
        ),
        (&["JOB.CREATE", "q", "PAYLOAD", "{}", "ONPARENTFAIL", "run"][..], "ERR ONPARENTFAIL needs AFTER"),
        (&["JOB.CREATE", "q", "PAYLOAD", "{}", "ID", "s", "AFTER", "s"][..], "ERR AFTER names the job s itself"),
        (&["JOB.CREATE", "other", "PAYLOAD", "{}", "AFTER", "a"][..], "NOTFOUND parent a is not a job of queue other"),
        (&["CACHE.GETORQUEUE", "q", "PAYLOAD", "{}", "AFTER", "a"][..], "ERR AFTER is not allowed on CACHE.GETORQUEUE"),
        (
            &["SCHEDULE.SET", "q", "s", "EVERY", "1000", "PAYLOAD", "{}", "AFTER", "a"][..],
            "ERR AFTER is not allowed on SCHEDULE.SET",
        ),
    ] {
        let e = err(&mut c, words);
        assert!(e.starts_with(want), "{words:?}: {e}");
    }
    assert_eq!(digest(&mut c), before, "a refused command changed the data");
}

#[test]
fn the_dependents_cap_refuses_the_next_child() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.flow-max-dependents", "2"]);
    mk(&mut c, "q", "p", &[], &[]);
    mk(&mut c, "q", "c1", &["p"], &[]);
    mk(&mut c, "q", "c2", &["p"], &[]);
    let before = digest(&mut c);
    let e = err(&mut c, &["JOB.CREATE", "q", "PAYLOAD", "{}", "AFTER", "p"]);
    assert_eq!(e, "ERR AFTER p has 2 dependents, the most aijob.flow-max-dependents allows");
    assert_eq!(digest(&mut c), before);
    assert!(err(&mut c, &["CONFIG", "SET", "aijob.flow-max-dependents", "0"]).starts_with("ERR"));
}

#[test]
fn claims_by_next_and_by_a_woken_block_carry_inputs() {
    let srv = Server::start();
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &[]);
    mk(&mut c, "q", "c", &["b"], &[]);
    let a = take(&mut c, "q", "a");
    // the finish releases b; NEXT claims it in the same command
    let token = fs(&a, "token");
    let reply = array(&ok(&mut c, &["JOB.UPDATE", "q", "a", "TOKEN", &token, "STATUS", "done", "RESULT", "7", "NEXT"]));
    let next = array(&reply[1]);
    assert_eq!(fs(&next[0], "id"), "b");
    assert_eq!(inputs(&next[0]), [input("a", "done", Some("7"))]);
    // a claim blocked on the queue is woken by the release of c
    let url = srv.url();
    let waiter = std::thread::spawn(move || {
        let mut w = redis::Client::open(url).unwrap().get_connection().unwrap();
        array(&ok(&mut w, &["JOB.CLAIM", "q", "BLOCK", "10000"]))
    });
    wait_until(Duration::from_secs(5), "the claim to block", || {
        (info_int(&mut c, "clients", "blocked_clients") == Some(1)).then_some(())
    });
    done(&mut c, "q", &next[0], "8");
    let got = waiter.join().unwrap();
    assert_eq!(fs(&got[0], "id"), "c");
    assert_eq!(inputs(&got[0]), [input("b", "done", Some("8"))]);
}

#[test]
fn inputs_past_the_payload_limit_are_announced_by_size_and_read_with_job_get() {
    let srv = Server::start();
    let mut c = srv.conn();
    ok(&mut c, &["CONFIG", "SET", "aijob.max-payload-bytes", "100"]);
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &[], &[]);
    mk(&mut c, "q", "join", &["a", "b"], &[]);
    let (first, second) = (format!("\"{}\"", "a".repeat(60)), format!("\"{}\"", "b".repeat(60)));
    run(&mut c, "q", "a", &first);
    run(&mut c, "q", "b", &second);
    let join = take(&mut c, "q", "join");
    assert_eq!(inputs(&join)[0], input("a", "done", Some(&first)));
    // 62 + 62 bytes of results pass the 100 one claimed job may carry: b's is left out
    let list = array(&field(&join, "inputs").unwrap());
    assert_eq!((fs(&list[1], "status"), field(&list[1], "result")), ("done".to_string(), None));
    assert_eq!(fi(&list[1], "result_bytes"), 62);
    // the parent is kept while join runs: its result is there to read
    assert_eq!(field_of(&mut c, "q", "b", "result").map(|v| s(&v)), Some(second));
}

#[test]
fn sigkill_with_appendfsync_always_mid_flow_loses_no_link() {
    let dir = TempDir::new("flows-crash");
    let opts = Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always();
    let mut srv = Server::start_with(opts.clone());
    let mut c = srv.conn();
    mk(&mut c, "q", "a", &[], &[]);
    mk(&mut c, "q", "b", &["a"], &[]);
    mk(&mut c, "q", "c", &["a", "b"], &[]);
    let a = take(&mut c, "q", "a");
    let port = srv.port;
    srv.kill();
    drop(c);
    let again = Server::start_with(Opts { port: Some(port), ..opts });
    let mut c = again.conn();
    assert_eq!(status(&mut c, "q", "b"), "waiting");
    assert_eq!(fi(&ok(&mut c, &["JOB.GET", "q", "c"]), "waiting_on"), 2);
    done(&mut c, "q", &a, "1");
    assert_eq!(status(&mut c, "q", "b"), "queued", "released by its parent after the restart");
    run(&mut c, "q", "b", "2");
    let cj = take(&mut c, "q", "c");
    assert_eq!(inputs(&cj), [input("a", "done", Some("1")), input("b", "done", Some("2"))]);
}

/// A flow with every move: releases, a cascade, a retry that brings jobs back, a deletion.
fn flow_workload(c: &mut Connection) {
    mk(c, "f", "a", &[], &[]);
    mk(c, "f", "b", &["a"], &[]);
    mk(c, "f", "c", &["a"], &["ONPARENTFAIL", "run"]);
    mk(c, "f", "d", &["b", "c"], &[]);
    mk(c, "f", "e", &["d"], &["DELAY", "3600000"]);
    let a = take(c, "f", "a");
    fail(c, "f", &a);
    ok(c, &["JOB.RETRY", "f", "a"]);
    run(c, "f", "a", "1");
    run(c, "f", "b", "2");
    run(c, "f", "c", "3");
    run(c, "f", "d", "4");
    mk(c, "f", "x", &[], &[]);
    mk(c, "f", "y", &["x"], &[]);
    ok(c, &["JOB.DELETE", "f", "x"]);
}

#[test]
fn a_replica_and_an_aof_reload_hold_the_masters_digest_after_a_flow() {
    let dir = TempDir::new("flows-aof");
    let opts = Opts { dir: Some(dir.0.clone()), ..Default::default() }.aof_always();
    let mut master = Server::start_with(opts.clone());
    let replica = Server::start();
    replicate(&master, &replica);
    let mut m = master.conn();
    flow_workload(&mut m);
    assert_eq!(status(&mut m, "f", "e"), "delayed");
    assert_eq!(status(&mut m, "f", "y"), "error");
    let (master_digest, replica_digest) = digests_at_one_offset(&master, &replica);
    assert_eq!(replica_digest, master_digest, "the replica holds the master's data");
    let mut r = replica.conn();
    assert_eq!(keys(&mut r), keys(&mut m));
    wait_quiet(&mut m);
    let before = digest(&mut m);
    let port = master.port;
    master.kill();
    drop(m);
    let again = Server::start_with(Opts { port: Some(port), ..opts });
    let mut c = again.conn();
    assert_eq!(digest(&mut c), before, "AOF reload differs");
}
