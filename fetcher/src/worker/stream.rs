//! A streamed call: the provider's pieces of text go to the job's output stream
//! (`JOB.APPEND q id TOKEN t DATA chunk`, [docs/streams.md](../../../docs/streams.md)) as they
//! arrive, batched, while the call runs; the answer is stored as the result as usual.
//!
//! - Batching: the first piece goes out at once, the next ones together once
//!   [`FLUSH_EVERY`] has passed since the last append, or as soon as [`FLUSH_BYTES`] wait:
//!   one append (one chunk) per batch, never one per token, and one append in flight per job
//!   (so chunks land in order).
//! - A fallback after output began starts over: the new leg's first append carries
//!   `RESTART`, which puts an attempt boundary in the stream and drops the earlier leg's
//!   partial text, so readers never see two models' text as one.
//! - Every append is scrubbed of the configured keys like any text the fetcher writes; a
//!   tail of the text that could be the start of a key waits for the next piece
//!   ([`Redactor::settled`]), so a key the provider echoes across two pieces is caught too.
//! - A refused append that says the job is no longer ours (LEASELOST, CANCELED, NOTFOUND,
//!   BADSTATE) stops the call at once: nothing more is written. TOOBIG (the attempt's output
//!   reached the module's caps) stops the appends only: the call goes on and its result holds
//!   the whole text. Any other failure (the link, a full server) may or may not have landed,
//!   so the next append restarts the leg's output with its whole text so far: never a piece
//!   twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tracing::{debug, warn};

use crate::outcome::Refusal;
use crate::providers::{Call, ErrorClass, Failure, Provider, ProviderName, Success};
use crate::rconn;
use crate::secret::Redactor;

use super::commands;
use super::job::Job;
use super::shared::Shared;

/// The least time between two appends of one job.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Text waiting at least this long goes out without waiting for [`FLUSH_EVERY`].
pub const FLUSH_BYTES: usize = 16 * 1024;
/// A last append that fails for a reason other than a refusal is tried this many times.
const LAST_TRIES: u32 = 5;

/// How a streamed leg ended, when not with an answer.
#[derive(Debug)]
pub enum Stop {
    /// The call failed (the fallback rules decide what comes next).
    Failed(Failure),
    /// Redis refused an append: the job is no longer this worker's.
    Lost(Refusal),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}

/// What one attempt has written to the job's stream, across its legs.
#[derive(Debug, Default)]
pub struct Output {
    /// An append of this attempt may have landed: a later leg's output starts with RESTART.
    began: bool,
    /// The next append restarts the output, with the leg's whole text so far.
    restart: bool,
    /// The current leg's text so far, appended or not.
    leg_text: String,
    /// The module refused more (TOOBIG): no more appends this attempt.
    full: bool,
}

impl Output {
    /// A leg starts: when an earlier one's output went out, this one's replaces it (and
    /// RESTART starts the caps from zero again).
    pub fn begin_leg(&mut self) {
        self.restart = self.began;
        self.full = false;
        self.leg_text.clear();
    }

    /// The append of `batch`, the next piece of the leg's text: `(restart, data)`, or None
    /// when nothing is to be sent (no new text and no restart owed, or the caps were reached).
    pub fn next_append(&mut self, batch: &str) -> Option<(bool, String)> {
        self.leg_text.push_str(batch);
        let owed = self.restart && !self.leg_text.is_empty();
        if self.full || (batch.is_empty() && !owed) {
            return None;
        }
        self.began = true;
        Some(if self.restart { (true, self.leg_text.clone()) } else { (false, batch.to_string()) })
    }

    /// The append landed.
    pub fn landed(&mut self) {
        self.restart = false;
    }

    /// The append failed without a refusal: it may have landed, so the next one restarts.
    pub fn unsure(&mut self) {
        self.restart = true;
    }
}

/// The text that waits for the next append, and when that append is due.
#[derive(Debug, Default)]
pub struct Batch {
    text: String,
    /// Text came since the last take (what a take held back waits for more).
    fresh: bool,
    last_append: Option<Instant>,
}

impl Batch {
    pub fn push(&mut self, piece: &str) {
        self.text.push_str(piece);
        self.fresh |= !piece.is_empty();
    }

    /// When the waiting text should go out (None: nothing new waits).
    pub fn due(&self) -> Option<Instant> {
        if !self.fresh {
            return None;
        }
        match self.last_append {
            Some(at) if self.text.len() < FLUSH_BYTES => Some(at + FLUSH_EVERY),
            _ => Some(Instant::now()),
        }
    }

    /// Takes the waiting text for an append made `now`, scrubbed; while the call runs
    /// (`ended` false), a tail that could begin a key stays for the next take.
    pub fn take(&mut self, now: Instant, redactor: &Redactor, ended: bool) -> String {
        self.last_append = Some(now);
        self.fresh = false;
        let cut = if ended { self.text.len() } else { redactor.settled(&self.text) };
        let held = self.text.split_off(cut);
        redactor.scrub(&std::mem::replace(&mut self.text, held))
    }
}

/// Calls `leg` in streaming mode, appending its text to the job's stream as it arrives.
/// The answer comes back only once every piece of its text has been appended (the final
/// update, which ends the stream, must come after them).
pub async fn call(
    sh: &Shared,
    job: &Job,
    leg: &Call,
    provider: Arc<dyn Provider>,
    out: &mut Output,
) -> Result<Success, Stop> {
    out.begin_leg();
    let t = Instant::now();
    let (tx, mut rx) = unbounded_channel::<String>();
    let timeout = sh.cfg.timeout;
    let mut call = Box::pin(async move {
        match tokio::time::timeout(timeout, provider.stream(leg, tx)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::retry(ErrorClass::Timeout, "the provider did not answer within the timeout")),
        }
    });
    let to = Appends { sh, job, provider: leg.provider };
    let mut pump = Box::pin(pump(to, &mut rx, out));
    let first = tokio::select! {
        r = &mut call => Ok(r),
        p = &mut pump => Err(p),
    };
    let r = match first {
        Ok(answer) => {
            drop(call); // closes the channel: the pump appends what is left and ends
            pump.await.map_err(Stop::Lost).and(answer.map_err(Stop::Failed))
        }
        Err(Err(refusal)) => Err(Stop::Lost(refusal)),
        Err(Ok(())) => call.await.map_err(Stop::Failed),
    };
    sh.metrics.call(leg.provider, t.elapsed());
    r
}

/// Where a leg's appends go: the job, and the provider they are counted for.
#[derive(Clone, Copy)]
struct Appends<'a> {
    sh: &'a Shared,
    job: &'a Job,
    provider: ProviderName,
}

/// Appends what arrives on `rx`, batched, until the channel closes (the call ended) and
/// everything is appended; Err when Redis refuses an append for good.
async fn pump(to: Appends<'_>, rx: &mut UnboundedReceiver<String>, out: &mut Output) -> Result<(), Refusal> {
    let mut batch = Batch::default();
    loop {
        let due = batch.due();
        tokio::select! {
            piece = rx.recv() => match piece {
                Some(p) => batch.push(&p),
                None => return last_append(to, &mut batch, out).await,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                append(to, batch.take(Instant::now(), &to.sh.redactor, false), out).await?;
            }
        }
    }
}

/// The call ended: what waits goes out, and a restart still owed is retried a few times
/// (the final update, which ends the stream, comes next).
async fn last_append(to: Appends<'_>, batch: &mut Batch, out: &mut Output) -> Result<(), Refusal> {
    append(to, batch.take(Instant::now(), &to.sh.redactor, true), out).await?;
    for i in 0..LAST_TRIES {
        if !out.restart || out.full || out.leg_text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 << i)).await;
        append(to, String::new(), out).await?;
    }
    Ok(())
}

async fn append(to: Appends<'_>, text: String, out: &mut Output) -> Result<(), Refusal> {
    let (sh, job) = (to.sh, to.job);
    let Some((restart, data)) = out.next_append(&text) else {
        return Ok(());
    };
    let e = match sh.redis.query(&commands::append(job, restart, &data)).await {
        Ok(_) => {
            out.landed();
            sh.metrics.appended(to.provider, restart);
            return Ok(());
        }
        Err(e) => e,
    };
    let refusal = Refusal::from_code(rconn::code(&e).unwrap_or(""));
    if refusal.ends_the_hold() {
        debug!(queue = %job.queue, id = %job.id, reason = refusal.as_str(), "append refused: dropping the call");
        return Err(refusal);
    }
    if refusal == Refusal::TooBig {
        warn!(queue = %job.queue, id = %job.id, "the job's output reached the module's caps: no more appends, the result keeps the whole text");
        out.full = true;
        return Ok(());
    }
    warn!(queue = %job.queue, id = %job.id, error = %rconn::describe(&e), "append failed; the next one restarts the output");
    out.unsure();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_piece_goes_at_once_the_next_ones_together() {
        let none = Redactor::default();
        let mut b = Batch::default();
        assert_eq!(b.due(), None);
        b.push("Hel");
        let at = b.due().unwrap();
        assert!(at <= Instant::now());
        let sent = Instant::now();
        assert_eq!(b.take(sent, &none, false), "Hel");
        b.push("lo");
        b.push(" world");
        assert_eq!(b.due(), Some(sent + FLUSH_EVERY));
        b.push(&"x".repeat(FLUSH_BYTES));
        assert!(b.due().unwrap() <= Instant::now(), "a large batch goes at once");
    }

    #[test]
    fn a_key_cut_across_pieces_never_goes_out() {
        let r = Redactor::new([crate::secret::Secret::new("sk-live-123456")]);
        let mut b = Batch::default();
        let mut sent = String::new();
        for piece in ["your key: s", "k-li", "ve-12", "3456, ok"] {
            b.push(piece);
            assert!(b.due().is_some());
            sent += &b.take(Instant::now(), &r, false);
            assert!(!sent.contains("sk-li"), "{sent}");
            assert_eq!(b.due(), None, "what was held waits for more");
        }
        b.push(" s");
        sent += &b.take(Instant::now(), &r, false);
        sent += &b.take(Instant::now(), &r, true);
        assert_eq!(sent, "your key: [redacted], ok s", "the end sends what was held");
    }

    #[test]
    fn a_fallback_after_output_restarts_with_its_own_text_only() {
        let mut o = Output::default();
        o.begin_leg();
        assert_eq!(o.next_append(""), None);
        assert_eq!(o.next_append("The"), Some((false, "The".into())));
        o.landed();
        assert_eq!(o.next_append(" ans"), Some((false, " ans".into())));
        o.landed();
        o.begin_leg();
        assert_eq!(o.next_append("Un"), Some((true, "Un".into())), "the next leg starts behind a boundary");
        o.landed();
        assert_eq!(o.next_append("e"), Some((false, "e".into())));
    }

    #[test]
    fn a_leg_before_any_output_needs_no_boundary_and_an_unsure_append_resends_the_leg() {
        let mut o = Output::default();
        o.begin_leg();
        o.begin_leg();
        assert_eq!(o.next_append("A"), Some((false, "A".into())));
        o.unsure();
        assert_eq!(o.next_append(""), Some((true, "A".into())), "a restart owed goes out without new text");
        o.unsure();
        assert_eq!(o.next_append("B"), Some((true, "AB".into())), "never a piece twice");
        o.landed();
        assert_eq!(o.next_append(""), None);
        o.full = true;
        assert_eq!(o.next_append("C"), None);
        o.begin_leg();
        assert_eq!(o.next_append("D"), Some((true, "D".into())), "a fallback's RESTART starts the caps over");
    }
}
