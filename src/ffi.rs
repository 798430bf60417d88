//! The module's one unsafe boundary: small safe wrappers over the raw API of
//! `redismodule.h` (Redis 7.0). Everything else in the module calls these, never `raw::*`
//! functions (register.rs builds the plain C structs of COMMAND DOCS, and hands them over
//! through [`set_command_info`]).
//!
//! Every function pointer is checked before use: a missing one is an error reply (or, where
//! nothing can be replied, a no-op), never a panic inside redis-server. An API newer than
//! Redis 7.0 is detected by its pointer, never by the server's version.
//!
//! The rule that makes these wrappers safe: a raw `RedisModuleCtx` or `RedisModuleString`
//! pointer handed to them is one Redis gave the module for the call being served (a
//! context, a command argument) or one an [`RStr`], [`Field`] or [`HeldArg`] owns. The
//! module makes no such pointer any other way. Worker threads (offload.rs) call only the
//! two thread-safe functions of [`BlockedClient`], read the bytes of a [`HeldArg`], and
//! lower their own priority.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int, c_long, c_longlong, c_void};
use std::ptr;

use aijob_core::store::{StreamEntry, StreamId};
use aijob_core::{AiError, Result};
use redis_module::raw;

pub const READ: c_int = 1;
pub const WRITE: c_int = 2;
pub const NO_EXPIRE: i64 = -1;
const HASH_NONE: c_int = 0;
/// `REDISMODULE_HASH_DELETE` is the pointer value 1.
const HASH_DELETE: *mut raw::RedisModuleString = ptr::without_provenance_mut(1);
const OK: c_int = raw::REDISMODULE_OK as c_int;
const ERR: c_int = raw::REDISMODULE_ERR as c_int;

pub const KEYTYPE_EMPTY: c_int = 0;
pub const KEYTYPE_STRING: c_int = 1;
pub const KEYTYPE_HASH: c_int = 3;
pub const KEYTYPE_ZSET: c_int = 5;
pub const KEYTYPE_STREAM: c_int = 7;

pub const FLAG_LUA: c_int = 1 << 0;
pub const FLAG_MULTI: c_int = 1 << 1;
pub const FLAG_MASTER: c_int = 1 << 2;
/// A replica that refuses writes.
pub const FLAG_READONLY: c_int = 1 << 4;
pub const FLAG_CLUSTER: c_int = 1 << 5;
/// Used memory is above `maxmemory`.
pub const FLAG_OOM: c_int = 1 << 10;
/// `maxmemory` is set (and this node enforces it), and its policy may evict keys.
pub const FLAG_MAXMEMORY: c_int = raw::REDISMODULE_CTX_FLAGS_MAXMEMORY as c_int;
pub const FLAG_EVICT: c_int = raw::REDISMODULE_CTX_FLAGS_EVICT as c_int;
pub const FLAG_LOADING: c_int = 1 << 13;
pub const FLAG_DENY_BLOCKING: c_int = 1 << 21;

const STREAM_ADD_AUTOID: c_int = 1;
const STREAM_TRIM_APPROX: c_int = 1;
const STREAM_ITERATOR_REVERSE: c_int = 2;

/// The `RedisModule_*` function pointer `$name`, if this server has it.
macro_rules! optional {
    ($name:ident) => {
        // SAFETY: RedisModule_Init fills these pointers once, before OnLoad runs; after that
        // they are only read, and only on Redis's main thread.
        unsafe { raw::$name }
    };
}

/// The `RedisModule_*` function pointer `$name`, or an error naming it.
macro_rules! required {
    ($name:ident) => {
        match optional!($name) {
            Some(f) => f,
            None => return Err(missing(stringify!($name))),
        }
    };
}

fn missing(name: &str) -> AiError {
    AiError::syntax(format!("this server lacks {name}, which aijob needs"))
}

/// A module string we own; freed on drop.
pub struct RStr {
    ctx: *mut raw::RedisModuleCtx,
    pub ptr: *mut raw::RedisModuleString,
}

impl RStr {
    pub fn new(ctx: *mut raw::RedisModuleCtx, bytes: &[u8]) -> Result<RStr> {
        let create = required!(RedisModule_CreateString);
        // SAFETY: `bytes` is valid for `len` bytes during the call; Redis copies them.
        let ptr = unsafe { create(ctx, bytes.as_ptr() as *const c_char, bytes.len()) };
        if ptr.is_null() {
            return Err(AiError::syntax("out of memory creating a string"));
        }
        Ok(RStr { ctx, ptr })
    }

    /// The decimal text of `v` (Redis formats it: no Rust allocation).
    pub fn int(ctx: *mut raw::RedisModuleCtx, v: i64) -> Result<RStr> {
        let create = required!(RedisModule_CreateStringFromLongLong);
        // SAFETY: takes a number only; `ctx` follows the module's pointer rule.
        let ptr = unsafe { create(ctx, v as c_longlong) };
        if ptr.is_null() {
            return Err(AiError::syntax("out of memory creating a string"));
        }
        Ok(RStr { ctx, ptr })
    }

    /// Takes ownership of a string Redis handed us (HashGet, ZsetRangeCurrentElement).
    fn adopt(ctx: *mut raw::RedisModuleCtx, ptr: *mut raw::RedisModuleString) -> Option<RStr> {
        // `then`, not `then_some`: a null pointer is never wrapped (its drop would free it)
        (!ptr.is_null()).then(|| RStr { ctx, ptr })
    }
}

impl AsRef<[u8]> for RStr {
    fn as_ref(&self) -> &[u8] {
        string_bytes(self.ptr).unwrap_or(&[])
    }
}

impl Drop for RStr {
    fn drop(&mut self) {
        if let Some(free) = optional!(RedisModule_FreeString) {
            // SAFETY: we own `ptr` (made or adopted by this RStr) and free it exactly once.
            unsafe { free(self.ctx, self.ptr) };
        }
    }
}

impl std::fmt::Debug for RStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RStr({:?})", String::from_utf8_lossy(self.as_ref()))
    }
}

impl PartialEq for RStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

/// The bytes of a live module string, borrowed: valid while the string lives unchanged.
fn string_bytes<'a>(s: *const raw::RedisModuleString) -> Result<&'a [u8]> {
    let ptr_len = required!(RedisModule_StringPtrLen);
    let mut len = 0usize;
    // SAFETY: `s` is a live module string (the module's pointer rule); `len` is ours.
    let p = unsafe { ptr_len(s, &mut len) };
    if p.is_null() {
        return Ok(&[]);
    }
    // SAFETY: Redis says `p` points at `len` bytes, which live as long as the string.
    Ok(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}

/// The arguments of the call being served, as Redis passed them (the command name first).
/// Valid until the entry point returns, which is why nothing may keep them: the
/// lifetime is the caller's promise.
pub fn call_args<'a>(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> &'a [*mut raw::RedisModuleString] {
    if argv.is_null() || argc <= 0 {
        return &[];
    }
    // SAFETY: Redis passes `argc` live argument strings in `argv`, which it keeps alive
    // (and unchanged) until the command's entry point returns.
    unsafe { std::slice::from_raw_parts(argv, argc as usize) }
}

/// The bytes of one argument of [`call_args`], borrowed for the same call.
pub fn arg_bytes<'a>(arg: *mut raw::RedisModuleString) -> &'a [u8] {
    string_bytes(arg).unwrap_or(&[])
}

/// The bytes of a module string (copied).
pub fn bytes_of(s: *const raw::RedisModuleString) -> Result<Vec<u8>> {
    Ok(string_bytes(s)?.to_vec())
}

/// A field name as a module string: a shared one for the short names the logic uses
/// (record, meta and group fields), made once per process, or a fresh one.
pub enum Field {
    Shared(*mut raw::RedisModuleString),
    Owned(RStr),
}

impl Field {
    pub fn ptr(&self) -> *mut raw::RedisModuleString {
        match self {
            Field::Shared(p) => *p,
            Field::Owned(s) => s.ptr,
        }
    }
}

/// Longest name kept shared, and how many: content hashes (64 bytes, used as fields of
/// the `pending` hash) are never kept, and the set of names the logic uses is small.
const FIELD_MAX_LEN: usize = 24;
const FIELDS_KEPT: usize = 128;

/// The shared field-name strings: found by name in `by_name`; and, since the logic's names
/// are constants whose bytes stay at one address, found first by that address in `recent`
/// (a direct-mapped cache, its hit checked against the name's bytes, so a name at a reused
/// address is never mistaken).
struct Fields {
    by_name: HashMap<Box<[u8]>, *mut raw::RedisModuleString, Fnv>,
    recent: [(usize, *mut raw::RedisModuleString); RECENT_SLOTS],
}

const RECENT_SLOTS: usize = 64;

thread_local! {
    /// Shared field-name strings, made without a context so they outlive every command:
    /// a job step reads and writes some 20 fields, and each module string costs an
    /// allocation. Redis only reads a field name it is given (HashGet, HashSet copy it).
    static FIELDS: RefCell<Fields> = RefCell::new(Fields {
        by_name: HashMap::with_capacity_and_hasher(FIELDS_KEPT, Fnv),
        recent: [(0, ptr::null_mut()); RECENT_SLOTS],
    });
}

/// FNV-1a: the shared names are a few bytes long, where SipHash costs more than the lookup.
#[derive(Default, Clone, Copy)]
struct Fnv;

struct FnvHasher(u64);

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;
    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub fn field(ctx: *mut raw::RedisModuleCtx, name: &[u8]) -> Result<Field> {
    if name.len() <= FIELD_MAX_LEN {
        if let Some(p) = shared_field(name) {
            return Ok(Field::Shared(p));
        }
    }
    Ok(Field::Owned(RStr::new(ctx, name)?))
}

fn shared_field(name: &[u8]) -> Option<*mut raw::RedisModuleString> {
    let at = name.as_ptr() as usize;
    let slot = (at >> 3 ^ at >> 9) % RECENT_SLOTS;
    FIELDS.with(|f| {
        let mut f = f.try_borrow_mut().ok()?;
        if let Some(&(seen, p)) = f.recent.get(slot) {
            if seen == at && !p.is_null() && string_bytes(p).ok() == Some(name) {
                return Some(p);
            }
        }
        let p = match f.by_name.get(name) {
            Some(p) => *p,
            None => {
                if f.by_name.len() >= FIELDS_KEPT {
                    return None;
                }
                let create = optional!(RedisModule_CreateString)?;
                // SAFETY: a null context makes a string no command frees automatically (kept
                // for the process's life); `name` is valid for `len` bytes and copied.
                let p = unsafe { create(ptr::null_mut(), name.as_ptr() as *const c_char, name.len()) };
                if p.is_null() {
                    return None;
                }
                f.by_name.insert(name.into(), p);
                p
            }
        };
        if let Some(r) = f.recent.get_mut(slot) {
            *r = (at, p);
        }
        Some(p)
    })
}

/// An open key; closed on drop.
pub struct OpenKey {
    pub ptr: *mut raw::RedisModuleKey,
}

impl OpenKey {
    /// Opens `name`; for READ, None when the key does not exist.
    pub fn open(ctx: *mut raw::RedisModuleCtx, name: &RStr, mode: c_int) -> Result<Option<OpenKey>> {
        OpenKey::open_raw(ctx, name.ptr, mode)
    }

    /// Opens a module string the caller holds (a command argument) as the key name.
    pub fn open_raw(
        ctx: *mut raw::RedisModuleCtx,
        name: *mut raw::RedisModuleString,
        mode: c_int,
    ) -> Result<Option<OpenKey>> {
        let open = required!(RedisModule_OpenKey);
        // SAFETY: `ctx` and `name` follow the module's pointer rule; the handle is closed
        // on drop, before the context ends.
        let ptr = unsafe { open(ctx, name, mode) };
        Ok((!ptr.is_null()).then(|| OpenKey { ptr }))
    }

    pub fn key_type(&self) -> Result<c_int> {
        let f = required!(RedisModule_KeyType);
        // SAFETY: `self.ptr` is an open key (closed only on drop); likewise below.
        Ok(unsafe { f(self.ptr) })
    }

    pub fn len(&self) -> Result<usize> {
        let f = required!(RedisModule_ValueLength);
        // SAFETY: an open key.
        Ok(unsafe { f(self.ptr) })
    }

    pub fn check_type(&self, keytype: c_int) -> Result<bool> {
        match self.key_type()? {
            KEYTYPE_EMPTY => Ok(false),
            t if t == keytype => Ok(true),
            _ => Err(AiError::wrong_type()),
        }
    }

    pub fn hash_get(&self, ctx: *mut raw::RedisModuleCtx, field: &Field) -> Result<Option<Vec<u8>>> {
        Ok(self.hash_get_str(ctx, field)?.map(|v| v.as_ref().to_vec()))
    }

    /// A field's value as a module string of our own (Redis copies it out of the hash).
    pub fn hash_get_str(&self, ctx: *mut raw::RedisModuleCtx, field: &Field) -> Result<Option<RStr>> {
        let get = required!(RedisModule_HashGet);
        let mut out: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: an open key, a live field string, an out pointer of ours; the list of
        // (field, out) pairs ends with the null Redis expects.
        unsafe { get(self.ptr, HASH_NONE, field.ptr(), &mut out as *mut _, ptr::null_mut::<c_void>()) };
        Ok(RStr::adopt(ctx, out))
    }

    pub fn hash_set(&self, field: &Field, value: &RStr) -> Result<()> {
        let set = required!(RedisModule_HashSet);
        // SAFETY: an open key, live strings (Redis copies them), the terminating null.
        unsafe { set(self.ptr, HASH_NONE, field.ptr(), value.ptr, ptr::null_mut::<c_void>()) };
        Ok(())
    }

    /// Deletes a field; true when it existed.
    pub fn hash_del(&self, field: &Field) -> Result<bool> {
        let set = required!(RedisModule_HashSet);
        // SAFETY: as hash_set; HASH_DELETE is the marker value Redis documents for a delete.
        let n = unsafe { set(self.ptr, HASH_NONE, field.ptr(), HASH_DELETE, ptr::null_mut::<c_void>()) };
        Ok(n > 0)
    }

    /// Every field of a hash.
    pub fn hash_all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let scan_key = required!(RedisModule_ScanKey);
        let cursor = ScanCursor::new()?;
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            // SAFETY: an open key, a live cursor, and `out` outlives the call, in which
            // Redis hands it to `collect_field` only.
            let more =
                unsafe { scan_key(self.ptr, cursor.ptr, Some(collect_field), &mut out as *mut _ as *mut c_void) };
            if more == 0 {
                break;
            }
        }
        Ok(out)
    }

    pub fn zadd(&self, score: f64, member: &RStr) -> Result<()> {
        let add = required!(RedisModule_ZsetAdd);
        // SAFETY: an open key and a live member string; the flags pointer may be null.
        unsafe { add(self.ptr, score, member.ptr, ptr::null_mut()) };
        Ok(())
    }

    /// Removes a member; true when it was there.
    pub fn zrem(&self, member: &RStr) -> Result<bool> {
        let rem = required!(RedisModule_ZsetRem);
        let mut deleted: c_int = 0;
        // SAFETY: an open key, a live member string, an out pointer of ours.
        unsafe { rem(self.ptr, member.ptr, &mut deleted) };
        Ok(deleted != 0)
    }

    pub fn zscore(&self, member: &RStr) -> Result<Option<f64>> {
        let get = required!(RedisModule_ZsetScore);
        let mut score = 0f64;
        // SAFETY: an open key, a live member string, an out pointer of ours.
        let ok = unsafe { get(self.ptr, member.ptr, &mut score) };
        Ok((ok == OK).then_some(score))
    }

    /// Members in a score range, ascending (or descending), at most `limit`.
    pub fn zrange(&self, ctx: *mut raw::RedisModuleCtx, r: &aijob_core::store::ZRange) -> Result<Vec<(Vec<u8>, f64)>> {
        let (first, last) = (required!(RedisModule_ZsetFirstInScoreRange), required!(RedisModule_ZsetLastInScoreRange));
        let (ended, current) =
            (required!(RedisModule_ZsetRangeEndReached), required!(RedisModule_ZsetRangeCurrentElement));
        let (next, prev, stop) = (
            required!(RedisModule_ZsetRangeNext),
            required!(RedisModule_ZsetRangePrev),
            required!(RedisModule_ZsetRangeStop),
        );
        let (minex, maxex) = (r.min_exclusive as c_int, r.max_exclusive as c_int);
        let start = if r.reverse { last } else { first };
        // SAFETY: an open key; every range call below works on it until `stop` ends the range.
        let started = unsafe { start(self.ptr, r.min, r.max, minex, maxex) };
        let mut out = Vec::new();
        if started != OK {
            return Ok(out);
        }
        // SAFETY: the range started above is live until `stop`.
        while out.len() < r.limit && unsafe { ended(self.ptr) } == 0 {
            let mut score = 0f64;
            // SAFETY: a live range; Redis hands us a string of our own (adopted, freed on drop).
            let el = unsafe { current(self.ptr, &mut score) };
            if let Some(s) = RStr::adopt(ctx, el) {
                out.push((s.as_ref().to_vec(), score));
            }
            // SAFETY: a live range.
            let moved = unsafe {
                if r.reverse {
                    prev(self.ptr)
                } else {
                    next(self.ptr)
                }
            };
            if moved == 0 {
                break;
            }
        }
        // SAFETY: ends the range started above.
        unsafe { stop(self.ptr) };
        Ok(out)
    }

    pub fn string_get(&self) -> Result<Vec<u8>> {
        Ok(self.string_slice()?.map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// A string key's bytes, borrowed: valid while the key is open and unchanged.
    pub fn string_bytes(&self) -> Result<&[u8]> {
        self.string_slice()?.ok_or_else(AiError::wrong_type)
    }

    fn string_slice(&self) -> Result<Option<&[u8]>> {
        let Some((p, len)) = self.string_dma(READ)? else { return Ok(None) };
        // SAFETY: Redis says `p` points at `len` bytes of the key's value, valid while the
        // key is open and not changed; the borrow of `self` keeps it open.
        Ok(Some(unsafe { std::slice::from_raw_parts(p, len) }))
    }

    /// Where the string's bytes are, and how many (None when not a string).
    fn string_dma(&self, mode: c_int) -> Result<Option<(*mut u8, usize)>> {
        let dma = required!(RedisModule_StringDMA);
        let mut len = 0usize;
        // SAFETY: an open key; `len` is ours.
        let p = unsafe { dma(self.ptr, &mut len, mode) };
        Ok((!p.is_null()).then_some((p as *mut u8, len)))
    }

    /// Makes the key (open for writing) the string `bytes`, in place: no module string
    /// is made for the value. Keeps the key's expiry.
    pub fn string_write(&self, bytes: &[u8]) -> Result<()> {
        let truncate = required!(RedisModule_StringTruncate);
        // SAFETY: an open key.
        if unsafe { truncate(self.ptr, bytes.len()) } != OK {
            return Err(AiError::wrong_type());
        }
        match self.string_dma(READ | WRITE)? {
            // SAFETY: the key's value, just sized to `len` bytes, open for writing; `bytes`
            // is our own buffer, so the two do not overlap.
            Some((dst, len)) if len == bytes.len() => unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), dst, len) },
            _ => return Err(AiError::syntax("could not write a string key")),
        }
        Ok(())
    }

    pub fn string_set(&self, value: &RStr) -> Result<()> {
        let set = required!(RedisModule_StringSet);
        // SAFETY: an open key and a live string (Redis keeps its own reference).
        unsafe { set(self.ptr, value.ptr) };
        Ok(())
    }

    /// ms left, or NO_EXPIRE.
    pub fn ttl(&self) -> Result<i64> {
        let get = required!(RedisModule_GetExpire);
        // SAFETY: an open key.
        Ok(unsafe { get(self.ptr) })
    }

    pub fn expire_at(&self, at: i64) -> Result<()> {
        let set = required!(RedisModule_SetAbsExpire);
        // SAFETY: an open key.
        unsafe { set(self.ptr, at) };
        Ok(())
    }

    pub fn persist(&self) -> Result<()> {
        let set = required!(RedisModule_SetExpire);
        // SAFETY: an open key.
        unsafe { set(self.ptr, NO_EXPIRE) };
        Ok(())
    }

    pub fn delete(&self) -> Result<()> {
        let delete = required!(RedisModule_DeleteKey);
        // SAFETY: an open key.
        unsafe { delete(self.ptr) };
        Ok(())
    }

    /// Appends an entry with an id Redis makes; returns that id (ms, seq).
    pub fn stream_add(&self, fields: &mut [*mut raw::RedisModuleString]) -> Result<(u64, u64)> {
        let add = required!(RedisModule_StreamAdd);
        let mut id = raw::RedisModuleStreamID { ms: 0, seq: 0 };
        // SAFETY: an open key; `fields` holds field/value pairs of live strings (the
        // module's pointer rule), `len / 2` of them; `id` is ours.
        let added =
            unsafe { add(self.ptr, STREAM_ADD_AUTOID, &mut id, fields.as_mut_ptr(), (fields.len() / 2) as i64) };
        if added != OK {
            return Err(AiError::syntax("could not append to the events stream"));
        }
        Ok((id.ms, id.seq))
    }

    /// Trims the stream to about `maxlen` entries (Redis's approximate trim).
    pub fn stream_trim(&self, maxlen: i64) -> Result<()> {
        let trim = required!(RedisModule_StreamTrimByLength);
        // SAFETY: an open key.
        unsafe { trim(self.ptr, STREAM_TRIM_APPROX, maxlen as c_longlong) };
        Ok(())
    }

    /// Appends an entry with the id `id`, which must be above the stream's last.
    pub fn stream_add_id(&self, id: StreamId, fields: &mut [*mut raw::RedisModuleString]) -> Result<()> {
        let add = required!(RedisModule_StreamAdd);
        let mut raw_id = raw::RedisModuleStreamID { ms: id.ms, seq: id.seq };
        // SAFETY: an open key; `fields` holds field/value pairs of live strings, `len / 2`
        // of them; `raw_id` is ours (Redis reads it, with no AUTOID flag).
        let added = unsafe { add(self.ptr, 0, &mut raw_id, fields.as_mut_ptr(), (fields.len() / 2) as i64) };
        if added != OK {
            return Err(AiError::syntax(format!("could not append entry {id} to a job's stream")));
        }
        Ok(())
    }

    /// Drops every entry before `id` (an exact trim); how many went.
    pub fn stream_trim_before(&self, id: StreamId) -> Result<i64> {
        let trim = required!(RedisModule_StreamTrimByID);
        let mut raw_id = raw::RedisModuleStreamID { ms: id.ms, seq: id.seq };
        // SAFETY: an open key; `raw_id` is ours; 0: not approximate.
        let n = unsafe { trim(self.ptr, 0, &mut raw_id) };
        Ok(n.max(0))
    }

    /// The id of the stream's last entry (None when it has none).
    pub fn stream_last_id(&self) -> Result<Option<StreamId>> {
        let (start, stop) = (required!(RedisModule_StreamIteratorStart), required!(RedisModule_StreamIteratorStop));
        let next_id = required!(RedisModule_StreamIteratorNextID);
        // SAFETY: an open key holding a stream (the caller checked its type); null ids: the
        // whole stream, newest first. The iterator lives until `stop`.
        if unsafe { start(self.ptr, STREAM_ITERATOR_REVERSE, ptr::null_mut(), ptr::null_mut()) } != OK {
            return Ok(None);
        }
        let mut id = raw::RedisModuleStreamID { ms: 0, seq: 0 };
        let mut numfields: c_long = 0;
        // SAFETY: the live iterator started above; out pointers of ours.
        let found = unsafe { next_id(self.ptr, &mut id, &mut numfields) } == OK;
        // SAFETY: ends the iterator started above.
        unsafe { stop(self.ptr) };
        Ok(found.then(|| StreamId::new(id.ms, id.seq)))
    }

    /// Up to `count` entries from `from` on (inclusive), oldest first.
    pub fn stream_range(
        &self,
        ctx: *mut raw::RedisModuleCtx,
        from: StreamId,
        count: usize,
    ) -> Result<Vec<StreamEntry>> {
        let (start, stop) = (required!(RedisModule_StreamIteratorStart), required!(RedisModule_StreamIteratorStop));
        let (next_id, next_field) =
            (required!(RedisModule_StreamIteratorNextID), required!(RedisModule_StreamIteratorNextField));
        let mut lower = raw::RedisModuleStreamID { ms: from.ms, seq: from.seq };
        // SAFETY: an open key holding a stream (the caller checked its type); `lower` is
        // ours; a null end id means no upper bound. The iterator lives until `stop`.
        if unsafe { start(self.ptr, 0, &mut lower, ptr::null_mut()) } != OK {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        while out.len() < count {
            let mut id = raw::RedisModuleStreamID { ms: 0, seq: 0 };
            let mut numfields: c_long = 0;
            // SAFETY: the live iterator started above; out pointers of ours.
            if unsafe { next_id(self.ptr, &mut id, &mut numfields) } != OK {
                break;
            }
            let mut fields = Vec::with_capacity(numfields.max(0) as usize);
            loop {
                let (mut f, mut v): (*mut raw::RedisModuleString, *mut raw::RedisModuleString) =
                    (ptr::null_mut(), ptr::null_mut());
                // SAFETY: the live iterator; Redis hands us two new strings of our own
                // (no automatic memory on our contexts), adopted and freed on drop.
                if unsafe { next_field(self.ptr, &mut f, &mut v) } != OK {
                    break;
                }
                if let (Some(f), Some(v)) = (RStr::adopt(ctx, f), RStr::adopt(ctx, v)) {
                    fields.push((f.as_ref().to_vec(), v.as_ref().to_vec()));
                }
            }
            out.push((StreamId::new(id.ms, id.seq), fields));
        }
        // SAFETY: ends the iterator started above.
        unsafe { stop(self.ptr) };
        Ok(out)
    }
}

impl Drop for OpenKey {
    fn drop(&mut self) {
        if let Some(close) = optional!(RedisModule_CloseKey) {
            // SAFETY: `ptr` was opened by this handle and is closed exactly once.
            unsafe { close(self.ptr) };
        }
    }
}

/// Redis calls this once per field of `hash_all`, with the `Vec` it was given.
unsafe extern "C" fn collect_field(
    _key: *mut raw::RedisModuleKey,
    field: *mut raw::RedisModuleString,
    value: *mut raw::RedisModuleString,
    privdata: *mut c_void,
) {
    // SAFETY: `privdata` is the `&mut Vec` hash_all passed, alive and unaliased for the call.
    let out = unsafe { &mut *(privdata as *mut Vec<(Vec<u8>, Vec<u8>)>) };
    if let (Ok(f), Ok(v)) = (bytes_of(field), bytes_of(value)) {
        out.push((f, v));
    }
}

/// A SCAN cursor; destroyed on drop.
pub struct ScanCursor {
    ptr: *mut raw::RedisModuleScanCursor,
}

impl ScanCursor {
    pub fn new() -> Result<ScanCursor> {
        let create = required!(RedisModule_ScanCursorCreate);
        // SAFETY: no arguments; the cursor is destroyed on drop.
        let ptr = unsafe { create() };
        if ptr.is_null() {
            return Err(AiError::syntax("could not make a scan cursor"));
        }
        Ok(ScanCursor { ptr })
    }

    /// Starts the walk over (for the next db).
    pub fn restart(&self) {
        if let Some(f) = optional!(RedisModule_ScanCursorRestart) {
            // SAFETY: a live cursor.
            unsafe { f(self.ptr) };
        }
    }

    /// One SCAN step over the selected db: calls `on_name` with each key name met; false
    /// when the db has been walked through.
    pub fn scan(&self, ctx: *mut raw::RedisModuleCtx, on_name: &mut dyn FnMut(&[u8])) -> bool {
        let Some(scan) = optional!(RedisModule_Scan) else { return false };
        let mut sink: &mut dyn FnMut(&[u8]) = on_name;
        // SAFETY: a live cursor and context; `sink` outlives the call, in which Redis
        // hands it to `scanned` only.
        unsafe { scan(ctx, self.ptr, Some(scanned), &mut sink as *mut _ as *mut c_void) != 0 }
    }
}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        if let Some(f) = optional!(RedisModule_ScanCursorDestroy) {
            // SAFETY: destroys the cursor this value made, once.
            unsafe { f(self.ptr) };
        }
    }
}

unsafe extern "C" fn scanned(
    _ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    _key: *mut raw::RedisModuleKey,
    privdata: *mut c_void,
) {
    // SAFETY: `privdata` is the `&mut &mut dyn FnMut` `scan` passed, alive for the call.
    let sink = unsafe { &mut *(privdata as *mut &mut dyn FnMut(&[u8])) };
    if let Ok(bytes) = string_bytes(name) {
        sink(bytes);
    }
}

/// The server's clock in ms since the epoch, read once per command.
pub fn now_ms() -> i64 {
    match optional!(RedisModule_Milliseconds) {
        // SAFETY: takes no arguments.
        Some(f) => unsafe { f() },
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    }
}

pub fn context_flags(ctx: *mut raw::RedisModuleCtx) -> c_int {
    match optional!(RedisModule_GetContextFlags) {
        // SAFETY: a live context (the module's pointer rule); likewise for every `ctx` below.
        Some(f) => unsafe { f(ctx) },
        None => 0,
    }
}

/// Whether used memory is over `maxmemory` now, by Redis's own test: the one that refuses
/// commands flagged `deny-oom` (`getMaxmemoryState`, read live, not as the command began).
pub fn memory_full(ctx: *mut raw::RedisModuleCtx) -> bool {
    context_flags(ctx) & FLAG_OOM != 0
}

/// The db the context works on.
pub fn selected_db(ctx: *mut raw::RedisModuleCtx) -> c_int {
    match optional!(RedisModule_GetSelectedDb) {
        // SAFETY: a live context.
        Some(f) => unsafe { f(ctx) },
        None => 0,
    }
}

/// Makes `db` the context's db; an error when it does not exist.
pub fn select_db(ctx: *mut raw::RedisModuleCtx, db: c_int) -> Result<()> {
    let select = required!(RedisModule_SelectDb);
    // SAFETY: a live context; Redis checks `db`.
    match unsafe { select(ctx, db) } {
        OK => Ok(()),
        _ => Err(AiError::syntax(format!("no db {db}"))),
    }
}

/// Propagates `cmd argv...` to replicas and the AOF (not executed here).
pub fn replicate(ctx: *mut raw::RedisModuleCtx, cmd: &CStr, argv: &mut [*mut raw::RedisModuleString]) -> Result<()> {
    let replicate = required!(RedisModule_Replicate);
    // SAFETY: format "v" takes an array of `len` live strings (the module's pointer rule),
    // which Redis copies.
    unsafe { replicate(ctx, cmd.as_ptr(), c"v".as_ptr(), argv.as_mut_ptr(), argv.len()) };
    Ok(())
}

/// Replicates `DEL name`.
pub fn replicate_del(ctx: *mut raw::RedisModuleCtx, name: *mut raw::RedisModuleString) -> Result<()> {
    replicate(ctx, c"DEL", &mut [name])
}

/// Replicates `SET name <value> PXAT at`, the value taken from bytes (no module string made).
pub fn replicate_set_pxat(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
    value: &[u8],
    at: i64,
) -> Result<()> {
    let replicate = required!(RedisModule_Replicate);
    // SAFETY: format "sbcl": a live string, a buffer valid for its length, a C string and a
    // number, in that order; Redis copies them all.
    unsafe {
        replicate(
            ctx,
            c"SET".as_ptr(),
            c"sbcl".as_ptr(),
            name,
            value.as_ptr() as *const c_char,
            value.len(),
            c"PXAT".as_ptr(),
            at as c_longlong,
        )
    };
    Ok(())
}

/// PUBLISH (SPUBLISH on a cluster, when the server has it).
pub fn publish(ctx: *mut raw::RedisModuleCtx, channel: &RStr, message: &RStr) -> Result<()> {
    let cluster = context_flags(ctx) & FLAG_CLUSTER != 0;
    match optional!(RedisModule_PublishMessageShard) {
        // SAFETY: a live context and live strings; Redis copies the message out.
        Some(shard) if cluster => unsafe { shard(ctx, channel.ptr, message.ptr) },
        _ => {
            let publish = required!(RedisModule_PublishMessage);
            // SAFETY: as above.
            unsafe { publish(ctx, channel.ptr, message.ptr) }
        }
    };
    Ok(())
}

/// Wakes the clients blocked on the key `name`.
pub fn signal_key_as_ready(ctx: *mut raw::RedisModuleCtx, name: &RStr) -> Result<()> {
    let signal = required!(RedisModule_SignalKeyAsReady);
    // SAFETY: a live context and key name.
    unsafe { signal(ctx, name.ptr) };
    Ok(())
}

/// True when Redis calls the command only to learn its key positions (COMMAND GETKEYS).
pub fn is_keys_position_request(ctx: *mut raw::RedisModuleCtx) -> bool {
    match optional!(RedisModule_IsKeysPositionRequest) {
        // SAFETY: a live context.
        Some(f) => unsafe { f(ctx) != 0 },
        None => false,
    }
}

/// Answers a key-position request: argument `pos` (the command name is 0) is a key.
pub fn key_at_pos(ctx: *mut raw::RedisModuleCtx, pos: usize) {
    if let (Some(f), Ok(pos)) = (optional!(RedisModule_KeyAtPos), c_int::try_from(pos)) {
        // SAFETY: a live context in a key-position request; Redis checks `pos`.
        unsafe { f(ctx, pos) };
    }
}

/// A command's C entry point. A safe `extern "C" fn`: Redis calls it with the live call's
/// context and arguments, which is all it touches.
pub type Entry = extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// Creates command `name` with `entry`, `flags` and the legacy key range (first, last, step);
/// false if the server refused it.
pub fn create_command(
    ctx: *mut raw::RedisModuleCtx,
    name: &CStr,
    entry: Entry,
    flags: &CStr,
    keys: (c_int, c_int, c_int),
) -> bool {
    let Some(create) = optional!(RedisModule_CreateCommand) else { return false };
    // SAFETY: called from OnLoad with its context; Redis copies `name` and `flags`, which
    // live for the call; `entry` is a plain function that lives forever.
    unsafe {
        create(ctx, name.as_ptr(), Some(entry), flags.as_ptr(), keys.0, keys.1, keys.2) == raw::REDISMODULE_OK as c_int
    }
}

/// True when this server can take command info (`RedisModule_SetCommandInfo`, Redis 7.0+).
pub fn has_command_info() -> bool {
    optional!(RedisModule_GetCommand).is_some() && optional!(RedisModule_SetCommandInfo).is_some()
}

/// Gives command `name` (created by this module) its info; false if there is no such
/// command or the server refused the info.
///
/// The caller's promise, why this takes a `&'static`: `info` and every pointer in it
/// lives for the process, built with the layout of the version it names, each array
/// zero-terminated.
pub fn set_command_info(
    ctx: *mut raw::RedisModuleCtx,
    name: &CStr,
    info: &'static raw::RedisModuleCommandInfo,
) -> bool {
    let (Some(get), Some(set)) = (optional!(RedisModule_GetCommand), optional!(RedisModule_SetCommandInfo)) else {
        return false;
    };
    // SAFETY: `name` is NUL-terminated and lives for the call; GetCommand answers NULL
    // for a command this module did not create.
    let handle = unsafe { get(ctx, name.as_ptr()) };
    // SAFETY: a live handle, and `info` as promised above.
    !handle.is_null() && unsafe { set(handle, info) } == raw::REDISMODULE_OK as c_int
}

/// Writes `line` to the server's log at `level` ("warning", "notice", ...), after the
/// module's name ("<aijob>"; Redis writes it when there is a context). The line is passed
/// as an argument of "%s", never as the format.
pub fn log(ctx: *mut raw::RedisModuleCtx, level: &CStr, line: &str) {
    let Some(log) = optional!(RedisModule_Log) else { return };
    let name = if ctx.is_null() { "<aijob> " } else { "" };
    let printable: String = name.chars().chain(line.chars()).map(|c| if c.is_control() { ' ' } else { c }).collect();
    let Ok(text) = CString::new(printable) else { return };
    // SAFETY: a live (or null: logged without the module's name) context and C strings
    // that outlive the call; "%s" consumes exactly the one argument given.
    unsafe { log(ctx, level.as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
}

// ---- server settings and events ----

/// The server's `maxmemory` (bytes, 0 for none) and `maxmemory-policy`, read from its
/// `INFO memory` section (no command call; Redis 6.0+).
pub fn memory_settings(ctx: *mut raw::RedisModuleCtx) -> Result<(u64, Vec<u8>)> {
    let (get, free) = (required!(RedisModule_GetServerInfo), required!(RedisModule_FreeServerInfo));
    let (text, unsigned) =
        (required!(RedisModule_ServerInfoGetFieldC), required!(RedisModule_ServerInfoGetFieldUnsigned));
    // SAFETY: a live context (the module's pointer rule) and a C string; the data is freed below.
    let info = unsafe { get(ctx, c"memory".as_ptr()) };
    if info.is_null() {
        return Err(AiError::syntax("INFO memory could not be read"));
    }
    let mut failed: c_int = 0;
    // SAFETY: live info data and C strings; `failed` is ours.
    let maxmemory = unsafe { unsigned(info, c"maxmemory".as_ptr(), &mut failed) };
    // SAFETY: live info data; the C string it returns lives until the data is freed, and
    // is copied before that.
    let policy = unsafe {
        let p = text(info, c"maxmemory_policy".as_ptr());
        (!p.is_null()).then(|| CStr::from_ptr(p).to_bytes().to_vec())
    };
    // SAFETY: frees the data made above, once; nothing borrowed from it is kept.
    unsafe { free(ctx, info) };
    match (failed, policy) {
        (0, Some(policy)) => Ok((maxmemory as u64, policy)),
        _ => Err(AiError::syntax("INFO memory lacks maxmemory or maxmemory_policy")),
    }
}

thread_local! {
    /// What `config_changed` calls (set once, by `on_config_change`).
    static CONFIG_HANDLER: std::cell::Cell<Option<fn(*mut raw::RedisModuleCtx)>> = const { std::cell::Cell::new(None) };
}

/// Calls `handler` after every CONFIG SET, with the server's context (the server event
/// `RedisModuleEvent_Config`, Redis 7.0+). An error where the server lacks the event: the
/// caller then watches another way.
pub fn on_config_change(ctx: *mut raw::RedisModuleCtx, handler: fn(*mut raw::RedisModuleCtx)) -> Result<()> {
    let subscribe = required!(RedisModule_SubscribeToServerEvent);
    let event = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_CONFIG, dataver: 1 };
    if let Some(supported) = optional!(RedisModule_IsSubEventSupported) {
        // SAFETY: takes plain values only.
        if unsafe { supported(event, raw::REDISMODULE_SUBEVENT_CONFIG_CHANGE) } == 0 {
            return Err(missing("RedisModuleEvent_Config"));
        }
    }
    CONFIG_HANDLER.with(|h| h.set(Some(handler)));
    // SAFETY: a live context; `config_changed` has the signature Redis calls and lives for
    // the process.
    if unsafe { subscribe(ctx, event, Some(config_changed)) } != OK {
        return Err(missing("RedisModuleEvent_Config"));
    }
    Ok(())
}

unsafe extern "C" fn config_changed(
    ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    if let Some(handler) = CONFIG_HANDLER.with(|h| h.get()) {
        handler(ctx);
    }
}

// ---- replies ----

pub fn reply_int(ctx: *mut raw::RedisModuleCtx, n: i64) {
    if let Some(f) = optional!(RedisModule_ReplyWithLongLong) {
        // SAFETY: a live context of a call being answered; likewise for every reply below.
        unsafe { f(ctx, n) };
    }
}

pub fn reply_bulk(ctx: *mut raw::RedisModuleCtx, b: &[u8]) {
    if let Some(f) = optional!(RedisModule_ReplyWithStringBuffer) {
        // SAFETY: `b` is valid for its length during the call; Redis copies it.
        unsafe { f(ctx, b.as_ptr() as *const c_char, b.len()) };
    }
}

/// A simple string (`+OK`); a string holding NUL or a line break is sent as "ERR".
pub fn reply_simple(ctx: *mut raw::RedisModuleCtx, s: &str) {
    let Some(f) = optional!(RedisModule_ReplyWithSimpleString) else { return };
    let c = CString::new(s).unwrap_or_default();
    // SAFETY: a C string that outlives the call.
    unsafe { f(ctx, c.as_ptr()) };
}

/// An error reply; `line` must be one line of printable ASCII, code first.
pub fn reply_error(ctx: *mut raw::RedisModuleCtx, line: &str) {
    let (Some(f), Ok(c)) = (optional!(RedisModule_ReplyWithError), CString::new(line)) else { return };
    // SAFETY: a C string that outlives the call.
    unsafe { f(ctx, c.as_ptr()) };
}

pub fn reply_wrong_arity(ctx: *mut raw::RedisModuleCtx) {
    if let Some(f) = optional!(RedisModule_WrongArity) {
        // SAFETY: a live context.
        unsafe { f(ctx) };
    }
}

pub fn reply_null(ctx: *mut raw::RedisModuleCtx) {
    if let Some(f) = optional!(RedisModule_ReplyWithNull) {
        // SAFETY: a live context.
        unsafe { f(ctx) };
    }
}

pub fn reply_null_array(ctx: *mut raw::RedisModuleCtx) {
    if let Some(f) = optional!(RedisModule_ReplyWithNullArray) {
        // SAFETY: a live context.
        unsafe { f(ctx) };
    }
}

pub fn reply_string(ctx: *mut raw::RedisModuleCtx, s: &RStr) {
    if let Some(f) = optional!(RedisModule_ReplyWithString) {
        // SAFETY: a live string; Redis takes its own reference.
        unsafe { f(ctx, s.ptr) };
    }
}

/// Opens an array of `len` elements; the caller replies them next.
pub fn reply_array(ctx: *mut raw::RedisModuleCtx, len: usize) {
    if let Some(f) = optional!(RedisModule_ReplyWithArray) {
        // SAFETY: a live context.
        unsafe { f(ctx, len as c_long) };
    }
}

/// Opens a map of `len` pairs (a flat array of `2 * len` under RESP2, or where the server
/// lacks maps); the caller replies the keys and values next. False when nothing was opened.
pub fn reply_map(ctx: *mut raw::RedisModuleCtx, len: usize) -> bool {
    match (optional!(RedisModule_ReplyWithMap), optional!(RedisModule_ReplyWithArray)) {
        // SAFETY: a live context.
        (Some(f), _) => unsafe { f(ctx, len as c_long) },
        // SAFETY: a live context.
        (None, Some(f)) => unsafe { f(ctx, (len * 2) as c_long) },
        (None, None) => return false,
    };
    true
}

// ---- blocked clients ----

/// The callbacks of a client blocked on a key.
pub trait Blocked {
    /// What the blocking command leaves for its later reply; dropped when the client is
    /// unblocked.
    type Private: 'static;
    /// The key was signalled: reply and return true, or return false to stay blocked.
    /// `args` is the blocked command's arguments, its name first.
    fn on_ready(ctx: *mut raw::RedisModuleCtx, args: &[Vec<u8>], private: Option<&Self::Private>) -> bool;
    /// The timeout passed: reply.
    fn on_timeout(ctx: *mut raw::RedisModuleCtx, private: Option<&Self::Private>);
}

/// Blocks the calling client on `key` for `timeout_ms` (0: forever) with `B`'s callbacks,
/// which get `private` back.
pub fn block_on_key<B: Blocked>(
    ctx: *mut raw::RedisModuleCtx,
    key: &RStr,
    timeout_ms: i64,
    private: B::Private,
) -> Result<()> {
    let block = required!(RedisModule_BlockClientOnKeys);
    let mut keys = [key.ptr];
    let data = Box::into_raw(Box::new(private)) as *mut c_void;
    // SAFETY: a live context of a command being served, one live key name (Redis copies
    // it), callbacks with the signature Redis calls, and private data Redis hands back to
    // them and to `free_private::<B>`, which frees it once, when the client is unblocked.
    let bc = unsafe {
        block(
            ctx,
            Some(ready::<B>),
            Some(timed_out::<B>),
            Some(free_private::<B>),
            timeout_ms,
            keys.as_mut_ptr(),
            1,
            data,
        )
    };
    if bc.is_null() {
        // SAFETY: Redis did not take the data; it is ours to free, once, here.
        drop(unsafe { Box::from_raw(data as *mut B::Private) });
        return Err(AiError::syntax("could not block the client"));
    }
    Ok(())
}

/// The private data of the blocked client being served, as `block_on_key::<B>` left it.
fn private<'a, B: Blocked>(ctx: *mut raw::RedisModuleCtx) -> Option<&'a B::Private> {
    let get = optional!(RedisModule_GetBlockedClientPrivateData)?;
    // SAFETY: called from `B`'s callbacks with the blocked client's context.
    let p = unsafe { get(ctx) } as *const B::Private;
    // SAFETY: non-null, it is the box `block_on_key::<B>` made, alive until
    // `free_private::<B>` runs after the callbacks.
    (!p.is_null()).then(|| unsafe { &*p })
}

unsafe extern "C" fn ready<B: Blocked>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes the blocked command's `argc` live argument strings in `argv`.
    let args = unsafe { copy_args(argv, argc) };
    if B::on_ready(ctx, &args, private::<B>(ctx)) {
        OK
    } else {
        ERR
    }
}

unsafe extern "C" fn timed_out<B: Blocked>(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    B::on_timeout(ctx, private::<B>(ctx));
    OK
}

unsafe extern "C" fn free_private<B: Blocked>(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    if !data.is_null() {
        // SAFETY: `data` is the box `block_on_key::<B>` made; Redis calls this once.
        drop(unsafe { Box::from_raw(data as *mut B::Private) });
    }
}

/// # Safety
/// `argv` must point at `argc` live module strings.
unsafe fn copy_args(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Vec<Vec<u8>> {
    (0..argc.max(0) as usize)
        // SAFETY: `i < argc`, within the array the caller vouches for.
        .map(|i| bytes_of(unsafe { *argv.add(i) }).unwrap_or_default())
        .collect()
}

// ---- clients blocked on a job's keys (JOB.READ ... BLOCK) ----

/// The callbacks of a client blocked by [`block_watching`]. `ticket` is the number the
/// caller gave the wait.
pub trait Watching {
    /// A key was signalled: reply and return true, or return false to stay blocked.
    /// `args` is the blocked command's arguments, its name first.
    fn on_ready(ctx: *mut raw::RedisModuleCtx, args: &[Vec<u8>], ticket: u64) -> bool;
    /// The timeout passed, or [`release_waiter`] ended the wait: reply.
    fn on_timeout(ctx: *mut raw::RedisModuleCtx, args: &[Vec<u8>], ticket: u64);
    /// The wait is over, however it ended (served, timed out, released, or the client
    /// gone); Redis frees the handle right after.
    fn on_end(ticket: u64);
}

/// The handle of a client blocked by [`block_watching`]; valid until `Watching::on_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter(*mut raw::RedisModuleBlockedClient);

/// Blocks the calling client on `keys` for `timeout_ms` (0: forever) with `W`'s callbacks.
pub fn block_watching<W: Watching>(
    ctx: *mut raw::RedisModuleCtx,
    keys: &[&RStr],
    timeout_ms: i64,
    ticket: u64,
) -> Result<Waiter> {
    let block = required!(RedisModule_BlockClientOnKeys);
    required!(RedisModule_GetBlockedClientPrivateData);
    let mut names: Vec<*mut raw::RedisModuleString> = keys.iter().map(|k| k.ptr).collect();
    let privdata = Box::into_raw(Box::new(ticket)) as *mut c_void;
    // SAFETY: a live context of a command being served, where blocking is allowed (the
    // caller's promise); live key names (Redis copies them); callbacks with the signatures
    // Redis calls; `privdata` is a `Box<u64>` Redis hands back to `ended` exactly once.
    let bc = unsafe {
        block(
            ctx,
            Some(watch_ready::<W>),
            Some(watch_timed_out::<W>),
            Some(watch_ended::<W>),
            timeout_ms,
            names.as_mut_ptr(),
            names.len() as c_int,
            privdata,
        )
    };
    if bc.is_null() {
        // SAFETY: Redis did not take `privdata`: it is still the Box made above.
        drop(unsafe { Box::from_raw(privdata as *mut u64) });
        return Err(AiError::syntax("could not block the client"));
    }
    Ok(Waiter(bc))
}

/// Ends a wait now: Redis calls the timeout callback (which replies) before this returns.
/// Safe on a wait that is already ending (Redis ignores it), until `on_end`.
pub fn release_waiter(w: Waiter) -> Result<()> {
    let unblock = required!(RedisModule_UnblockClient);
    // SAFETY: a handle whose `on_end` has not run, so Redis has not freed it.
    unsafe { unblock(w.0, ptr::null_mut()) };
    Ok(())
}

/// The ticket of the wait a callback's context serves.
fn ticket_of(ctx: *mut raw::RedisModuleCtx) -> u64 {
    let Some(get) = optional!(RedisModule_GetBlockedClientPrivateData) else { return 0 };
    // SAFETY: a blocked-client callback's context, which carries the `Box<u64>` of
    // `block_watching` (alive until `ended`).
    let p = unsafe { get(ctx) } as *const u64;
    // SAFETY: null, or the live Box above.
    unsafe { p.as_ref() }.copied().unwrap_or(0)
}

unsafe extern "C" fn watch_ready<W: Watching>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes the blocked command's `argc` live argument strings in `argv`.
    let args = unsafe { copy_args(argv, argc) };
    if W::on_ready(ctx, &args, ticket_of(ctx)) {
        OK
    } else {
        ERR
    }
}

unsafe extern "C" fn watch_timed_out<W: Watching>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: as in `watch_ready`.
    let args = unsafe { copy_args(argv, argc) };
    W::on_timeout(ctx, &args, ticket_of(ctx));
    OK
}

unsafe extern "C" fn watch_ended<W: Watching>(_ctx: *mut raw::RedisModuleCtx, privdata: *mut c_void) {
    if privdata.is_null() {
        return;
    }
    // SAFETY: `privdata` is the `Box<u64>` of `block_watching`; Redis hands it here once.
    let ticket = unsafe { Box::from_raw(privdata as *mut u64) };
    W::on_end(*ticket);
}

// ---- work handed to a worker thread ----
//
// The only calls made off the main thread are RedisModule_UnblockClient and
// RedisModule_BlockedClientMeasureTimeEnd, which Redis documents for threads; their
// pointers are read on the main thread, when the client is blocked. A worker otherwise
// reads the bytes of strings held for it, and nothing else of Redis.

/// A command argument held for a worker thread: its bytes stay alive and unchanged while
/// this lives, even if the client goes away (Redis changes a string in place only while
/// no one else holds it). Made and dropped on the main thread only, since Redis's
/// reference counts are not atomic; in between, any thread may read the bytes.
pub struct HeldArg {
    ptr: *mut raw::RedisModuleString,
    data: *const u8,
    len: usize,
}

// SAFETY: what another thread does with a HeldArg is read bytes that no one changes while
// the string is held; its owner drops it on the main thread (see the type's note).
unsafe impl Send for HeldArg {}

impl HeldArg {
    /// Holds `s`, a live module string (an argument of the command being served).
    pub fn hold(s: *mut raw::RedisModuleString) -> Result<HeldArg> {
        let hold = required!(RedisModule_HoldString);
        // SAFETY: a live string; with no context Redis adds a reference of ours (or, for a
        // string it cannot share, makes a copy), which only FreeString in `drop` releases.
        let ptr = unsafe { hold(ptr::null_mut(), s) };
        if ptr.is_null() {
            return Err(AiError::syntax("out of memory holding an argument"));
        }
        let mut held = HeldArg { ptr, data: ptr::null(), len: 0 };
        let bytes = string_bytes(held.ptr)?;
        (held.data, held.len) = (bytes.as_ptr(), bytes.len());
        Ok(held)
    }

    pub fn bytes(&self) -> &[u8] {
        if self.data.is_null() {
            return &[];
        }
        // SAFETY: `data` and `len` are what StringPtrLen said of the held string, which
        // stays alive and unchanged while `self` holds it.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for HeldArg {
    fn drop(&mut self) {
        if let Some(free) = optional!(RedisModule_FreeString) {
            // SAFETY: releases the reference `hold` took, once, on the main thread.
            unsafe { free(ptr::null_mut(), self.ptr) };
        }
    }
}

/// Makes the calling thread nicer by `by` (Linux: nice values are per thread), so that it
/// yields the CPU to Redis's main thread whenever both want it. Best effort: a thread left
/// at the normal priority works the same, without the preference.
pub fn lower_thread_priority(by: c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid takes nothing; setpriority with PRIO_PROCESS and a thread id changes
    // that one thread's nice value and reports a failure by its return value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, by);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

/// What a client blocked by [`block_client`] gets back from its worker thread. Redis calls
/// these on the main thread.
pub trait Unblocked: Send + Sized + 'static {
    /// The worker is done and the client is still connected: reply. `result` is None when
    /// the worker's handle was dropped without a result (a bug).
    fn reply(result: Option<&mut Self>, ctx: *mut raw::RedisModuleCtx);
    /// The last use of the result, whether `reply` ran or the client had gone.
    fn release(self, ctx: *mut raw::RedisModuleCtx);
    /// CLIENT UNBLOCK ended the wait before the worker was done: reply. The worker's
    /// result, when it comes, is only released.
    fn unblocked_early(ctx: *mut raw::RedisModuleCtx);
}

type UnblockFn = unsafe extern "C" fn(*mut raw::RedisModuleBlockedClient, *mut c_void) -> c_int;
type MeasureFn = unsafe extern "C" fn(*mut raw::RedisModuleBlockedClient) -> c_int;

/// A client blocked until a worker thread hands back a `T`. Dropped without `unblock`, it
/// unblocks the client with no result, so no client ever waits forever.
pub struct BlockedClient<T: Unblocked> {
    ptr: *mut raw::RedisModuleBlockedClient,
    unblock: UnblockFn,
    measure_end: Option<MeasureFn>,
    result: PhantomData<fn(T)>,
}

// SAFETY: another thread only calls UnblockClient and BlockedClientMeasureTimeEnd on the
// handle (both made for threads, through pointers read on the main thread), once.
unsafe impl<T: Unblocked> Send for BlockedClient<T> {}

/// Blocks the calling client until a worker hands back a `T`, with no timeout (CLIENT
/// UNBLOCK may still end the wait). The caller checked that this context may block
/// (not inside MULTI, a script, or a call that denies blocking).
pub fn block_client<T: Unblocked>(ctx: *mut raw::RedisModuleCtx) -> Result<BlockedClient<T>> {
    let block = required!(RedisModule_BlockClient);
    let unblock = required!(RedisModule_UnblockClient);
    required!(RedisModule_GetBlockedClientPrivateData);
    // SAFETY: the live context of a command being served, where blocking is allowed (the
    // caller's promise); callbacks with the signatures Redis calls; 0: no timeout.
    let ptr = unsafe { block(ctx, Some(reply_with::<T>), Some(unblocked_early::<T>), Some(release::<T>), 0) };
    if ptr.is_null() {
        return Err(AiError::syntax("could not block the client"));
    }
    if let Some(start) = optional!(RedisModule_BlockedClientMeasureTimeStart) {
        // SAFETY: a live blocked-client handle; this only starts its clock, so the
        // worker's time shows in the command's stats and the slowlog.
        unsafe { start(ptr) };
    }
    let measure_end = optional!(RedisModule_BlockedClientMeasureTimeEnd);
    Ok(BlockedClient { ptr, unblock, measure_end, result: PhantomData })
}

impl<T: Unblocked> BlockedClient<T> {
    /// Ends the block with `result`, from any thread: Redis then calls `T::reply` (if the
    /// client is still there) and `T::release` on the main thread.
    pub fn unblock(mut self, result: T) {
        let privdata = Box::into_raw(Box::new(result)) as *mut c_void;
        self.finish(privdata);
    }

    fn finish(&mut self, privdata: *mut c_void) {
        let bc = std::mem::replace(&mut self.ptr, ptr::null_mut());
        if bc.is_null() {
            return;
        }
        if let Some(end) = self.measure_end {
            // SAFETY: the live handle, whose clock `block_client` started.
            unsafe { end(bc) };
        }
        // SAFETY: the live handle, unblocked once (`ptr` is null from here on); Redis owns
        // `privdata` until it hands it to `release`.
        unsafe { (self.unblock)(bc, privdata) };
    }
}

impl<T: Unblocked> Drop for BlockedClient<T> {
    fn drop(&mut self) {
        self.finish(ptr::null_mut());
    }
}

unsafe extern "C" fn reply_with<T: Unblocked>(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    let result = match optional!(RedisModule_GetBlockedClientPrivateData) {
        // SAFETY: the reply callback's context, which carries what `unblock` passed: a
        // `Box<T>` turned into a pointer, or null.
        Some(get) => (unsafe { get(ctx) }) as *mut T,
        None => ptr::null_mut(),
    };
    // SAFETY: a non-null pointer is the live `Box<T>` of `unblock`, freed only in
    // `release`, after this callback; nothing else uses it meanwhile.
    T::reply(unsafe { result.as_mut() }, ctx);
    OK
}

unsafe extern "C" fn release<T: Unblocked>(ctx: *mut raw::RedisModuleCtx, privdata: *mut c_void) {
    if privdata.is_null() {
        return;
    }
    // SAFETY: `privdata` is the `Box<T>` `unblock` made; Redis hands it here once.
    let result = unsafe { Box::from_raw(privdata as *mut T) };
    result.release(ctx);
}

unsafe extern "C" fn unblocked_early<T: Unblocked>(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    T::unblocked_early(ctx);
    OK
}
