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
    /// An entry of a job's output stream, with the id the logic chose (boxed: it is the
    /// largest op, and most steps write none).
    XAddId(Box<StreamAdd>),
    /// `XTRIM key MINID = id`: drops every entry before `id`.
    XTrimMinId(Key, StreamId),
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
            Op::XAddId(a) => Some((&a.key, KeyKind::Stream)),
            Op::XTrimMinId(k, _) => Some((k, KeyKind::Stream)),
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
    /// Up to `count` entries of the stream at `key` from `from` on (inclusive), oldest
    /// first; none when the key does not exist.
    fn xrange(&mut self, key: &[u8], from: StreamId, count: usize) -> Result<Vec<StreamEntry>>;
    /// The stream's length and its last entry's id; None when the key does not exist (or
    /// the stream is empty).
    fn xtail(&mut self, key: &[u8]) -> Result<Option<(i64, StreamId)>>;
    /// Checks every target's type first, then writes: a refused batch changes nothing.
    fn apply(&mut self, ops: Vec<Op>) -> Result<()>;
}

/// A stream entry id, `<ms>-<seq>` (two 64-bit numbers, as Redis keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The smallest id after this one; None after the last possible id.
    pub fn successor(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { seq, ..self }),
            None => Some(StreamId { ms: self.ms.checked_add(1)?, seq: 0 }),
        }
    }

    /// `<ms>-<seq>` as Redis writes it, or a bare `<ms>` (which Redis reads as `<ms>-0`).
    pub fn parse(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// `XADD key <id> <field> <value>`, then `PUBLISH channel message` when `publish` is given.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAdd {
    pub key: Key,
    pub id: StreamId,
    pub field: &'static str,
    pub value: Vec<u8>,
    pub publish: Option<(Vec<u8>, Vec<u8>)>,
}

/// One stream entry as read: its id and its field/value pairs.
pub type StreamEntry = (StreamId, Vec<(Vec<u8>, Vec<u8>)>);
