//! Large inputs are parsed off Redis's main thread. Canonicalizing and hashing a 15 MB
//! payload takes seconds, and Redis serves no one meanwhile; so a command wrapped in
//! [`Offloaded`] whose arguments total more than `json::INLINE_MAX_BYTES` blocks its
//! client, hands the parse (JSON validation, canonical form, hashes: all of it pure core
//! code) to a worker thread, and runs its handler, which reads and writes keys, on the
//! main thread when the worker is done: with the clock and the configs of that moment, as
//! one atomic step, replicated as its effects like any command.
//!
//! Where a client cannot block (inside MULTI, a script, or a module's call that denies
//! blocking) the parse runs inline as before, bounded by the size limits; so do small
//! inputs, for which the hand-off costs more than it saves.
//!
//! A worker touches nothing of Redis but the bytes of the arguments, held for it
//! (`ffi::HeldArg`) so they outlive a client that disconnects. The held strings come back
//! with the result and are released on the main thread. A client that disconnects, or is
//! ended by CLIENT UNBLOCK, gets no handler run: nothing is written.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Receiver, SendError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use aijob_core::json::INLINE_MAX_BYTES;
use aijob_core::Result;
use redis_module::{raw, RedisString};

use crate::command::{error_line, Call, Command, Info, Registered};
use crate::ffi::{self, HeldArg};
use crate::guard::{self, INTERNAL_ERROR};
use crate::info::c as counters;
use crate::reply::Out;

/// A command whose parse may be long on a large input: parsed on a worker thread then.
pub struct Offloaded<P>(pub Command<P>);

/// The rest of a command once a worker parsed it: its handler with the parsed arguments.
type Handler = Box<dyn FnOnce(&mut Call) -> Result<Out> + Send>;

impl<P: Send + 'static> Registered for Offloaded<P> {
    fn info(&self) -> &Info {
        &self.0.info
    }

    fn run(&self, c: &mut Call) -> Result<Out> {
        if !worth_a_thread(c) {
            return self.0.run(c);
        }
        let (parse, handle, config) = (self.0.parse, self.0.handle, c.config);
        let work = move |words: &[&[u8]]| -> Result<Handler> {
            let parsed = parse(words, &config)?;
            Ok(Box::new(move |call: &mut Call| handle(call, parsed)))
        };
        start(c, self.0.info.flags, work)
    }
}

fn worth_a_thread(c: &Call) -> bool {
    let total: usize = c.args.iter().map(|a| a.len()).sum();
    total > INLINE_MAX_BYTES && c.raw_args.len() == c.args.len() && crate::blocking::may_block(c.ctx)
}

/// Blocks the client and queues `work` for a worker; or, where no worker or no blocked
/// client can be had, does it all inline.
fn start(
    c: &mut Call,
    flags: &'static str,
    work: impl FnOnce(&[&[u8]]) -> Result<Handler> + Send + 'static,
) -> Result<Out> {
    let Some(pool) = pool() else { return work(&c.args)?(c) };
    let held = c.raw_args.iter().map(|a| HeldArg::hold(a.inner)).collect::<Result<Vec<_>>>()?;
    let Ok(client) = ffi::block_client::<Parsed>(c.ctx) else { return work(&c.args)?(c) };
    counters::offloaded.fetch_add(1, Relaxed);
    counters::offload_inflight.fetch_add(1, Relaxed);
    let task: Task = Box::new(move || {
        let outcome = guard::catch(|| {
            let words: Vec<&[u8]> = held.iter().map(HeldArg::bytes).collect();
            work(&words)
        });
        let (handler, panic) = match outcome {
            Ok(h) => (Some(h), None),
            Err(message) => (None, Some(message)),
        };
        client.unblock(Parsed { held, handler, panic, flags });
    });
    // every worker gone (none ever panics out of a task): the task runs here instead
    if let Err(SendError(task)) = pool.send(task) {
        task();
    }
    Ok(Out::Blocked)
}

/// What a worker hands back to the main thread.
struct Parsed {
    /// The arguments it read, released on the main thread.
    held: Vec<HeldArg>,
    /// None when the parse panicked (then `panic` says why), or once taken by `reply`.
    handler: Option<Result<Handler>>,
    panic: Option<String>,
    /// The command's flags: what Redis checked when it came in is checked again.
    flags: &'static str,
}

impl ffi::Unblocked for Parsed {
    fn reply(parsed: Option<&mut Self>, ctx: *mut raw::RedisModuleCtx, args: &[RedisString]) {
        let answered = guard::guard(ctx, "an offloaded command", || match parsed {
            Some(p) => answer(ctx, args, p.flags, p.handler.take()),
            None => Err(INTERNAL_ERROR.to_string()),
        });
        match answered {
            Some(Ok(out)) => out.emit(ctx),
            Some(Err(line)) => ffi::reply_error(ctx, &line),
            None => ffi::reply_error(ctx, INTERNAL_ERROR),
        }
    }

    fn release(self, ctx: *mut raw::RedisModuleCtx) {
        counters::offload_inflight.fetch_sub(1, Relaxed);
        if let Some(message) = &self.panic {
            guard::log_panic(ctx, "an offloaded parse", message);
        }
        drop(self.held);
    }

    fn unblocked_early(ctx: *mut raw::RedisModuleCtx) {
        ffi::reply_error(ctx, "ERR unblocked (CLIENT UNBLOCK) while its input was parsed; nothing was done");
    }
}

/// Runs the handler, on the main thread, with a fresh clock and configs; or the error line.
fn answer(
    ctx: *mut raw::RedisModuleCtx,
    args: &[RedisString],
    flags: &str,
    handler: Option<Result<Handler>>,
) -> std::result::Result<Out, String> {
    let handler = match handler {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(error_line(&e.to_string())),
        None => return Err(INTERNAL_ERROR.to_string()),
    };
    if let Some(refusal) = refused_now(ctx, flags) {
        return Err(refusal.to_string());
    }
    let words: Vec<&[u8]> = args.iter().skip(1).map(|a| a.as_slice()).collect();
    let mut call = Call::new(ctx, words);
    call.raw_args = args.get(1..).unwrap_or(&[]);
    let out = handler(&mut call).map_err(|e| error_line(&e.to_string()))?;
    crate::info::add(&call.tally);
    Ok(out)
}

/// Redis refused writes on a read-only replica, and `deny-oom` commands over maxmemory,
/// when the command came in; either may have changed while the worker parsed, and the
/// handler writes now. The replies are Redis's own.
fn refused_now(ctx: *mut raw::RedisModuleCtx, flags: &str) -> Option<&'static str> {
    let now = ffi::context_flags(ctx);
    let has = |flag: &str| flags.split(' ').any(|f| f == flag);
    if has("write") && now & ffi::FLAG_READONLY != 0 {
        return Some("READONLY You can't write against a read only replica.");
    }
    if has("deny-oom") && now & ffi::FLAG_OOM != 0 {
        return Some("OOM command not allowed when used memory > 'maxmemory'.");
    }
    None
}

/// Worker threads. Two: one long parse does not hold up every other large input behind
/// it, and on a two-core machine Redis's main thread keeps a core.
const WORKERS: usize = 2;

/// How much nicer than Redis the workers run: when the CPU is short, Redis's main thread
/// (every other client) goes first and the large input waits.
const WORKER_NICENESS: i32 = 10;

type Task = Box<dyn FnOnce() + Send>;

static POOL: OnceLock<Option<Sender<Task>>> = OnceLock::new();

/// The workers' queue, started on first use; None if no thread could be started.
fn pool() -> Option<&'static Sender<Task>> {
    POOL.get_or_init(start_workers).as_ref()
}

fn start_workers() -> Option<Sender<Task>> {
    let (tx, rx) = channel::<Task>();
    let rx = Arc::new(Mutex::new(rx));
    let started = (0..WORKERS)
        .filter(|i| {
            let rx = Arc::clone(&rx);
            thread::Builder::new().name(format!("aijob-parse-{i}")).spawn(move || work(&rx)).is_ok()
        })
        .count();
    (started > 0).then_some(tx)
}

fn work(queue: &Mutex<Receiver<Task>>) {
    ffi::lower_thread_priority(WORKER_NICENESS);
    loop {
        let next = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        match next {
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}
