//! JOB.READ ... BLOCK on Redis's blocked-client machinery: a reader waits on the job's
//! record and its output stream. An append or a new attempt signals the stream (on a
//! replica the replicated XADD does), the job finishing signals the record; Redis then
//! calls `on_ready`, which reads again and replies, or stays blocked.
//!
//! Redis 7.0 serves no waiter on a key that no longer exists, so a reader of a job that
//! JOB.DELETE or QUEUE.PURGE removes would wait out its timeout. The readers are therefore
//! listed by their job's record key (`waiters.rs`), and the step that deletes a record
//! releases them: each is answered NOTFOUND at once, by `on_timeout`.

use aijob_core::grammar;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::stream::{self, ReadReply};
use aijob_core::{AiError, Result};
use redis_module::raw;

use crate::command::Call;
use crate::ffi::{self, RStr};
use crate::reply::Out;
use crate::waiters;

/// Blocks the calling client until the job `id` has something to read, or `timeout_ms`
/// passes (0: no timeout).
pub fn block(ctx: *mut raw::RedisModuleCtx, q: &QueueKeys, id: &[u8], timeout_ms: i64) -> Result<()> {
    let record = q.job(id);
    let (record_name, out_name) = (RStr::new(ctx, &record)?, RStr::new(ctx, &q.out(id))?);
    let ticket = waiters::next_ticket();
    let waiter = ffi::block_watching::<Reader>(ctx, &[&record_name, &out_name], timeout_ms, ticket)?;
    waiters::insert(ticket, (ffi::selected_db(ctx), record), waiter);
    Ok(())
}

/// JOB.READ's reply: `entries` (each `[offset, kind, data]`), `next`, `ended`, `status`.
pub fn reply(r: ReadReply) -> Out {
    let entries = r
        .entries
        .into_iter()
        .map(|e| Out::Array(vec![Out::bytes(e.offset.to_string()), Out::Bytes(e.kind), Out::Bytes(e.data)]))
        .collect();
    Out::Map(vec![
        ("entries", Out::Array(entries)),
        ("next", Out::bytes(r.next.to_string())),
        ("ended", Out::Int(i64::from(r.ended))),
        ("status", Out::Str(r.status.as_str())),
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
        if waiters::is_gone(ticket) {
            let id = args.get(2).map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
            let e = AiError::not_found(format!("no job {id} in queue: it was deleted"));
            ffi::reply_error(ctx, &crate::command::error_line(&e.to_string()));
            return;
        }
        emit(ctx, read_again(ctx, args));
    }

    fn on_end(ticket: u64) {
        waiters::remove(ticket);
    }
}
