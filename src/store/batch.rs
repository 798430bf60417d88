//! One `Store::apply`: every key the ops write is opened once, read-write, and its type
//! checked before the first write (a refused batch changes nothing); then each op works on
//! that open key and is replicated as the native command with the same effect.
//!
//! Opening each key once per batch instead of once per op (and again for the type check)
//! halves the key lookups of a job step, which writes the same few keys (`meta`, the
//! record, the group) several times.

use std::ffi::CStr;
use std::os::raw::{c_int, c_longlong};

use aijob_core::store::{KeyKind, Op, Score};
use aijob_core::{AiError, Result};
use redis_module::raw;

use super::api::{self, rm, OpenKey, RStr};
use super::parse_int;

/// An open key of the batch: the handle, and its name as a module string (reused for
/// replication). The handle comes first so it is closed before the name is freed.
struct Slot<'a> {
    key: &'a [u8],
    handle: OpenKey,
    name: RStr,
}

pub struct Batch<'a> {
    ctx: *mut raw::RedisModuleCtx,
    now: i64,
    slots: Vec<Slot<'a>>,
}

const STREAM_ADD_AUTOID: c_int = 1;
const STREAM_TRIM_APPROX: c_int = 1;

impl<'a> Batch<'a> {
    /// Opens and checks every key `ops` write; fails before any write.
    pub fn open(ctx: *mut raw::RedisModuleCtx, now: i64, ops: &'a [Op]) -> Result<Batch<'a>> {
        let mut b = Batch { ctx, now, slots: Vec::with_capacity(ops.len()) };
        for op in ops {
            let Some((key, kind)) = op.target() else { continue };
            let i = b.slot_index(key)?;
            check_kind(&b.slots[i].handle, kind)?;
            if let Op::HIncrBy(_, field, _) = op {
                b.counter(i, field)?;
            }
        }
        Ok(b)
    }

    pub fn run(&mut self, ops: &[Op]) -> Result<()> {
        for op in ops {
            self.apply_one(op)?;
        }
        Ok(())
    }

    /// The slot of `key`, opened now if the batch has not opened it yet.
    fn slot_index(&mut self, key: &'a [u8]) -> Result<usize> {
        if let Some(i) = self.slots.iter().position(|s| s.key == key) {
            return Ok(i);
        }
        let name = RStr::new(self.ctx, key)?;
        let handle = OpenKey::open(self.ctx, &name, api::READ | api::WRITE)?
            .ok_or_else(|| AiError::syntax("could not open a key for writing"))?;
        self.slots.push(Slot { key, handle, name });
        Ok(self.slots.len() - 1)
    }

    fn slot(&self, key: &[u8]) -> Result<&Slot<'a>> {
        self.slots.iter().find(|s| s.key == key).ok_or_else(|| AiError::syntax("a write outside its batch"))
    }

    /// The integer a hash field holds (0 when absent); corrupt when it holds another thing.
    fn counter(&self, i: usize, field: &[u8]) -> Result<i64> {
        let slot = &self.slots[i];
        if slot.handle.key_type()? != api::KEYTYPE_HASH {
            return Ok(0);
        }
        let f = RStr::new(self.ctx, field)?;
        match slot.handle.hash_get_str(self.ctx, &f)? {
            Some(v) => parse_int(v.as_ref()).ok_or_else(|| AiError::corrupt("counter")),
            None => Ok(0),
        }
    }

    fn apply_one(&self, op: &Op) -> Result<()> {
        match op {
            Op::HSet(key, fields) => self.hset(self.slot(key)?, fields),
            Op::HDel(key, fields) => self.hdel(self.slot(key)?, fields),
            Op::HIncrBy(key, field, by) => self.hincrby(key, field, *by),
            Op::ZAdd(key, score, member) => self.zadd(self.slot(key)?, *score, member),
            Op::ZRem(key, member) => self.zrem(self.slot(key)?, member),
            Op::Del(key) => self.del(self.slot(key)?),
            Op::PExpireAt(key, at) => self.pexpireat(self.slot(key)?, *at),
            Op::Persist(key) => self.persist(self.slot(key)?),
            Op::Set(key, value, at) => self.set(self.slot(key)?, value, *at),
            Op::XAdd(key, maxlen, fields) => self.xadd(self.slot(key)?, *maxlen, fields),
            Op::Publish(channel, message) => self.publish(channel, message),
            Op::Wake(key) => self.wake(key),
        }
    }

    fn s(&self, bytes: &[u8]) -> Result<RStr> {
        RStr::new(self.ctx, bytes)
    }

    /// Propagates `cmd name args...` to replicas and the AOF (not executed here).
    fn replicate(&self, cmd: &CStr, name: &RStr, args: &[&RStr]) -> Result<()> {
        let mut argv: Vec<*mut raw::RedisModuleString> = Vec::with_capacity(args.len() + 1);
        argv.push(name.ptr);
        argv.extend(args.iter().map(|a| a.ptr));
        rm!(RedisModule_Replicate(self.ctx, cmd.as_ptr(), c"v".as_ptr(), argv.as_mut_ptr(), argv.len()));
        Ok(())
    }

    fn hset(&self, slot: &Slot, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut args = Vec::with_capacity(fields.len() * 2);
        for (f, v) in fields {
            let (f, v) = (self.s(f)?, self.s(v)?);
            slot.handle.hash_set(&f, &v)?;
            args.push(f);
            args.push(v);
        }
        self.replicate(c"HSET", &slot.name, &args.iter().collect::<Vec<_>>())
    }

    fn hdel(&self, slot: &Slot, fields: &[Vec<u8>]) -> Result<()> {
        if slot.handle.key_type()? != api::KEYTYPE_HASH {
            return Ok(());
        }
        let mut args = Vec::with_capacity(fields.len());
        for f in fields {
            let f = self.s(f)?;
            if slot.handle.hash_del(&f)? {
                args.push(f);
            }
        }
        if args.is_empty() {
            return Ok(());
        }
        self.replicate(c"HDEL", &slot.name, &args.iter().collect::<Vec<_>>())
    }

    fn hincrby(&self, key: &[u8], field: &[u8], by: i64) -> Result<()> {
        let i =
            self.slots.iter().position(|s| s.key == key).ok_or_else(|| AiError::syntax("a write outside its batch"))?;
        let current = self.counter(i, field)?;
        let slot = &self.slots[i];
        let f = self.s(field)?;
        let value = self.s(current.saturating_add(by).to_string().as_bytes())?;
        slot.handle.hash_set(&f, &value)?;
        let by = self.s(by.to_string().as_bytes())?;
        self.replicate(c"HINCRBY", &slot.name, &[&f, &by])
    }

    fn zadd(&self, slot: &Slot, score: Score, member: &[u8]) -> Result<()> {
        let m = self.s(member)?;
        slot.handle.zadd(score.as_f64(), &m)?;
        let sc = self.s(score.to_arg().as_bytes())?;
        self.replicate(c"ZADD", &slot.name, &[&sc, &m])
    }

    fn zrem(&self, slot: &Slot, member: &[u8]) -> Result<()> {
        if slot.handle.key_type()? != api::KEYTYPE_ZSET {
            return Ok(());
        }
        let m = self.s(member)?;
        if slot.handle.zrem(&m)? {
            self.replicate(c"ZREM", &slot.name, &[&m])?;
        }
        Ok(())
    }

    fn del(&self, slot: &Slot) -> Result<()> {
        if slot.handle.key_type()? == api::KEYTYPE_EMPTY {
            return Ok(());
        }
        slot.handle.delete()?;
        self.replicate(c"DEL", &slot.name, &[])
    }

    fn pexpireat(&self, slot: &Slot, at: i64) -> Result<()> {
        if slot.handle.key_type()? == api::KEYTYPE_EMPTY {
            return Ok(());
        }
        if at <= self.now {
            return self.del(slot);
        }
        slot.handle.expire_at(at)?;
        let t = self.s(at.to_string().as_bytes())?;
        self.replicate(c"PEXPIREAT", &slot.name, &[&t])
    }

    fn persist(&self, slot: &Slot) -> Result<()> {
        if slot.handle.key_type()? == api::KEYTYPE_EMPTY || slot.handle.ttl()? == api::NO_EXPIRE {
            return Ok(());
        }
        slot.handle.persist()?;
        self.replicate(c"PERSIST", &slot.name, &[])
    }

    fn set(&self, slot: &Slot, value: &[u8], at: Option<i64>) -> Result<()> {
        if at.is_some_and(|t| t <= self.now) {
            return self.del(slot);
        }
        let v = self.s(value)?;
        slot.handle.string_set(&v)?;
        match at {
            Some(t) => {
                slot.handle.expire_at(t)?;
                let px = self.s(b"PXAT")?;
                let t = self.s(t.to_string().as_bytes())?;
                self.replicate(c"SET", &slot.name, &[&v, &px, &t])
            }
            None => self.replicate(c"SET", &slot.name, &[&v]),
        }
    }

    /// Appends with the stream API and replicates what native XADD would: the entry id
    /// Redis made, and the approximate trim rewritten as the exact length it left.
    fn xadd(&self, slot: &Slot, maxlen: i64, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut owned = Vec::with_capacity(fields.len() * 2);
        for (f, v) in fields {
            owned.push(self.s(f)?);
            owned.push(self.s(v)?);
        }
        let mut argv: Vec<*mut raw::RedisModuleString> = owned.iter().map(|s| s.ptr).collect();
        let mut id = raw::RedisModuleStreamID { ms: 0, seq: 0 };
        let added = rm!(RedisModule_StreamAdd(
            slot.handle.ptr,
            STREAM_ADD_AUTOID,
            &mut id,
            argv.as_mut_ptr(),
            fields.len() as i64
        ));
        if added != raw::REDISMODULE_OK as c_int {
            return Err(AiError::syntax("could not append to the events stream"));
        }
        if maxlen > 0 {
            rm!(RedisModule_StreamTrimByLength(slot.handle.ptr, STREAM_TRIM_APPROX, maxlen as c_longlong));
        }
        let len = slot.handle.len()?;
        let mut args = vec![self.s(b"MAXLEN")?, self.s(b"=")?, self.s(len.to_string().as_bytes())?];
        args.push(self.s(format!("{}-{}", id.ms, id.seq).as_bytes())?);
        args.extend(owned);
        self.replicate(c"XADD", &slot.name, &args.iter().collect::<Vec<_>>())
    }

    fn publish(&self, channel: &[u8], message: &[u8]) -> Result<()> {
        let (ch, msg) = (self.s(channel)?, self.s(message)?);
        let cluster = api::context_flags(self.ctx) & api::FLAG_CLUSTER != 0;
        match unsafe { raw::RedisModule_PublishMessageShard } {
            Some(shard) if cluster => unsafe { shard(self.ctx, ch.ptr, msg.ptr) },
            _ => rm!(RedisModule_PublishMessage(self.ctx, ch.ptr, msg.ptr)),
        };
        Ok(())
    }

    /// Wakes the clients blocked on `key` (JOB.CLAIM ... BLOCK).
    fn wake(&self, key: &[u8]) -> Result<()> {
        let owned;
        let name = match self.slots.iter().find(|s| s.key == key) {
            Some(s) => &s.name,
            None => {
                owned = self.s(key)?;
                &owned
            }
        };
        rm!(RedisModule_SignalKeyAsReady(self.ctx, name.ptr));
        Ok(())
    }
}

fn check_kind(k: &OpenKey, kind: KeyKind) -> Result<()> {
    let want = match kind {
        KeyKind::Hash => api::KEYTYPE_HASH,
        KeyKind::ZSet => api::KEYTYPE_ZSET,
        KeyKind::String => api::KEYTYPE_STRING,
        KeyKind::Stream => api::KEYTYPE_STREAM,
        KeyKind::Any => return Ok(()),
    };
    k.expect(want).map(|_| ())
}
