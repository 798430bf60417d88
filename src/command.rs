//! Runs every command body the same way: arguments as byte slices, the clock read once,
//! the configs read once, a panic turned into an error reply (by the one guard,
//! `crate::guard`), the INFO counters moved.

use aijob_core::config::Config;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::tx::{Env, Tally};
use aijob_core::{AiError, Result};
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::entropy::OsEntropy;
use crate::ffi;
use crate::reply::Out;
use crate::store::RedisStore;

/// What a command body gets.
pub struct Call<'a> {
    pub ctx: *mut raw::RedisModuleCtx,
    pub args: Vec<&'a [u8]>,
    /// The same arguments as Redis's own strings, when the command came from a client
    /// (empty for a blocked claim re-run from its callback): fast paths open keys by them.
    pub raw_args: &'a [RedisString],
    pub now: i64,
    pub config: Config,
    pub store: RedisStore,
    pub entropy: OsEntropy,
    pub tally: Tally,
}

impl<'a> Call<'a> {
    pub fn new(ctx: *mut raw::RedisModuleCtx, args: Vec<&'a [u8]>) -> Self {
        let now = ffi::now_ms();
        Call {
            ctx,
            args,
            raw_args: &[],
            now,
            config: crate::config::snapshot(),
            store: RedisStore::new(ctx, now),
            entropy: OsEntropy,
            tally: Tally::default(),
        }
    }

    /// Runs `f` with the store and an `Env`; counts its tally; marks the queue known to
    /// the timer.
    pub fn with<T>(
        &mut self,
        q: &QueueKeys,
        f: impl FnOnce(&mut RedisStore, &mut Env) -> Result<(T, Tally)>,
    ) -> Result<T> {
        crate::timer::touch(self.ctx, q);
        let mut env = Env { now: self.now, config: self.config, entropy: &mut self.entropy };
        let (value, tally) = f(&mut self.store, &mut env)?;
        self.tally.add(&tally);
        Ok(value)
    }
}

impl Call<'_> {
    /// Argument `i` (after the command name) as a module string: Redis's own when there
    /// is one, else a fresh copy (kept alive by `hold`).
    pub fn arg_str(&self, i: usize, hold: &mut Option<crate::ffi::RStr>) -> Result<*mut raw::RedisModuleString> {
        if let Some(a) = self.raw_args.get(i) {
            return Ok(a.inner);
        }
        let bytes = self.args.get(i).copied().unwrap_or_default();
        let s = crate::ffi::RStr::new(self.ctx, bytes)?;
        let ptr = s.ptr;
        *hold = Some(s);
        Ok(ptr)
    }
}

/// A command body: parses `args` (after the command name), works, returns the reply.
pub type Body = fn(&mut Call) -> Result<Out>;

/// Runs `body` in the panic guard and replies. `min_args` counts the command name.
pub fn run(ctx: &Context, args: Vec<RedisString>, min_args: usize, body: Body) -> RedisResult {
    if args.len() < min_args {
        return Err(RedisError::WrongArity);
    }
    let slices: Vec<&[u8]> = args.iter().skip(1).map(|a| a.as_slice()).collect();
    let raw_ctx = ctx.ctx;
    let outcome = crate::guard::guard(raw_ctx, "a command", || {
        let mut call = Call::new(raw_ctx, slices);
        call.raw_args = args.get(1..).unwrap_or(&[]);
        let out = body(&mut call);
        (out, call.tally)
    });
    match outcome {
        Some((Ok(out), tally)) => {
            crate::info::add(&tally);
            if out != Out::Blocked {
                out.emit(raw_ctx);
            }
            Ok(RedisValue::NoReply)
        }
        Some((Err(e), _)) => Err(error(e)),
        None => Err(RedisError::Str(crate::guard::INTERNAL_ERROR)),
    }
}

/// An error reply: one line, code first.
pub fn error(e: AiError) -> RedisError {
    RedisError::String(error_line(&e.to_string()))
}

/// An error reply's text: one line of printable ASCII. Echoed arguments can hold any byte,
/// and the crate's reply path truncates non-ASCII characters to single bytes (invalid UTF-8
/// that clients refuse to parse), so anything else becomes `?`.
pub fn error_line(msg: &str) -> String {
    msg.chars()
        .map(|c| match c {
            c if c.is_ascii_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect()
}
