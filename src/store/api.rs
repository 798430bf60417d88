//! Thin safe wrappers over the low-level key API of `redismodule.h` (Redis 7.0). Every
//! function pointer is checked before use: a missing one is an error reply, never a
//! panic inside redis-server.

use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use aijob_core::{AiError, Result};
use redis_module::raw;

pub const READ: c_int = 1;
pub const WRITE: c_int = 2;
pub const NO_EXPIRE: i64 = -1;
const HASH_NONE: c_int = 0;
/// `REDISMODULE_HASH_DELETE` is the pointer value 1.
const HASH_DELETE: *mut raw::RedisModuleString = 1 as *mut raw::RedisModuleString;

pub const KEYTYPE_EMPTY: c_int = 0;
pub const KEYTYPE_STRING: c_int = 1;
pub const KEYTYPE_HASH: c_int = 3;
pub const KEYTYPE_ZSET: c_int = 5;
pub const KEYTYPE_STREAM: c_int = 7;

/// Calls a `RedisModule_*` function pointer, or fails with an error naming it.
macro_rules! rm {
    ($name:ident ( $($arg:expr),* $(,)? )) => {
        match unsafe { raw::$name } {
            Some(f) => unsafe { f($($arg),*) },
            None => return Err(crate::store::api::missing(stringify!($name))),
        }
    };
}
pub(crate) use rm;

pub fn missing(name: &str) -> AiError {
    AiError::syntax(format!("this server lacks {name}, which aijob needs"))
}

/// A module string we own; freed on drop.
pub struct RStr {
    ctx: *mut raw::RedisModuleCtx,
    pub ptr: *mut raw::RedisModuleString,
}

impl RStr {
    pub fn new(ctx: *mut raw::RedisModuleCtx, bytes: &[u8]) -> Result<RStr> {
        let ptr = rm!(RedisModule_CreateString(ctx, bytes.as_ptr() as *const c_char, bytes.len()));
        if ptr.is_null() {
            return Err(AiError::syntax("out of memory creating a string"));
        }
        Ok(RStr { ctx, ptr })
    }

    /// Takes ownership of a string Redis handed us (HashGet, ZsetRangeCurrentElement).
    fn adopt(ctx: *mut raw::RedisModuleCtx, ptr: *mut raw::RedisModuleString) -> Option<RStr> {
        (!ptr.is_null()).then(|| RStr { ctx, ptr })
    }
}

impl AsRef<[u8]> for RStr {
    fn as_ref(&self) -> &[u8] {
        let mut len = 0usize;
        match unsafe { raw::RedisModule_StringPtrLen } {
            Some(f) => {
                let p = unsafe { f(self.ptr, &mut len) };
                if p.is_null() {
                    return &[];
                }
                unsafe { std::slice::from_raw_parts(p as *const u8, len) }
            }
            None => &[],
        }
    }
}

impl Drop for RStr {
    fn drop(&mut self) {
        if let Some(free) = unsafe { raw::RedisModule_FreeString } {
            unsafe { free(self.ctx, self.ptr) };
        }
    }
}

/// The bytes of a module string (copied).
pub fn bytes_of(s: *const raw::RedisModuleString) -> Result<Vec<u8>> {
    let mut len = 0usize;
    let p = rm!(RedisModule_StringPtrLen(s, &mut len));
    if p.is_null() {
        return Ok(Vec::new());
    }
    Ok(unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec())
}

/// An open key; closed on drop.
pub struct OpenKey {
    pub ptr: *mut raw::RedisModuleKey,
}

impl OpenKey {
    /// Opens `name`; for READ, None when the key does not exist.
    pub fn open(ctx: *mut raw::RedisModuleCtx, name: &RStr, mode: c_int) -> Result<Option<OpenKey>> {
        let ptr = rm!(RedisModule_OpenKey(ctx, name.ptr, mode)) as *mut raw::RedisModuleKey;
        Ok((!ptr.is_null()).then(|| OpenKey { ptr }))
    }

    pub fn key_type(&self) -> Result<c_int> {
        Ok(rm!(RedisModule_KeyType(self.ptr)))
    }

    pub fn len(&self) -> Result<usize> {
        Ok(rm!(RedisModule_ValueLength(self.ptr)))
    }

    pub fn check_type(&self, keytype: c_int) -> Result<bool> {
        match self.key_type()? {
            KEYTYPE_EMPTY => Ok(false),
            t if t == keytype => Ok(true),
            _ => Err(AiError::wrong_type()),
        }
    }

    pub fn hash_get(&self, ctx: *mut raw::RedisModuleCtx, field: &RStr) -> Result<Option<Vec<u8>>> {
        Ok(self.hash_get_str(ctx, field)?.map(|v| v.as_ref().to_vec()))
    }

    /// A field's value as the module string Redis holds (no copy for large values).
    pub fn hash_get_str(&self, ctx: *mut raw::RedisModuleCtx, field: &RStr) -> Result<Option<RStr>> {
        let mut out: *mut raw::RedisModuleString = ptr::null_mut();
        rm!(RedisModule_HashGet(self.ptr, HASH_NONE, field.ptr, &mut out as *mut _, ptr::null_mut::<c_void>()));
        Ok(RStr::adopt(ctx, out))
    }

    pub fn hash_set(&self, field: &RStr, value: &RStr) -> Result<()> {
        rm!(RedisModule_HashSet(self.ptr, HASH_NONE, field.ptr, value.ptr, ptr::null_mut::<c_void>()));
        Ok(())
    }

    /// Deletes a field; true when it existed.
    pub fn hash_del(&self, field: &RStr) -> Result<bool> {
        let n = rm!(RedisModule_HashSet(self.ptr, HASH_NONE, field.ptr, HASH_DELETE, ptr::null_mut::<c_void>()));
        Ok(n > 0)
    }

    /// Every field of a hash.
    pub fn hash_all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let cursor = rm!(RedisModule_ScanCursorCreate());
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let more =
                rm!(RedisModule_ScanKey(self.ptr, cursor, Some(collect_field), &mut out as *mut _ as *mut c_void));
            if more == 0 {
                break;
            }
        }
        rm!(RedisModule_ScanCursorDestroy(cursor));
        Ok(out)
    }

    pub fn zadd(&self, score: f64, member: &RStr) -> Result<()> {
        rm!(RedisModule_ZsetAdd(self.ptr, score, member.ptr, ptr::null_mut()));
        Ok(())
    }

    /// Removes a member; true when it was there.
    pub fn zrem(&self, member: &RStr) -> Result<bool> {
        let mut deleted: c_int = 0;
        rm!(RedisModule_ZsetRem(self.ptr, member.ptr, &mut deleted));
        Ok(deleted != 0)
    }

    pub fn zscore(&self, member: &RStr) -> Result<Option<f64>> {
        let mut score = 0f64;
        let ok = rm!(RedisModule_ZsetScore(self.ptr, member.ptr, &mut score));
        Ok((ok == raw::REDISMODULE_OK as c_int).then_some(score))
    }

    /// Members in a score range, ascending (or descending), at most `limit`.
    pub fn zrange(&self, ctx: *mut raw::RedisModuleCtx, r: &aijob_core::store::ZRange) -> Result<Vec<(Vec<u8>, f64)>> {
        let (minex, maxex) = (r.min_exclusive as c_int, r.max_exclusive as c_int);
        let started = if r.reverse {
            rm!(RedisModule_ZsetLastInScoreRange(self.ptr, r.min, r.max, minex, maxex))
        } else {
            rm!(RedisModule_ZsetFirstInScoreRange(self.ptr, r.min, r.max, minex, maxex))
        };
        let mut out = Vec::new();
        if started != raw::REDISMODULE_OK as c_int {
            return Ok(out);
        }
        while out.len() < r.limit && rm!(RedisModule_ZsetRangeEndReached(self.ptr)) == 0 {
            let mut score = 0f64;
            let el = rm!(RedisModule_ZsetRangeCurrentElement(self.ptr, &mut score));
            if let Some(s) = RStr::adopt(ctx, el) {
                out.push((bytes_of(s.ptr)?, score));
            }
            let moved = if r.reverse {
                rm!(RedisModule_ZsetRangePrev(self.ptr))
            } else {
                rm!(RedisModule_ZsetRangeNext(self.ptr))
            };
            if moved == 0 {
                break;
            }
        }
        rm!(RedisModule_ZsetRangeStop(self.ptr));
        Ok(out)
    }

    pub fn string_get(&self) -> Result<Vec<u8>> {
        let mut len = 0usize;
        let p = rm!(RedisModule_StringDMA(self.ptr, &mut len, READ));
        if p.is_null() {
            return Ok(Vec::new());
        }
        Ok(unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec())
    }

    pub fn string_set(&self, value: &RStr) -> Result<()> {
        rm!(RedisModule_StringSet(self.ptr, value.ptr));
        Ok(())
    }

    /// ms left, or NO_EXPIRE.
    pub fn ttl(&self) -> Result<i64> {
        Ok(rm!(RedisModule_GetExpire(self.ptr)))
    }

    pub fn expire_at(&self, at: i64) -> Result<()> {
        rm!(RedisModule_SetAbsExpire(self.ptr, at));
        Ok(())
    }

    pub fn persist(&self) -> Result<()> {
        rm!(RedisModule_SetExpire(self.ptr, NO_EXPIRE));
        Ok(())
    }

    pub fn delete(&self) -> Result<()> {
        rm!(RedisModule_DeleteKey(self.ptr));
        Ok(())
    }
}

impl Drop for OpenKey {
    fn drop(&mut self) {
        if let Some(close) = unsafe { raw::RedisModule_CloseKey } {
            unsafe { close(self.ptr) };
        }
    }
}

unsafe extern "C" fn collect_field(
    _key: *mut raw::RedisModuleKey,
    field: *mut raw::RedisModuleString,
    value: *mut raw::RedisModuleString,
    privdata: *mut c_void,
) {
    let out = &mut *(privdata as *mut Vec<(Vec<u8>, Vec<u8>)>);
    if let (Ok(f), Ok(v)) = (bytes_of(field), bytes_of(value)) {
        out.push((f, v));
    }
}

/// The server's clock in ms since the epoch, read once per command.
pub fn now_ms() -> i64 {
    match unsafe { raw::RedisModule_Milliseconds } {
        Some(f) => unsafe { f() },
        None => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
    }
}

pub fn context_flags(ctx: *mut raw::RedisModuleCtx) -> c_int {
    match unsafe { raw::RedisModule_GetContextFlags } {
        Some(f) => unsafe { f(ctx) },
        None => 0,
    }
}

pub const FLAG_LUA: c_int = 1 << 0;
pub const FLAG_MULTI: c_int = 1 << 1;
pub const FLAG_MASTER: c_int = 1 << 2;
pub const FLAG_CLUSTER: c_int = 1 << 5;
pub const FLAG_LOADING: c_int = 1 << 13;
pub const FLAG_DENY_BLOCKING: c_int = 1 << 21;

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
