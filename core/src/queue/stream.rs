//! A job's output stream (docs/streams.md): JOB.APPEND writes chunks into
//! `aijob:{Q}:out:<id>`, fenced by the lease token like JOB.UPDATE; JOB.READ reads them
//! from any offset.
//!
//! Entry ids are `<epoch>-<n>`, chosen here, not by the clock, so the replicated XADD and
//! every offset a reader holds are exact. Each attempt that has output opens an epoch with
//! an `attempt` entry (`<epoch>-0`); its chunks follow (`<epoch>-1`, `<epoch>-2`, ...); a
//! finished job's stream ends with an `end` entry. A new attempt trims the epochs before
//! its own, so a reader sees the boundary and then the new output, never two attempts mixed.
//! The record keeps the stream's state in `_stream` (`<epoch> <next> <bytes>`): a step
//! knows whether the job has a stream from the record it reads anyway.

use crate::config::EXPIRY_GRACE_MS;
use crate::error::{AiError, Code, Result};
use crate::job::Status;
use crate::json::ObjectWriter;
use crate::keys::QueueKeys;
use crate::queue::fence::load_for_worker;
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

/// The stream's state as the record keeps it: the current epoch, the next entry's number
/// in it, and the bytes of chunks in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutState {
    pub epoch: u64,
    pub next: u64,
    pub bytes: i64,
}

impl OutState {
    fn parse(raw: &[u8]) -> Result<OutState> {
        let corrupt = || AiError::corrupt("job field _stream");
        let text = std::str::from_utf8(raw).map_err(|_| corrupt())?;
        let mut parts = text.split(' ');
        let mut next_num = || parts.next().and_then(|p| p.parse::<u64>().ok()).ok_or_else(corrupt);
        let (epoch, next, bytes) = (next_num()?, next_num()?, next_num()?);
        if epoch == 0 || next == 0 {
            return Err(corrupt());
        }
        Ok(OutState { epoch, next, bytes: i64::try_from(bytes).map_err(|_| corrupt())? })
    }

    fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.epoch, self.next, self.bytes).into_bytes()
    }

    /// Chunks in the current epoch (entry 0 is its `attempt` entry).
    pub fn chunks(&self) -> i64 {
        i64::try_from(self.next.saturating_sub(1)).unwrap_or(i64::MAX)
    }
}

/// The job's stream state; None when it has no stream.
pub fn state_of(job: &JobState) -> Result<Option<OutState>> {
    job.stream.as_deref().map(OutState::parse).transpose()
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

/// JOB.APPEND: adds the chunks to the running job's stream; returns the offset of the last.
pub fn append<S: Store>(
    s: &mut S,
    q: &QueueKeys,
    env: &mut Env,
    id: &[u8],
    a: &AppendArgs,
) -> Result<(StreamId, Tally)> {
    let job = load_for_worker(s, q, id, a.token.as_deref())?;
    if job.status != Status::Running {
        return Err(AiError::new(
            Code::BadState,
            format!("JOB.APPEND needs a running job; this one is {}", job.status.as_str()),
        ));
    }
    let state = state_of(&job)?;
    check_caps(state.as_ref().filter(|_| !a.restart), &a.chunks, &env.config)?;
    let mut tx = Tx::new(s, q, env.now, env.config);
    let mut st = match state {
        Some(st) if a.restart => open_epoch(&mut tx, &job, st.epoch.saturating_add(1), job.attempts),
        Some(st) => st,
        None => open_epoch(&mut tx, &job, 1, job.attempts),
    };
    let mut last = StreamId::new(st.epoch, 0);
    for chunk in &a.chunks {
        last = StreamId::new(st.epoch, st.next);
        let message = chunk_message(q, &job, last, chunk);
        tx.push(add(q, &job.id, last, field::CHUNK, chunk.clone(), Some(message)));
        st.next += 1;
        st.bytes = st.bytes.saturating_add(i64::try_from(chunk.len()).unwrap_or(i64::MAX));
    }
    tx.hset(&job.id, vec![(record::STREAM, st.encode())]);
    tx.push(Op::Wake(q.out(&job.id)));
    Ok((last, tx.commit()?))
}

/// `TOOBIG` when the chunks would take the attempt's output past either cap.
fn check_caps(state: Option<&OutState>, chunks: &[Vec<u8>], config: &crate::config::Config) -> Result<()> {
    let (have_chunks, have_bytes) = state.map_or((0, 0), |st| (st.chunks(), st.bytes));
    let add_bytes = chunks.iter().map(|c| c.len() as i64).fold(0i64, i64::saturating_add);
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
    let bytes_after = have_bytes.saturating_add(add_bytes);
    if bytes_after > config.stream_max_bytes {
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
fn chunk_message(q: &QueueKeys, job: &JobState, offset: StreamId, chunk: &[u8]) -> Vec<u8> {
    let mut w = ObjectWriter::new();
    w.string("type", field::CHUNK.as_bytes())
        .string(record::ID, &job.id)
        .string(record::QUEUE, q.name())
        .int(field::ATTEMPT, job.attempts)
        .string("offset", offset.to_string().as_bytes())
        .string("data", chunk);
    w.finish()
}

/// Opens epoch `epoch` for attempt `attempt`: its `attempt` entry, and the earlier epochs
/// trimmed. Returns the state after it.
fn open_epoch<S: Store>(tx: &mut Tx<S>, job: &JobState, epoch: u64, attempt: i64) -> OutState {
    let id = StreamId::new(epoch, 0);
    let mut w = ObjectWriter::new();
    w.string("type", field::ATTEMPT.as_bytes())
        .string(record::ID, &job.id)
        .string(record::QUEUE, tx.q.name())
        .int(field::ATTEMPT, attempt)
        .string("offset", id.to_string().as_bytes());
    let entry = add(tx.q, &job.id, id, field::ATTEMPT, attempt.to_string().into_bytes(), Some(w.finish()));
    tx.push(entry);
    if epoch > 1 {
        tx.push(Op::XTrimMinId(tx.q.out(&job.id), id));
    }
    OutState { epoch, next: 1, bytes: 0 }
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
    let Some(st) = state_of(job)? else { return Ok(()) };
    let st = open_epoch(tx, job, st.epoch.saturating_add(1), attempt);
    fields.push((record::STREAM, st.encode()));
    tx.push(Op::Wake(tx.q.out(&job.id)));
    Ok(())
}

/// The job finishes in `to`, retained until `until`: a blocked reader wakes; a stream
/// gets its `end` entry and expires with the record.
pub fn finished<S: Store>(
    tx: &mut Tx<S>,
    job: &JobState,
    to: Status,
    until: i64,
    fields: &mut Vec<(&'static str, Vec<u8>)>,
) -> Result<()> {
    tx.push(Op::Wake(tx.q.job(&job.id)));
    let Some(mut st) = state_of(job)? else { return Ok(()) };
    let id = StreamId::new(st.epoch, st.next);
    tx.push(add(tx.q, &job.id, id, field::END, to.as_str().as_bytes().to_vec(), None));
    st.next += 1;
    fields.push((record::STREAM, st.encode()));
    tx.push(Op::PExpireAt(tx.q.out(&job.id), until.saturating_add(EXPIRY_GRACE_MS)));
    Ok(())
}

/// A finished job is live again (JOB.RETRY): its stream no longer expires. The next
/// attempt's `attempt` entry follows the `end` entry.
pub fn reopened<S: Store>(tx: &mut Tx<S>, job: &JobState) -> Result<()> {
    if state_of(job)?.is_some() {
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
