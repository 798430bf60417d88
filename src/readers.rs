//! JOB.READ ... BLOCK on Redis's blocked-client machinery: a reader waits on the job's
//! record and its output stream. An append or a new attempt signals the stream (on a
//! replica the replicated XADD does), the job finishing signals the record; Redis then
//! calls `on_ready`, which reads again and replies, or stays blocked.
//!
//! Redis 7.0 serves no waiter on a key that no longer exists, so a reader of a job that
//! JOB.DELETE or QUEUE.PURGE removes would wait out its timeout. The readers are therefore
//! listed here by their job's record key, and the step that deletes a record releases
//! them (`key_gone`): each is answered NOTFOUND at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::raw::c_int;

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::stream::{self, ReadReply};
use aijob_core::{AiError, Result};
use redis_module::raw;

use crate::command::Call;
use crate::ffi::{self, RStr, Waiter};
use crate::reply::Out;

struct Waiting {
    job: JobKey,
    waiter: Waiter,
    /// Released because the job was deleted: the timeout callback answers NOTFOUND.
    gone: bool,
}

/// A job's record key in its db.
type JobKey = (c_int, Vec<u8>);

/// Every blocked reader, by ticket, and the tickets of each job (the main thread's only).
#[derive(Default)]
struct Registry {
    by_ticket: HashMap<u64, Waiting>,
    by_job: HashMap<JobKey, Vec<u64>>,
}

impl Registry {
    fn insert(&mut self, ticket: u64, w: Waiting) {
        self.by_job.entry(w.job.clone()).or_default().push(ticket);
        self.by_ticket.insert(ticket, w);
    }

    fn remove(&mut self, ticket: u64) {
        let Some(w) = self.by_ticket.remove(&ticket) else { return };
        if let Some(tickets) = self.by_job.get_mut(&w.job) {
            tickets.retain(|t| *t != ticket);
            if tickets.is_empty() {
                self.by_job.remove(&w.job);
            }
        }
    }

    /// Marks the readers of `job` gone; their handles, to release.
    fn take_gone(&mut self, job: &JobKey) -> Vec<Waiter> {
        let mut released = Vec::new();
        for t in self.by_job.get(job).map(Vec::as_slice).unwrap_or_default() {
            if let Some(w) = self.by_ticket.get_mut(t).filter(|w| !w.gone) {
                w.gone = true;
                released.push(w.waiter);
            }
        }
        released
    }
}

thread_local! {
    static NEXT_TICKET: Cell<u64> = const { Cell::new(1) };
    static WAITING: RefCell<Registry> = RefCell::new(Registry::default());
}

/// Blocks the calling client until the job `id` has something to read, or `timeout_ms`
/// passes (0: no timeout).
pub fn block(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, id: &[u8], timeout_ms: i64) -> Result<()> {
    let record = q.job(id);
    let (record_name, out_name) = (RStr::new(ctx, &record)?, RStr::new(ctx, &q.out(id))?);
    let ticket = NEXT_TICKET.with(|n| {
        let t = n.get();
        n.set(t.wrapping_add(1));
        t
    });
    let waiter = ffi::block_watching::<Reader>(ctx, &[&record_name, &out_name], timeout_ms, ticket)?;
    let job = (ffi::selected_db(ctx), record);
    WAITING.with(|w| w.borrow_mut().insert(ticket, Waiting { job, waiter, gone: false }));
    Ok(())
}

/// A step deleted the key `record` of the context's db: its readers are answered now.
pub fn key_gone(ctx: *mut raw::RedisModuleCtx, record: &[u8]) {
    let job = (ffi::selected_db(ctx), record.to_vec());
    let waiters = WAITING.with(|w| w.try_borrow_mut().map(|mut w| w.take_gone(&job)).unwrap_or_default());
    // outside the borrow: each release runs the reader's timeout callback right away
    for waiter in waiters {
        if let Err(e) = ffi::release_waiter(waiter) {
            crate::logging::warn(ctx, "reader release", || format!("a reader of a deleted job was not released: {e}"));
        }
    }
}

/// How many readers are blocked now (INFO aijob).
pub fn blocked() -> usize {
    WAITING.with(|w| w.try_borrow().map_or(0, |w| w.by_ticket.len()))
}

/// JOB.READ's reply: `entries` (each `[offset, kind, data]`), `next`, `ended`, `status`.
pub fn reply(r: ReadReply) -> Out {
    let entries = r
        .entries
        .into_iter()
        .map(|e| Out::Array(vec![Out::bytes(e.offset.to_string()), Out::Bytes(e.kind), Out::Bytes(e.data)]))
        .collect();
    Out::Map(vec![
        ("entries".to_string(), Out::Array(entries)),
        ("next".to_string(), Out::bytes(r.next.to_string())),
        ("ended".to_string(), Out::Int(i64::from(r.ended))),
        ("status".to_string(), Out::Str(r.status.as_str())),
    ])
}

/// Reads for a woken or timed-out reader, from its command's words (name first).
fn read_again(ctx: *mut raw::RedisModuleCtx, owned: &[Vec<u8>]) -> Option<Result<ReadReply>> {
    crate::guard::guard(ctx, "a blocked read", || {
        let slices: Vec<&[u8]> = owned.iter().skip(1).map(|a| a.as_slice()).collect();
        let mut call = Call::new(ctx, slices);
        let (q, id, a) = grammar::job::read(&call.args)?;
        stream::read(&mut call.store, &q, &id, &a)
    })
}

fn emit(ctx: *mut raw::RedisModuleCtx, outcome: Option<Result<ReadReply>>) {
    match outcome {
        Some(Ok(r)) => reply(r).emit(ctx),
        Some(Err(e)) => ffi::reply_error(ctx, &crate::command::error_line(&e.to_string())),
        None => ffi::reply_error(ctx, crate::guard::INTERNAL_ERROR),
    }
}

/// The callbacks of a blocked JOB.READ.
struct Reader;

impl ffi::Watching for Reader {
    fn on_ready(ctx: *mut raw::RedisModuleCtx, args: &[Vec<u8>], _ticket: u64) -> bool {
        let outcome = read_again(ctx, args);
        if matches!(&outcome, Some(Ok(r)) if r.is_empty()) {
            return false;
        }
        emit(ctx, outcome);
        true
    }

    /// The timeout passed: the reply is what a read without BLOCK answers now (no entries,
    /// not ended). Released for a deleted job: NOTFOUND, without touching a key (this runs
    /// inside the step that deleted it).
    fn on_timeout(ctx: *mut raw::RedisModuleCtx, args: &[Vec<u8>], ticket: u64) {
        let gone = WAITING.with(|w| w.try_borrow().is_ok_and(|w| w.by_ticket.get(&ticket).is_some_and(|r| r.gone)));
        if gone {
            let id = args.get(2).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
            let e = AiError::not_found(format!("no job {id} in queue: it was deleted"));
            ffi::reply_error(ctx, &crate::command::error_line(&e.to_string()));
            return;
        }
        emit(ctx, read_again(ctx, args));
    }

    fn on_end(ticket: u64) {
        WAITING.with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.remove(ticket);
            }
        });
    }
}
