//! Hands aijob's commands to Redis (through `ffi`): each
//! command of `commands::ALL` is created with its own C entry point, then described
//! (`RedisModule_SetCommandInfo`, Redis 7.0+ and Valkey) with its arity, summary,
//! complexity, key specs and argument tree, from its `Info`. redis-cli (7.2+) builds its
//! syntax hints from these docs, and cluster clients route by the key specs.
//!
//! The crate's `redis_module!` list would need each command written out a second time;
//! registering here from the one list keeps a command in one place.
//!
//! Everything handed to the server as command info is built once at load and deliberately
//! leaked, so it lives as long as the process (Redis copies it today, but nothing promises
//! that). A server without the info API gets no docs and a log line; nothing here can panic.

use std::ffi::{c_char, c_int, CString};
use std::ptr;

use redis_module::{raw, Context, Status};

use crate::command::{key, Arg, Info, Keys, Ty};
use crate::commands;
use crate::ffi::{self, Entry};

const SINCE: &str = "1.0.0";
const QUEUE_NOTE: &str = "The queue: every key of queue Q is aijob:{Q}:..., in the slot of Q.";
const OWN_KEY_NOTE: &str = "The caller's own key; all state lives in it.";
const FOUND_NOTE: &str = "The queue (see the other commands). CHARGE keys are found by the getkeys-api callback.";

/// How many commands the entry points below can serve.
const MAX_COMMANDS: usize = 64;
const _: () = assert!(commands::ALL.len() <= MAX_COMMANDS, "add entry points below");

/// The entry point of command `I` of `commands::ALL`. Redis calls a command's function with
/// nothing of ours that tells commands apart, so each command gets its own.
extern "C" fn entry<const I: usize>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let Some(cmd) = commands::ALL.get(I).copied() else {
        return raw::REDISMODULE_ERR as c_int;
    };
    // the call's own argument strings, borrowed while Redis runs the call
    let args = ffi::call_args(argv, argc);
    if let Keys::QueueAndFound(_, find) = cmd.info().keys {
        if ffi::is_keys_position_request(ctx) {
            report_keys(ctx, args, find);
            return raw::REDISMODULE_OK as c_int;
        }
    }
    crate::command::run(ctx, args, cmd);
    raw::REDISMODULE_OK as c_int
}

macro_rules! entries {
    ($($i:literal)*) => { [$(entry::<$i> as Entry),*] };
}

static ENTRIES: [Entry; MAX_COMMANDS] = entries!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63
);

/// Answers COMMAND GETKEYS (and ACL, cluster routing) with the positions `find` reports.
fn report_keys(ctx: *mut raw::RedisModuleCtx, args: &[*mut raw::RedisModuleString], find: fn(&[&[u8]]) -> Vec<usize>) {
    let words: Vec<&[u8]> = args.iter().skip(1).map(|a| ffi::arg_bytes(*a)).collect();
    // `find` reports positions of `words`, which skip the command name (hence + 1)
    for pos in find(&words) {
        ffi::key_at_pos(ctx, pos + 1);
    }
}

/// Creates every command of `commands::ALL`, then gives each its info. A command that
/// cannot be created fails the load; info the server refuses is logged (the command works
/// without it).
pub fn register(ctx: &Context) -> Status {
    for (i, cmd) in commands::ALL.iter().enumerate() {
        let Some(entry) = ENTRIES.get(i).copied() else { return Status::Err };
        if !create(ctx, cmd.info(), entry) {
            ctx.log_warning(&format!("aijob: could not create command {}", cmd.info().name));
            return Status::Err;
        }
    }
    describe(ctx);
    Status::Ok
}

fn create(ctx: &Context, info: &Info, entry: Entry) -> bool {
    let flags = match info.keys {
        Keys::QueueAndFound(..) => format!("{} getkeys-api", info.flags),
        _ => info.flags.to_string(),
    };
    let (first, last, step) = match info.keys {
        Keys::None => (0, 0, 0),
        _ => (1, 1, 1),
    };
    let (Ok(name), Ok(flags)) = (CString::new(info.name), CString::new(flags)) else { return false };
    ffi::create_command(ctx.ctx, &name, entry, &flags, (first, last, step))
}

/// Sets the info of every command.
fn describe(ctx: &Context) {
    if !ffi::has_command_info() {
        ctx.log_notice(
            "aijob: this server has no RedisModule_SetCommandInfo; COMMAND DOCS will not describe aijob's commands",
        );
        return;
    };
    let mut failed = Vec::new();
    for cmd in commands::ALL {
        let ok = match (CString::new(cmd.info().name), build(cmd.info())) {
            (Ok(name), Some(info)) => ffi::set_command_info(ctx.ctx, &name, info),
            _ => false,
        };
        if !ok {
            failed.push(cmd.info().name);
        }
    }
    if !failed.is_empty() {
        ctx.log_warning(&format!("aijob: no command docs for {} (the commands still work)", failed.join(", ")));
    }
}

/// The version block every `RedisModuleCommandInfo` points at (version 1: Redis 7.0's layout).
static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

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

/// The command's leaked `RedisModuleCommandInfo`.
fn build(cmd: &Info) -> Option<&'static raw::RedisModuleCommandInfo> {
    let (flags, notes) = match cmd.keys {
        Keys::None => (0, ""),
        Keys::Queue(flags) => (flags, QUEUE_NOTE),
        Keys::Own(flags) => (flags, OWN_KEY_NOTE),
        // only Q is at a fixed place: the others come from the getkeys-api callback
        Keys::QueueAndFound(flags, _) => (flags | key::INCOMPLETE, FOUND_NOTE),
    };
    let key_specs = match cmd.keys {
        Keys::None => ptr::null_mut(),
        _ => leak(vec![key_spec_at1(flags, cstr(notes)?), key_spec_end()]),
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
    Some(Box::leak(Box::new(info)))
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
