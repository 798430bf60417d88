//! A job's output stream end to end against the in-memory store: appends fenced by the
//! token, reads from any offset, attempts kept apart, caps, and the stream's life with the
//! job's record.

use crate::error::Code;
use crate::job::Status;
use crate::queue::claim::{claim, ClaimArgs, Claimed, Open};
use crate::queue::create::JobSpec;
use crate::queue::stream::{self, AppendArgs, Entry, ReadArgs, ReadReply};
use crate::queue::update::{UpdateArgs, UpdateStatus};
use crate::queue::{admin, create};
use crate::store::{Store, StreamId};

use super::tests::World;

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId::new(ms, seq)
}

impl World {
    fn claim(&mut self, lease_ms: i64) -> Claimed {
        let args = ClaimArgs { count: 1, lease_ms: Some(lease_ms), ..Default::default() };
        self.with_env(|s, q, env| claim(s, q, env, &args, &mut Open).unwrap().jobs.pop().expect("a claimable job"))
    }

    fn append(&mut self, job: &[u8], token: Option<&str>, chunks: &[&str]) -> crate::Result<StreamId> {
        let a = AppendArgs {
            token: token.map(|t| t.as_bytes().to_vec()),
            chunks: chunks.iter().map(|c| c.as_bytes().to_vec()).collect(),
            restart: false,
        };
        self.with_env(|s, q, env| stream::append(s, q, env, job, &a).map(|r| r.0))
    }

    fn read(&mut self, job: &[u8], after: StreamId, count: usize) -> crate::Result<ReadReply> {
        let a = ReadArgs { after, count, block_ms: None };
        stream::read(&mut self.s, &self.q, job, &a)
    }

    fn finish(&mut self, c: &Claimed, status: UpdateStatus) -> Status {
        let a = UpdateArgs {
            token: Some(c.token.as_bytes().to_vec()),
            status: Some(status),
            result: Some(b"{}".to_vec()),
            noretry: true,
            ..Default::default()
        };
        self.update(&c.id, a).unwrap()
    }

    fn out_exists(&mut self, job: &[u8]) -> bool {
        let key = self.q.out(job);
        self.s.exists(&key).unwrap()
    }
}

/// The entries as (offset, kind, data) text, for assertions.
fn text(entries: &[Entry]) -> Vec<(String, String, String)> {
    let t = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    entries.iter().map(|e| (e.offset.to_string(), t(&e.kind), t(&e.data))).collect()
}

fn row(offset: &str, kind: &str, data: &str) -> (String, String, String) {
    (offset.to_string(), kind.to_string(), data.to_string())
}

#[test]
fn appends_open_the_stream_with_the_attempt_and_answer_the_last_offset() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    assert!(!w.out_exists(&job), "no stream until the first append");
    assert_eq!(w.append(&job, Some(&c.token), &["Hel", "lo"]).unwrap(), id(1, 5), "offsets count the bytes");
    assert_eq!(w.append(&job, Some(&c.token), &[", world"]).unwrap(), id(1, 12));

    let r = w.read(&job, StreamId::ZERO, 100).unwrap();
    assert_eq!(
        text(&r.entries),
        [
            row("1-0", "attempt", "1"),
            row("1-3", "chunk", "Hel"),
            row("1-5", "chunk", "lo"),
            row("1-12", "chunk", ", world")
        ]
    );
    assert_eq!((r.next, r.ended, r.status), (id(1, 12), false, Status::Running));
    let rec = w.s.hgetall_for_test(&w.q.job(&job));
    assert_eq!(rec.get(&b"_stream"[..]).map(Vec::as_slice), Some(&b"1"[..]), "the epoch");

    // each chunk is published on the job's channel, lighter than an event
    let chunks: Vec<serde_json::Value> =
        w.s.published
            .iter()
            .filter(|(ch, _)| *ch == w.q.job_channel(&job))
            .map(|(_, m)| serde_json::from_slice(m).unwrap())
            .filter(|m: &serde_json::Value| m["type"] == "chunk")
            .collect();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1]["offset"], "1-5");
    assert_eq!(chunks[1]["data"], "lo");
    assert!(chunks[0].get("status").is_none() && chunks[0].get("at").is_none());
    let events = w.s.keys.get(&w.q.events()).map(|(v, _)| format!("{v:?}")).unwrap();
    assert!(!events.contains("chunk"), "chunks stay out of the events stream");
}

#[test]
fn a_reader_resumes_from_its_offset_with_nothing_lost_and_nothing_twice() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    let words: Vec<String> = (0..25).map(|i| format!("w{i} ")).collect();
    let mut got = String::new();
    let mut after = StreamId::ZERO;
    for (i, word) in words.iter().enumerate() {
        w.append(&job, Some(&c.token), &[word]).unwrap();
        if i % 4 == 3 {
            // a reader that comes back every few appends with its last offset, 2 at a time
            loop {
                let r = w.read(&job, after, 2).unwrap();
                if r.entries.is_empty() {
                    break;
                }
                for e in r.entries.iter().filter(|e| e.kind == b"chunk") {
                    got.push_str(std::str::from_utf8(&e.data).unwrap());
                }
                after = r.next;
            }
        }
    }
    assert_eq!(w.finish(&c, UpdateStatus::Done), Status::Done);
    let rest = w.read(&job, after, 1000).unwrap();
    for e in rest.entries.iter().filter(|e| e.kind == b"chunk") {
        got.push_str(std::str::from_utf8(&e.data).unwrap());
    }
    assert_eq!(got, words.concat());
    assert_eq!(text(&rest.entries).last().unwrap(), &row("1-91", "end", "done"), "just after the 90 bytes");
    assert!(rest.ended);
    // read to its end, a finished stream answers nothing more, and says so
    let after_end = w.read(&job, rest.next, 10).unwrap();
    assert!(after_end.entries.is_empty() && after_end.ended && after_end.next == rest.next);
}

#[test]
fn ended_only_once_the_reader_has_everything() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    w.append(&job, Some(&c.token), &["a", "b", "c"]).unwrap();
    w.finish(&c, UpdateStatus::Error);
    let r = w.read(&job, StreamId::ZERO, 3).unwrap();
    assert!(!r.ended, "two entries are left after {}", r.next);
    let r = w.read(&job, r.next, 3).unwrap();
    assert_eq!(text(&r.entries), [row("1-3", "chunk", "c"), row("1-4", "end", "error")]);
    assert!(r.ended);
    assert_eq!(r.status, Status::Error);
}

#[test]
fn a_stale_worker_appends_nothing() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let first = w.claim(1_000);
    w.append(&job, Some(&first.token), &["from the first"]).unwrap();
    w.s.now += 1_001;
    w.tick();
    let second = w.claim(30_000);
    let before = w.s.keys.clone();
    let published = w.s.published.len();
    let e = w.append(&job, Some(&first.token), &["late"]).unwrap_err();
    assert_eq!(e.code, Code::LeaseLost);
    let e = w.append(&job, None, &["no token"]).unwrap_err();
    assert_eq!(e.code, Code::LeaseLost, "a leased job needs its token");
    assert_eq!(w.s.keys, before, "nothing written");
    assert_eq!(w.s.published.len(), published, "nothing published");
    assert!(w.append(&job, Some(&second.token), &["mine"]).is_ok());
}

#[test]
fn appends_need_a_running_job() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let e = w.append(&job, None, &["x"]).unwrap_err();
    assert_eq!(e.code, Code::BadState, "{e}");
    assert!(e.to_string().contains("queued"), "{e}");
    assert_eq!(w.append(b"nope", None, &["x"]).unwrap_err().code, Code::NotFound);
    assert_eq!(w.read(b"nope", StreamId::ZERO, 10).unwrap_err().code, Code::NotFound);
    let c = w.claim(30_000);
    w.with_env(|s, q, env| admin::cancel(s, q, env, &job).unwrap());
    assert_eq!(w.append(&job, Some(&c.token), &["x"]).unwrap_err().code, Code::Canceled);
    assert!(!w.out_exists(&job));
}

#[test]
fn a_leaseless_job_appends_without_a_token() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let start = UpdateArgs { status: Some(UpdateStatus::Running), ..Default::default() };
    w.update(&job, start).unwrap();
    assert_eq!(w.append(&job, None, &["own worker"]).unwrap(), id(1, 10));
    assert_eq!(w.append(&job, Some("forged"), &["x"]).unwrap_err().code, Code::LeaseLost);
}

#[test]
fn a_new_attempt_is_a_visible_boundary_and_the_old_output_goes() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let first = w.claim(1_000);
    w.append(&job, Some(&first.token), &["half an ans"]).unwrap();
    let seen = w.read(&job, StreamId::ZERO, 100).unwrap();
    assert_eq!(seen.next, id(1, 11));

    // the worker dies; the lease runs out; another worker takes the job
    w.s.now += 1_001;
    w.tick();
    let r = w.read(&job, seen.next, 100).unwrap();
    assert!(r.entries.is_empty() && !r.ended, "back in the queue: nothing new, not ended");
    let second = w.claim(30_000);
    let r = w.read(&job, seen.next, 100).unwrap();
    assert_eq!(text(&r.entries), [row("2-0", "attempt", "2")], "the reader sees the boundary first");
    w.append(&job, Some(&second.token), &["a whole answer"]).unwrap();
    let r = w.read(&job, r.next, 100).unwrap();
    assert_eq!(text(&r.entries), [row("2-14", "chunk", "a whole answer")]);

    // a reader that starts now sees only the attempt that counts
    let fresh = w.read(&job, StreamId::ZERO, 100).unwrap();
    assert_eq!(text(&fresh.entries), [row("2-0", "attempt", "2"), row("2-14", "chunk", "a whole answer")]);
    let boundary: Vec<serde_json::Value> =
        w.s.published
            .iter()
            .map(|(_, m)| serde_json::from_slice(m).unwrap())
            .filter(|m: &serde_json::Value| m["type"] == "attempt")
            .collect();
    assert_eq!(boundary.len(), 2);
    assert_eq!((boundary[1]["attempt"].as_i64(), boundary[1]["offset"].as_str()), (Some(2), Some("2-0")));
}

#[test]
fn caps_count_per_attempt_and_refuse_whole_appends() {
    let mut w = World::new();
    w.config.stream_max_chunks = 3;
    w.config.stream_max_bytes = 10;
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(1_000);
    w.append(&job, Some(&c.token), &["ab", "cd"]).unwrap();
    let before = w.s.keys.clone();
    let e = w.append(&job, Some(&c.token), &["e", "f"]).unwrap_err();
    assert_eq!(e.code, Code::TooBig);
    assert!(e.to_string().contains("stream-max-chunks 3"), "{e}");
    let e = w.append(&job, Some(&c.token), &["0123456"]).unwrap_err();
    assert_eq!(e.code, Code::TooBig);
    assert!(e.to_string().contains("stream-max-bytes 10"), "{e}");
    assert_eq!(w.s.keys, before, "a refused append writes nothing");
    w.append(&job, Some(&c.token), &["012345"]).unwrap();

    // the next attempt starts with the whole budget
    w.s.now += 1_001;
    w.tick();
    let c2 = w.claim(30_000);
    w.append(&job, Some(&c2.token), &["0123456789"]).unwrap();
    let fresh = w.with_env(|s, q, env| {
        let a = AppendArgs { token: None, chunks: vec![b"x".repeat(11)], restart: false };
        let job2 = create::create(s, q, env, &JobSpec::new(b"{}".to_vec())).unwrap().0;
        let args = ClaimArgs { count: 1, ..Default::default() };
        let t = claim(s, q, env, &args, &mut Open).unwrap().jobs.pop().unwrap().token;
        stream::append(s, q, env, &job2, &AppendArgs { token: Some(t.into_bytes()), ..a })
    });
    assert_eq!(fresh.unwrap_err().code, Code::TooBig, "one chunk over the byte cap");
}

#[test]
fn the_stream_lives_and_dies_with_the_record() {
    let mut w = World::new();
    let mut spec = JobSpec::new(b"{}".to_vec());
    spec.retention_ms = Some(60_000);
    let job = w.create(spec);
    let c = w.claim(30_000);
    w.append(&job, Some(&c.token), &["x"]).unwrap();
    assert_eq!(w.s.pttl(&w.q.out(&job)).unwrap(), -1, "a live job's stream does not expire");
    w.finish(&c, UpdateStatus::Error);
    let (record_ttl, out_ttl) = (w.s.pttl(&w.q.job(&job)).unwrap(), w.s.pttl(&w.q.out(&job)).unwrap());
    assert_eq!(out_ttl, record_ttl, "the same safety-net expiry");
    assert!(out_ttl > 60_000);

    // JOB.RETRY: live again, the stream kept; the next attempt follows the end entry
    w.with_env(|s, q, env| admin::retry(s, q, env, &job).unwrap());
    assert_eq!(w.s.pttl(&w.q.out(&job)).unwrap(), -1);
    let r = w.read(&job, StreamId::ZERO, 10).unwrap();
    assert_eq!(text(&r.entries).last().unwrap(), &row("1-2", "end", "error"));
    assert!(!r.ended, "queued again");
    let c2 = w.claim(30_000);
    assert_eq!(text(&w.read(&job, r.next, 10).unwrap().entries), [row("2-0", "attempt", "1")]);
    w.finish(&c2, UpdateStatus::Done);

    // the end of retention deletes both, in one step
    w.s.now += 60_001;
    w.tick();
    assert!(!w.s.exists(&w.q.job(&job)).unwrap());
    assert!(!w.out_exists(&job));
}

#[test]
fn delete_and_purge_take_the_stream_and_wake_readers() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    w.append(&job, Some(&c.token), &["x"]).unwrap();
    let wakes = w.s.wakes;
    assert_eq!(w.with_env(|s, q, env| admin::delete(s, q, env, &job).unwrap().0), 1);
    assert!(!w.out_exists(&job));
    assert!(w.s.wakes > wakes, "a reader blocked on a running job is told it is gone");

    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    w.append(&job, Some(&c.token), &["x"]).unwrap();
    w.with_env(|s, q, env| admin::purge(s, q, env, Status::Running, None).unwrap());
    assert!(!w.out_exists(&job));
    assert!(w.s.key_names().iter().all(|k| !k.contains(":out:")), "{:?}", w.s.key_names());
}

#[test]
fn jobs_without_output_make_no_stream() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(1_000);
    w.s.now += 1_001;
    w.tick();
    let c2 = w.claim(30_000);
    assert_ne!(c.token, c2.token);
    let wakes = w.s.wakes;
    w.finish(&c2, UpdateStatus::Done);
    assert!(w.s.wakes > wakes, "finishing wakes a reader waiting for the first chunk");
    assert!(!w.out_exists(&job));
    let r = w.read(&job, StreamId::ZERO, 10).unwrap();
    assert!(r.entries.is_empty() && r.ended && r.next == StreamId::ZERO);
    let rec = w.s.hgetall_for_test(&w.q.job(&job));
    assert!(!rec.contains_key(&b"_stream"[..]));
}

#[test]
fn reading_is_a_pure_read() {
    let mut w = World::new();
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    w.append(&job, Some(&c.token), &["x", "y"]).unwrap();
    let before = (w.s.keys.clone(), w.s.published.len(), w.s.wakes);
    let _ = w.read(&job, id(1, 1), 1).unwrap();
    let _ = w.read(&job, StreamId::new(u64::MAX, u64::MAX), 1).unwrap();
    assert_eq!((w.s.keys.clone(), w.s.published.len(), w.s.wakes), before);
}

#[test]
fn restart_starts_the_attempts_output_over_behind_a_boundary() {
    let mut w = World::new();
    w.config.stream_max_chunks = 3;
    let job = w.create(JobSpec::new(b"{}".to_vec()));
    let c = w.claim(30_000);
    w.append(&job, Some(&c.token), &["from gemini ", "until it"]).unwrap();
    let seen = w.read(&job, StreamId::ZERO, 100).unwrap();
    let before = w.s.keys.clone();
    let restart = |w: &mut World, token: Option<&str>, chunks: &[&str]| {
        let a = AppendArgs {
            token: token.map(|t| t.as_bytes().to_vec()),
            chunks: chunks.iter().map(|c| c.as_bytes().to_vec()).collect(),
            restart: true,
        };
        w.with_env(|s, q, env| stream::append(s, q, env, &job, &a).map(|r| r.0))
    };
    assert_eq!(restart(&mut w, Some("stale"), &["x"]).unwrap_err().code, Code::LeaseLost);
    assert_eq!(restart(&mut w, Some(&c.token), &["a", "b", "c", "d"]).unwrap_err().code, Code::TooBig);
    assert_eq!(w.s.keys, before, "refused: nothing written");
    // a fallback: the same attempt, its output started over; the caps count from zero
    assert_eq!(restart(&mut w, Some(&c.token), &["from openai", " all", " of it"]).unwrap(), id(2, 21));
    let r = w.read(&job, seen.next, 100).unwrap();
    assert_eq!(
        text(&r.entries),
        [
            row("2-0", "attempt", "1"),
            row("2-11", "chunk", "from openai"),
            row("2-15", "chunk", " all"),
            row("2-21", "chunk", " of it")
        ]
    );
    let fresh = w.read(&job, StreamId::ZERO, 100).unwrap();
    assert_eq!(fresh.entries[0].offset, id(2, 0), "the first provider's text is gone");
}
