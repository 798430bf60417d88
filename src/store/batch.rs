//! One `Store::apply`: every key the ops write is opened once, read-write, and its type
//! checked before the first write (a refused batch changes nothing); then each op works on
//! that open key and is replicated as the native command with the same effect.
//!
//! Opening each key once per batch instead of once per op (and again for the type check)
//! halves the key lookups of a job step, which writes the same few keys (`meta`, the
//! record, the group) several times.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use aijob_core::store::{Event, KeyKind, Op, Score};
use aijob_core::{AiError, Result};
use redis_module::raw;

use crate::ffi::{self, Field, OpenKey, RStr};
use aijob_core::record::int as parse_int;

/// An open key of the batch: the handle, and its name as a module string (reused for
/// replication). The handle comes first so it is closed before the name is freed.
struct Slot {
    handle: OpenKey,
    name: RStr,
}

pub struct Batch<'a> {
    ctx: *mut raw::RedisModuleCtx,
    now: i64,
    slots: Vec<Slot>,
    /// Where each key's slot is: a flow's step writes thousands of keys (a parent's
    /// dependents), and a search of `slots` per op would make that quadratic.
    index: HashMap<&'a [u8], usize>,
    /// The argument vector of each replicated command, reused.
    argv: RefCell<Vec<*mut raw::RedisModuleString>>,
}

impl<'a> Batch<'a> {
    /// Opens and checks every key `ops` write; fails before any write.
    /// `names`: key names the step already made (its reads'), taken instead of new ones.
    pub fn open(ctx: *mut raw::RedisModuleCtx, now: i64, ops: &'a [Op], mut names: Vec<RStr>) -> Result<Batch<'a>> {
        let mut b = Batch {
            ctx,
            now,
            slots: Vec::with_capacity(ops.len()),
            index: HashMap::with_capacity(ops.len()),
            argv: RefCell::new(Vec::new()),
        };
        for op in ops {
            let Some((key, kind)) = op.target() else { continue };
            let i = b.slot_index(key, &mut names)?;
            let slot = b.slots.get(i).ok_or_else(outside)?;
            check_kind(&slot.handle, kind)?;
            if let Op::HIncrBy(_, field, _) = op {
                b.counter(slot, field)?;
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
    fn slot_index(&mut self, key: &'a [u8], names: &mut Vec<RStr>) -> Result<usize> {
        if let Some(&i) = self.index.get(key) {
            return Ok(i);
        }
        let name = match names.iter().position(|n| n.as_ref() == key) {
            Some(i) => names.swap_remove(i),
            None => RStr::new(self.ctx, key)?,
        };
        let handle = OpenKey::open(self.ctx, &name, ffi::READ | ffi::WRITE)?
            .ok_or_else(|| AiError::syntax("could not open a key for writing"))?;
        self.slots.push(Slot { handle, name });
        self.index.insert(key, self.slots.len() - 1);
        Ok(self.slots.len() - 1)
    }

    fn slot(&self, key: &[u8]) -> Result<&Slot> {
        self.find(key).ok_or_else(outside)
    }

    fn find(&self, key: &[u8]) -> Option<&Slot> {
        self.index.get(key).and_then(|&i| self.slots.get(i))
    }

    /// The integer a hash field holds (0 when absent); corrupt when it holds another thing.
    fn counter(&self, slot: &Slot, field: &[u8]) -> Result<i64> {
        if slot.handle.key_type()? != ffi::KEYTYPE_HASH {
            return Ok(0);
        }
        let f = ffi::field(self.ctx, field)?;
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
            Op::Event(e) => self.event(e),
            Op::Wake(key) => self.wake(key),
            Op::XAddId(a) => self.xadd_id(self.slot(&a.key)?, a),
            Op::XTrimMinId(key, id) => self.xtrim_before(self.slot(key)?, *id),
        }
    }

    fn s(&self, bytes: &[u8]) -> Result<RStr> {
        RStr::new(self.ctx, bytes)
    }

    /// Propagates `cmd name args...` to replicas and the AOF (not executed here).
    fn replicate(&self, cmd: &CStr, name: &RStr, args: &[*mut raw::RedisModuleString]) -> Result<()> {
        let mut argv = self.argv.try_borrow_mut().map_err(|_| AiError::syntax("replication busy"))?;
        argv.clear();
        argv.push(name.ptr);
        argv.extend_from_slice(args);
        ffi::replicate(self.ctx, cmd, &mut argv)
    }

    fn hset(&self, slot: &Slot, fields: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        // Small values first: a listpack hash takes each field with a realloc of itself, so
        // a big payload or result set last is copied once, not once per field after it.
        let mut order: Vec<&(Vec<u8>, Vec<u8>)> = fields.iter().collect();
        order.sort_by_key(|(_, v)| v.len());
        let mut owned: Vec<(Field, RStr)> = Vec::with_capacity(fields.len());
        for (f, v) in order {
            let (f, v) = (ffi::field(self.ctx, f)?, self.s(v)?);
            slot.handle.hash_set(&f, &v)?;
            owned.push((f, v));
        }
        let args: Vec<_> = owned.iter().flat_map(|(f, v)| [f.ptr(), v.ptr]).collect();
        self.replicate(c"HSET", &slot.name, &args)
    }

    fn hdel(&self, slot: &Slot, fields: &[Vec<u8>]) -> Result<()> {
        if slot.handle.key_type()? != ffi::KEYTYPE_HASH {
            return Ok(());
        }
        let mut deleted = Vec::with_capacity(fields.len());
        for f in fields {
            let f = ffi::field(self.ctx, f)?;
            if slot.handle.hash_del(&f)? {
                deleted.push(f);
            }
        }
        if deleted.is_empty() {
            return Ok(());
        }
        let args: Vec<_> = deleted.iter().map(Field::ptr).collect();
        self.replicate(c"HDEL", &slot.name, &args)
    }

    fn hincrby(&self, key: &[u8], field: &[u8], by: i64) -> Result<()> {
        let slot = self.find(key).ok_or_else(outside)?;
        let current = self.counter(slot, field)?;
        let f = ffi::field(self.ctx, field)?;
        let value = RStr::int(self.ctx, current.saturating_add(by))?;
        slot.handle.hash_set(&f, &value)?;
        let by = RStr::int(self.ctx, by)?;
        self.replicate(c"HINCRBY", &slot.name, &[f.ptr(), by.ptr])
    }

    fn zadd(&self, slot: &Slot, score: Score, member: &[u8]) -> Result<()> {
        let m = self.s(member)?;
        slot.handle.zadd(score.as_f64(), &m)?;
        let sc = match score {
            Score::At(v) => RStr::int(self.ctx, v)?,
            Score::Inf => self.s(b"+inf")?,
        };
        self.replicate(c"ZADD", &slot.name, &[sc.ptr, m.ptr])
    }

    fn zrem(&self, slot: &Slot, member: &[u8]) -> Result<()> {
        if slot.handle.key_type()? != ffi::KEYTYPE_ZSET {
            return Ok(());
        }
        let m = self.s(member)?;
        if slot.handle.zrem(&m)? {
            self.replicate(c"ZREM", &slot.name, &[m.ptr])?;
        }
        Ok(())
    }

    fn del(&self, slot: &Slot) -> Result<()> {
        if slot.handle.key_type()? == ffi::KEYTYPE_EMPTY {
            return Ok(());
        }
        slot.handle.delete()?;
        self.replicate(c"DEL", &slot.name, &[])
    }

    fn pexpireat(&self, slot: &Slot, at: i64) -> Result<()> {
        if slot.handle.key_type()? == ffi::KEYTYPE_EMPTY {
            return Ok(());
        }
        if at <= self.now {
            return self.del(slot);
        }
        slot.handle.expire_at(at)?;
        let t = RStr::int(self.ctx, at)?;
        self.replicate(c"PEXPIREAT", &slot.name, &[t.ptr])
    }

    fn persist(&self, slot: &Slot) -> Result<()> {
        if slot.handle.key_type()? == ffi::KEYTYPE_EMPTY || slot.handle.ttl()? == ffi::NO_EXPIRE {
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
                let t = RStr::int(self.ctx, t)?;
                self.replicate(c"SET", &slot.name, &[v.ptr, px.ptr, t.ptr])
            }
            None => self.replicate(c"SET", &slot.name, &[v.ptr]),
        }
    }

    /// Appends the event to its stream (when the queue keeps one) and publishes it, with
    /// one module string of the document for both.
    fn event(&self, e: &Event) -> Result<()> {
        let doc = self.s(&e.doc)?;
        if let Some((key, maxlen)) = &e.stream {
            self.xadd(self.slot(key)?, *maxlen, e, &doc)?;
        }
        // the channel is the record's key name, open in most steps that make an event
        let owned;
        let channel = match self.find(&e.channel) {
            Some(s) => &s.name,
            None => {
                owned = self.s(&e.channel)?;
                &owned
            }
        };
        ffi::publish(self.ctx, channel, &doc)
    }

    /// Appends with the stream API and replicates what native XADD would: the entry id
    /// Redis made, and the approximate trim rewritten as the exact length it left.
    fn xadd(&self, slot: &Slot, maxlen: i64, e: &Event, doc: &RStr) -> Result<()> {
        let id = self.s(&e.id)?;
        let [type_, id_, data, kind] =
            [&b"type"[..], b"id", b"data", e.kind.as_bytes()].map(|f| ffi::field(self.ctx, f));
        let (type_, id_, data, kind) = (type_?, id_?, data?, kind?);
        let mut entry = [type_.ptr(), kind.ptr(), id_.ptr(), id.ptr, data.ptr(), doc.ptr];
        let (ms, seq) = slot.handle.stream_add(&mut entry)?;
        if maxlen > 0 {
            slot.handle.stream_trim(maxlen)?;
        }
        let len = RStr::int(self.ctx, slot.handle.len()? as i64)?;
        let mut buf = [0u8; 42];
        let entry_id = self.s(stream_id(&mut buf, ms, seq)?)?;
        let (maxlen_kw, exact) = (ffi::field(self.ctx, b"MAXLEN")?, ffi::field(self.ctx, b"=")?);
        let head = [maxlen_kw.ptr(), exact.ptr(), len.ptr, entry_id.ptr];
        let mut args = [std::ptr::null_mut(); 10];
        args[..4].copy_from_slice(&head);
        args[4..].copy_from_slice(&entry);
        self.replicate(c"XADD", &slot.name, &args)
    }

    /// Wakes the clients blocked on `key` (JOB.CLAIM ... BLOCK).
    /// And JOB.READ ... BLOCK: Redis 7.0 serves no waiter on a key that is gone, so the
    /// readers of a deleted job are released here instead.
    fn wake(&self, key: &[u8]) -> Result<()> {
        let owned;
        let name = match self.find(key) {
            Some(s) => {
                if s.handle.key_type()? == ffi::KEYTYPE_EMPTY {
                    crate::waiters::key_gone(self.ctx, key);
                }
                &s.name
            }
            None => {
                owned = self.s(key)?;
                &owned
            }
        };
        ffi::signal_key_as_ready(self.ctx, name)
    }

    /// Appends a job's output entry with the id the logic chose, replicated as the XADD
    /// with that id; then publishes its message.
    fn xadd_id(&self, slot: &Slot, a: &aijob_core::store::StreamAdd) -> Result<()> {
        let (f, v) = (ffi::field(self.ctx, a.field.as_bytes())?, self.s(&a.value)?);
        let mut pair = [f.ptr(), v.ptr];
        slot.handle.stream_add_id(a.id, &mut pair)?;
        let id = self.s(a.id.to_string().as_bytes())?;
        self.replicate(c"XADD", &slot.name, &[id.ptr, pair[0], pair[1]])?;
        match &a.publish {
            Some((channel, message)) => ffi::publish(self.ctx, &self.s(channel)?, &self.s(message)?),
            None => Ok(()),
        }
    }

    /// Drops the entries before `id`, replicated as `XTRIM key MINID = id` when any went.
    fn xtrim_before(&self, slot: &Slot, id: aijob_core::store::StreamId) -> Result<()> {
        if slot.handle.key_type()? != ffi::KEYTYPE_STREAM || slot.handle.stream_trim_before(id)? == 0 {
            return Ok(());
        }
        let args = [self.s(b"MINID")?, self.s(b"=")?, self.s(id.to_string().as_bytes())?];
        let ptrs: Vec<_> = args.iter().map(|a| a.ptr).collect();
        self.replicate(c"XTRIM", &slot.name, &ptrs)
    }
}

fn check_kind(k: &OpenKey, kind: KeyKind) -> Result<()> {
    let want = match kind {
        KeyKind::Hash => ffi::KEYTYPE_HASH,
        KeyKind::ZSet => ffi::KEYTYPE_ZSET,
        KeyKind::String => ffi::KEYTYPE_STRING,
        KeyKind::Stream => ffi::KEYTYPE_STREAM,
        KeyKind::Any => return Ok(()),
    };
    k.check_type(want).map(|_| ())
}

/// `<ms>-<seq>`, a stream entry id, written into `buf` (no allocation; 41 bytes at most).
fn stream_id(buf: &mut [u8; 42], ms: u64, seq: u64) -> Result<&[u8]> {
    use std::io::Write;
    let mut rest: &mut [u8] = buf;
    write!(rest, "{ms}-{seq}").map_err(|_| AiError::syntax("a stream id did not fit"))?;
    let used = 42 - rest.len();
    Ok(buf.get(..used).unwrap_or_default())
}

/// A write to a key the batch did not open: a bug of ours, refused rather than a panic.
fn outside() -> AiError {
    AiError::syntax("a write outside its batch")
}
