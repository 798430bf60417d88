//! The only code that reads or writes keys: `RedisStore` implements the core's `Store`
//! with the low-level key API, and replicates every write as the native command that has
//! the same effect (HSET, ZADD, PEXPIREAT ...), so replicas and the AOF hold exactly the
//! master's data and load without the module.

mod batch;
pub mod limiter;

use std::os::raw::c_int;

use aijob_core::store::{Op, Store, StreamEntry, StreamId, ZRange};
use aijob_core::Result;
use redis_module::raw;

use crate::ffi::{self, OpenKey, RStr};

pub struct RedisStore {
    ctx: *mut raw::RedisModuleCtx,
    now: i64,
    /// Keys this step has read, kept open until its next write (which closes them all):
    /// one step reads `meta`, the record and the group hash several times. Bounded, so
    /// a long listing does not keep thousands of keys open. Each entry keeps the key's
    /// name (needed to open it anyway) to find it again.
    reads: Vec<(Option<OpenKey>, RStr)>,
}

/// How many keys `reads` keeps open at most.
const READS_KEPT: usize = 16;

impl RedisStore {
    pub fn new(ctx: *mut raw::RedisModuleCtx, now: i64) -> Self {
        RedisStore { ctx, now, reads: Vec::new() }
    }

    fn s(&self, bytes: &[u8]) -> Result<RStr> {
        RStr::new(self.ctx, bytes)
    }

    /// `key` open for reading (None when it does not exist).
    fn read(&mut self, key: &[u8]) -> Result<Option<&OpenKey>> {
        if let Some(i) = self.reads.iter().position(|(_, name)| name.as_ref() == key) {
            return Ok(self.reads.get(i).and_then(|(handle, _)| handle.as_ref()));
        }
        if self.reads.len() >= READS_KEPT {
            self.reads.remove(0);
        }
        let name = self.s(key)?;
        let handle = OpenKey::open(self.ctx, &name, ffi::READ)?;
        self.reads.push((handle, name));
        Ok(self.reads.last().and_then(|(handle, _)| handle.as_ref()))
    }

    fn read_typed(&mut self, key: &[u8], keytype: c_int) -> Result<Option<&OpenKey>> {
        match self.read(key)? {
            Some(k) if k.check_type(keytype)? => Ok(Some(k)),
            _ => Ok(None),
        }
    }

    fn hash_field(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>> {
        let ctx = self.ctx;
        let f = ffi::field(ctx, field)?;
        match self.read_typed(key, ffi::KEYTYPE_HASH)? {
            Some(k) => k.hash_get(ctx, &f),
            None => Ok(None),
        }
    }
}

impl Store for RedisStore {
    type Blob = RStr;

    fn hget_blob(&mut self, key: &[u8], field: &[u8]) -> Result<Option<RStr>> {
        let ctx = self.ctx;
        let f = ffi::field(ctx, field)?;
        match self.read_typed(key, ffi::KEYTYPE_HASH)? {
            Some(k) => k.hash_get_str(ctx, &f),
            None => Ok(None),
        }
    }

    fn hget(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>> {
        self.hash_field(key, field)
    }

    fn hmget(&mut self, key: &[u8], fields: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let ctx = self.ctx;
        let Some(k) = self.read_typed(key, ffi::KEYTYPE_HASH)? else {
            return Ok(vec![None; fields.len()]);
        };
        fields
            .iter()
            .map(|f| {
                let f = ffi::field(ctx, f.as_bytes())?;
                k.hash_get(ctx, &f)
            })
            .collect()
    }

    fn hgetall(&mut self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self.read_typed(key, ffi::KEYTYPE_HASH)? {
            Some(k) => k.hash_all(),
            None => Ok(Vec::new()),
        }
    }

    fn zscore(&mut self, key: &[u8], member: &[u8]) -> Result<Option<f64>> {
        let m = self.s(member)?;
        match self.read_typed(key, ffi::KEYTYPE_ZSET)? {
            Some(k) => k.zscore(&m),
            None => Ok(None),
        }
    }

    fn zcard(&mut self, key: &[u8]) -> Result<i64> {
        match self.read_typed(key, ffi::KEYTYPE_ZSET)? {
            Some(k) => Ok(k.len()? as i64),
            None => Ok(0),
        }
    }

    fn zrange(&mut self, key: &[u8], range: ZRange) -> Result<Vec<(Vec<u8>, f64)>> {
        let ctx = self.ctx;
        match self.read_typed(key, ffi::KEYTYPE_ZSET)? {
            Some(k) => k.zrange(ctx, &range),
            None => Ok(Vec::new()),
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.read_typed(key, ffi::KEYTYPE_STRING)? {
            Some(k) => k.string_get().map(Some),
            None => Ok(None),
        }
    }

    fn pttl(&mut self, key: &[u8]) -> Result<i64> {
        match self.read(key)? {
            None => Ok(-2),
            Some(k) => k.ttl(),
        }
    }

    fn exists(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self.read(key)?.is_some())
    }

    fn xrange(&mut self, key: &[u8], from: StreamId, count: usize) -> Result<Vec<StreamEntry>> {
        let ctx = self.ctx;
        match self.read_typed(key, ffi::KEYTYPE_STREAM)? {
            Some(k) => k.stream_range(ctx, from, count),
            None => Ok(Vec::new()),
        }
    }

    fn xtail(&mut self, key: &[u8]) -> Result<Option<(i64, StreamId)>> {
        match self.read_typed(key, ffi::KEYTYPE_STREAM)? {
            Some(k) => Ok(k.stream_last_id()?.map(|last| (k.len().unwrap_or(0) as i64, last))),
            None => Ok(None),
        }
    }

    fn apply(&mut self, ops: Vec<Op>) -> Result<()> {
        // a write may create, change or delete what a kept read handle points at: the
        // handles close here, their names go on to the batch, which opens most of them again
        let names: Vec<RStr> = self.reads.drain(..).map(|(_, name)| name).collect();
        batch::Batch::open(self.ctx, self.now, &ops, names)?.run(&ops)
    }
}
