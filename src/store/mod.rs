//! The only code that reads or writes keys: `RedisStore` implements the core's `Store`
//! with the low-level key API, and replicates every write as the native command that has
//! the same effect (HSET, ZADD, PEXPIREAT ...), so replicas and the AOF hold exactly the
//! master's data and load without the module.

pub mod api;

use std::ffi::CStr;
use std::os::raw::c_int;

use aijob_core::store::{KeyKind, Op, Score, Store, ZRange};
use aijob_core::{AiError, Result};
use redis_module::raw;

use api::{rm, OpenKey, RStr};

pub struct RedisStore {
    ctx: *mut raw::RedisModuleCtx,
    now: i64,
}

impl RedisStore {
    pub fn new(ctx: *mut raw::RedisModuleCtx, now: i64) -> Self {
        RedisStore { ctx, now }
    }

    fn s(&self, bytes: &[u8]) -> Result<RStr> {
        RStr::new(self.ctx, bytes)
    }

    fn read(&self, key: &[u8]) -> Result<Option<OpenKey>> {
        let name = self.s(key)?;
        OpenKey::open(self.ctx, &name, api::READ)
    }

    fn write(&self, key: &RStr) -> Result<OpenKey> {
        OpenKey::open(self.ctx, key, api::READ | api::WRITE)?
            .ok_or_else(|| AiError::syntax("could not open a key for writing"))
    }

    fn hash_field(&self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(k) = self.read_typed(key, api::KEYTYPE_HASH)? else { return Ok(None) };
        let f = self.s(field)?;
        k.hash_get(self.ctx, &f)
    }

    fn read_typed(&self, key: &[u8], keytype: c_int) -> Result<Option<OpenKey>> {
        match self.read(key)? {
            Some(k) if k.check_type(keytype)? => Ok(Some(k)),
            _ => Ok(None),
        }
    }

    /// Propagates `cmd args...` to replicas and the AOF (not executed here).
    fn replicate(&self, cmd: &CStr, args: &[&RStr]) -> Result<()> {
        let mut argv: Vec<*mut raw::RedisModuleString> = args.iter().map(|a| a.ptr).collect();
        rm!(RedisModule_Replicate(self.ctx, cmd.as_ptr(), c"v".as_ptr(), argv.as_mut_ptr(), argv.len()));
        Ok(())
    }

    /// Refuses the batch before any write if a key holds another type than its op needs.
    fn check_types(&self, ops: &[Op]) -> Result<()> {
        let mut seen: Vec<&[u8]> = Vec::new();
        for op in ops {
            let Some((key, kind)) = op.target() else { continue };
            if kind == KeyKind::Any || seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let Some(k) = self.read(key)? else { continue };
            let want = match kind {
                KeyKind::Hash => api::KEYTYPE_HASH,
                KeyKind::ZSet => api::KEYTYPE_ZSET,
                KeyKind::String => api::KEYTYPE_STRING,
                KeyKind::Stream => api::KEYTYPE_STREAM,
                KeyKind::Any => continue,
            };
            k.check_type(want)?;
        }
        for op in ops {
            if let Op::HIncrBy(key, field, _) = op {
                if let Some(v) = self.hash_field(key, field)? {
                    parse_int(&v).ok_or_else(|| AiError::corrupt("counter"))?;
                }
            }
        }
        Ok(())
    }

    fn apply_one(&self, op: Op) -> Result<()> {
        match op {
            Op::HSet(key, fields) => self.hset(&key, &fields),
            Op::HDel(key, fields) => self.hdel(&key, &fields),
            Op::HIncrBy(key, field, by) => self.hincrby(&key, &field, by),
            Op::ZAdd(key, score, member) => self.zadd(&key, score, &member),
            Op::ZRem(key, member) => self.zrem(&key, &member),
            Op::Del(key) => self.del(&key),
            Op::PExpireAt(key, at) => self.pexpireat(&key, at),
            Op::Persist(key) => self.persist(&key),
            Op::Set(key, value, at) => self.set(&key, &value, at),
            Op::XAdd(key, maxlen, fields) => self.xadd(&key, maxlen, &fields),
            Op::Publish(channel, message) => self.publish(&channel, &message),
            Op::Wake(key) => {
                let k = self.s(&key)?;
                rm!(RedisModule_SignalKeyAsReady(self.ctx, k.ptr));
                Ok(())
            }
        }
    }

    fn hset(&self, key: &[u8], fields: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let name = self.s(key)?;
        let k = self.write(&name)?;
        let mut args = vec![name];
        for (f, v) in fields {
            let (f, v) = (self.s(f)?, self.s(v)?);
            k.hash_set(&f, &v)?;
            args.push(f);
            args.push(v);
        }
        drop(k);
        self.replicate(c"HSET", &args.iter().collect::<Vec<_>>())
    }

    fn hdel(&self, key: &[u8], fields: &[Vec<u8>]) -> Result<()> {
        let name = self.s(key)?;
        if self.read_typed(key, api::KEYTYPE_HASH)?.is_none() {
            return Ok(());
        }
        let k = self.write(&name)?;
        let mut args = vec![name];
        for f in fields {
            let f = self.s(f)?;
            if k.hash_del(&f)? {
                args.push(f);
            }
        }
        drop(k);
        if args.len() > 1 {
            self.replicate(c"HDEL", &args.iter().collect::<Vec<_>>())?;
        }
        Ok(())
    }

    fn hincrby(&self, key: &[u8], field: &[u8], by: i64) -> Result<()> {
        let current = self.hash_field(key, field)?.and_then(|v| parse_int(&v)).unwrap_or(0);
        let name = self.s(key)?;
        let f = self.s(field)?;
        let value = self.s(current.saturating_add(by).to_string().as_bytes())?;
        self.write(&name)?.hash_set(&f, &value)?;
        let by = self.s(by.to_string().as_bytes())?;
        self.replicate(c"HINCRBY", &[&name, &f, &by])
    }

    fn zadd(&self, key: &[u8], score: Score, member: &[u8]) -> Result<()> {
        let name = self.s(key)?;
        let m = self.s(member)?;
        self.write(&name)?.zadd(score.as_f64(), &m)?;
        let sc = self.s(score.to_arg().as_bytes())?;
        self.replicate(c"ZADD", &[&name, &sc, &m])
    }

    fn zrem(&self, key: &[u8], member: &[u8]) -> Result<()> {
        if self.read_typed(key, api::KEYTYPE_ZSET)?.is_none() {
            return Ok(());
        }
        let name = self.s(key)?;
        let m = self.s(member)?;
        let removed = self.write(&name)?.zrem(&m)?;
        if removed {
            self.replicate(c"ZREM", &[&name, &m])?;
        }
        Ok(())
    }

    fn del(&self, key: &[u8]) -> Result<()> {
        if self.read(key)?.is_none() {
            return Ok(());
        }
        let name = self.s(key)?;
        self.write(&name)?.delete()?;
        self.replicate(c"DEL", &[&name])
    }

    fn pexpireat(&self, key: &[u8], at: i64) -> Result<()> {
        if self.read(key)?.is_none() {
            return Ok(());
        }
        if at <= self.now {
            return self.del(key);
        }
        let name = self.s(key)?;
        self.write(&name)?.expire_at(at)?;
        let t = self.s(at.to_string().as_bytes())?;
        self.replicate(c"PEXPIREAT", &[&name, &t])
    }

    fn persist(&self, key: &[u8]) -> Result<()> {
        match self.read(key)? {
            Some(k) if k.ttl()? != api::NO_EXPIRE => {}
            _ => return Ok(()),
        }
        let name = self.s(key)?;
        self.write(&name)?.persist()?;
        self.replicate(c"PERSIST", &[&name])
    }

    fn set(&self, key: &[u8], value: &[u8], at: Option<i64>) -> Result<()> {
        if at.is_some_and(|t| t <= self.now) {
            return self.del(key);
        }
        let name = self.s(key)?;
        let v = self.s(value)?;
        let k = self.write(&name)?;
        k.string_set(&v)?;
        match at {
            Some(t) => {
                k.expire_at(t)?;
                drop(k);
                let px = self.s(b"PXAT")?;
                let t = self.s(t.to_string().as_bytes())?;
                self.replicate(c"SET", &[&name, &v, &px, &t])
            }
            None => {
                drop(k);
                self.replicate(c"SET", &[&name, &v])
            }
        }
    }

    /// XADD runs as a real command (with `!`) so Redis makes the entry id and rewrites
    /// the approximate trim into an exact one for replicas and the AOF.
    fn xadd(&self, key: &[u8], maxlen: i64, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut args = vec![
            self.s(key)?,
            self.s(b"MAXLEN")?,
            self.s(b"~")?,
            self.s(maxlen.to_string().as_bytes())?,
            self.s(b"*")?,
        ];
        for (f, v) in fields {
            args.push(self.s(f)?);
            args.push(self.s(v)?);
        }
        let mut argv: Vec<*mut raw::RedisModuleString> = args.iter().map(|a| a.ptr).collect();
        let reply = rm!(RedisModule_Call(self.ctx, c"XADD".as_ptr(), c"!v".as_ptr(), argv.as_mut_ptr(), argv.len()));
        if !reply.is_null() {
            rm!(RedisModule_FreeCallReply(reply));
        }
        Ok(())
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
}

pub fn parse_int(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Store for RedisStore {
    type Blob = RStr;

    fn hget_blob(&mut self, key: &[u8], field: &[u8]) -> Result<Option<RStr>> {
        let Some(k) = self.read_typed(key, api::KEYTYPE_HASH)? else { return Ok(None) };
        let f = self.s(field)?;
        k.hash_get_str(self.ctx, &f)
    }

    fn hget(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>> {
        self.hash_field(key, field)
    }

    fn hmget(&mut self, key: &[u8], fields: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let Some(k) = self.read_typed(key, api::KEYTYPE_HASH)? else {
            return Ok(vec![None; fields.len()]);
        };
        fields
            .iter()
            .map(|f| {
                let f = self.s(f.as_bytes())?;
                k.hash_get(self.ctx, &f)
            })
            .collect()
    }

    fn hgetall(&mut self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self.read_typed(key, api::KEYTYPE_HASH)? {
            Some(k) => k.hash_all(),
            None => Ok(Vec::new()),
        }
    }

    fn zscore(&mut self, key: &[u8], member: &[u8]) -> Result<Option<f64>> {
        let Some(k) = self.read_typed(key, api::KEYTYPE_ZSET)? else { return Ok(None) };
        let m = self.s(member)?;
        k.zscore(&m)
    }

    fn zcard(&mut self, key: &[u8]) -> Result<i64> {
        match self.read_typed(key, api::KEYTYPE_ZSET)? {
            Some(k) => Ok(k.len()? as i64),
            None => Ok(0),
        }
    }

    fn zrange(&mut self, key: &[u8], range: ZRange) -> Result<Vec<(Vec<u8>, f64)>> {
        match self.read_typed(key, api::KEYTYPE_ZSET)? {
            Some(k) => k.zrange(self.ctx, &range),
            None => Ok(Vec::new()),
        }
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.read_typed(key, api::KEYTYPE_STRING)? {
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

    fn apply(&mut self, ops: Vec<Op>) -> Result<()> {
        self.check_types(&ops)?;
        for op in ops {
            self.apply_one(op)?;
        }
        Ok(())
    }
}
