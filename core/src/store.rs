//! The boundary between the logic and Redis. The logic reads through `Store` and hands
//! back its writes as a list of `Op`s; the module applies them with the low-level key
//! API and replicates each as the equivalent native command (effects, never verbatim).
//! `mem::MemStore` implements the same trait for unit tests.

use crate::error::Result;
use crate::keys::Key;

/// Sorted-set scores we write are integers (sequences, instants) or +inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Score {
    At(i64),
    Inf,
}

impl Score {
    pub fn as_f64(self) -> f64 {
        match self {
            Score::At(v) => v as f64,
            Score::Inf => f64::INFINITY,
        }
    }

    /// The score as ZADD takes it.
    pub fn to_arg(self) -> String {
        match self {
            Score::At(v) => v.to_string(),
            Score::Inf => "+inf".to_string(),
        }
    }
}

/// One write. Applying a list of them is one atomic step of the module.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    HSet(Key, Vec<(Vec<u8>, Vec<u8>)>),
    HDel(Key, Vec<Vec<u8>>),
    HIncrBy(Key, Vec<u8>, i64),
    ZAdd(Key, Score, Vec<u8>),
    ZRem(Key, Vec<u8>),
    Del(Key),
    /// Absolute expiry in ms since the epoch.
    PExpireAt(Key, i64),
    Persist(Key),
    /// `SET key value [PXAT at]`.
    Set(Key, Vec<u8>, Option<i64>),
    /// A job event: one document, appended to the queue's stream and published.
    Event(Event),
    /// Wake the clients blocked on this key (not a write).
    Wake(Key),
}

/// A job event (docs/events.md): `XADD stream MAXLEN ~ maxlen * type <kind> id <id> data
/// <doc>` when the queue keeps a stream, and the same document published on the job's
/// channel (a channel, not a key: the publish is not replicated). One op, so the store
/// makes the document's string once for both.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The stream and its approximate cap; None: no stream.
    pub stream: Option<(Key, i64)>,
    pub channel: Vec<u8>,
    pub kind: &'static str,
    pub id: Vec<u8>,
    pub doc: Vec<u8>,
}

impl Event {
    /// The stream entry's fields, in order.
    pub fn fields(&self) -> [(&'static [u8], &[u8]); 3] {
        [(b"type", self.kind.as_bytes()), (b"id", &self.id), (b"data", &self.doc)]
    }
}

/// The native type an op needs its key to hold (or the key to be absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hash,
    ZSet,
    String,
    Stream,
    Any,
}

impl Op {
    /// The key this op writes and the type it needs there; None for ops that write no key.
    pub fn target(&self) -> Option<(&[u8], KeyKind)> {
        match self {
            Op::HSet(k, _) | Op::HDel(k, _) | Op::HIncrBy(k, _, _) => Some((k, KeyKind::Hash)),
            Op::ZAdd(k, _, _) | Op::ZRem(k, _) => Some((k, KeyKind::ZSet)),
            Op::Set(k, _, _) => Some((k, KeyKind::String)),
            Op::Event(e) => e.stream.as_ref().map(|(k, _)| (k.as_slice(), KeyKind::Stream)),
            Op::Del(k) | Op::PExpireAt(k, _) | Op::Persist(k) => Some((k, KeyKind::Any)),
            Op::Wake(_) => None,
        }
    }
}

/// A range of a sorted set by score: `[min, max]` with optional exclusive ends,
/// ascending or descending, at most `limit` members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZRange {
    pub min: f64,
    pub min_exclusive: bool,
    pub max: f64,
    pub max_exclusive: bool,
    pub reverse: bool,
    pub limit: usize,
}

impl ZRange {
    pub fn up_to(max: f64, limit: usize) -> Self {
        ZRange { min: f64::NEG_INFINITY, min_exclusive: false, max, max_exclusive: false, reverse: false, limit }
    }

    pub fn first(limit: usize) -> Self {
        Self::up_to(f64::INFINITY, limit)
    }

    pub fn contains(&self, score: f64) -> bool {
        let above = if self.min_exclusive { score > self.min } else { score >= self.min };
        let below = if self.max_exclusive { score < self.max } else { score <= self.max };
        above && below
    }
}

/// Reads of the keyspace the logic needs, plus `apply` for its writes. Every read of a
/// key holding another type fails with `WRONGTYPE`.
pub trait Store {
    /// A value handed straight to a reply without a copy where the store can (the cache
    /// hit path).
    type Blob: AsRef<[u8]>;

    fn hget_blob(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Self::Blob>>;
    fn hget(&mut self, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>>;
    fn hmget(&mut self, key: &[u8], fields: &[&str]) -> Result<Vec<Option<Vec<u8>>>>;
    fn hgetall(&mut self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    fn zscore(&mut self, key: &[u8], member: &[u8]) -> Result<Option<f64>>;
    fn zcard(&mut self, key: &[u8]) -> Result<i64>;
    fn zrange(&mut self, key: &[u8], range: ZRange) -> Result<Vec<(Vec<u8>, f64)>>;
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// ms left; -1 without expiry; -2 when the key does not exist.
    fn pttl(&mut self, key: &[u8]) -> Result<i64>;
    fn exists(&mut self, key: &[u8]) -> Result<bool>;
    /// Checks every target's type first, then writes: a refused batch changes nothing.
    fn apply(&mut self, ops: Vec<Op>) -> Result<()>;
}
