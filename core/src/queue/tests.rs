//! The queue logic end to end against the in-memory store.

use crate::config::Config;
use crate::error::Code;
use crate::job::{Priority, Status};
use crate::keys::QueueKeys;
use crate::mem::MemStore;
use crate::queue::claim::ClaimArgs;
use crate::queue::claim::{claim, Claimed, Open};
use crate::queue::create::{JobSpec, Start};
use crate::queue::read::ListArgs;
use crate::queue::tx::Env;
use crate::queue::update::{UpdateArgs, UpdateStatus};
use crate::queue::{admin, clock, create, read, update};
use crate::record::Value;
use crate::rng::SplitMix;

/// The test harness: an in-memory store, one queue, seeded entropy (stream_tests.rs too).
pub(super) struct World {
    pub(super) s: MemStore,
    pub(super) q: QueueKeys,
    pub(super) rng: SplitMix,
    pub(super) config: Config,
}

impl World {
    pub(super) fn new() -> Self {
        World {
            s: MemStore::new(1_000_000),
            q: QueueKeys::new(b"q").unwrap(),
            rng: SplitMix(42),
            config: Config::default(),
        }
    }

    pub(super) fn with_env<R>(&mut self, f: impl FnOnce(&mut MemStore, &QueueKeys, &mut Env) -> R) -> R {
        let World { s, q, rng, config } = self;
        let mut env = Env { now: s.now, config: *config, entropy: rng };
        f(s, q, &mut env)
    }

    pub(super) fn create(&mut self, spec: JobSpec) -> Vec<u8> {
        self.with_env(|s, q, env| create::create(s, q, env, &spec).unwrap().0)
    }

    fn job(&mut self, payload: &str) -> Vec<u8> {
        self.create(JobSpec::new(payload.as_bytes().to_vec()))
    }

    fn claim_n(&mut self, n: i64) -> Vec<Claimed> {
        let args = ClaimArgs { count: n, ..Default::default() };
        self.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap().jobs)
    }

    pub(super) fn update(&mut self, id: &[u8], a: UpdateArgs) -> crate::Result<Status> {
        self.with_env(|s, q, env| update::update(s, q, env, id, &a).map(|r| r.0))
    }

    pub(super) fn tick(&mut self) -> clock::TickReport {
        self.with_env(|s, q, env| clock::tick(s, q, env, 1000).unwrap())
    }

    fn status(&mut self, id: &[u8]) -> Option<String> {
        let now = self.s.now;
        let r = read::get(&mut self.s, &self.q, now, id, vec![]).unwrap()?;
        r.into_iter().find(|(n, _)| *n == "status").map(|(_, v)| match v {
            Value::Bytes(b) => String::from_utf8(b).unwrap(),
            Value::Int(n) => n.to_string(),
            other => panic!("status is {other:?}"),
        })
    }

    fn field(&mut self, id: &[u8], name: &str) -> Option<Value> {
        let now = self.s.now;
        let r = read::get(&mut self.s, &self.q, now, id, vec![]).unwrap()?;
        r.into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn stat(&mut self, name: &str) -> i64 {
        let now = self.s.now;
        read::stats(&mut self.s, &self.q, now).unwrap().into_iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn done(&mut self, c: &Claimed) -> Status {
        let a = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Done),
            result: Some(b"{\"ok\":true}".to_vec()),
            ..Default::default()
        };
        self.update(&c.id, a).unwrap()
    }

    fn fail(&mut self, c: &Claimed, noretry: bool) -> Status {
        let a = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Error),
            error: Some(b"boom".to_vec()),
            class: Some(b"500".to_vec()),
            noretry,
            ..Default::default()
        };
        self.update(&c.id, a).unwrap()
    }
}

fn spec(prio: Priority, group: Option<&str>) -> JobSpec {
    let mut s = JobSpec::new(b"{}".to_vec());
    s.priority = prio;
    s.group = group.map(|g| g.as_bytes().to_vec());
    s
}

#[test]
fn create_queues_and_publishes() {
    let mut w = World::new();
    let id = w.job(r#"{"a":1}"#);
    assert_eq!(w.status(&id).as_deref(), Some("queued"));
    assert_eq!(w.field(&id, "attempts"), Some(Value::Int(0)));
    assert_eq!(w.field(&id, "ttl"), Some(Value::Int(-1)));
    assert_eq!(w.stat("queued"), 1);
    assert_eq!(w.stat("queued_normal"), 1);
    assert_eq!(w.stat("created"), 1);
    assert_eq!(w.s.published.len(), 1);
    let ev: serde_json::Value = serde_json::from_slice(&w.s.published[0].1).unwrap();
    assert_eq!(ev["type"], "created");
    assert_eq!(ev["status"], "queued");
    assert_eq!(ev["at"], 1_000_000);
    assert!(ev["progress"].is_null());
    assert_eq!(w.s.wakes, 1);
}

#[test]
fn ids_are_unique_and_exists_is_refused() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.id = Some(b"mine".to_vec());
    w.create(s.clone());
    let q = w.q.clone();
    let e = w.with_env(|st, _, env| create::create(st, &q, env, &s).unwrap_err());
    assert_eq!(e.code, Code::Exists);
}

#[test]
fn strict_priority_then_fifo() {
    let mut w = World::new();
    let low = w.create(spec(Priority::Low, None));
    let n1 = w.create(spec(Priority::Normal, None));
    let n2 = w.create(spec(Priority::Normal, None));
    let high = w.create(spec(Priority::High, None));
    let got: Vec<Vec<u8>> = w.claim_n(4).into_iter().map(|c| c.id).collect();
    assert_eq!(got, vec![high, n1, n2, low]);
    assert!(w.claim_n(1).is_empty());
    assert_eq!(w.stat("running"), 4);
    assert_eq!(w.stat("queued_normal"), 0);
}

#[test]
fn groups_take_turns_within_a_priority() {
    let mut w = World::new();
    for _ in 0..100 {
        w.create(spec(Priority::Normal, Some("A")));
    }
    for g in ["B", "C"] {
        for _ in 0..10 {
            w.create(spec(Priority::Normal, Some(g)));
        }
    }
    let claimed = w.claim_n(30);
    let mut per_group = std::collections::HashMap::new();
    for c in &claimed {
        let g = match w.field(&c.id, "group") {
            Some(Value::Bytes(b)) => String::from_utf8(b).unwrap(),
            _ => String::new(),
        };
        *per_group.entry(g).or_insert(0) += 1;
    }
    assert_eq!(per_group["B"], 10);
    assert_eq!(per_group["C"], 10);
    assert_eq!(per_group["A"], 10);
    // a high job of any group still goes first
    let h = w.create(spec(Priority::High, Some("A")));
    assert_eq!(w.claim_n(1)[0].id, h);
}

#[test]
fn a_group_at_its_cap_is_passed_over_until_a_slot_frees() {
    let mut w = World::new();
    for _ in 0..5 {
        w.create(spec(Priority::Normal, Some("A")));
    }
    let b = w.create(spec(Priority::Normal, Some("B")));
    w.with_env(|s, q, env| admin::set_group_cap(s, q, env, b"A", 2).unwrap());
    let first = w.claim_n(10);
    assert_eq!(first.len(), 3, "two of A and the one of B");
    assert!(first.iter().any(|c| c.id == b));
    assert!(w.claim_n(1).is_empty());
    let a1 = first.iter().find(|c| c.id != b).unwrap().clone();
    w.done(&a1);
    assert_eq!(w.claim_n(5).len(), 1, "one slot freed");
    // the default cap applies to groups without their own
    w.with_env(|s, q, env| admin::set_group_cap(s, q, env, b"A", 0).unwrap());
    w.with_env(|s, q, env| admin::set_group_cap(s, q, env, b"*", 3).unwrap());
    assert_eq!(w.claim_n(5).len(), 1, "A had 2 running, the default cap 3 lets one more");
    let (_, groups) = read::groups(&mut w.s, &w.q.clone(), 0, 10).unwrap();
    let a = groups.iter().find(|g| g.group == b"A").unwrap();
    assert_eq!((a.running, a.cap, a.queued), (3, 3, 1));
}

/// Found by the soak test: a group whose cap was set and removed kept its hash and its
/// place in QUEUE.GROUPS after its last job was deleted or canceled.
#[test]
fn a_group_emptied_by_delete_or_cancel_leaves_no_trace() {
    let mut w = World::new();
    let deleted = w.create(spec(Priority::Normal, Some("A")));
    let canceled = w.create(spec(Priority::Normal, Some("B")));
    for g in [&b"A"[..], b"B"] {
        w.with_env(|s, q, env| admin::set_group_cap(s, q, env, g, 1).unwrap());
        w.with_env(|s, q, env| admin::set_group_cap(s, q, env, g, 0).unwrap());
    }
    w.with_env(|s, q, env| admin::delete(s, q, env, &deleted).unwrap());
    w.with_env(|s, q, env| admin::cancel(s, q, env, &canceled).unwrap());
    let (_, groups) = read::groups(&mut w.s, &w.q.clone(), 0, 10).unwrap();
    assert!(groups.is_empty(), "{:?}", groups.iter().map(|g| g.group.clone()).collect::<Vec<_>>());
    let (ka, kb) = (w.q.group(b"A"), w.q.group(b"B"));
    assert!(!w.s.keys.contains_key(&ka) && !w.s.keys.contains_key(&kb), "the groups' hashes are gone");
}

#[test]
fn done_finishes_and_retention_removes_every_trace() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.retention_ms = Some(1000);
    w.create(s);
    let c = w.claim_n(1).remove(0);
    assert_eq!(w.done(&c), Status::Done);
    assert_eq!(w.field(&c.id, "ttl"), Some(Value::Int(1000)));
    assert_eq!(w.stat("done"), 1);
    assert_eq!(w.stat("completed"), 1);
    w.s.now += 999;
    w.tick();
    assert_eq!(w.stat("done"), 1);
    w.s.now += 1;
    w.tick();
    assert_eq!(w.status(&c.id), None);
    assert_eq!(w.stat("done"), 0);
    let id = String::from_utf8(c.id.clone()).unwrap();
    for k in w.s.key_names() {
        assert!(!k.contains(&id), "key {k} still names the job");
        if let Some((crate::mem::Value::ZSet(z), _)) = w.s.keys.get(k.as_bytes()) {
            assert!(!z.contains_key(c.id.as_slice()), "{k} holds a ghost");
        }
    }
    let names = w.s.key_names();
    assert_eq!(names, vec!["aijob:{q}:events", "aijob:{q}:meta"], "{names:?}");
}

#[test]
fn errors_back_off_then_end() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.max_attempts = Some(2);
    w.create(s);
    let c = w.claim_n(1).remove(0);
    assert_eq!(w.fail(&c, false), Status::Delayed);
    let run_at = match w.field(&c.id, "run_at") {
        Some(Value::Int(n)) => n,
        other => panic!("{other:?}"),
    };
    let wait = run_at - w.s.now;
    assert!((500..=1000).contains(&wait), "jitter in [d/2, d] of 1000: {wait}");
    assert_eq!(w.field(&c.id, "error"), Some(Value::Bytes(b"boom".to_vec())));
    w.s.now = run_at;
    w.tick();
    assert_eq!(w.status(&c.id).as_deref(), Some("queued"));
    let c2 = w.claim_n(1).remove(0);
    assert_eq!(w.field(&c2.id, "attempts"), Some(Value::Int(2)));
    assert_eq!(w.fail(&c2, false), Status::Error);
    assert_eq!(w.stat("failed"), 1);
    assert_eq!(w.stat("retried"), 1);
}

#[test]
fn noretry_ends_at_once() {
    let mut w = World::new();
    w.job("{}");
    let c = w.claim_n(1).remove(0);
    assert_eq!(w.fail(&c, true), Status::Error);
    assert_eq!(w.field(&c.id, "error_class"), Some(Value::Bytes(b"500".to_vec())));
}

#[test]
fn tokens_fence_updates() {
    let mut w = World::new();
    w.job("{}");
    let c = w.claim_n(1).remove(0);
    let wrong = UpdateArgs { token: Some(b"nope".to_vec()), percent: Some(5), ..Default::default() };
    assert_eq!(w.update(&c.id, wrong).unwrap_err().code, Code::LeaseLost);
    let none = UpdateArgs { percent: Some(5), ..Default::default() };
    assert_eq!(w.update(&c.id, none).unwrap_err().code, Code::LeaseLost);
    assert_eq!(w.field(&c.id, "percent"), Some(Value::Int(0)), "refused updates change nothing");
    // the lease expires, another worker claims: the first one's token is dead
    w.s.now += 30_000;
    w.tick();
    assert_eq!(w.status(&c.id).as_deref(), Some("queued"));
    let c2 = w.claim_n(1).remove(0);
    assert_eq!(c2.id, c.id);
    let late = UpdateArgs {
        token: Some(c.token.as_bytes().to_vec()),
        status: Some(UpdateStatus::Done),
        result: Some(b"1".to_vec()),
        ..Default::default()
    };
    assert_eq!(w.update(&c.id, late).unwrap_err().code, Code::LeaseLost);
    assert_eq!(w.done(&c2), Status::Done);
}

#[test]
fn heartbeat_extends_the_lease() {
    let mut w = World::new();
    w.job("{}");
    let c = w.claim_n(1).remove(0);
    w.s.now += 20_000;
    let hb =
        UpdateArgs { token: Some(c.token.as_bytes().to_vec()), progress: Some(b"half".to_vec()), ..Default::default() };
    assert_eq!(w.update(&c.id, hb).unwrap(), Status::Running);
    w.s.now += 20_000;
    w.tick();
    assert_eq!(w.status(&c.id).as_deref(), Some("running"), "the heartbeat moved the lease");
    w.s.now += 10_001;
    w.tick();
    assert_eq!(w.status(&c.id).as_deref(), Some("queued"));
}

#[test]
fn expired_lease_on_the_last_attempt_ends_in_error() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.max_attempts = Some(1);
    w.create(s);
    let c = w.claim_n(1).remove(0);
    w.s.now += 30_000;
    w.tick();
    assert_eq!(w.status(&c.id).as_deref(), Some("error"));
    assert_eq!(w.field(&c.id, "error_class"), Some(Value::Bytes(b"lease_expired".to_vec())));
}

#[test]
fn cancel_stops_the_worker_and_frees_the_cap() {
    let mut w = World::new();
    w.create(spec(Priority::Normal, Some("A")));
    w.create(spec(Priority::Normal, Some("A")));
    w.with_env(|s, q, env| admin::set_group_cap(s, q, env, b"A", 1).unwrap());
    let c = w.claim_n(5).remove(0);
    assert!(w.claim_n(5).is_empty());
    let (n, _) = w.with_env(|s, q, env| admin::cancel(s, q, env, &c.id).unwrap());
    assert_eq!(n, 1);
    let hb = UpdateArgs { token: Some(c.token.as_bytes().to_vec()), ..Default::default() };
    assert_eq!(w.update(&c.id, hb).unwrap_err().code, Code::Canceled);
    assert_eq!(w.claim_n(5).len(), 1, "the canceled job's slot is free");
    let (n, _) = w.with_env(|s, q, env| admin::cancel(s, q, env, &c.id).unwrap());
    assert_eq!(n, 0, "already finished");
}

#[test]
fn retry_requeues_finished_failures_only() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.max_attempts = Some(1);
    w.create(s);
    let c = w.claim_n(1).remove(0);
    w.fail(&c, false);
    let (n, _) = w.with_env(|s, q, env| admin::retry(s, q, env, &c.id).unwrap());
    assert_eq!(n, 1);
    assert_eq!(w.status(&c.id).as_deref(), Some("queued"));
    assert_eq!(w.field(&c.id, "attempts"), Some(Value::Int(0)));
    let (n, _) = w.with_env(|s, q, env| admin::retry(s, q, env, &c.id).unwrap());
    assert_eq!(n, 0, "live already");
    let c = w.claim_n(1).remove(0);
    w.done(&c);
    let e = w.with_env(|s, q, env| admin::retry(s, q, env, &c.id).unwrap_err());
    assert_eq!(e.code, Code::BadState);
}

#[test]
fn delayed_and_at_come_due() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.start = Start::Delay(500);
    let id = w.create(s);
    assert_eq!(w.status(&id).as_deref(), Some("delayed"));
    assert!(w.claim_n(1).is_empty());
    w.s.now += 499;
    w.tick();
    assert_eq!(w.status(&id).as_deref(), Some("delayed"));
    w.s.now += 1;
    w.tick();
    assert_eq!(w.status(&id).as_deref(), Some("queued"));
    assert_eq!(w.field(&id, "run_at"), None);
    let mut s = JobSpec::new(b"{}".to_vec());
    s.start = Start::At(w.s.now - 5);
    let past = w.create(s);
    assert_eq!(w.status(&past).as_deref(), Some("queued"), "AT in the past runs now");
}

#[test]
fn deadline_ends_unclaimed_jobs() {
    let mut w = World::new();
    let mut s = JobSpec::new(b"{}".to_vec());
    s.deadline_ms = Some(100);
    let id = w.create(s.clone());
    let claimed = w.create(s);
    let c = w.claim_n(2);
    assert_eq!(c.len(), 2);
    w.with_env(|st, q, env| admin::cancel(st, q, env, &claimed).unwrap());
    let again = w.create({
        let mut s = JobSpec::new(b"{}".to_vec());
        s.deadline_ms = Some(100);
        s
    });
    w.s.now += 100;
    w.tick();
    assert_eq!(w.status(&again).as_deref(), Some("error"));
    assert_eq!(w.field(&again, "error_class"), Some(Value::Bytes(b"deadline".to_vec())));
    assert_eq!(w.status(&id).as_deref(), Some("running"), "a claimed job has no deadline");
}

#[test]
fn app_workers_start_without_lease() {
    let mut w = World::new();
    let id = w.job("{}");
    let start = UpdateArgs { status: Some(UpdateStatus::Running), ..Default::default() };
    assert_eq!(w.update(&id, start).unwrap(), Status::Running);
    assert_eq!(w.field(&id, "attempts"), Some(Value::Int(1)));
    w.s.now += 10_000_000;
    w.tick();
    assert_eq!(w.status(&id).as_deref(), Some("running"), "no lease, no expiry");
    let done = UpdateArgs { status: Some(UpdateStatus::Done), result: Some(b"2".to_vec()), ..Default::default() };
    assert_eq!(w.update(&id, done).unwrap(), Status::Done);
    let again = UpdateArgs { status: Some(UpdateStatus::Done), result: Some(b"2".to_vec()), ..Default::default() };
    assert_eq!(w.update(&id, again).unwrap_err().code, Code::BadState);
}

#[test]
fn release_does_not_count_the_attempt() {
    let mut w = World::new();
    w.job("{}");
    let c = w.claim_n(1).remove(0);
    let q = w.q.clone();
    let (st, _) = w.with_env(|s, _, env| update::release(s, &q, env, &c.id, c.token.as_bytes(), None).unwrap());
    assert_eq!(st, Status::Queued);
    assert_eq!(w.field(&c.id, "attempts"), Some(Value::Int(0)));
    let e = w.with_env(|s, _, env| update::release(s, &q, env, &c.id, c.token.as_bytes(), None).unwrap_err());
    assert_eq!(e.code, Code::LeaseLost);
}

#[test]
fn delete_leaves_nothing() {
    let mut w = World::new();
    let a = w.create(spec(Priority::High, Some("g")));
    w.job("{}");
    w.claim_n(1);
    let (n, _) = w.with_env(|s, q, env| admin::delete(s, q, env, &a).unwrap());
    assert_eq!(n, 1);
    let names = w.s.key_names();
    assert!(names.iter().all(|k| !k.contains("grp:g") && !k.contains(":q:high")), "{names:?}");
    let (n, _) = w.with_env(|s, q, env| admin::delete(s, q, env, &a).unwrap());
    assert_eq!(n, 0);
}

#[test]
fn purge_removes_a_status() {
    let mut w = World::new();
    for i in 0..1100 {
        w.create(spec(if i % 2 == 0 { Priority::High } else { Priority::Low }, None));
    }
    let (n, _) = w.with_env(|s, q, env| admin::purge(s, q, env, Status::Queued, Some(Priority::High)).unwrap());
    assert_eq!(n, 550);
    assert_eq!(w.stat("queued"), 550);
    assert_eq!(w.stat("queued_high"), 0);
    let (n, _) = w.with_env(|s, q, env| admin::purge(s, q, env, Status::Queued, None).unwrap());
    assert_eq!(n, 550);
    assert!(w.claim_n(1).is_empty());
}

#[test]
fn list_pages_newest_first() {
    let mut w = World::new();
    let ids: Vec<Vec<u8>> = (0..25).map(|_| w.job("{}")).collect();
    let mut seen = vec![];
    let mut cursor = 0;
    loop {
        let a = ListArgs { status: None, cursor, count: 10 };
        let (next, page) = read::list(&mut w.s, &w.q.clone(), 0, &a).unwrap();
        for r in page {
            if let Some((_, Value::Bytes(id))) = r.into_iter().find(|(n, _)| *n == "id") {
                seen.push(id);
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
}

#[test]
fn pause_holds_claims() {
    let mut w = World::new();
    w.job("{}");
    admin::set_paused(&mut w.s, &w.q.clone(), true).unwrap();
    assert!(w.claim_n(1).is_empty());
    assert_eq!(w.stat("paused"), 1);
    admin::set_paused(&mut w.s, &w.q.clone(), false).unwrap();
    assert_eq!(w.claim_n(1).len(), 1);
}

#[test]
fn hash_is_held_by_one_live_job_and_done_fills_the_cache() {
    let mut w = World::new();
    let h = "ab".repeat(32);
    let mut s = JobSpec::new(b"{}".to_vec());
    s.hash = Some(h.clone());
    let id = w.create(s);
    let q = w.q.clone();
    assert_eq!(crate::queue::pending::pending_job(&mut w.s, &q, h.as_bytes()).unwrap(), Some(id.clone()));
    let c = w.claim_n(1).remove(0);
    w.done(&c);
    assert_eq!(crate::queue::pending::pending_job(&mut w.s, &q, h.as_bytes()).unwrap(), None);
    let entry = w.s.hgetall_for_test(&q.cache(0, h.as_bytes()));
    assert_eq!(entry.get(&b"value"[..]), Some(&b"{\"ok\":true}".to_vec()));
}

#[test]
fn wrong_type_keys_refuse_without_writing() {
    let mut w = World::new();
    let k = w.q.status(Status::Queued);
    w.s.keys.insert(k, (crate::mem::Value::Str(b"x".to_vec()), None));
    let before = w.s.key_names();
    let q = w.q.clone();
    let e = w.with_env(|s, _, env| create::create(s, &q, env, &JobSpec::new(b"{}".to_vec())).unwrap_err());
    assert_eq!(e.code, Code::WrongType);
    assert_eq!(w.s.key_names(), before);
}

mod cache_flows {
    use super::*;
    use crate::queue::cache::{self, Condition, Lookup};

    fn goq(w: &mut World, payload: &str) -> Lookup<Vec<u8>> {
        let words: Vec<Vec<u8>> = vec![b"q".to_vec(), b"PAYLOAD".to_vec(), payload.as_bytes().to_vec()];
        let refs: Vec<&[u8]> = words.iter().map(|x| x.as_slice()).collect();
        let (_, req) = crate::grammar::cache::get_or_queue(&refs, crate::json::Limits::bytes(1 << 20)).unwrap();
        w.with_env(|s, q, env| cache::get_or_queue(s, q, env, &req).unwrap().0)
    }

    #[test]
    fn miss_then_pending_then_hit() {
        let mut w = World::new();
        let Lookup::Queued(id) = goq(&mut w, r#"{"a":1,"b":[1,2]}"#) else { panic!("a miss") };
        assert_eq!(goq(&mut w, r#"{ "b":[1,2], "a":1 }"#), Lookup::Pending(id.clone()), "key order does not matter");
        let c = w.claim_n(1).remove(0);
        assert_eq!(c.id, id);
        assert_eq!(goq(&mut w, r#"{"a":1,"b":[1,2]}"#), Lookup::Pending(id.clone()), "running still coalesces");
        w.done(&c);
        assert_eq!(goq(&mut w, r#"{"a":1,"b":[1,2]}"#), Lookup::Hit(b"{\"ok\":true}".to_vec()));
        assert_eq!((w.stat("misses"), w.stat("created")), (1, 1));
    }

    #[test]
    fn a_failure_frees_the_hash_and_a_retry_keeps_it() {
        let mut w = World::new();
        let Lookup::Queued(id) = goq(&mut w, "[1]") else { panic!() };
        let c = w.claim_n(1).remove(0);
        assert_eq!(w.fail(&c, false), Status::Delayed);
        assert_eq!(goq(&mut w, "[1]"), Lookup::Pending(id.clone()), "backoff keeps it pending");
        w.s.now += 10_000;
        w.tick();
        let c = w.claim_n(1).remove(0);
        w.fail(&c, true);
        let Lookup::Queued(id2) = goq(&mut w, "[1]") else { panic!("the hash is free again") };
        assert_ne!(id, id2);
    }

    #[test]
    fn a_judged_payload_is_refused_only_where_a_job_is_made() {
        use crate::queue::cache::{Payload, Request};
        let mut w = World::new();
        let mut spec = JobSpec::new(b"{".to_vec());
        spec.hash = Some("ab".repeat(32));
        let bad = crate::json::validate("PAYLOAD", b"{", crate::json::Limits::default());
        let req = Request { spec, payload: Payload::Judged(bad.clone()) };
        let e = w.with_env(|s, q, env| cache::get_or_queue(s, q, env, &req).unwrap_err());
        assert_eq!(Err(e), bad, "a miss refuses with the parse's verdict");
        assert!(w.s.key_names().is_empty(), "and writes nothing");
        let h = "ab".repeat(32);
        w.with_env(|s, q, env| cache::set(s, q, env, h.as_bytes(), b"1", None, &Condition::Always).unwrap());
        let hit = w.with_env(|s, q, env| cache::get_or_queue(s, q, env, &req).unwrap().0);
        assert_eq!(hit, Lookup::Hit(b"1".to_vec()), "a hit never reads the payload");
    }

    #[test]
    fn etags_compare_and_set() {
        let mut w = World::new();
        let h = "cd".repeat(32);
        let set = |w: &mut World, v: &str, cond: Condition| {
            w.with_env(|s, q, env| cache::set(s, q, env, h.as_bytes(), v.as_bytes(), None, &cond).unwrap().0)
        };
        let e1 = set(&mut w, "1", Condition::IfNone).expect("created");
        assert_eq!(set(&mut w, "2", Condition::IfNone), None, "exists already");
        assert_eq!(set(&mut w, "2", Condition::IfMatch(b"nope".to_vec())), None);
        let e2 = set(&mut w, "2", Condition::IfMatch(e1.clone().into_bytes())).expect("matched");
        assert_ne!(e1, e2);
        assert_eq!(set(&mut w, "3", Condition::IfMatch(e1.into_bytes())), None, "a stale etag loses");
        let q = w.q.clone();
        assert_eq!(cache::get(&mut w.s, &q, h.as_bytes()).unwrap(), Some((b"2".to_vec(), e2.into_bytes())));
        assert_eq!(cache::del(&mut w.s, &q, h.as_bytes()).unwrap(), 1);
        assert_eq!(cache::del(&mut w.s, &q, h.as_bytes()).unwrap(), 0);
    }

    #[test]
    fn clear_is_immediate_and_the_timer_frees_the_rest() {
        let mut w = World::new();
        for i in 0..700 {
            let h = format!("{i:064x}");
            w.with_env(|s, q, env| cache::set(s, q, env, h.as_bytes(), b"1", None, &Condition::Always).unwrap());
        }
        let q = w.q.clone();
        assert_eq!(cache::clear(&mut w.s, &q).unwrap(), 700);
        assert_eq!(cache::get(&mut w.s, &q, format!("{:064x}", 5).as_bytes()).unwrap(), None);
        let r = w.tick();
        assert_eq!(r.moves, 700, "freed within one tick's budget");
        let names = w.s.key_names();
        assert!(names.iter().all(|k| !k.contains(":cache")), "{:?}", &names[..names.len().min(5)]);
    }

    #[test]
    fn expired_entries_leave_the_index() {
        let mut w = World::new();
        let h = "ef".repeat(32);
        w.with_env(|s, q, env| cache::set(s, q, env, h.as_bytes(), b"1", Some(100), &Condition::Always).unwrap());
        w.s.now += 100;
        w.tick();
        assert!(w.s.key_names().iter().all(|k| !k.contains("cache")));
    }
}

mod schedules {
    use super::*;
    use crate::queue::schedule;

    fn set(w: &mut World, line: &str) -> i64 {
        let words: Vec<Vec<u8>> = line.split(' ').map(|x| x.as_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = words.iter().map(|x| x.as_slice()).collect();
        let (_, spec) = crate::grammar::schedule::set(&refs, crate::json::Limits::bytes(1 << 20)).unwrap();
        w.with_env(|s, q, env| schedule::set(s, q, env, &spec).unwrap().0)
    }

    fn field(w: &mut World, name: &str, f: &str) -> Option<Value> {
        let q = w.q.clone();
        schedule::get(&mut w.s, &q, name.as_bytes()).unwrap()?.into_iter().find(|(k, _)| *k == f).map(|(_, v)| v)
    }

    #[test]
    fn every_fires_on_its_grid_and_skips_while_the_last_run_lives() {
        let mut w = World::new();
        let t0 = w.s.now;
        assert_eq!(set(&mut w, "q poll EVERY 5000 PAYLOAD {}"), t0 + 5000);
        w.s.now += 4999;
        w.tick();
        assert_eq!(w.stat("created"), 0);
        w.s.now += 1;
        w.tick();
        assert_eq!(w.stat("created"), 1);
        assert_eq!(field(&mut w, "poll", "runs"), Some(Value::Int(1)));
        assert_eq!(field(&mut w, "poll", "next_run_at"), Some(Value::Int(t0 + 10_000)));
        w.s.now += 5000;
        w.tick();
        assert_eq!(w.stat("created"), 1, "the first run's job is still queued: skipped");
        assert_eq!(field(&mut w, "poll", "skipped"), Some(Value::Int(1)));
        let c = w.claim_n(1).remove(0);
        assert_eq!(w.field(&c.id, "schedule"), Some(Value::Bytes(b"poll".to_vec())));
        w.done(&c);
        w.s.now += 5000;
        w.tick();
        assert_eq!(w.stat("created"), 2);
    }

    #[test]
    fn missed_ticks_collapse_into_one_catch_up_run() {
        let mut w = World::new();
        let t0 = w.s.now;
        set(&mut w, "q s EVERY 1000 PAYLOAD {} OVERLAP allow");
        w.s.now += 60_500;
        w.tick();
        assert_eq!(w.stat("created"), 1, "one catch-up run, not sixty");
        assert_eq!(field(&mut w, "s", "next_run_at"), Some(Value::Int(t0 + 61_000)));
        w.s.now = t0 + 61_000;
        w.tick();
        assert_eq!(w.stat("created"), 2);
    }

    #[test]
    fn run_pause_resume_del() {
        let mut w = World::new();
        set(&mut w, "q s CRON @hourly PAYLOAD {} START 0");
        let q = w.q.clone();
        let (id, _) = w.with_env(|s, q, env| schedule::run_now(s, q, env, b"s").unwrap());
        assert!(id.is_some());
        let (held, _) = w.with_env(|s, q, env| schedule::run_now(s, q, env, b"s").unwrap());
        assert_eq!(held, None, "OVERLAP skip holds a second run back");
        assert_eq!(w.with_env(|s, q, env| schedule::set_paused(s, q, env, b"s", true).unwrap()), 1);
        w.s.now += 3_600_000 * 3;
        w.tick();
        assert_eq!(w.stat("created"), 1);
        assert_eq!(w.with_env(|s, q, env| schedule::set_paused(s, q, env, b"s", false).unwrap()), 1);
        assert_eq!(w.with_env(|s, q, env| schedule::set_paused(s, q, env, b"nope", false).unwrap()), 0);
        assert_eq!(schedule::list(&mut w.s, &q).unwrap().len(), 1);
        assert_eq!(schedule::del(&mut w.s, &q, b"s").unwrap(), 1);
        assert_eq!(schedule::del(&mut w.s, &q, b"s").unwrap(), 0);
        assert!(schedule::list(&mut w.s, &q).unwrap().is_empty());
    }

    #[test]
    fn bad_schedules_are_refused() {
        let cases: [&[&str]; 7] = [
            &["q", "s", "PAYLOAD", "{}"],
            &["q", "s", "EVERY", "0", "PAYLOAD", "{}"],
            &["q", "s", "EVERY", "10"],
            &["q", "s", "CRON", "61 * * * *", "PAYLOAD", "{}"],
            &["q", "s", "EVERY", "10", "CRON", "@daily", "PAYLOAD", "{}"],
            &["q", "s", "EVERY", "10", "PAYLOAD", "{}", "OVERLAP", "maybe"],
            &["q", "a{", "EVERY", "10", "PAYLOAD", "{}"],
        ];
        for words in cases {
            let refs: Vec<&[u8]> = words.iter().map(|x| x.as_bytes()).collect();
            assert!(crate::grammar::schedule::set(&refs, crate::json::Limits::bytes(1 << 20)).is_err(), "{words:?}");
        }
    }
}

mod charged_claims {
    use super::*;
    use crate::limiter;
    use crate::queue::charge::ChargeGate;
    use crate::queue::claim::Charge;
    use crate::ratelimit::Window;

    fn tpm(limit: i64) -> Charge {
        Charge { key: b"tpm:{q}".to_vec(), by_cost: true, windows: vec![Window { limit, period: 60_000 }] }
    }

    fn rpm(limit: i64) -> Charge {
        Charge { key: b"rpm:{q}".to_vec(), by_cost: false, windows: vec![Window { limit, period: 60_000 }] }
    }

    fn claim_charged(w: &mut World, charges: Vec<Charge>) -> crate::queue::claim::ClaimResult {
        let args = ClaimArgs { count: 1, charges: charges.clone(), ..Default::default() };
        w.with_env(|s, q, env| claim(s, q, env, &args, &mut ChargeGate { charges: &charges }).unwrap())
    }

    fn held(w: &mut World, key: &[u8], limit: i64) -> i64 {
        let now = w.s.now;
        let d = limiter::load(&mut w.s, key).unwrap().peek(&[Window { limit, period: 60_000 }], 0, now);
        limit - d.remaining
    }

    fn costly(w: &mut World, cost: i64) -> Vec<u8> {
        let mut s = JobSpec::new(b"{}".to_vec());
        s.cost = cost;
        w.create(s)
    }

    #[test]
    fn a_denied_claim_takes_nothing_and_says_how_long() {
        let mut w = World::new();
        costly(&mut w, 800);
        costly(&mut w, 800);
        let r = claim_charged(&mut w, vec![tpm(1000), rpm(10)]);
        assert_eq!(r.jobs.len(), 1);
        assert_eq!((held(&mut w, b"tpm:{q}", 1000), held(&mut w, b"rpm:{q}", 10)), (800, 1));
        let before = w.s.keys.get(&b"tpm:{q}"[..]).cloned();
        let r = claim_charged(&mut w, vec![tpm(1000), rpm(10)]);
        assert!(r.jobs.is_empty());
        assert!(r.denied_for_ms.unwrap() > 59_000);
        assert_eq!(r.tally.charges_denied, 1);
        assert_eq!(w.s.keys.get(&b"tpm:{q}"[..]).cloned(), before, "nothing charged");
        assert_eq!(held(&mut w, b"rpm:{q}", 10), 1, "the REQUESTS window took nothing either");
        assert_eq!(w.stat("queued"), 1, "nothing claimed");
        w.s.now += r.denied_for_ms.unwrap();
        assert_eq!(claim_charged(&mut w, vec![tpm(1000), rpm(10)]).jobs.len(), 1, "admitted once the window frees");
    }

    #[test]
    fn usage_settles_down_and_up_into_the_charged_window() {
        let mut w = World::new();
        costly(&mut w, 500);
        costly(&mut w, 500);
        let a = claim_charged(&mut w, vec![tpm(10_000)]).jobs.remove(0);
        let b = claim_charged(&mut w, vec![tpm(10_000)]).jobs.remove(0);
        assert_eq!(held(&mut w, b"tpm:{q}", 10_000), 1000);
        let done = |w: &mut World, c: &Claimed, usage: i64| {
            let u = UpdateArgs {
                token: Some(c.token.as_bytes().to_vec()),
                status: Some(UpdateStatus::Done),
                result: Some(b"1".to_vec()),
                usage: Some(usage),
                charge_keys: vec![b"tpm:{q}".to_vec()],
                ..Default::default()
            };
            w.with_env(|s, q, env| update::update(s, q, env, &c.id, &u).unwrap().1)
        };
        let t = done(&mut w, &a, 120);
        assert_eq!(t.usage_settled, 1);
        assert_eq!(held(&mut w, b"tpm:{q}", 10_000), 620, "500 taken back down to 120");
        done(&mut w, &b, 2_400);
        assert_eq!(held(&mut w, b"tpm:{q}", 10_000), 2_520, "and up to 2400");
        assert_eq!(w.field(&b.id, "usage"), Some(Value::Int(2_400)));
    }

    #[test]
    fn usage_settles_only_the_keys_the_update_declares() {
        let mut w = World::new();
        costly(&mut w, 500);
        let c = claim_charged(&mut w, vec![tpm(10_000)]).jobs.remove(0);
        // a hand-written charge on a key no one declares goes with the claim's own
        let key = w.q.job(&c.id);
        let mut charges = w.s.hgetall_for_test(&key).remove(crate::record::CHARGES.as_bytes()).expect("_charges");
        charges.extend_from_slice(b"c 0 1 60000 6576696c\n");
        let forge = crate::store::Op::HSet(key, vec![(crate::record::CHARGES.as_bytes().to_vec(), charges)]);
        crate::store::Store::apply(&mut w.s, vec![forge]).unwrap();
        let u = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Done),
            result: Some(b"1".to_vec()),
            usage: Some(100),
            charge_keys: vec![b"tpm:{q}".to_vec(), b"unused:{q}".to_vec()],
            ..Default::default()
        };
        let t = w.with_env(|s, q, env| update::update(s, q, env, &c.id, &u).unwrap().1);
        assert_eq!((t.usage_settled, t.usage_unsettled), (1, 1));
        assert_eq!(held(&mut w, b"tpm:{q}", 10_000), 100);
        assert!(!w.s.keys.contains_key(&b"evil"[..]), "the forged key is not written");
        assert!(!w.s.keys.contains_key(&b"unused:{q}"[..]), "a declared key with no charge is not written");
    }

    #[test]
    fn a_released_attempt_keeps_its_charge_and_a_later_attempt_settles_only_its_own() {
        let mut w = World::new();
        costly(&mut w, 50);
        let c = claim_charged(&mut w, vec![tpm(1000)]).jobs.remove(0);
        let q = w.q.clone();
        w.with_env(|s, _, env| update::release(s, &q, env, &c.id, c.token.as_bytes(), None).unwrap());
        assert_eq!(held(&mut w, b"tpm:{q}", 1000), 50, "a release keeps the charge (the call may have happened)");
        let again = w.claim_n(1).remove(0);
        let u = UpdateArgs {
            token: Some(again.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Done),
            result: Some(b"1".to_vec()),
            usage: Some(10),
            ..Default::default()
        };
        let t = w.with_env(|s, q, env| update::update(s, q, env, &again.id, &u).unwrap().1);
        assert_eq!(t.usage_settled, 0, "the uncharged attempt settles nothing");
        assert_eq!(held(&mut w, b"tpm:{q}", 1000), 50);
    }

    #[test]
    fn a_job_over_the_limit_runs_alone_in_an_empty_window() {
        let mut w = World::new();
        costly(&mut w, 5_000);
        let r = claim_charged(&mut w, vec![tpm(1000)]);
        assert_eq!(r.jobs.len(), 1);
        assert_eq!(held(&mut w, b"tpm:{q}", 1000), 1000);
    }
}

/// The done event embeds the result up to `event_result_max_bytes`, else only its size.
#[test]
fn done_events_carry_a_large_result_by_reference() {
    let mut w = World::new();
    w.config.event_result_max_bytes = 10;
    for (result, inline) in [(r#"{"t":"ab"}"#, true), (r#"{"t":"abc"}"#, false)] {
        let id = w.job("{}");
        w.update(&id, UpdateArgs { status: Some(UpdateStatus::Running), ..Default::default() }).unwrap();
        let done = UpdateArgs {
            status: Some(UpdateStatus::Done),
            result: Some(result.as_bytes().to_vec()),
            ..Default::default()
        };
        w.update(&id, done).unwrap();
        let last = &w.s.published.last().unwrap().1;
        let ev: serde_json::Value = serde_json::from_slice(last).unwrap();
        assert_eq!(ev["type"], "done");
        assert_eq!(ev["result_bytes"], result.len());
        assert_eq!(ev.get("result").is_some(), inline, "{result}: {ev}");
        if inline {
            assert_eq!(ev["result"]["t"], "ab");
        }
    }
}

mod finish_and_claim {
    //! JOB.UPDATE ... NEXT: the finish of one job and the claim of the next in one command.
    use super::*;
    use crate::queue::charge::ChargeGate;
    use crate::queue::claim::{Charge, ClaimResult};
    use crate::queue::next;
    use crate::ratelimit::Window;

    fn done_args(c: &Claimed) -> UpdateArgs {
        UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Done),
            result: Some(b"{}".to_vec()),
            ..Default::default()
        }
    }

    fn next(w: &mut World, c: &Claimed, finish: UpdateArgs, claim: ClaimArgs) -> crate::Result<(Status, ClaimResult)> {
        w.with_env(|s, q, env| {
            if claim.charges.is_empty() {
                next::finish_and_claim(s, q, env, &c.id, &finish, &claim, &mut Open)
            } else {
                let charges = claim.charges.clone();
                next::finish_and_claim(s, q, env, &c.id, &finish, &claim, &mut ChargeGate { charges: &charges })
            }
        })
    }

    fn one() -> ClaimArgs {
        ClaimArgs { count: 1, ..Default::default() }
    }

    #[test]
    fn finishes_then_claims_the_next_by_the_claims_rules() {
        let mut w = World::new();
        let low = w.create(spec(Priority::Low, None));
        let first = w.create(spec(Priority::Normal, None));
        let high = w.create(spec(Priority::High, None));
        let c = w.claim_n(1).remove(0);
        assert_eq!(c.id, high);
        let (st, got) = next(&mut w, &c, done_args(&c), one()).unwrap();
        assert_eq!((st, got.jobs.len()), (Status::Done, 1));
        assert_eq!(got.jobs[0].id, first, "strict priority, then FIFO");
        assert_eq!(w.status(&high).as_deref(), Some("done"));
        assert_eq!(w.status(&first).as_deref(), Some("running"));
        assert_eq!((w.stat("completed"), w.stat("running"), w.stat("queued")), (1, 1, 1));
        assert_eq!(got.tally.completed, 1);
        assert_eq!(got.tally.claims, 1);
        // an error with a retry ahead also goes on to the next job
        let c = got.jobs[0].clone();
        let fail = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Error),
            error: Some(b"boom".to_vec()),
            ..Default::default()
        };
        let (st, got) = next(&mut w, &c, fail, ClaimArgs { count: 5, ..Default::default() }).unwrap();
        assert_eq!(st, Status::Delayed);
        assert_eq!(got.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![low], "the retried job waits");
        // the events of both jobs went out, in order
        let kinds: Vec<String> = w
            .s
            .published
            .iter()
            .rev()
            .take(2)
            .map(|(_, d)| serde_json::from_slice::<serde_json::Value>(d).unwrap()["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["running", "retrying"]);
    }

    #[test]
    fn a_stale_token_finishes_nothing_and_claims_nothing() {
        let mut w = World::new();
        w.job("{}");
        let other = w.job("{}");
        let c = w.claim_n(1).remove(0);
        let mut stale = done_args(&c);
        stale.token = Some(b"not-the-token".to_vec());
        let before = w.s.keys.clone();
        let e = next(&mut w, &c, stale, one()).unwrap_err();
        assert_eq!(e.code, Code::LeaseLost);
        assert_eq!(w.s.keys, before, "nothing written");
        assert_eq!(w.status(&other).as_deref(), Some("queued"));
    }

    #[test]
    fn a_paused_queue_finishes_and_hands_out_nothing() {
        let mut w = World::new();
        w.job("{}");
        let waiting = w.job("{}");
        let c = w.claim_n(1).remove(0);
        w.with_env(|s, q, _| admin::set_paused(s, q, true).unwrap());
        let (st, got) = next(&mut w, &c, done_args(&c), one()).unwrap();
        assert_eq!((st, got.jobs.len()), (Status::Done, 0));
        assert_eq!(w.status(&waiting).as_deref(), Some("queued"));
    }

    #[test]
    fn caps_hold_and_a_freed_slot_is_taken_in_the_same_command() {
        let mut w = World::new();
        for _ in 0..3 {
            w.create(spec(Priority::Normal, Some("A")));
        }
        w.with_env(|s, q, env| admin::set_group_cap(s, q, env, b"A", 1).unwrap());
        let c = w.claim_n(5).remove(0);
        assert!(w.claim_n(1).is_empty(), "A is at its cap");
        // the finish unparks A (its turn set changes), and the claim still sees it
        let (_, got) = next(&mut w, &c, done_args(&c), ClaimArgs { count: 5, ..Default::default() }).unwrap();
        assert_eq!(got.jobs.len(), 1, "one slot, one job");
        let (_, groups) = read::groups(&mut w.s, &w.q.clone(), 0, 10).unwrap();
        assert_eq!((groups[0].running, groups[0].queued), (1, 1));
    }

    #[test]
    fn charges_admit_or_refuse_the_next_job() {
        let mut w = World::new();
        for _ in 0..3 {
            w.job("{}");
        }
        let rpm =
            Charge { key: b"rpm:{q}".to_vec(), by_cost: false, windows: vec![Window { limit: 2, period: 60_000 }] };
        let charged = ClaimArgs { count: 1, charges: vec![rpm], ..Default::default() };
        let c = w.claim_n(1).remove(0);
        let (_, got) = next(&mut w, &c, done_args(&c), charged.clone()).unwrap();
        assert_eq!(got.jobs.len(), 1);
        let c = got.jobs[0].clone();
        let (_, got) = next(&mut w, &c, done_args(&c), charged.clone()).unwrap();
        assert_eq!(got.jobs.len(), 1, "the second request of the window");
        let c = got.jobs[0].clone();
        w.job("{}");
        let (st, got) = next(&mut w, &c, done_args(&c), charged).unwrap();
        assert_eq!(st, Status::Done, "the finish stands");
        assert!(got.jobs.is_empty());
        assert!(got.denied_for_ms.unwrap() > 59_000);
        assert_eq!(got.tally.charges_denied, 1);
    }

    #[test]
    fn the_claim_sees_the_usage_its_own_finish_settled() {
        // fetcher/tests/tenants.rs found this: the finish's USAGE raised the window past the
        // budget, and the claim in the same command admitted against the window as it was.
        let mut w = World::new();
        for _ in 0..2 {
            let mut s = JobSpec::new(b"{}".to_vec());
            s.cost = 100;
            w.create(s);
        }
        let tpm =
            Charge { key: b"tpm:{q}".to_vec(), by_cost: true, windows: vec![Window { limit: 300, period: 60_000 }] };
        let charged = ClaimArgs { count: 1, charges: vec![tpm.clone()], ..Default::default() };
        let c = w
            .with_env(|s, q, env| claim(s, q, env, &charged, &mut ChargeGate { charges: &charged.charges }).unwrap())
            .jobs
            .remove(0);
        let mut finish = done_args(&c);
        finish.usage = Some(250);
        finish.charge_keys = vec![tpm.key.clone()];
        let (st, got) = next(&mut w, &c, finish, charged).unwrap();
        assert_eq!(st, Status::Done);
        assert!(got.jobs.is_empty(), "250 used + 100 charged would pass the 300 budget");
        assert!(got.denied_for_ms.unwrap() > 59_000);
        assert_eq!(w.stat("queued"), 1, "the second job stays queued");
    }

    #[test]
    fn the_group_is_written_only_when_its_count_moves() {
        let mut w = World::new();
        for _ in 0..3 {
            w.job("{}");
        }
        let c = w.claim_n(1).remove(0);
        let group = w.q.group(b"");
        let before = w.s.keys.get(&group).cloned();
        assert!(before.is_some(), "one job running");
        let writes = w.s.work.replicated;
        let (_, got) = next(&mut w, &c, done_args(&c), one()).unwrap();
        assert_eq!(got.jobs.len(), 1);
        assert_eq!(w.s.keys.get(&group).cloned(), before, "one finished, one started: running stays 1");
        assert!(w.s.work.replicated - writes > 0);
    }
}

/// The work of each step, as docs/benchmarks.md's table states it: the keys the module's
/// store opens and the writes it replicates (one job, the default group, one priority, the
/// events stream on). A change that moves a number changes the table too.
#[test]
fn work_per_step() {
    fn step<T>(w: &mut World, f: impl FnOnce(&mut World) -> T) -> (T, (usize, usize)) {
        let before = w.s.work;
        let out = f(w);
        (out, (w.s.work.opened - before.opened, w.s.work.replicated - before.replicated))
    }
    let mut w = World::new();
    w.job("{}"); // the queue exists and its group takes turns
    let (_, create) = step(&mut w, |w| w.job("{}"));
    let (c, claim) = step(&mut w, |w| w.claim_n(1).remove(0));
    let (_, done) = step(&mut w, |w| w.done(&c));
    let c = w.claim_n(1).remove(0);
    w.job("{}");
    let (_, next) = step(&mut w, |w| {
        let finish = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(UpdateStatus::Done),
            result: Some(b"{}".to_vec()),
            ..Default::default()
        };
        let args = ClaimArgs { count: 1, ..Default::default() };
        w.with_env(|s, q, env| {
            crate::queue::next::finish_and_claim(s, q, env, &c.id, &finish, &args, &mut Open).unwrap()
        })
    });
    // a cache hit: the entry a done job with a HASH wrote
    let mut hashed = JobSpec::new(b"{}".to_vec());
    hashed.hash = Some("ab".repeat(32));
    w.create(hashed.clone());
    let c = w.claim_n(1).remove(0);
    w.done(&c);
    let req = crate::queue::cache::Request { spec: hashed, payload: crate::queue::cache::Payload::Unjudged };
    let (found, hit) =
        step(&mut w, |w| w.with_env(|s, q, env| crate::queue::cache::get_or_queue(s, q, env, &req).unwrap().0));
    assert!(matches!(found, crate::queue::cache::Lookup::Hit(_)));
    assert_eq!(
        [("create", create), ("claim", claim), ("done", done), ("done + claim (NEXT)", next), ("cache hit", hit)],
        [
            ("create", (7, 5)),
            ("claim", (14, 8)),
            ("done", (14, 10)),
            ("done + claim (NEXT)", (18, 16)),
            ("cache hit", (2, 0))
        ]
    );
}

/// The clock while the server is full (`crate::oom`): only deletes run, and a lease that
/// ran out meanwhile is renewed instead of burning its attempt.
mod memory_pressure {
    use super::*;
    use crate::oom::Pressure;
    use crate::queue::create::Start;

    const FULL: Pressure = Pressure { full: true, full_seen_at: None };

    fn tick_under(w: &mut World, p: Pressure) -> clock::TickReport {
        w.with_env(|s, q, env| clock::tick_under(s, q, env, 1000, &p).unwrap())
    }

    fn single_attempt(w: &mut World) -> Claimed {
        let mut s = JobSpec::new(b"{}".to_vec());
        s.max_attempts = Some(1);
        w.create(s);
        w.claim_n(1).remove(0)
    }

    #[test]
    fn a_full_server_only_deletes() {
        let mut w = World::new();
        let mut finished = JobSpec::new(b"{}".to_vec());
        finished.retention_ms = Some(1000);
        w.create(finished);
        let done = w.claim_n(1).remove(0);
        w.done(&done);
        let leased = single_attempt(&mut w);
        let mut later = JobSpec::new(b"{}".to_vec());
        later.start = Start::Delay(1000);
        let delayed = w.create(later);
        let mut hurried = JobSpec::new(b"{}".to_vec());
        hurried.deadline_ms = Some(1000);
        let hurried = w.create(hurried);
        w.s.now += 40_000;
        let before = w.s.keys.clone();
        let r = tick_under(&mut w, FULL);
        assert_eq!(r.moves, 1, "only the finished job's retention ended");
        assert!(w.status(&done.id).is_none());
        assert_eq!(w.status(&delayed).as_deref(), Some("delayed"));
        assert_eq!(w.status(&hurried).as_deref(), Some("queued"));
        assert_eq!(w.status(&leased.id).as_deref(), Some("running"));
        assert!(w.s.keys.keys().all(|k| before.contains_key(k)), "no key was made");
        let due = w.with_env(|s, q, _| clock::next_due_under(s, q, &FULL).unwrap());
        assert_eq!(due, None, "held-back work does not keep the timer busy");
        // memory freed: the held-back moves run
        let seen = w.s.now;
        tick_under(&mut w, Pressure { full: false, full_seen_at: Some(seen) });
        assert_eq!(w.status(&delayed).as_deref(), Some("queued"));
        assert_eq!(w.status(&hurried).as_deref(), Some("error"));
    }

    #[test]
    fn a_schedule_waits_while_full_and_fires_once_after() {
        let mut w = World::new();
        let words: Vec<&[u8]> = vec![b"q", b"s", b"EVERY", b"1000", b"PAYLOAD", b"{}", b"OVERLAP", b"allow"];
        let (_, spec) = crate::grammar::schedule::set(&words, crate::json::Limits::bytes(1 << 20)).unwrap();
        w.with_env(|s, q, env| crate::queue::schedule::set(s, q, env, &spec).unwrap());
        w.s.now += 5_500;
        tick_under(&mut w, FULL);
        assert_eq!(w.stat("created"), 0);
        tick_under(&mut w, Pressure::default());
        assert_eq!(w.stat("created"), 1, "one catch-up run, not five");
    }

    #[test]
    fn a_lease_that_ran_out_while_full_is_renewed_not_burned() {
        let mut w = World::new();
        let c = single_attempt(&mut w);
        let lease = 30_000;
        w.s.now += lease + 5_000;
        tick_under(&mut w, FULL);
        assert_eq!(w.status(&c.id).as_deref(), Some("running"), "no lease expires while full");
        let seen = w.s.now;
        w.s.now += 100;
        let r = tick_under(&mut w, Pressure { full: false, full_seen_at: Some(seen) });
        assert_eq!((r.renewed_leases, r.tally.expired_leases), (1, 0));
        assert_eq!(w.status(&c.id).as_deref(), Some("running"));
        assert_eq!(w.field(&c.id, "attempts"), Some(Value::Int(1)));
        assert_eq!(w.field(&c.id, "lease_until"), Some(Value::Int(w.s.now + lease)));
        // the worker reports within its renewed lease: the single attempt ends done
        assert_eq!(w.done(&c), Status::Done);
    }

    #[test]
    fn a_renewed_lease_nobody_keeps_expires_one_lease_later() {
        let mut w = World::new();
        let c = single_attempt(&mut w);
        w.s.now += 31_000;
        let seen = w.s.now;
        let after = Pressure { full: false, full_seen_at: Some(seen) };
        assert_eq!(tick_under(&mut w, after).renewed_leases, 1);
        w.s.now += 30_000;
        let r = tick_under(&mut w, after);
        assert_eq!((r.renewed_leases, r.tally.expired_leases), (0, 1));
        assert_eq!(w.status(&c.id).as_deref(), Some("error"));
    }
}

// ---- eviction: the guard on new work, and repair after keys went missing ----

mod repair {
    use super::*;
    use crate::config::MemoryPolicy;
    use crate::queue::repair::{self, RepairReport};
    use crate::queue::schedule::{self, ScheduleSpec, Timetable};
    use crate::store::{Op, Store};

    fn del(w: &mut World, key: Vec<u8>) {
        w.s.apply(vec![Op::Del(key)]).unwrap();
    }

    fn repair_all(w: &mut World, count: usize) -> Vec<RepairReport> {
        let mut calls = Vec::new();
        loop {
            let r = w.with_env(|s, q, env| repair::repair(s, q, env, count).unwrap());
            calls.push(r);
            if r.done {
                return calls;
            }
            assert!(calls.len() < 1000, "the pass never ends");
        }
    }

    fn dropped(calls: &[RepairReport]) -> u64 {
        calls.iter().map(|r| r.tally.index_entries_dropped).sum()
    }

    fn reindexed(calls: &[RepairReport]) -> u64 {
        calls.iter().map(|r| r.tally.records_reindexed).sum()
    }

    fn healthy(w: &mut World) -> bool {
        let q = w.q.clone();
        !repair::health(&mut w.s, &q).unwrap().broken()
    }

    #[test]
    fn the_guard_refuses_new_jobs_and_claims_but_not_work_in_progress() {
        let mut w = World::new();
        let id = w.job("{}");
        let waiting = w.job("{}");
        let c = w.claim_n(1).pop().unwrap();
        assert_eq!(c.id, id);
        w.config.eviction_guard = Some(MemoryPolicy::AllKeysLru);
        let e = w.with_env(|s, q, env| create::create(s, q, env, &JobSpec::new(b"{}".to_vec())).unwrap_err());
        assert_eq!(e.code, Code::Eviction);
        let args = ClaimArgs { count: 1, ..Default::default() };
        let e = w.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap_err());
        assert_eq!(e.code, Code::Eviction);
        assert_eq!(w.stat("queued"), 1, "nothing was written");
        assert_eq!(w.status(&waiting).as_deref(), Some("queued"));
        // the worker still finishes; a waiting job can still be canceled
        assert_eq!(w.done(&c), Status::Done);
        w.with_env(|s, q, env| admin::cancel(s, q, env, &waiting).unwrap());
        assert_eq!(w.status(&waiting).as_deref(), Some("canceled"));
    }

    #[test]
    fn a_guarded_schedule_run_is_skipped_and_its_timetable_goes_on() {
        let mut w = World::new();
        let sc = ScheduleSpec {
            name: b"tick".to_vec(),
            timetable: Timetable::Every(1000),
            start: None,
            overlap_allow: true,
            job: JobSpec::new(b"{}".to_vec()),
        };
        w.with_env(|s, q, env| schedule::set(s, q, env, &sc).unwrap());
        w.config.eviction_guard = Some(MemoryPolicy::VolatileTtl);
        w.s.now += 1000;
        let r = w.tick();
        assert_eq!(r.tally.schedule_runs, 0);
        assert_eq!(w.stat("created"), 0);
        let got = w.with_env(|s, q, _| schedule::get(s, q, b"tick").unwrap().unwrap());
        let field = |name: &str| got.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        assert_eq!(field("skipped"), Some(Value::Int(1)));
        assert_eq!(field("next_run_at"), Some(Value::Int(1_002_000)));
        w.config.eviction_guard = None;
        w.s.now += 1000;
        assert_eq!(w.tick().tally.schedule_runs, 1);
    }

    #[test]
    fn a_running_job_whose_leases_key_went_is_found_and_its_lease_expires() {
        let mut w = World::new();
        let id = w.job("{}");
        let args = ClaimArgs { count: 1, lease_ms: Some(500), ..Default::default() };
        w.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap());
        let leases = w.q.leases();
        del(&mut w, leases);
        assert!(!healthy(&mut w));
        w.s.now += 2000;
        w.tick();
        assert_eq!(w.status(&id).as_deref(), Some("running"), "lost: no lease to expire");
        let calls = repair_all(&mut w, 100);
        assert_eq!((dropped(&calls), reindexed(&calls)), (0, 1));
        assert!(healthy(&mut w));
        assert_eq!(w.tick().tally.expired_leases, 1);
        assert_eq!(w.status(&id).as_deref(), Some("queued"));
        assert_eq!(w.claim_n(1)[0].id, id);
    }

    #[test]
    fn a_delayed_job_whose_delayed_key_went_fires() {
        let mut w = World::new();
        let mut sp = JobSpec::new(b"{}".to_vec());
        sp.start = Start::Delay(300);
        let id = w.create(sp);
        let delayed = w.q.delayed();
        del(&mut w, delayed);
        w.s.now += 1000;
        w.tick();
        assert_eq!(w.status(&id).as_deref(), Some("delayed"));
        let calls = repair_all(&mut w, 100);
        assert_eq!(reindexed(&calls), 1);
        w.tick();
        assert_eq!(w.status(&id).as_deref(), Some("queued"));
        assert_eq!(w.claim_n(1)[0].id, id);
    }

    #[test]
    fn entries_of_gone_jobs_are_dropped_and_counted() {
        let mut w = World::new();
        let keep = w.job("{}");
        let gone = w.job("{}");
        let mut sp = JobSpec::new(b"{}".to_vec());
        sp.start = Start::Delay(60_000);
        let gone_delayed = w.create(sp);
        let jobs = [w.q.job(&gone), w.q.job(&gone_delayed)];
        for key in jobs {
            del(&mut w, key);
        }
        assert_eq!(w.stat("queued"), 2, "QUEUE.STATS still counts the lost job");
        let calls = repair_all(&mut w, 100);
        assert_eq!(dropped(&calls), 2);
        assert_eq!((w.stat("queued"), w.stat("delayed"), w.stat("queued_normal")), (1, 0, 1));
        let q = w.q.clone();
        assert_eq!(w.s.zcard(&q.delayed()).unwrap(), 0);
        assert!(healthy(&mut w));
        // the ready index's entry is dropped by the claim that meets it
        let got = w.with_env(|s, q, env| claim(s, q, env, &ClaimArgs { count: 5, ..Default::default() }, &mut Open));
        let got = got.unwrap();
        assert_eq!(got.jobs.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), vec![keep]);
        assert_eq!(got.tally.index_entries_dropped, 1);
    }

    #[test]
    fn the_clock_drops_and_counts_due_entries_of_gone_jobs() {
        let mut w = World::new();
        let mut sp = JobSpec::new(b"{}".to_vec());
        sp.start = Start::Delay(100);
        let delayed = w.create(sp);
        w.job("{}");
        let args = ClaimArgs { count: 1, lease_ms: Some(100), ..Default::default() };
        let running = w.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap()).jobs[0].id.clone();
        for id in [delayed, running] {
            let key = w.q.job(&id);
            del(&mut w, key);
        }
        w.s.now += 200;
        let r = w.tick();
        assert_eq!((r.tally.index_entries_dropped, r.tally.expired_leases), (2, 0));
        let q = w.q.clone();
        assert_eq!((w.s.zcard(&q.delayed()).unwrap(), w.s.zcard(&q.leases()).unwrap()), (0, 0));
    }

    #[test]
    fn lost_meta_keeps_the_claim_order_and_the_counters_come_back() {
        let mut w = World::new();
        let a = w.create(spec(Priority::High, None));
        let b = w.job("{}");
        let c = w.create(spec(Priority::Low, Some("g")));
        let meta = w.q.meta();
        del(&mut w, meta);
        // a job made after the loss still sorts after the old ones
        let d = w.job("{}");
        assert!(!healthy(&mut w));
        let calls = repair_all(&mut w, 100);
        assert!(calls.last().unwrap().counters >= 2, "{calls:?}");
        assert_eq!(
            (w.stat("queued_high"), w.stat("queued_normal"), w.stat("queued_low"), w.stat("queued")),
            (1, 2, 1, 4)
        );
        assert!(healthy(&mut w));
        let got: Vec<Vec<u8>> = w.claim_n(4).into_iter().map(|c| c.id).collect();
        assert_eq!(got, vec![a, b, d, c]);
    }

    #[test]
    fn a_lost_turn_set_is_rebuilt_so_claims_find_the_jobs_again() {
        let mut w = World::new();
        let ids: Vec<Vec<u8>> = ["A", "B"].iter().map(|g| w.create(spec(Priority::Normal, Some(g)))).collect();
        let turns = w.q.turns(Priority::Normal);
        let groups = w.q.groups();
        del(&mut w, turns);
        del(&mut w, groups);
        assert!(w.claim_n(2).is_empty(), "lost without repair");
        assert!(!healthy(&mut w));
        let calls = repair_all(&mut w, 100);
        assert_eq!(reindexed(&calls), 4, "two turns and two group listings");
        assert_eq!(w.stat("groups"), 2);
        let mut got: Vec<Vec<u8>> = w.claim_n(2).into_iter().map(|c| c.id).collect();
        got.sort();
        let mut want = ids;
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_pass_of_many_small_calls_keeps_its_place_in_meta() {
        let mut w = World::new();
        let ids: Vec<Vec<u8>> = (0..10).map(|_| w.job("{}")).collect();
        for id in &ids[..5] {
            w.with_env(|s, q, env| admin::cancel(s, q, env, id).unwrap());
        }
        let queued: Vec<Vec<u8>> = ids[5..].to_vec();
        let index = w.q.queued(Priority::Normal, b"");
        del(&mut w, index);
        let calls = repair_all(&mut w, 3);
        assert!(calls.len() >= 4, "{}", calls.len());
        assert_eq!(calls.iter().map(|r| r.checked).sum::<usize>(), 10);
        assert_eq!(reindexed(&calls), 5);
        let meta = w.q.meta();
        assert_eq!(w.s.hget(&meta, repair::CURSOR.as_bytes()).unwrap(), None, "no cursor between passes");
        let got: Vec<Vec<u8>> = w.claim_n(10).into_iter().map(|c| c.id).collect();
        assert_eq!(got, queued);
        // a cursor edited by hand starts a new pass instead of failing
        w.s.apply(vec![Op::HSet(meta.clone(), vec![(repair::CURSOR.into(), b"9:x".to_vec())])]).unwrap();
        assert!(repair_all(&mut w, 100).len() == 1);
    }

    #[test]
    fn the_sweep_heals_a_record_no_status_index_names() {
        let mut w = World::new();
        let id = w.job("{}");
        for key in [w.q.status(Status::Queued), w.q.queued(Priority::Normal, b"")] {
            del(&mut w, key);
        }
        assert_eq!(repair_all(&mut w, 100).iter().map(|r| r.checked).sum::<usize>(), 0, "no index names it");
        let t = w.with_env(|s, q, env| repair::heal_job(s, q, env, &id).unwrap());
        assert_eq!(t.records_reindexed, 2);
        let again = w.with_env(|s, q, env| repair::heal_job(s, q, env, &id).unwrap());
        assert_eq!(again.records_reindexed, 0);
        repair_all(&mut w, 100);
        assert_eq!((w.stat("queued"), w.stat("queued_normal")), (1, 1));
        assert_eq!(w.claim_n(1)[0].id, id);
    }

    #[test]
    fn a_requeued_job_keeps_its_group_listed_so_a_pass_finds_nothing() {
        let mut w = World::new();
        w.create(spec(Priority::Normal, Some("g")));
        let args = ClaimArgs { count: 1, lease_ms: Some(100), ..Default::default() };
        w.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap());
        w.s.now += 200;
        assert_eq!(w.tick().tally.expired_leases, 1);
        assert_eq!(w.stat("groups"), 1);
        let calls = repair_all(&mut w, 100);
        assert_eq!((dropped(&calls), reindexed(&calls)), (0, 0));
        assert!(healthy(&mut w));
    }

    #[test]
    fn a_queue_whose_groups_are_all_at_their_cap_is_healthy() {
        let mut w = World::new();
        for _ in 0..3 {
            w.create(spec(Priority::Normal, Some("g")));
        }
        w.with_env(|s, q, env| admin::set_group_cap(s, q, env, b"g", 1).unwrap());
        assert_eq!(w.claim_n(3).len(), 1);
        assert!(healthy(&mut w), "no turns at normal, but g is parked at its cap");
        let calls = repair_all(&mut w, 100);
        assert_eq!((dropped(&calls), reindexed(&calls)), (0, 0));
    }

    /// Whatever the commands and the clock do, the indexes stay exact: a pass over a queue
    /// nobody damaged finds nothing to fix, and its health numbers agree.
    #[test]
    fn a_pass_finds_nothing_after_any_mix_of_moves() {
        use crate::rng::Entropy;
        let mut w = World::new();
        let mut dice = SplitMix(7);
        let mut claimed: Vec<Claimed> = Vec::new();
        let mut ids: Vec<Vec<u8>> = Vec::new();
        for step in 0..3000 {
            let roll = dice.next_u64();
            let pick = (roll >> 8) as usize;
            match roll % 12 {
                0..=2 => {
                    let prio = Priority::ORDER[pick % 3];
                    let mut sp = spec(prio, ["a", "b", ""].get(pick % 4).copied());
                    if pick.is_multiple_of(5) {
                        sp.start = Start::Delay(((pick % 7) * 100) as i64);
                    }
                    if pick.is_multiple_of(6) {
                        sp.deadline_ms = Some(((pick % 9) * 100 + 1) as i64);
                    }
                    if pick % 4 == 1 {
                        sp.hash = Some(format!("{:064x}", pick % 3));
                    }
                    ids.push(w.create(sp));
                }
                3 | 4 => {
                    let args = ClaimArgs { count: 1 + (pick % 3) as i64, lease_ms: Some(150), ..Default::default() };
                    claimed.extend(w.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap().jobs));
                }
                5 if !claimed.is_empty() => {
                    let c = claimed.swap_remove(pick % claimed.len());
                    let _ = w.with_env(|s, q, env| {
                        let a = UpdateArgs {
                            token: Some(c.token.as_bytes().to_vec()),
                            status: Some(UpdateStatus::Done),
                            result: Some(b"{}".to_vec()),
                            ..Default::default()
                        };
                        update::update(s, q, env, &c.id, &a)
                    });
                }
                6 if !claimed.is_empty() => {
                    let c = claimed.swap_remove(pick % claimed.len());
                    let a = UpdateArgs {
                        token: Some(c.token.as_bytes().to_vec()),
                        status: Some(UpdateStatus::Error),
                        noretry: pick.is_multiple_of(2),
                        ..Default::default()
                    };
                    let _ = w.update(&c.id, a);
                }
                7 if !claimed.is_empty() => {
                    let c = claimed.swap_remove(pick % claimed.len());
                    let delay = (pick.is_multiple_of(2)).then_some(100);
                    let _ = w.with_env(|s, q, env| update::release(s, q, env, &c.id, c.token.as_bytes(), delay));
                }
                8 if !ids.is_empty() => {
                    let id = ids[pick % ids.len()].clone();
                    let _ = w.with_env(|s, q, env| match pick % 3 {
                        0 => admin::cancel(s, q, env, &id),
                        1 => admin::retry(s, q, env, &id),
                        _ => admin::delete(s, q, env, &id),
                    });
                }
                9 => {
                    let group: &[u8] = if pick.is_multiple_of(2) { b"a" } else { b"*" };
                    w.with_env(|s, q, env| admin::set_group_cap(s, q, env, group, (pick % 3) as i64).unwrap());
                }
                _ => {
                    w.s.now += (pick % 200) as i64;
                    w.tick();
                }
            }
            if step % 100 == 99 {
                assert!(healthy(&mut w), "step {step}: {:?}", repair::health(&mut w.s, &w.q.clone()));
                let calls = repair_all(&mut w, 1000);
                let counters: u64 = calls.iter().map(|r| r.counters).sum();
                assert_eq!((dropped(&calls), reindexed(&calls), counters), (0, 0, 0), "step {step}");
            }
        }
        assert!(w.stat("done") + w.stat("error") + w.stat("canceled") > 0);
    }

    #[test]
    fn a_job_the_sweep_puts_back_behind_the_cursor_is_counted_by_the_pass() {
        let mut w = World::new();
        let ids: Vec<Vec<u8>> = (0..6).map(|_| w.job("{}")).collect();
        let index = w.q.status(Status::Queued);
        w.s.apply(vec![Op::ZRem(index, ids[1].clone())]).unwrap();
        // the pass walks the queued jobs in two calls; between them the sweep finds the
        // job the index lost, behind the cursor
        let first = w.with_env(|s, q, env| repair::repair(s, q, env, 3).unwrap());
        assert!(!first.done);
        let t = w.with_env(|s, q, env| repair::heal_job(s, q, env, &ids[1]).unwrap());
        assert_eq!(t.records_reindexed, 1);
        let meta = w.q.meta();
        w.s.apply(vec![Op::HSet(meta, vec![(b"queued_normal".to_vec(), b"9".to_vec())])]).unwrap();
        let calls = repair_all(&mut w, 3);
        assert_eq!(calls.last().unwrap().counters, 1);
        assert_eq!((w.stat("queued"), w.stat("queued_normal")), (6, 6));
    }

    #[test]
    fn the_sweep_puts_back_a_schedule_its_index_lost() {
        let mut w = World::new();
        let sc = ScheduleSpec {
            name: b"tick".to_vec(),
            timetable: Timetable::Every(1000),
            start: None,
            overlap_allow: true,
            job: JobSpec::new(b"{}".to_vec()),
        };
        w.with_env(|s, q, env| schedule::set(s, q, env, &sc).unwrap());
        let schedules = w.q.schedules();
        del(&mut w, schedules);
        w.s.now += 1000;
        assert_eq!(w.tick().tally.schedule_runs, 0, "lost without repair");
        let q = w.q.clone();
        assert_eq!(repair::heal_schedule(&mut w.s, &q, b"tick").unwrap().records_reindexed, 1);
        assert_eq!(repair::heal_schedule(&mut w.s, &q, b"tick").unwrap().records_reindexed, 0);
        assert_eq!(w.tick().tally.schedule_runs, 1);
    }

    #[test]
    fn a_job_in_two_status_indexes_keeps_the_one_of_its_record() {
        let mut w = World::new();
        let id = w.job("{}");
        let c = w.claim_n(1).pop().unwrap();
        w.done(&c);
        let stale = w.q.status(Status::Queued);
        w.s.apply(vec![Op::ZAdd(stale, crate::store::Score::At(1), id.clone())]).unwrap();
        let calls = repair_all(&mut w, 100);
        assert_eq!((dropped(&calls), reindexed(&calls)), (1, 0));
        assert_eq!((w.stat("queued"), w.stat("done")), (0, 1));
    }
}
