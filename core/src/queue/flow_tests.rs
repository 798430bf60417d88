//! Flows end to end against the in-memory store: every move of docs/flows.md, the
//! cascades, retention of parents, `inputs` in the claim, refusals that write nothing, and
//! the work one finish does.

use crate::error::Code;
use crate::job::Status;
use crate::queue::claim::{claim, ClaimArgs, Claimed, Open};
use crate::queue::create::{JobSpec, Start};
use crate::queue::flow::{After, OnParentFail};
use crate::queue::update::{UpdateArgs, UpdateStatus};
use crate::queue::{admin, create, read};
use crate::record::Value;
use crate::store::Store;

use super::tests::World;

fn spec(id: &str, after: &[&str], on_fail: OnParentFail) -> JobSpec {
    let mut s = JobSpec::new(br#"{"step":1}"#.to_vec());
    s.id = Some(id.as_bytes().to_vec());
    if !after.is_empty() {
        s.after = Some(After { parents: after.iter().map(|p| p.as_bytes().to_vec()).collect(), on_fail });
    }
    s
}

impl World {
    fn make(&mut self, id: &str, after: &[&str]) -> Vec<u8> {
        self.create(spec(id, after, OnParentFail::Fail))
    }

    fn make_run(&mut self, id: &str, after: &[&str]) -> Vec<u8> {
        self.create(spec(id, after, OnParentFail::Run))
    }

    fn try_make(&mut self, s: JobSpec) -> crate::Result<Vec<u8>> {
        self.with_env(|st, q, env| create::create(st, q, env, &s).map(|r| r.0))
    }

    fn take(&mut self) -> Option<Claimed> {
        let args = ClaimArgs { count: 1, ..Default::default() };
        self.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap().jobs.pop())
    }

    /// Claims the next job, which must be `id`.
    fn take_id(&mut self, id: &str) -> Claimed {
        let c = self.take().unwrap_or_else(|| panic!("{id} should be claimable"));
        assert_eq!(c.id, id.as_bytes(), "claimed {} instead of {id}", String::from_utf8_lossy(&c.id));
        c
    }

    fn finish_done(&mut self, c: &Claimed, result: &str) {
        let a = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Done),
            result: Some(result.as_bytes().to_vec()),
            ..Default::default()
        };
        self.update(&c.id, a).unwrap();
    }

    fn finish_error(&mut self, c: &Claimed) {
        let a = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Error),
            error: Some(b"model refused".to_vec()),
            noretry: true,
            ..Default::default()
        };
        self.update(&c.id, a).unwrap();
    }

    fn get(&mut self, id: &str) -> Option<Vec<(&'static str, Value)>> {
        let now = self.s.now;
        read::get(&mut self.s, &self.q, now, id.as_bytes(), vec![]).unwrap()
    }

    fn f(&mut self, id: &str, name: &str) -> Option<Value> {
        self.get(id)?.into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn st(&mut self, id: &str) -> String {
        match self.f(id, "status") {
            Some(Value::Bytes(b)) => String::from_utf8(b).unwrap(),
            other => panic!("{id} has no status: {other:?}"),
        }
    }

    fn fb(&mut self, id: &str, name: &str) -> Option<String> {
        match self.f(id, name)? {
            Value::Bytes(b) => Some(String::from_utf8(b).unwrap()),
            Value::Int(n) => Some(n.to_string()),
            other => panic!("{name} of {id} is {other:?}"),
        }
    }

    fn stat_of(&mut self, name: &str) -> i64 {
        let now = self.s.now;
        read::stats(&mut self.s, &self.q, now).unwrap().into_iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn events_of(&self, id: &str) -> Vec<(String, String)> {
        let channel = self.q.job(id.as_bytes());
        self.s
            .published
            .iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, doc)| {
                let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
                (v["type"].as_str().unwrap().to_string(), v["status"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn retry(&mut self, id: &str) -> i64 {
        self.with_env(|s, q, env| admin::retry(s, q, env, id.as_bytes()).unwrap().0)
    }

    fn cancel(&mut self, id: &str) -> i64 {
        self.with_env(|s, q, env| admin::cancel(s, q, env, id.as_bytes()).unwrap().0)
    }

    fn delete(&mut self, id: &str) -> i64 {
        self.with_env(|s, q, env| admin::delete(s, q, env, id.as_bytes()).unwrap().0)
    }

    fn expiry_score(&mut self, id: &str) -> Option<f64> {
        let k = self.q.expiry();
        self.s.zscore(&k, id.as_bytes()).unwrap()
    }
}

fn ids(v: Option<Value>) -> Vec<String> {
    match v {
        Some(Value::List(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::Bytes(b) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

/// The `inputs` of a claim as (id, status, result or error).
fn inputs(c: &Claimed) -> Vec<(String, String, Option<String>)> {
    let Some((_, Value::List(items))) = c.record.iter().find(|(n, _)| *n == "inputs").cloned() else {
        panic!("no inputs in {:?}", c.record);
    };
    items
        .into_iter()
        .map(|i| {
            let Value::Map(pairs) = i else { panic!("{i:?}") };
            let get = |n: &str| {
                pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| match v {
                    Value::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
                    other => panic!("{other:?}"),
                })
            };
            (get("id").unwrap(), get("status").unwrap(), get("result").or_else(|| get("error")))
        })
        .collect()
}

#[test]
fn a_chain_waits_is_released_by_its_parent_and_gets_its_result() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    assert_eq!(w.st("b"), "waiting");
    assert_eq!(w.fb("b", "waiting_on").as_deref(), Some("1"));
    assert_eq!(ids(w.f("b", "parents")), ["a"]);
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("1"));
    assert_eq!(w.stat_of("waiting"), 1);
    assert_eq!(w.stat_of("queued"), 1);
    assert_eq!(w.events_of("b"), [("created".to_string(), "waiting".to_string())]);
    let a = w.take_id("a");
    assert!(w.take().is_none(), "a waiting job is never claimed");
    w.finish_done(&a, r#"{"text":"draft"}"#);
    assert_eq!(w.st("b"), "queued");
    assert_eq!(w.f("b", "waiting_on"), None);
    assert_eq!(w.events_of("b").last().unwrap(), &("queued".to_string(), "queued".to_string()));
    // the parent's done event comes before the child's release
    let kinds: Vec<String> =
        w.s.published
            .iter()
            .map(|(_, d)| serde_json::from_slice::<serde_json::Value>(d).unwrap()["type"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(kinds[kinds.len() - 2..], ["done", "queued"]);
    let b = w.take_id("b");
    assert_eq!(inputs(&b), [("a".to_string(), "done".to_string(), Some(r#"{"text":"draft"}"#.to_string()))]);
    assert_eq!(w.stat_of("waiting"), 0);
}

#[test]
fn fan_in_waits_for_every_parent_and_fan_out_releases_every_child() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &[]);
    w.make("join", &["a", "b"]);
    assert_eq!(ids(w.f("join", "parents")), ["a", "b"]);
    assert_eq!(w.fb("join", "waiting_on").as_deref(), Some("2"));
    for child in ["x", "y", "z"] {
        w.make(child, &["b"]);
    }
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    assert_eq!(w.fb("join", "waiting_on").as_deref(), Some("1"));
    assert_eq!(w.st("join"), "waiting");
    let b = w.take_id("b");
    w.finish_done(&b, "2");
    for child in ["join", "x", "y", "z"] {
        assert_eq!(w.st(child), "queued", "{child}");
    }
    let j = w.take_id("join");
    assert_eq!(
        inputs(&j),
        [
            ("a".to_string(), "done".to_string(), Some("1".to_string())),
            ("b".to_string(), "done".to_string(), Some("2".to_string()))
        ]
    );
}

#[test]
fn a_failed_parent_under_fail_ends_three_levels_in_one_step() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.make("c", &["b"]);
    w.make("d", &["c"]);
    let a = w.take_id("a");
    w.finish_error(&a);
    for (id, by) in [("b", "a"), ("c", "b"), ("d", "c")] {
        assert_eq!(w.st(id), "error", "{id}");
        assert_eq!(w.fb(id, "error_class").as_deref(), Some("dependency"));
        assert_eq!(w.fb(id, "failed_by").as_deref(), Some(by));
        assert_eq!(w.fb(id, "error").unwrap(), format!("parent {by} ended error"));
        assert_eq!(w.events_of(id).last().unwrap(), &("error".to_string(), "error".to_string()));
    }
    assert_eq!(w.stat_of("failed"), 4);
    assert_eq!(w.stat_of("waiting"), 0);
    // every one of them falls under its retention: nothing is kept
    for id in ["a", "b", "c", "d"] {
        assert!(w.expiry_score(id).unwrap().is_finite(), "{id}");
    }
}

#[test]
fn a_diamond_under_fail_ends_its_last_job_once() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.make("c", &["a"]);
    w.make("d", &["b", "c"]);
    let a = w.take_id("a");
    w.finish_error(&a);
    assert_eq!(w.st("d"), "error");
    assert_eq!(w.fb("d", "failed_by").as_deref(), Some("b"));
    assert_eq!(w.events_of("d").iter().filter(|(k, _)| k == "error").count(), 1);
    assert_eq!(w.stat_of("failed"), 4);
    // a diamond that succeeds releases d once, when its second parent finishes
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.make("c", &["a"]);
    w.make("d", &["b", "c"]);
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    let b = w.take_id("b");
    w.finish_done(&b, "2");
    assert_eq!(w.st("d"), "waiting");
    let c = w.take_id("c");
    w.finish_done(&c, "3");
    assert_eq!(w.st("d"), "queued");
}

#[test]
fn a_failed_parent_under_run_releases_and_shows_its_error() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make_run("b", &["a"]);
    w.make("c", &["b"]);
    let a = w.take_id("a");
    w.finish_error(&a);
    assert_eq!(w.st("b"), "queued");
    assert_eq!(w.fb("b", "on_parent_fail").as_deref(), Some("run"));
    assert_eq!(w.st("c"), "waiting");
    let b = w.take_id("b");
    assert_eq!(inputs(&b), [("a".to_string(), "error".to_string(), Some("model refused".to_string()))]);
    // b's own failure cascades to c (fail)
    w.finish_error(&b);
    assert_eq!(w.st("c"), "error");
}

#[test]
fn cancel_and_delete_of_a_parent_apply_the_rule() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.make_run("r", &["a"]);
    w.make("c", &["b"]);
    assert_eq!(w.cancel("b"), 1);
    assert_eq!(w.st("b"), "canceled");
    assert_eq!(w.st("c"), "error");
    assert_eq!(w.fb("c", "error").unwrap(), "parent b ended canceled");
    assert_eq!(w.st("r"), "waiting", "r waits on a, not on b");
    assert_eq!(w.delete("a"), 1);
    assert_eq!(w.st("r"), "queued", "under run a deleted parent counts as finished");
    let r = w.take_id("r");
    assert_eq!(inputs(&r), [("a".to_string(), "deleted".to_string(), None)]);
    let names = w.s.key_names();
    assert!(!names.iter().any(|k| k.contains("dependents:a")), "{names:?}");
    // a deleted parent under fail
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.delete("a");
    assert_eq!(w.st("b"), "error");
    assert_eq!(w.fb("b", "error").unwrap(), "parent a was deleted");
}

#[test]
fn a_retried_parent_brings_back_what_its_failure_ended() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.make("c", &["b"]);
    w.make("d", &["c"]);
    w.make("other", &[]);
    w.make("e", &["b", "other"]);
    let a = w.take_id("a");
    w.finish_error(&a);
    assert_eq!(w.st("e"), "error");
    assert_eq!(w.retry("a"), 1);
    assert_eq!(w.st("a"), "queued");
    for (id, on) in [("b", "1"), ("c", "1"), ("d", "1"), ("e", "2")] {
        assert_eq!(w.st(id), "waiting", "{id}");
        assert_eq!(w.fb(id, "waiting_on").as_deref(), Some(on), "{id}");
        assert_eq!(w.f(id, "failed_by"), None);
        assert_eq!(w.f(id, "error_class"), None);
    }
    assert_eq!(w.events_of("d").last().unwrap(), &("waiting".to_string(), "waiting".to_string()));
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("1"));
    assert_eq!(w.fb("b", "dependents").as_deref(), Some("2"));
    let a = w.take_id("a");
    w.finish_done(&a, "ok");
    let b = w.take_id("b");
    w.finish_done(&b, "ok");
    assert_eq!(w.st("c"), "queued");
    assert_eq!(w.st("e"), "waiting", "e still waits on other");
}

#[test]
fn a_retried_run_parent_is_waited_on_again() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &[]);
    w.make_run("c", &["a", "b"]);
    let a = w.take_id("a");
    w.finish_error(&a);
    assert_eq!(w.fb("c", "waiting_on").as_deref(), Some("1"));
    w.retry("a");
    assert_eq!(w.fb("c", "waiting_on").as_deref(), Some("2"), "a is live again");
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    assert_eq!(w.st("c"), "waiting", "b is still live");
    let b = w.take_id("b");
    w.finish_done(&b, "2");
    assert_eq!(w.st("c"), "queued");
}

#[test]
fn a_parent_finished_before_its_child() {
    let mut w = World::new();
    w.make("a", &[]);
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    w.make("b", &["a"]);
    assert_eq!(w.st("b"), "queued");
    assert_eq!(w.f("b", "waiting_on"), None);
    let mut w = World::new();
    w.make("a", &[]);
    let a = w.take_id("a");
    w.finish_error(&a);
    w.make("b", &["a"]);
    assert_eq!(w.st("b"), "error");
    assert_eq!(w.fb("b", "error_class").as_deref(), Some("dependency"));
    let kinds: Vec<String> = w.events_of("b").into_iter().map(|e| e.0).collect();
    assert_eq!(kinds, ["created", "error"]);
    w.make_run("r", &["a"]);
    assert_eq!(w.st("r"), "queued");
    // a retry of the parent brings back the child made after its failure
    w.retry("a");
    assert_eq!(w.st("b"), "waiting");
}

#[test]
fn delay_and_deadline_count_from_the_release() {
    let mut w = World::new();
    w.make("a", &[]);
    let mut s = spec("b", &["a"], OnParentFail::Fail);
    s.start = Start::Delay(5_000);
    s.deadline_ms = Some(60_000);
    w.create(s);
    assert_eq!(w.f("b", "deadline_at"), None);
    assert_eq!(w.f("b", "run_at"), None);
    w.s.now += 100_000;
    w.tick();
    assert_eq!(w.st("b"), "waiting", "no clock moves a waiting job");
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    let now = w.s.now;
    assert_eq!(w.st("b"), "delayed");
    assert_eq!(w.f("b", "run_at"), Some(Value::Int(now + 5_000)));
    assert_eq!(w.f("b", "deadline_at"), Some(Value::Int(now + 60_000)));
}

#[test]
fn a_parent_is_kept_until_its_dependents_ended() {
    let mut w = World::new();
    let mut s = spec("a", &[], OnParentFail::Fail);
    s.retention_ms = Some(100);
    w.create(s);
    w.make("b", &["a"]);
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    assert_eq!(w.expiry_score("a"), Some(f64::INFINITY));
    assert_eq!(w.f("a", "ttl"), Some(Value::Int(-1)));
    w.s.now += 10_000;
    w.tick();
    assert_eq!(w.st("a"), "done", "kept past its retention while b has not ended");
    let b = w.take_id("b");
    assert_eq!(inputs(&b)[0].2.as_deref(), Some("1"));
    w.finish_done(&b, "2");
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("0"));
    let end = w.s.now + 100;
    assert_eq!(w.expiry_score("a"), Some(end as f64));
    w.s.now += 101;
    w.tick();
    assert!(w.get("a").is_none());
    assert!(!w.s.key_names().iter().any(|k| k.contains("dependents:a")));
    // the child's link to its gone parent stays readable
    assert_eq!(ids(w.f("b", "parents")), ["a"]);
}

#[test]
fn refused_creates_write_nothing() {
    let mut w = World::new();
    w.make("a", &[]);
    let before = w.s.work.replicated;
    let e = w.try_make(spec("b", &["a", "nope"], OnParentFail::Fail)).unwrap_err();
    assert_eq!(e.code, Code::NotFound);
    assert!(e.message.contains("parent nope"), "{}", e.message);
    let e = w.try_make(spec("a2", &["a2"], OnParentFail::Fail)).unwrap_err();
    assert_eq!(e.code, Code::Err);
    w.config.flow_max_dependents = 1;
    w.make("c", &["a"]);
    let before_cap = w.s.work.replicated;
    let e = w.try_make(spec("d", &["a"], OnParentFail::Fail)).unwrap_err();
    assert_eq!(e.message, "AFTER a has 1 dependents, the most aijob.flow-max-dependents allows");
    assert_eq!(w.s.work.replicated, before_cap);
    assert!(before < before_cap);
    assert!(w.get("b").is_none() && w.get("d").is_none());
}

#[test]
fn a_retried_child_waits_for_its_live_parents_only() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &[]);
    w.make("c", &["a", "b"]);
    w.cancel("c");
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("0"));
    assert_eq!(w.retry("c"), 1);
    assert_eq!(w.st("c"), "waiting");
    assert_eq!(w.fb("c", "waiting_on").as_deref(), Some("2"));
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("1"));
}

#[test]
fn purge_of_waiting_jobs_cascades_once() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    w.make("c", &["b"]);
    let n = w.with_env(|s, q, env| admin::purge(s, q, env, Status::Waiting, None).unwrap().0);
    // b is purged; c, failed by b's deletion in the same batch, is no longer waiting
    assert_eq!(n, 1);
    assert!(w.get("b").is_none());
    assert_eq!(w.st("c"), "error");
}

#[test]
fn finishing_a_parent_does_work_in_proportion_to_its_dependents() {
    let mut costs = vec![];
    for n in [1usize, 10, 100] {
        let mut w = World::new();
        w.make("p", &[]);
        for i in 0..n {
            w.make(&format!("c{i}"), &["p"]);
        }
        let p = w.take_id("p");
        let before = w.s.work;
        w.finish_done(&p, "1");
        costs.push(w.s.work.replicated - before.replicated);
        assert_eq!(w.stat_of("queued"), n as i64);
    }
    // a fixed cost plus the same cost per dependent
    let per_1 = (costs[1] - costs[0]) / 9;
    assert_eq!(costs[2] - costs[1], per_1 * 90, "{costs:?}");
}

#[test]
fn repair_keeps_a_kept_parent_and_a_waiting_job() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &["a"]);
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    w.make("c", &["b"]);
    let q = w.q.clone();
    w.s.apply(vec![
        crate::store::Op::Del(q.expiry()),
        crate::store::Op::Del(q.status(Status::Waiting)),
        crate::store::Op::Del(q.dependents(b"b")),
    ])
    .unwrap();
    let r = w.with_env(|s, q, env| crate::queue::repair::repair(s, q, env, 1000).unwrap());
    assert!(r.done);
    assert_eq!(w.expiry_score("a"), Some(f64::INFINITY), "a kept parent goes back at +inf");
    w.with_env(|s, q, env| crate::queue::repair::heal_job(s, q, env, b"c").unwrap());
    assert_eq!(w.stat_of("waiting"), 1);
    w.s.now += 10 * 3_600_000;
    w.tick();
    assert_eq!(w.st("a"), "done");
    assert_eq!(w.st("c"), "waiting");
    // the link b -> c came back with c: b's finish releases it
    let b = w.take_id("b");
    w.finish_done(&b, "2");
    assert_eq!(w.st("c"), "queued");
}

#[test]
fn deleting_a_finished_parent_leaves_its_waiting_dependents_as_they_are() {
    let mut w = World::new();
    w.make("a", &[]);
    w.make("b", &[]);
    w.make("c", &["a", "b"]);
    let a = w.take_id("a");
    w.finish_done(&a, "1");
    assert_eq!(w.fb("c", "waiting_on").as_deref(), Some("1"));
    w.delete("a");
    assert_eq!(w.st("c"), "waiting");
    assert_eq!(w.fb("c", "waiting_on").as_deref(), Some("1"), "c waits on b only");
    let b = w.take_id("b");
    w.finish_done(&b, "2");
    let c = w.take_id("c");
    assert_eq!(inputs(&c), [("a".into(), "deleted".into(), None), ("b".into(), "done".into(), Some("2".into()))]);
}

#[test]
fn a_child_made_after_a_failed_parent_does_not_touch_the_parents_retention() {
    let mut w = World::new();
    w.make("a", &[]);
    let a = w.take_id("a");
    w.finish_error(&a);
    let expiry = w.expiry_score("a");
    w.s.now += 1_000;
    let before = w.s.work.replicated;
    w.make("b", &["a"]);
    assert_eq!(w.st("b"), "error");
    assert_eq!(w.expiry_score("a"), expiry);
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("0"), "b never counted as open");
    assert!(w.s.work.replicated > before);
    w.retry("a");
    assert_eq!(w.st("b"), "waiting");
    assert_eq!(w.fb("a", "dependents").as_deref(), Some("1"));
}

#[test]
fn inputs_carry_results_up_to_the_payload_limit_and_announce_the_rest_by_size() {
    let mut w = World::new();
    w.config.max_payload_bytes = 25;
    for p in ["a", "b", "c"] {
        w.make(p, &[]);
    }
    w.make("join", &["a", "b", "c"]);
    for (p, result) in [("a", "0123456789"), ("b", "0123456789abcdef"), ("c", "01234")] {
        let c = w.take_id(p);
        w.finish_done(&c, result);
    }
    let join = w.take_id("join");
    let Some((_, Value::List(items))) = join.record.iter().find(|(n, _)| *n == "inputs").cloned() else {
        panic!("no inputs");
    };
    let field = |i: usize, n: &str| match &items[i] {
        Value::Map(pairs) => pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()),
        other => panic!("{other:?}"),
    };
    // 10 bytes fit, 16 more do not (25 in all), the 5 of the third still do
    assert_eq!(field(0, "result"), Some(Value::Bytes(b"0123456789".to_vec())));
    assert_eq!((field(1, "result"), field(1, "result_bytes")), (None, Some(Value::Int(16))));
    assert_eq!(field(1, "status"), Some(Value::Bytes(b"done".to_vec())));
    assert_eq!(field(2, "result"), Some(Value::Bytes(b"01234".to_vec())));
    assert_eq!(field(2, "result_bytes"), None);
}
