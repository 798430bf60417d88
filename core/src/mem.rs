//! An in-memory `Store` with a settable clock, for unit tests of the logic. It follows
//! Redis's semantics for the few commands the ops stand for.

use std::collections::{BTreeMap, HashMap};

use crate::error::{AiError, Result};
use crate::store::{KeyKind, Op, Store, StreamEntry, StreamId, ZRange};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    ZSet(BTreeMap<Vec<u8>, f64>),
    Str(Vec<u8>),
    Stream(Vec<Vec<(Vec<u8>, Vec<u8>)>>),
    /// A stream whose entry ids are read back (a job's output), oldest first; the events
    /// stream keeps none (nothing reads it back here).
    Entries(Vec<StreamEntry>),
}

/// The work the module's store (`RedisStore`) does for the same calls: the keys it opens
/// (a key read is opened once and kept open, up to 16, until the next write; a batch of
/// writes opens each key it writes once) and the writes it replicates (each op that changes
/// something, as one native command). Pinned by the tests of docs/benchmarks.md's table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub opened: usize,
    pub replicated: usize,
}

/// How many read keys `RedisStore` keeps open.
const READS_KEPT: usize = 16;

#[derive(Debug, Default, Clone)]
pub struct MemStore {
    pub now: i64,
    pub keys: HashMap<Vec<u8>, (Value, Option<i64>)>,
    pub published: Vec<(Vec<u8>, Vec<u8>)>,
    pub wakes: usize,
    pub work: Work,
    /// The keys read since the last write, as `RedisStore` keeps them open.
    open_reads: Vec<Vec<u8>>,
}

impl MemStore {
    pub fn new(now: i64) -> Self {
        MemStore { now, ..Default::default() }
    }

    fn live(&mut self, key: &[u8]) -> Option<&mut Value> {
        let expired = matches!(self.keys.get(key), Some((_, Some(at))) if *at <= self.now);
        if expired {
            self.keys.remove(key);
        }
        self.keys.get_mut(key).map(|(v, _)| v)
    }

    fn hash(&mut self, key: &[u8]) -> Result<Option<&mut BTreeMap<Vec<u8>, Vec<u8>>>> {
        match self.live(key) {
            None => Ok(None),
            Some(Value::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(AiError::wrong_type()),
        }
    }

    fn entries(&mut self, key: &[u8]) -> Result<Option<&mut Vec<StreamEntry>>> {
        match self.live(key) {
            None => Ok(None),
            Some(Value::Entries(s)) => Ok(Some(s)),
            Some(_) => Err(AiError::wrong_type()),
        }
    }

    fn zset(&mut self, key: &[u8]) -> Result<Option<&mut BTreeMap<Vec<u8>, f64>>> {
        match self.live(key) {
            None => Ok(None),
            Some(Value::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(AiError::wrong_type()),
        }
    }

    fn kind_ok(&mut self, key: &[u8], kind: KeyKind) -> bool {
        matches!(
            (self.live(key), kind),
            (None, _)
                | (_, KeyKind::Any | KeyKind::String)
                | (Some(Value::Hash(_)), KeyKind::Hash)
                | (Some(Value::ZSet(_)), KeyKind::ZSet)
                | (Some(Value::Stream(_) | Value::Entries(_)), KeyKind::Stream)
        )
    }

    /// Every key name, sorted (for assertions about leftovers).
    pub fn key_names(&mut self) -> Vec<String> {
        let now = self.now;
        self.keys.retain(|_, (_, exp)| exp.is_none_or(|at| at > now));
        let mut names: Vec<String> = self.keys.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        names.sort();
        names
    }

    fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.keys.get(key) {
            Some((Value::Hash(h), _)) => h.is_empty(),
            Some((Value::ZSet(z), _)) => z.is_empty(),
            _ => false,
        };
        if empty {
            self.keys.remove(key);
        }
    }

    fn note_read(&mut self, key: &[u8]) {
        if self.open_reads.iter().any(|k| k.as_slice() == key) {
            return;
        }
        if self.open_reads.len() >= READS_KEPT {
            self.open_reads.remove(0);
        }
        self.open_reads.push(key.to_vec());
        self.work.opened += 1;
    }

    /// Whether the module would replicate `op` (it skips the writes that change nothing).
    fn replicates(&mut self, op: &Op) -> bool {
        match op {
            Op::HSet(..) | Op::HIncrBy(..) | Op::ZAdd(..) | Op::Set(..) => true,
            Op::HDel(k, fields) => {
                matches!(self.hash(k), Ok(Some(h)) if fields.iter().any(|f| h.contains_key(f)))
            }
            Op::ZRem(k, m) => matches!(self.zset(k), Ok(Some(z)) if z.contains_key(m)),
            Op::Del(k) | Op::PExpireAt(k, _) => self.live(k).is_some(),
            Op::Persist(k) => self.live(k).is_some() && self.keys.get(k).is_some_and(|(_, at)| at.is_some()),
            Op::Event(e) => e.stream.is_some(),
            Op::XAddId(_) => true,
            Op::XTrimMinId(k, min) => {
                matches!(self.keys.get(k), Some((Value::Entries(s), _)) if s.first().is_some_and(|(id, _)| id < min))
            }
            Op::Wake(_) => false,
        }
    }

    fn apply_one(&mut self, op: Op) {
        if self.replicates(&op) {
            self.work.replicated += 1;
        }
        match op {
            Op::XAddId(a) => {
                if self.live(&a.key).is_none() {
                    self.keys.insert(a.key.clone(), (Value::Entries(Vec::new()), None));
                }
                if let Some((Value::Entries(s), _)) = self.keys.get_mut(&a.key) {
                    // Redis refuses an id not above the last one; the logic must never make one
                    assert!(s.last().is_none_or(|(last, _)| *last < a.id), "XADD id {} not above the last", a.id);
                    s.push((a.id, vec![(a.field.as_bytes().to_vec(), a.value)]));
                }
                if let Some(message) = a.publish {
                    self.published.push(message);
                }
            }
            Op::XTrimMinId(k, min) => {
                if let Ok(Some(s)) = self.entries(&k) {
                    s.retain(|(id, _)| *id >= min);
                }
            }
            Op::HSet(k, fields) => {
                if self.live(&k).is_none() {
                    self.keys.insert(k.clone(), (Value::Hash(BTreeMap::new()), None));
                }
                if let Some((Value::Hash(h), _)) = self.keys.get_mut(&k) {
                    h.extend(fields);
                }
            }
            Op::HDel(k, fields) => {
                if let Ok(Some(h)) = self.hash(&k) {
                    for f in fields {
                        h.remove(&f);
                    }
                }
                self.drop_if_empty(&k);
            }
            Op::HIncrBy(k, f, by) => {
                if self.live(&k).is_none() {
                    self.keys.insert(k.clone(), (Value::Hash(BTreeMap::new()), None));
                }
                if let Some((Value::Hash(h), _)) = self.keys.get_mut(&k) {
                    let cur = h.get(&f).and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok()).unwrap_or(0);
                    h.insert(f, (cur + by).to_string().into_bytes());
                }
            }
            Op::ZAdd(k, score, m) => {
                if self.live(&k).is_none() {
                    self.keys.insert(k.clone(), (Value::ZSet(BTreeMap::new()), None));
                }
                if let Some((Value::ZSet(z), _)) = self.keys.get_mut(&k) {
                    z.insert(m, score.as_f64());
                }
            }
            Op::ZRem(k, m) => {
                if let Ok(Some(z)) = self.zset(&k) {
                    z.remove(&m);
                }
                self.drop_if_empty(&k);
            }
            Op::Del(k) => {
                self.keys.remove(&k);
            }
            Op::PExpireAt(k, at) => {
                if self.live(&k).is_some() {
                    if at <= self.now {
                        self.keys.remove(&k);
                    } else if let Some(e) = self.keys.get_mut(&k) {
                        e.1 = Some(at);
                    }
                }
            }
            Op::Persist(k) => {
                if self.live(&k).is_some() {
                    if let Some(e) = self.keys.get_mut(&k) {
                        e.1 = None;
                    }
                }
            }
            Op::Set(k, v, at) => {
                self.keys.insert(k, (Value::Str(v), at));
            }
            Op::Event(e) => {
                if let Some((k, maxlen)) = &e.stream {
                    if self.live(k).is_none() {
                        self.keys.insert(k.clone(), (Value::Stream(Vec::new()), None));
                    }
                    if let Some((Value::Stream(s), _)) = self.keys.get_mut(k) {
                        s.push(e.fields().iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect());
                        let excess = s.len().saturating_sub(*maxlen as usize);
                        s.drain(..excess);
                    }
                }
                self.published.push((e.channel, e.doc));
            }
            Op::Wake(_) => self.wakes += 1,
        }
    }
}

impl Store for MemStore {
    type Blob = Vec<u8>;

    fn hget_blob(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>> {
        self.hget(key, field)
    }

    fn hget(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>> {
        self.note_read(key);
        Ok(self.hash(key)?.and_then(|h| h.get(field).cloned()))
    }

    fn hmget(&mut self, key: &[u8], fields: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.note_read(key);
        let h = self.hash(key)?;
        Ok(fields.iter().map(|f| h.as_ref().and_then(|h| h.get(f.as_bytes()).cloned())).collect())
    }

    fn hgetall(&mut self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.note_read(key);
        Ok(self.hash(key)?.map(|h| h.clone().into_iter().collect()).unwrap_or_default())
    }

    fn zscore(&mut self, key: &[u8], member: &[u8]) -> Result<Option<f64>> {
        self.note_read(key);
        Ok(self.zset(key)?.and_then(|z| z.get(member).copied()))
    }

    fn zcard(&mut self, key: &[u8]) -> Result<i64> {
        self.note_read(key);
        Ok(self.zset(key)?.map_or(0, |z| z.len() as i64))
    }

    fn zrange(&mut self, key: &[u8], r: ZRange) -> Result<Vec<(Vec<u8>, f64)>> {
        self.note_read(key);
        let Some(z) = self.zset(key)? else { return Ok(vec![]) };
        let mut all: Vec<(Vec<u8>, f64)> =
            z.iter().map(|(m, s)| (m.clone(), *s)).filter(|(_, s)| r.contains(*s)).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        if r.reverse {
            all.reverse();
        }
        all.truncate(r.limit);
        Ok(all)
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.note_read(key);
        match self.live(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(AiError::wrong_type()),
        }
    }

    fn pttl(&mut self, key: &[u8]) -> Result<i64> {
        self.note_read(key);
        let now = self.now;
        if self.live(key).is_none() {
            return Ok(-2);
        }
        Ok(self.keys.get(key).and_then(|(_, e)| *e).map_or(-1, |at| at - now))
    }

    fn exists(&mut self, key: &[u8]) -> Result<bool> {
        self.note_read(key);
        Ok(self.live(key).is_some())
    }

    fn xrange(&mut self, key: &[u8], from: StreamId, count: usize) -> Result<Vec<StreamEntry>> {
        let Some(s) = self.entries(key)? else { return Ok(vec![]) };
        Ok(s.iter().filter(|(id, _)| *id >= from).take(count).cloned().collect())
    }

    fn xtail(&mut self, key: &[u8]) -> Result<Option<(i64, StreamId)>> {
        let Some(s) = self.entries(key)? else { return Ok(None) };
        Ok(s.last().map(|(id, _)| (s.len() as i64, *id)))
    }

    fn apply(&mut self, ops: Vec<Op>) -> Result<()> {
        for op in &ops {
            if let Some((k, kind)) = op.target() {
                if !self.kind_ok(k, kind) {
                    return Err(AiError::wrong_type());
                }
            }
        }
        self.open_reads.clear();
        let mut written: Vec<&[u8]> = Vec::new();
        for (k, _) in ops.iter().filter_map(Op::target) {
            if !written.contains(&k) {
                written.push(k);
            }
        }
        self.work.opened += written.len();
        for op in ops {
            self.apply_one(op);
        }
        Ok(())
    }
}

impl MemStore {
    /// A hash's fields as a map (empty when absent), for assertions.
    pub fn hgetall_for_test(&mut self, key: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.hash(key).ok().flatten().cloned().unwrap_or_default()
    }
}
