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
//! A worker touches nothing of Redis but the bytes of the arguments ([`Words`]): small
//! ones copied, large ones held (`ffi::HeldArg`) so they outlive a client that
//! disconnects. They come back with the result and are released on the main thread. A
//! client that disconnects, or is ended by CLIENT UNBLOCK, gets no handler run: nothing is
//! written. The handler gets everything it needs in its parsed value: its `Call` has no
//! arguments (`Call::args` is empty).

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Receiver, SendError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use aijob_core::json::INLINE_MAX_BYTES;
use aijob_core::Result;
use redis_module::raw;

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

/// What one argument costs to parse besides its bytes, counted in bytes: two million empty
/// KEY parts are a long parse too.
const ARG_COST_BYTES: usize = 64;

fn worth_a_thread(c: &Call) -> bool {
    let cost: usize = c.args.iter().map(|a| a.len().saturating_add(ARG_COST_BYTES)).fold(0, usize::saturating_add);
    cost > INLINE_MAX_BYTES && c.raw_args.len() == c.args.len() && crate::blocking::may_block(c.ctx)
}

/// Blocks the client and queues `work` for a worker; or, where no worker or no blocked
/// client can be had, does it all inline.
fn start(
    c: &mut Call,
    flags: &'static str,
    work: impl FnOnce(&[&[u8]]) -> Result<Handler> + Send + 'static,
) -> Result<Out> {
    let Some(pool) = pool() else { return work(&c.args)?(c) };
    let Ok(words) = Words::new(&c.args, c.raw_args) else { return work(&c.args)?(c) };
    let Ok(client) = ffi::block_client::<Parsed>(c.ctx) else { return work(&c.args)?(c) };
    counters::offloaded.fetch_add(1, Relaxed);
    counters::offload_inflight.fetch_add(1, Relaxed);
    let task: Task = Box::new(move || {
        let outcome = guard::catch(|| work(&words.slices()));
        let (handler, panic) = match outcome {
            Ok(h) => (Some(h), None),
            Err(message) => (None, Some(message)),
        };
        client.unblock(Parsed { words, handler, panic, flags });
    });
    // every worker gone (none ever panics out of a task): the task runs here instead
    if let Err(SendError(task)) = pool.send(task) {
        task();
    }
    Ok(Out::Blocked)
}

/// An argument this long or longer is held, not copied: holding costs two calls into
/// Redis (hold, release), about what copying a kilobyte costs; a command of two million
/// short KEY parts copies them into one buffer rather than make four million calls on the
/// main thread.
const HOLD_MIN_BYTES: usize = 1024;

/// A command's arguments as a worker reads them: short ones copied into one buffer, long
/// ones held where Redis keeps them. Made and dropped on the main thread.
struct Words {
    copied: Vec<u8>,
    held: Vec<HeldArg>,
    spans: Vec<Span>,
}

enum Span {
    Copied(Range<usize>),
    Held(usize),
}

impl Words {
    fn new(args: &[&[u8]], raw_args: &[*mut raw::RedisModuleString]) -> Result<Words> {
        let mut w = Words { copied: Vec::new(), held: Vec::new(), spans: Vec::with_capacity(args.len()) };
        for (bytes, raw) in args.iter().zip(raw_args) {
            let span = if bytes.len() >= HOLD_MIN_BYTES {
                w.held.push(HeldArg::hold(*raw)?);
                Span::Held(w.held.len() - 1)
            } else {
                let start = w.copied.len();
                w.copied.extend_from_slice(bytes);
                Span::Copied(start..w.copied.len())
            };
            w.spans.push(span);
        }
        Ok(w)
    }

    fn slices(&self) -> Vec<&[u8]> {
        let word = |span: &Span| match span {
            Span::Copied(r) => self.copied.get(r.clone()).unwrap_or_default(),
            Span::Held(i) => self.held.get(*i).map_or(&[][..], HeldArg::bytes),
        };
        self.spans.iter().map(word).collect()
    }
}

/// What a worker hands back to the main thread.
struct Parsed {
    /// The arguments it read, released on the main thread.
    words: Words,
    /// None when the parse panicked (then `panic` says why), or once taken by `reply`.
    handler: Option<Result<Handler>>,
    panic: Option<String>,
    /// The command's flags: what Redis checked when it came in is checked again.
    flags: &'static str,
}

impl ffi::Unblocked for Parsed {
    fn reply(parsed: Option<&mut Self>, ctx: *mut raw::RedisModuleCtx) {
        let answered = guard::guard(ctx, "an offloaded command", || match parsed {
            Some(p) => answer(ctx, p.flags, p.handler.take()),
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
        drop(self.words);
    }

    fn unblocked_early(ctx: *mut raw::RedisModuleCtx) {
        ffi::reply_error(ctx, "ERR unblocked (CLIENT UNBLOCK) while its input was parsed; nothing was done");
    }
}

/// Runs the handler, on the main thread, with a fresh clock and configs; or the error line.
fn answer(
    ctx: *mut raw::RedisModuleCtx,
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
    let mut call = Call::new(ctx, Vec::new());
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
            thread::Builder::new().name(format!("aijob-parse-{i}")).spawn(move || serve(&rx)).is_ok()
        })
        .count();
    (started > 0).then_some(tx)
}

/// A worker's life: the next task, forever.
fn serve(queue: &Mutex<Receiver<Task>>) {
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
