//! A job's output stream (docs/streams.md): JOB.APPEND writes chunks into
//! `aijob:{Q}:out:<id>`, fenced by the lease token like JOB.UPDATE; JOB.READ reads them
//! from any offset.
//!
//! Entry ids are `<epoch>-<bytes>`, chosen here, not by the clock, so the replicated XADD
//! and every offset a reader holds are exact. Each attempt that has output opens an epoch
//! with an `attempt` entry (`<epoch>-0`); a chunk's id counts the epoch's bytes up to and
//! including it; a finished job's stream ends with an `end` entry just after the last. A new
//! attempt trims the epochs before its own, so a reader sees the boundary and then the new
//! output, never two attempts mixed, and the stream holds one epoch: its length and its
//! last id are the epoch's chunk and byte counts, which the caps need, so an append writes
//! nothing but its entries. The record keeps the current epoch in `_stream`: a step knows
//! whether the job has a stream from the record it reads anyway.

use crate::config::{Config, EXPIRY_GRACE_MS};
use crate::error::{AiError, Code, Result};
use crate::job::Status;
use crate::json::ObjectWriter;
use crate::keys::QueueKeys;
use crate::queue::fence;
use crate::queue::tx::{Env, Tally, Tx};
use crate::record::{self, JobState};
use crate::store::{Op, Store, StreamAdd, StreamId};

/// The field of each kind of entry; an entry has exactly one field.
pub mod field {
    /// An attempt starts; the value is its number (the record's `attempts`).
    pub const ATTEMPT: &str = "attempt";
    /// Output; the value is the chunk's bytes.
    pub const CHUNK: &str = "chunk";
    /// The job finished; the value is its status (`done`, `error`, `canceled`).
    pub const END: &str = "end";
}

fn parse_epoch(raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|e| *e > 0)
        .ok_or_else(|| AiError::corrupt("job field _stream"))
}

/// The job's current epoch; None when it has no stream.
pub fn epoch_of(job: &JobState) -> Result<Option<u64>> {
    job.stream.as_deref().map(parse_epoch).transpose()
}

/// What JOB.APPEND asks for, after Q and the id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendArgs {
    pub token: Option<Vec<u8>>,
    /// The attempt's output so far is dropped: readers see an `attempt` entry (of the same
    /// attempt), then these chunks (a worker that falls back to another provider).
    pub restart: bool,
    pub chunks: Vec<Vec<u8>>,
}

/// The record fields an append reads: far fewer than a job's whole state.
const APPEND_FIELDS: [&str; 4] = [record::STATUS, record::TOKEN, record::ATTEMPTS, record::STREAM];

/// JOB.APPEND: adds the chunks to the running job's stream; returns the offset of the last.
pub fn append<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    id: &[u8],
    a: &AppendArgs,
) -> Result<(StreamId, Tally)> {
    let (attempt, epoch) = load_for_append(s, q, id, a.token.as_deref())?;
    let current = if a.restart { None } else { current_epoch(s, q, id, epoch)? };
    let (have_chunks, have_bytes) = current.map_or((0, 0), |(_, n, b)| (n, b));
    check_caps(have_chunks, have_bytes, &a.chunks, &env.config)?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    let (epoch, mut bytes) = match current {
        Some((e, _, b)) => (e, b),
        None => {
            let e = epoch.map_or(1, |e| e.saturating_add(1));
            open_epoch(&mut tx, id, e, attempt);
            tx.hset(id, vec![(record::STREAM, e.to_string().into_bytes())]);
            (e, 0)
        }
    };
    let mut last = StreamId::new(epoch, bytes);
    for chunk in &a.chunks {
        bytes = bytes.saturating_add(chunk.len() as u64);
        last = StreamId::new(epoch, bytes);
        let message = chunk_message(q, id, last, chunk);
        tx.push(add(q, id, last, field::CHUNK, chunk.clone(), Some(message)));
    }
    tx.push(Op::Wake(q.out(id)));
    Ok((last, tx.commit()?))
}

/// The four record fields an append needs, fenced by the token: the attempt's number and
/// the stream's epoch (None: no stream yet). Only a running job takes appends.
fn load_for_append<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8], token: Option<&[u8]>) -> Result<(i64, Option<u64>)> {
    let mut v = s.hmget(&q.job(id), &APPEND_FIELDS)?.into_iter();
    let mut next = || v.next().flatten();
    let (status, held, attempts, epoch) = (next(), next(), next(), next());
    let status = status.ok_or_else(|| fence::missing(id))?;
    let status = Status::parse(&status).ok_or_else(|| AiError::corrupt("job status"))?;
    fence::check(status, held.as_deref(), token)?;
    if status != Status::Running {
        return Err(AiError::new(
            Code::BadState,
            format!("JOB.APPEND needs a running job; this one is {}", status.as_str()),
        ));
    }
    let attempt = attempts.as_deref().and_then(crate::record::int).unwrap_or(0);
    Ok((attempt, epoch.as_deref().map(parse_epoch).transpose()?))
}

/// The epoch an append goes on writing in, with its chunks and bytes so far (the stream
/// holds that epoch only: its length less the `attempt` entry, and its last id); None when
/// the append must open one (no stream, or a stream that lost its epoch).
fn current_epoch<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8], epoch: Option<u64>) -> Result<Option<(u64, i64, u64)>> {
    let Some(e) = epoch else { return Ok(None) };
    Ok(match s.xtail(&q.out(id))? {
        Some((len, last)) if last.ms == e => Some((e, len.saturating_sub(1), last.seq)),
        _ => None,
    })
}

/// `TOOBIG` when the chunks would take the attempt's output past either cap.
fn check_caps(have_chunks: i64, have_bytes: u64, chunks: &[Vec<u8>], config: &Config) -> Result<()> {
    let chunks_after = have_chunks.saturating_add(chunks.len() as i64);
    if chunks_after > config.stream_max_chunks {
        return Err(AiError::new(
            Code::TooBig,
            format!(
                "the attempt's output would be {chunks_after} chunks, over stream-max-chunks {}",
                config.stream_max_chunks
            ),
        ));
    }
    let add_bytes = chunks.iter().map(|c| c.len() as u64).fold(0u64, u64::saturating_add);
    let bytes_after = have_bytes.saturating_add(add_bytes);
    if bytes_after > config.stream_max_bytes.max(0) as u64 {
        return Err(AiError::new(
            Code::TooBig,
            format!(
                "the attempt's output would be {bytes_after} bytes, over stream-max-bytes {}",
                config.stream_max_bytes
            ),
        ));
    }
    Ok(())
}

fn add(q: &QueueKeys, job: &[u8], id: StreamId, field: &'static str, value: Vec<u8>, message: Option<Vec<u8>>) -> Op {
    let publish = message.map(|m| (q.job_channel(job), m));
    Op::XAddId(Box::new(StreamAdd { key: q.out(job), id, field, value, publish }))
}

/// The message a chunk publishes on the job's channel: lighter than an event (no status,
/// progress or instant) and not in the events stream.
fn chunk_message(q: &QueueKeys, job: &[u8], offset: StreamId, chunk: &[u8]) -> Vec<u8> {
    let mut w = ObjectWriter::new();
    w.string("type", field::CHUNK.as_bytes())
        .string(record::ID, job)
        .string(record::QUEUE, q.name())
        .string("offset", offset.to_string().as_bytes())
        .string("data", chunk);
    w.finish()
}

/// Opens epoch `epoch` for attempt `attempt`: its `attempt` entry, and the earlier epochs
/// trimmed. The caller records the epoch in `_stream`.
fn open_epoch<S: Store>(tx: &mut Tx<S>, job: &[u8], epoch: u64, attempt: i64) {
    let id = StreamId::new(epoch, 0);
    let mut w = ObjectWriter::new();
    w.string("type", field::ATTEMPT.as_bytes())
        .string(record::ID, job)
        .string(record::QUEUE, tx.q.name())
        .int(field::ATTEMPT, attempt)
        .string("offset", id.to_string().as_bytes());
    let entry = add(tx.q, job, id, field::ATTEMPT, attempt.to_string().into_bytes(), Some(w.finish()));
    tx.push(entry);
    if epoch > 1 {
        tx.push(Op::XTrimMinId(tx.q.out(job), id));
    }
    tx.push(Op::Wake(tx.q.out(job)));
}

/// A new attempt starts (a claim, or STATUS running): when the job has a stream from an
/// earlier attempt, readers see an `attempt` entry and the earlier output is trimmed.
/// `fields` are the record fields the step writes; `attempt` is the new attempt's number.
pub fn new_attempt<S: Store>(
    tx: &mut Tx<S>,
    job: &JobState,
    attempt: i64,
    fields: &mut Vec<(&'static str, Vec<u8>)>,
) -> Result<()> {
    let Some(e) = epoch_of(job)? else { return Ok(()) };
    let e = e.saturating_add(1);
    open_epoch(tx, &job.id, e, attempt);
    fields.push((record::STREAM, e.to_string().into_bytes()));
    Ok(())
}

/// The job finishes in `to`, retained until `until`: a blocked reader wakes; a stream
/// gets its `end` entry and expires with the record.
pub fn finished<S: Store>(tx: &mut Tx<S>, job: &JobState, to: Status, until: i64) -> Result<()> {
    tx.push(Op::Wake(tx.q.job(&job.id)));
    if epoch_of(job)?.is_none() {
        return Ok(());
    }
    let out = tx.q.out(&job.id);
    let Some(end) = tx.s.xtail(&out)?.and_then(|(_, last)| last.successor()) else { return Ok(()) };
    tx.push(add(tx.q, &job.id, end, field::END, to.as_str().as_bytes().to_vec(), None));
    tx.push(Op::PExpireAt(out, until.saturating_add(EXPIRY_GRACE_MS)));
    Ok(())
}

/// A finished job is live again (JOB.RETRY): its stream no longer expires. The next
/// attempt's `attempt` entry follows the `end` entry.
pub fn reopened<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<()> {
    if epoch_of(job)?.is_some() {
        tx.push(Op::Persist(tx.q.out(&job.id)));
    }
    Ok(())
}

/// The job is removed (JOB.DELETE, QUEUE.PURGE, the end of its retention): its stream
/// goes with it, and a reader blocked on a live job is told.
pub fn removed<S: Store>(tx: &mut Tx<S>, job: &JobState) {
    if job.stream.is_some() {
        tx.push(Op::Del(tx.q.out(&job.id)));
    }
    if job.status.is_live() {
        tx.push(Op::Wake(tx.q.job(&job.id)));
    }
}

/// What JOB.READ asks for, after Q and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadArgs {
    /// Entries after this offset (`0-0`: from the start).
    pub after: StreamId,
    pub count: usize,
    pub block_ms: Option<i64>,
}

/// The most entries one JOB.READ answers, and the default.
pub const READ_COUNT_MAX: usize = 10_000;
pub const READ_COUNT_DEFAULT: usize = 1_000;

impl Default for ReadArgs {
    fn default() -> Self {
        ReadArgs { after: StreamId::ZERO, count: READ_COUNT_DEFAULT, block_ms: None }
    }
}

/// One entry as JOB.READ answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub offset: StreamId,
    /// `attempt`, `chunk` or `end` (the entry's field).
    pub kind: Vec<u8>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReply {
    pub entries: Vec<Entry>,
    /// The offset to read after next time: the last entry's, or AFTER when there is none.
    pub next: StreamId,
    /// The job is finished and nothing is left after `next`.
    pub ended: bool,
    pub status: Status,
}

impl ReadReply {
    /// Nothing to answer yet: a BLOCK read waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && !self.ended
    }
}

/// JOB.READ: the entries after AFTER, at most COUNT. NOTFOUND when there is no such job.
pub fn read<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8], a: &ReadArgs) -> Result<ReadReply> {
    let raw = s
        .hget(&q.job(id), record::STATUS.as_bytes())?
        .ok_or_else(|| AiError::not_found(format!("no job {} in queue", String::from_utf8_lossy(id))))?;
    let status = Status::parse(&raw).ok_or_else(|| AiError::corrupt("job status"))?;
    let found = match a.after.successor() {
        Some(from) => s.xrange(&q.out(id), from, a.count.saturating_add(1))?,
        None => Vec::new(),
    };
    let more = found.len() > a.count;
    let entries: Vec<Entry> = found
        .into_iter()
        .take(a.count)
        .map(|(offset, fields)| {
            let (kind, data) = fields.into_iter().next().unwrap_or_default();
            Entry { offset, kind, data }
        })
        .collect();
    let next = entries.last().map_or(a.after, |e| e.offset);
    Ok(ReadReply { entries, next, ended: status.is_finished() && !more, status })
}
