//! COMMAND DOCS and COMMAND INFO for every aijob command: arity, summary, complexity, key
//! specs and the argument tree, registered once at load through the module API's command
//! info (`RedisModule_SetCommandInfo`, Redis 7.0+ and Valkey). redis-cli (7.2+) builds its
//! syntax hints from these docs, and cluster clients route by the key specs.
//!
//! One table, [`COMMANDS`], describes every command. The README's syntax lines are written in
//! the same notation, and `tests/docs.rs` checks that the two agree.
//!
//! Everything handed to the server is built once at load and deliberately leaked, so it lives
//! as long as the process (Redis copies it today, but nothing promises that). A server
//! without the API gets no docs and a log line; nothing here can fail the load or panic.

use std::ffi::{c_char, c_int, CString};
use std::ptr;

use redis_module::{raw, Context};

/// Argument flags, as `REDISMODULE_CMD_ARG_*`.
const OPT: u32 = raw::REDISMODULE_CMD_ARG_OPTIONAL;
const MULTI: u32 = raw::REDISMODULE_CMD_ARG_MULTIPLE;
const MTOKEN: u32 = raw::REDISMODULE_CMD_ARG_MULTIPLE_TOKEN;

/// Key-spec flags, as `REDISMODULE_CMD_KEY_*`.
const RO: u32 = raw::REDISMODULE_CMD_KEY_RO;
const RW: u32 = raw::REDISMODULE_CMD_KEY_RW;
const RM: u32 = raw::REDISMODULE_CMD_KEY_RM;
const ACCESS: u32 = raw::REDISMODULE_CMD_KEY_ACCESS;
const UPDATE: u32 = raw::REDISMODULE_CMD_KEY_UPDATE;
const INSERT: u32 = raw::REDISMODULE_CMD_KEY_INSERT;
const DELETE: u32 = raw::REDISMODULE_CMD_KEY_DELETE;
const INCOMPLETE: u32 = raw::REDISMODULE_CMD_KEY_INCOMPLETE;

/// An argument's type; one-ofs and blocks carry their sub-arguments.
#[derive(Clone, Copy)]
enum Ty {
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

/// One argument. `name` is what the syntax shows (and what `COMMAND DOCS` answers as the
/// name on Redis 7.0, which has no display text), so it reads like the README: `ms`, `json`.
#[derive(Clone, Copy)]
struct Arg {
    name: &'static str,
    ty: Ty,
    token: Option<&'static str>,
    flags: u32,
}

impl Arg {
    const fn opt(self) -> Arg {
        Arg { flags: self.flags | OPT, ..self }
    }
    /// Repeats its value (`KEY part [part ...]`).
    const fn multi(self) -> Arg {
        Arg { flags: self.flags | MULTI, ..self }
    }
    /// Repeats with its token (`LIMIT n PERIOD ms [LIMIT n PERIOD ms ...]`).
    const fn multi_token(self) -> Arg {
        Arg { flags: self.flags | MULTI | MTOKEN, ..self }
    }
    const fn token(self, token: &'static str) -> Arg {
        Arg { token: Some(token), ..self }
    }
}

const fn key(name: &'static str) -> Arg {
    Arg { name, ty: Ty::Key, token: None, flags: 0 }
}
const fn s(name: &'static str) -> Arg {
    Arg { name, ty: Ty::Str, token: None, flags: 0 }
}
const fn int(name: &'static str) -> Arg {
    Arg { name, ty: Ty::Int, token: None, flags: 0 }
}
/// `TOKEN value`, a string value.
const fn ts(token: &'static str, name: &'static str) -> Arg {
    s(name).token(token)
}
/// `TOKEN n`, an integer value.
const fn ti(token: &'static str, name: &'static str) -> Arg {
    int(name).token(token)
}
/// `TOKEN unix_ms`.
const fn tt(token: &'static str, name: &'static str) -> Arg {
    Arg { name, ty: Ty::UnixTime, token: Some(token), flags: 0 }
}
/// A keyword alone; its name is the keyword in lower case.
const fn pure(token: &'static str, name: &'static str) -> Arg {
    Arg { name, ty: Ty::Token, token: Some(token), flags: 0 }
}
const fn oneof(name: &'static str, alts: &'static [Arg]) -> Arg {
    Arg { name, ty: Ty::OneOf(alts), token: None, flags: 0 }
}
const fn block(name: &'static str, parts: &'static [Arg]) -> Arg {
    Arg { name, ty: Ty::Block(parts), token: None, flags: 0 }
}

/// Where the key is: most commands take it at position 1 (`Q` or the caller's `key`).
#[derive(Clone, Copy)]
enum Keys {
    None,
    /// The key at index 1, with these flags and notes.
    At1(u32, &'static str),
}

struct Cmd {
    name: &'static str,
    /// Negative: at least that many arguments, the command name included. Equal to the
    /// minimum each handler checks itself (the `cmd!` table in lib.rs).
    arity: i32,
    summary: &'static str,
    complexity: &'static str,
    keys: Keys,
    args: &'static [Arg],
}

const SINCE: &str = "1.0.0";
const QNOTE: &str = "The queue: every key of queue Q is aijob:{Q}:..., in the slot of Q.";
const OWN_KEY: &str = "The caller's own key; all state lives in it.";

// Shared pieces of the argument trees.
const Q: Arg = key("Q");
const ID: Arg = s("id");
const PRIORITY: Arg =
    oneof("priority", &[pure("high", "high"), pure("normal", "normal"), pure("low", "low")]).token("PRIORITY").opt();
const STATUS_ANY: Arg = oneof(
    "status",
    &[
        pure("queued", "queued"),
        pure("delayed", "delayed"),
        pure("running", "running"),
        pure("done", "done"),
        pure("error", "error"),
        pure("canceled", "canceled"),
    ],
)
.token("STATUS")
.opt();
const PAYLOAD: Arg = ts("PAYLOAD", "json");
const MAXATTEMPTS: Arg = ti("MAXATTEMPTS", "n").opt();
const RETENTION: Arg = ti("RETENTION", "ms").opt();
const DEADLINE: Arg = ti("DEADLINE", "ms").opt();
const META: Arg = ts("META", "json").opt();
const GROUP: Arg = ts("GROUP", "g").opt();
const COST: Arg = ti("COST", "n").opt();
const HASH: Arg = ts("HASH", "hex").opt();
const CURSOR: Arg = ti("CURSOR", "c").opt();
const WINDOW: Arg = block("window", &[ti("LIMIT", "n"), ti("PERIOD", "ms")]).multi_token();
const KEY_PARTS: Arg = ts("KEY", "part").multi();

/// Every aijob command, in the order of the README's command reference.
static COMMANDS: &[Cmd] = &[
    Cmd {
        name: "job.create",
        arity: -4,
        summary: "Creates a job, queued (or delayed), and returns its id.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | INSERT, QNOTE),
        args: &[
            Q,
            PAYLOAD,
            ts("ID", "id").opt(),
            PRIORITY,
            oneof("start", &[ti("DELAY", "ms"), tt("AT", "unix_ms")]).opt(),
            MAXATTEMPTS,
            RETENTION,
            DEADLINE,
            HASH,
            META,
            GROUP,
            COST,
        ],
    },
    Cmd {
        name: "job.get",
        arity: -3,
        summary: "The job's record as a map (or one JSON document), nil when there is none.",
        complexity: "O(1)",
        keys: Keys::At1(RO | ACCESS, QNOTE),
        args: &[Q, ID, pure("JSON", "json").opt()],
    },
    Cmd {
        name: "job.claim",
        arity: -2,
        summary: "Takes up to COUNT ready jobs under a lease with a fencing token; BLOCK waits for one.",
        complexity: "O(log N) per job claimed, N the jobs of the queue",
        // Q only, marked INCOMPLETE: the CHARGE keys sit at variable positions, so the
        // command's getkeys-api callback (commands::job::claim_entry) reports them instead.
        keys: Keys::At1(
            RW | ACCESS | UPDATE | INCOMPLETE,
            "The queue (see the other commands). CHARGE keys are found by the getkeys-api callback.",
        ),
        args: &[
            Q,
            ts("WORKER", "name").opt(),
            ti("LEASE", "ms").opt(),
            ti("BLOCK", "ms").opt(),
            ti("COUNT", "n").opt(),
            block("charge", &[s("key"), oneof("by", &[pure("REQUESTS", "requests"), pure("COST", "cost")]), WINDOW])
                .token("CHARGE")
                .opt()
                .multi_token(),
        ],
    },
    Cmd {
        name: "job.update",
        arity: -3,
        summary: "Moves a job forward: progress and heartbeat, or STATUS running, done or error.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[
            Q,
            ID,
            ts("TOKEN", "t").opt(),
            oneof("status", &[pure("running", "running"), pure("done", "done"), pure("error", "error")])
                .token("STATUS")
                .opt(),
            ts("PROGRESS", "text").opt(),
            ti("PERCENT", "n").opt(),
            ts("RESULT", "json").opt(),
            ts("ERROR", "text").opt(),
            ts("CLASS", "name").opt(),
            pure("NORETRY", "noretry").opt(),
            ti("LEASE", "ms").opt(),
            META,
            ti("USAGE", "n").opt(),
            ti("DELAY", "ms").opt(),
        ],
    },
    Cmd {
        name: "job.release",
        arity: -5,
        summary: "Gives a claimed job back to the queue; the attempt does not count.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q, ID, ts("TOKEN", "t"), ti("DELAY", "ms").opt()],
    },
    Cmd {
        name: "job.cancel",
        arity: -3,
        summary: "Cancels a live job: 1, or 0 when it had already finished.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q, ID],
    },
    Cmd {
        name: "job.retry",
        arity: -3,
        summary: "Queues a failed or canceled job again with its attempts reset.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q, ID],
    },
    Cmd {
        name: "job.delete",
        arity: -3,
        summary: "Removes a job's record and every index entry: 1, or 0 when there is none.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | DELETE, QNOTE),
        args: &[Q, ID],
    },
    Cmd {
        name: "job.list",
        arity: -2,
        summary: "Pages through a queue's jobs, newest first, like SCAN.",
        complexity: "O(log N + COUNT)",
        keys: Keys::At1(RO | ACCESS, QNOTE),
        args: &[Q, STATUS_ANY, CURSOR, ti("COUNT", "n").opt()],
    },
    Cmd {
        name: "queue.stats",
        arity: -2,
        summary: "Counts per status and priority, totals and cache counters of a queue.",
        complexity: "O(1)",
        keys: Keys::At1(RO, QNOTE),
        args: &[Q],
    },
    Cmd {
        name: "queue.pause",
        arity: -2,
        summary: "Stops handing out jobs of the queue; creates still work.",
        complexity: "O(1)",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q],
    },
    Cmd {
        name: "queue.resume",
        arity: -2,
        summary: "Hands out jobs again and wakes blocked claimers.",
        complexity: "O(1)",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q],
    },
    Cmd {
        name: "queue.purge",
        arity: -2,
        summary: "Removes the jobs in one status (queued by default); replies the count.",
        complexity: "O(M log N) with M the jobs removed",
        keys: Keys::At1(RW | DELETE, QNOTE),
        args: &[Q, STATUS_ANY, PRIORITY],
    },
    Cmd {
        name: "queue.groupcap",
        arity: -4,
        summary: "Caps the running jobs of a group (or of every group, with *); 0 removes the cap.",
        complexity: "O(log N); O(G) for * with G the groups",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q, s("group"), int("n")],
    },
    Cmd {
        name: "queue.groups",
        arity: -2,
        summary: "Pages through a queue's groups with their queued and running counts and caps.",
        complexity: "O(log G + COUNT)",
        keys: Keys::At1(RO, QNOTE),
        args: &[Q, CURSOR, ti("COUNT", "n").opt()],
    },
    Cmd {
        name: "queue.list",
        arity: -1,
        summary: "The queues this node holds, by name (a master's own; a replica refuses).",
        complexity: "O(Q log COUNT) with Q the queues of the node",
        keys: Keys::None,
        args: &[ts("MATCH", "pattern").opt(), ts("AFTER", "name").opt(), ti("COUNT", "n").opt()],
    },
    Cmd {
        name: "cache.getorqueue",
        arity: -4,
        summary: "The cached result, or the id of the job computing it, or a new job: one atomic step.",
        complexity: "O(1) on a hit; O(log N) when it creates a job",
        keys: Keys::At1(RW | ACCESS | INSERT, QNOTE),
        args: &[
            Q,
            PAYLOAD,
            HASH,
            PRIORITY,
            MAXATTEMPTS,
            RETENTION,
            ti("CACHETTL", "ms").opt(),
            DEADLINE,
            META,
            GROUP,
            COST,
            KEY_PARTS.opt(),
        ],
    },
    Cmd {
        name: "cache.hash",
        arity: -2,
        summary: "The content hash CACHE.GETORQUEUE would use for these KEY parts or this PAYLOAD.",
        complexity: "O(size of the input)",
        keys: Keys::None,
        args: &[oneof("input", &[KEY_PARTS, PAYLOAD])],
    },
    Cmd {
        name: "cache.get",
        arity: -3,
        summary: "A cache entry's value (with WITHETAG, [value, etag]); nil when absent.",
        complexity: "O(1)",
        keys: Keys::At1(RO | ACCESS, QNOTE),
        args: &[Q, s("hash"), pure("WITHETAG", "withetag").opt()],
    },
    Cmd {
        name: "cache.set",
        arity: -4,
        summary: "Writes a cache entry, optionally only if its etag matches or none exists.",
        complexity: "O(log N) with N the entries of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[
            Q,
            s("hash"),
            s("json"),
            ti("TTL", "ms").opt(),
            oneof("condition", &[ts("IFMATCH", "etag"), pure("IFNONE", "ifnone")]).opt(),
        ],
    },
    Cmd {
        name: "cache.del",
        arity: -3,
        summary: "Deletes a cache entry: 1, or 0 when there was none.",
        complexity: "O(log N) with N the entries of the queue",
        keys: Keys::At1(RW | DELETE, QNOTE),
        args: &[Q, s("hash")],
    },
    Cmd {
        name: "cache.clear",
        arity: -2,
        summary: "Drops every cache entry of the queue at once; replies how many there were.",
        complexity: "O(1); the entries are freed in the background",
        keys: Keys::At1(RW | DELETE, QNOTE),
        args: &[Q],
    },
    Cmd {
        name: "ratelimit.hit",
        arity: -6,
        summary: "Admits COST if every window allows it, strictly: [allowed, remaining, retry_after_ms, reset_ms].",
        complexity: "O(W) with W the windows",
        keys: Keys::At1(RW | UPDATE, OWN_KEY),
        args: &[key("key"), WINDOW, ti("COST", "c").opt()],
    },
    Cmd {
        name: "ratelimit.peek",
        arity: -6,
        summary: "What RATELIMIT.HIT would answer, consuming nothing.",
        complexity: "O(W) with W the windows",
        keys: Keys::At1(RO, OWN_KEY),
        args: &[key("key"), WINDOW, ti("COST", "c").opt()],
    },
    Cmd {
        name: "ratelimit.reset",
        arity: -2,
        summary: "Forgets a rate limit's state: 1, or 0 when there was none.",
        complexity: "O(1)",
        keys: Keys::At1(RM | DELETE, OWN_KEY),
        args: &[key("key")],
    },
    Cmd {
        name: "lock.acquire",
        arity: -4,
        summary: "Takes the lock for TTL ms: a token, or nil when it is held.",
        complexity: "O(1)",
        keys: Keys::At1(RW | INSERT, OWN_KEY),
        args: &[key("key"), ti("TTL", "ms")],
    },
    Cmd {
        name: "lock.release",
        arity: -3,
        summary: "Releases the lock if the token is the holder's: 1, else 0.",
        complexity: "O(1)",
        keys: Keys::At1(RW | DELETE, OWN_KEY),
        args: &[key("key"), s("token")],
    },
    Cmd {
        name: "lock.extend",
        arity: -5,
        summary: "Makes the holder's lock live TTL ms from now: 1, else 0.",
        complexity: "O(1)",
        keys: Keys::At1(RW | UPDATE, OWN_KEY),
        args: &[key("key"), s("token"), ti("TTL", "ms")],
    },
    Cmd {
        name: "schedule.set",
        arity: -5,
        summary: "Creates or replaces a periodic job (EVERY ms or CRON); replies its next run.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[
            Q,
            s("name"),
            oneof("timetable", &[ti("EVERY", "ms"), ts("CRON", "expr")]),
            PAYLOAD,
            PRIORITY,
            MAXATTEMPTS,
            RETENTION,
            DEADLINE,
            META,
            GROUP,
            COST,
            oneof("overlap", &[pure("skip", "skip"), pure("allow", "allow")]).token("OVERLAP").opt(),
            tt("START", "unix_ms").opt(),
        ],
    },
    Cmd {
        name: "schedule.get",
        arity: -3,
        summary: "A schedule as a map, nil when absent.",
        complexity: "O(1)",
        keys: Keys::At1(RO | ACCESS, QNOTE),
        args: &[Q, s("name")],
    },
    Cmd {
        name: "schedule.list",
        arity: -2,
        summary: "Every schedule of the queue, by name.",
        complexity: "O(S) with S the schedules of the queue",
        keys: Keys::At1(RO | ACCESS, QNOTE),
        args: &[Q],
    },
    Cmd {
        name: "schedule.del",
        arity: -3,
        summary: "Deletes a schedule: 1, or 0 when there was none.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::At1(RW | DELETE, QNOTE),
        args: &[Q, s("name")],
    },
    Cmd {
        name: "schedule.run",
        arity: -3,
        summary: "Creates a run now, outside the timetable: the job id, or nil when OVERLAP skip holds it back.",
        complexity: "O(log N) with N the jobs of the queue",
        keys: Keys::At1(RW | INSERT, QNOTE),
        args: &[Q, s("name")],
    },
    Cmd {
        name: "schedule.pause",
        arity: -3,
        summary: "Stops a schedule's ticks: 1, or 0 when there is no such schedule.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q, s("name")],
    },
    Cmd {
        name: "schedule.resume",
        arity: -3,
        summary: "Restarts a schedule's ticks from now: 1, or 0 when there is no such schedule.",
        complexity: "O(log S) with S the schedules of the queue",
        keys: Keys::At1(RW | UPDATE, QNOTE),
        args: &[Q, s("name")],
    },
];

/// The version block every `RedisModuleCommandInfo` points at (version 1: Redis 7.0's layout).
static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Registers the docs of every command. Called once from `init`; logs and goes on when the
/// server lacks the API or refuses one command's info (the command still works without it).
pub fn register(ctx: &Context) {
    // SAFETY: the function pointers are filled in by RedisModule_Init before OnLoad runs.
    let (get, set) = unsafe { (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo) };
    let (Some(get), Some(set)) = (get, set) else {
        ctx.log_notice(
            "aijob: this server has no RedisModule_SetCommandInfo; COMMAND DOCS will not describe aijob's commands",
        );
        return;
    };
    let mut failed = Vec::new();
    for cmd in COMMANDS {
        let ok = match build(cmd) {
            Some((name, info)) => {
                // SAFETY: `name` is a NUL-terminated string that lives for the call; GetCommand
                // answers NULL for a command this module did not create.
                let handle = unsafe { get(ctx.ctx, name) };
                // SAFETY: `info` and everything it points to is leaked (lives forever), built
                // with the layout of the version it names, every array zero-terminated.
                !handle.is_null() && unsafe { set(handle, info) } == raw::REDISMODULE_OK as c_int
            }
            None => false,
        };
        if !ok {
            failed.push(cmd.name);
        }
    }
    if !failed.is_empty() {
        ctx.log_warning(&format!("aijob: no command docs for {} (the commands still work)", failed.join(", ")));
    }
}

/// A leaked NUL-terminated copy of `s`; None if `s` holds a NUL (no string of the table does).
fn cstr(s: &str) -> Option<*const c_char> {
    CString::new(s).ok().map(|c| c.into_raw() as *const c_char)
}

fn opt_cstr(s: Option<&str>) -> Option<*const c_char> {
    match s {
        Some(s) => cstr(s),
        None => Some(ptr::null()),
    }
}

/// The command's name and its leaked `RedisModuleCommandInfo`.
fn build(cmd: &Cmd) -> Option<(*const c_char, *const raw::RedisModuleCommandInfo)> {
    let name = cstr(cmd.name)?;
    let key_specs = match cmd.keys {
        Keys::None => ptr::null_mut(),
        Keys::At1(flags, notes) => leak(vec![key_spec_at1(flags, cstr(notes)?), key_spec_end()]),
    };
    let info = raw::RedisModuleCommandInfo {
        version: &VERSION,
        summary: cstr(cmd.summary)?,
        complexity: cstr(cmd.complexity)?,
        since: cstr(SINCE)?,
        history: ptr::null_mut(),
        tips: ptr::null(),
        arity: cmd.arity as c_int,
        key_specs,
        args: args(cmd.args)?,
    };
    Some((name, Box::into_raw(Box::new(info)) as *const _))
}

/// A zero-terminated, leaked array of the raw arguments.
fn args(list: &[Arg]) -> Option<*mut raw::RedisModuleCommandArg> {
    let mut out = Vec::with_capacity(list.len() + 1);
    for a in list {
        out.push(arg(a)?);
    }
    out.push(arg_end());
    Some(leak(out))
}

fn arg(a: &Arg) -> Option<raw::RedisModuleCommandArg> {
    let (type_, subargs) = match a.ty {
        Ty::Key => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY, ptr::null_mut()),
        Ty::Str => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING, ptr::null_mut()),
        Ty::Int => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER, ptr::null_mut()),
        Ty::UnixTime => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_UNIX_TIME, ptr::null_mut()),
        Ty::Token => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN, ptr::null_mut()),
        Ty::OneOf(alts) => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF, args(alts)?),
        Ty::Block(parts) => (raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK, args(parts)?),
    };
    let name = cstr(a.name)?;
    Some(raw::RedisModuleCommandArg {
        name,
        type_,
        // The only key spec is index 0; -1 marks an argument that is not a key.
        key_spec_index: if matches!(a.ty, Ty::Key) { 0 } else { -1 },
        token: opt_cstr(a.token)?,
        summary: ptr::null(),
        since: ptr::null(),
        flags: a.flags as c_int,
        deprecated_since: ptr::null(),
        subargs,
        display_text: name,
    })
}

fn arg_end() -> raw::RedisModuleCommandArg {
    raw::RedisModuleCommandArg {
        name: ptr::null(),
        type_: 0,
        key_spec_index: 0,
        token: ptr::null(),
        summary: ptr::null(),
        since: ptr::null(),
        flags: 0,
        deprecated_since: ptr::null(),
        subargs: ptr::null_mut(),
        display_text: ptr::null(),
    }
}

/// The key at argument 1, alone: BeginSearch index 1, FindKeys range (0, 1, 0).
fn key_spec_at1(flags: u32, notes: *const c_char) -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes,
        flags: flags as u64,
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 { lastkey: 0, keystep: 1, limit: 0 },
        },
    }
}

/// The terminator of a key-spec array: begin_search_type 0 (`REDISMODULE_KSPEC_BS_INVALID`).
fn key_spec_end() -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: ptr::null(),
        flags: 0,
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INVALID,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 0 },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_OMITTED,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 { lastkey: 0, keystep: 0, limit: 0 },
        },
    }
}

/// Leaks a vector as a raw array that lives as long as the process.
fn leak<T>(v: Vec<T>) -> *mut T {
    Box::leak(v.into_boxed_slice()).as_mut_ptr()
}
