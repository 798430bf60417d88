//! What a command is, and how every command runs.
//!
//! A command is one [`Command`] value, declared beside its handler in `commands/<family>.rs`
//! and listed once in `commands::ALL`: its name, flags, arity, keys, the argument tree that
//! `COMMAND DOCS` serves (and the reference docs' syntax lines are checked against), its
//! parser (in `aijob_core::grammar`) and its handler. `register.rs` hands the list to Redis.
//!
//! Every command runs the same way: arguments as byte slices, the clock read once, the
//! configs read once, a panic turned into an error reply by the one guard (`crate::guard`), the INFO counters moved.

use aijob_core::config::Config;
use aijob_core::keys::QueueKeys;
use aijob_core::queue::tx::{Env, Tally};
use aijob_core::Result;
use redis_module::raw;

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
    pub raw_args: &'a [*mut raw::RedisModuleString],
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
            return Ok(*a);
        }
        let bytes = self.args.get(i).copied().unwrap_or_default();
        let s = crate::ffi::RStr::new(self.ctx, bytes)?;
        let ptr = s.ptr;
        *hold = Some(s);
        Ok(ptr)
    }
}

/// Runs `cmd` in the panic guard and replies. `argv` is the call's arguments, the command
/// name first, borrowed from Redis for the call (no copy, no retain). Redis checks the arity
/// from the command's info already; checked again here for a server that took no info.
pub fn run(ctx: *mut raw::RedisModuleCtx, argv: &[*mut raw::RedisModuleString], cmd: &dyn Registered) {
    if argv.len() < cmd.info().arity.unsigned_abs() as usize {
        ffi::reply_wrong_arity(ctx);
        return;
    }
    let raw_args = argv.get(1..).unwrap_or(&[]);
    let slices: Vec<&[u8]> = raw_args.iter().map(|a| ffi::arg_bytes(*a)).collect();
    let outcome = crate::guard::guard(ctx, "a command", || {
        let mut call = Call::new(ctx, slices);
        call.raw_args = raw_args;
        let out = cmd.run(&mut call);
        (out, call.tally)
    });
    match outcome {
        Some((Ok(out), tally)) => {
            crate::info::add(&tally);
            if out != Out::Blocked {
                out.emit(ctx);
            }
        }
        Some((Err(e), _)) => ffi::reply_error(ctx, &error_line(&e.to_string())),
        None => ffi::reply_error(ctx, crate::guard::INTERNAL_ERROR),
    }
}

/// While used memory is over `maxmemory`, checks what would start new work against the
/// rules of `aijob_core::oom` (Redis's own `deny-oom` check covers only whole commands, and
/// not a blocked claim's wake-up): a refusal is counted in `INFO aijob`.
pub fn when_memory_full(ctx: *mut raw::RedisModuleCtx, rule: impl FnOnce() -> Result<()>) -> Result<()> {
    if !ffi::memory_full(ctx) {
        return Ok(());
    }
    rule().inspect_err(|_| {
        crate::info::c::oom_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
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

/// One command, declared once: what Redis and clients learn about it (`info`), how its
/// words become typed arguments (`parse`, in `aijob_core::grammar`) and what it does with
/// them (`handle`).
pub struct Command<P> {
    pub info: Info,
    /// Parses the words after the command name; validates everything before a key is touched.
    pub parse: fn(&[&[u8]], &Config) -> Result<P>,
    pub handle: fn(&mut Call, P) -> Result<Out>,
}

/// Everything about a command but its code: registration, `COMMAND INFO` and `COMMAND DOCS`
/// are made from it, and the reference docs' syntax lines are checked against it.
pub struct Info {
    /// Lower case, as registered: `job.create`.
    pub name: &'static str,
    /// The `RedisModule_CreateCommand` flags (`getkeys-api` is added for `Keys::QueueAndFound`).
    pub flags: &'static str,
    /// Negative: at least that many words, the command name included.
    pub arity: i32,
    pub summary: &'static str,
    pub complexity: &'static str,
    pub keys: Keys,
    /// The argument tree, in the reference docs' order.
    pub args: &'static [Arg],
}

/// A command of the list, whatever its parsed arguments are.
pub trait Registered: Sync {
    fn info(&self) -> &Info;
    /// Parses the call's words and runs the handler.
    fn run(&self, c: &mut Call) -> Result<Out>;
}

impl<P> Registered for Command<P> {
    fn info(&self) -> &Info {
        &self.info
    }

    fn run(&self, c: &mut Call) -> Result<Out> {
        let parsed = (self.parse)(&c.args, &c.config)?;
        (self.handle)(c, parsed)
    }
}

/// Where a command's keys are. Every command says it, a keyless one too.
#[derive(Clone, Copy)]
pub enum Keys {
    /// The command touches no key.
    None,
    /// The queue Q at argument 1, with these access flags: every key the command touches
    /// is `aijob:{Q}:...`, in Q's slot.
    Queue(u32),
    /// The caller's own key at argument 1, with these access flags: all state lives in it.
    Own(u32),
    /// The queue at argument 1 and more keys where only the arguments tell (JOB.CLAIM's
    /// CHARGE keys): this function finds them all, as indexes after the command name, for
    /// COMMAND GETKEYS, ACL key checks and cluster routing.
    QueueAndFound(u32, fn(&[&[u8]]) -> Vec<usize>),
}

/// Key-spec flags, as `REDISMODULE_CMD_KEY_*`.
pub mod key {
    use redis_module::raw;
    pub const RO: u32 = raw::REDISMODULE_CMD_KEY_RO;
    pub const RW: u32 = raw::REDISMODULE_CMD_KEY_RW;
    pub const RM: u32 = raw::REDISMODULE_CMD_KEY_RM;
    pub const ACCESS: u32 = raw::REDISMODULE_CMD_KEY_ACCESS;
    pub const UPDATE: u32 = raw::REDISMODULE_CMD_KEY_UPDATE;
    pub const INSERT: u32 = raw::REDISMODULE_CMD_KEY_INSERT;
    pub const DELETE: u32 = raw::REDISMODULE_CMD_KEY_DELETE;
    pub const INCOMPLETE: u32 = raw::REDISMODULE_CMD_KEY_INCOMPLETE;
}

/// Argument flags, as `REDISMODULE_CMD_ARG_*`.
const OPT: u32 = redis_module::raw::REDISMODULE_CMD_ARG_OPTIONAL;
const MULTI: u32 = redis_module::raw::REDISMODULE_CMD_ARG_MULTIPLE;
const MTOKEN: u32 = redis_module::raw::REDISMODULE_CMD_ARG_MULTIPLE_TOKEN;

/// An argument's type; one-ofs and blocks carry their sub-arguments.
#[derive(Clone, Copy)]
pub enum Ty {
    /// The command's key (the first and only key spec).
    Key,
    Str,
    Int,
    UnixTime,
    /// A keyword alone (`NORETRY`, `high`).
    Token,
    OneOf(&'static [Arg]),
    Block(&'static [Arg]),
}

/// One argument of the tree. `name` is what the syntax shows (and what `COMMAND DOCS`
/// answers as the name on Redis 7.0, which has no display text): `ms`, `json`.
#[derive(Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub ty: Ty,
    pub token: Option<&'static str>,
    pub flags: u32,
}

impl Arg {
    pub const fn opt(self) -> Arg {
        Arg { flags: self.flags | OPT, ..self }
    }
    /// Repeats its value (`KEY part [part ...]`).
    pub const fn multi(self) -> Arg {
        Arg { flags: self.flags | MULTI, ..self }
    }
    /// Repeats with its token (`LIMIT n PERIOD ms [LIMIT n PERIOD ms ...]`).
    pub const fn multi_token(self) -> Arg {
        Arg { flags: self.flags | MULTI | MTOKEN, ..self }
    }
    pub const fn token(self, token: &'static str) -> Arg {
        Arg { token: Some(token), ..self }
    }
}

/// Builders of the argument tree: `key("Q")`, `ts("PAYLOAD", "json")` for `PAYLOAD json`.
pub mod arg {
    use super::{Arg, Ty};

    pub const fn key(name: &'static str) -> Arg {
        Arg { name, ty: Ty::Key, token: None, flags: 0 }
    }
    pub const fn s(name: &'static str) -> Arg {
        Arg { name, ty: Ty::Str, token: None, flags: 0 }
    }
    pub const fn int(name: &'static str) -> Arg {
        Arg { name, ty: Ty::Int, token: None, flags: 0 }
    }
    /// `TOKEN value`, a string value.
    pub const fn ts(token: &'static str, name: &'static str) -> Arg {
        s(name).token(token)
    }
    /// `TOKEN n`, an integer value.
    pub const fn ti(token: &'static str, name: &'static str) -> Arg {
        int(name).token(token)
    }
    /// `TOKEN unix_ms`.
    pub const fn tt(token: &'static str, name: &'static str) -> Arg {
        Arg { name, ty: Ty::UnixTime, token: Some(token), flags: 0 }
    }
    /// A keyword alone; its name is the keyword in lower case.
    pub const fn pure(token: &'static str, name: &'static str) -> Arg {
        Arg { name, ty: Ty::Token, token: Some(token), flags: 0 }
    }
    pub const fn oneof(name: &'static str, alts: &'static [Arg]) -> Arg {
        Arg { name, ty: Ty::OneOf(alts), token: None, flags: 0 }
    }
    pub const fn block(name: &'static str, parts: &'static [Arg]) -> Arg {
        Arg { name, ty: Ty::Block(parts), token: None, flags: 0 }
    }

    // Pieces many commands share.
    pub const Q: Arg = key("Q");
    pub const ID: Arg = s("id");
    pub const PRIORITY: Arg = oneof("priority", &[pure("high", "high"), pure("normal", "normal"), pure("low", "low")])
        .token("PRIORITY")
        .opt();
    pub const STATUS_ANY: Arg = oneof(
        "status",
        &[
            pure("queued", "queued"),
            pure("delayed", "delayed"),
            pure("running", "running"),
            pure("done", "done"),
            pure("error", "error"),
            pure("canceled", "canceled"),
            pure("waiting", "waiting"),
        ],
    )
    .token("STATUS")
    .opt();
    pub const PAYLOAD: Arg = ts("PAYLOAD", "json");
    pub const MAXATTEMPTS: Arg = ti("MAXATTEMPTS", "n").opt();
    pub const RETENTION: Arg = ti("RETENTION", "ms").opt();
    pub const DEADLINE: Arg = ti("DEADLINE", "ms").opt();
    pub const META: Arg = ts("META", "json").opt();
    pub const GROUP: Arg = ts("GROUP", "g").opt();
    pub const COST: Arg = ti("COST", "n").opt();
    pub const HASH: Arg = ts("HASH", "hex").opt();
    pub const CURSOR: Arg = ti("CURSOR", "c").opt();
    pub const COUNT: Arg = ti("COUNT", "n").opt();
    pub const WINDOW: Arg = block("window", &[ti("LIMIT", "n"), ti("PERIOD", "ms")]).multi_token();
    pub const KEY_PARTS: Arg = ts("KEY", "part").multi();
    /// A schedule's name.
    pub const NAME: Arg = s("name");
}
