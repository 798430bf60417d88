//! Live parts: one events-stream reader per watched queue, fanned out to every browser
//! (a browser never costs a Redis connection), and a sampler of every queue's totals that
//! the overview's throughput charts are drawn from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::aijob;
use crate::backend::Backend;

/// Events buffered per queue for slow browsers (a lagging one skips ahead).
const FANOUT_BUFFER: usize = 256;
/// How long one XREAD waits before the reader checks whether anybody still listens.
const BLOCK_MS: u64 = 5_000;

/// The readers of the queues somebody watches.
#[derive(Default)]
pub struct Hub {
    queues: Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>,
}

impl Hub {
    /// A receiver of queue `q`'s events (each the event's JSON); starts the queue's reader
    /// when it is the first.
    pub fn subscribe(self: &Arc<Self>, backend: &Arc<Backend>, q: &str) -> broadcast::Receiver<Arc<str>> {
        let mut map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(q) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(FANOUT_BUFFER);
        map.insert(q.to_string(), tx.clone());
        tokio::spawn(read_queue(self.clone(), backend.clone(), q.to_string(), tx));
        rx
    }

    /// Readers running now (tests and the bench watch this).
    pub fn readers(&self) -> usize {
        self.queues.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Forgets `q`'s reader unless somebody subscribed meanwhile; true when it may stop.
    fn retire(&self, q: &str, tx: &broadcast::Sender<Arc<str>>) -> bool {
        let mut map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if tx.receiver_count() > 0 {
            return false;
        }
        map.remove(q);
        true
    }
}

/// XREAD BLOCK on the queue's events stream, from now on, on a connection of its own.
async fn read_queue(hub: Arc<Hub>, backend: Arc<Backend>, q: String, tx: broadcast::Sender<Arc<str>>) {
    let key = format!("aijob:{{{q}}}:events");
    // From the moment of the first subscription (stream ids are times), not "$": the first
    // XREAD may be sent after an event the browser is already waiting for. Two seconds
    // early covers a clock a little off; an event seen twice only redraws a page twice.
    let mut last = format!("{}-0", now_ms() - 2_000);
    let mut reader = None;
    loop {
        if tx.receiver_count() == 0 && hub.retire(&q, &tx) {
            return;
        }
        if reader.is_none() {
            match backend.reader().await {
                Ok(r) => reader = Some(r),
                Err(e) => {
                    tracing::warn!(queue = %q, error = %e, "events reader cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let Some(r) = reader.as_mut() else { continue };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(200).arg("BLOCK").arg(BLOCK_MS).arg("STREAMS").arg(&key).arg(&last);
        match r.query(&cmd).await {
            Ok(v) => {
                for (id, fields) in aijob::stream_entries(&v) {
                    if let Some(data) = fields.get("data") {
                        let _ = tx.send(Arc::from(data.as_str()));
                    }
                    last = id;
                }
            }
            Err(e) => {
                tracing::warn!(queue = %q, error = %e, "events reader lost its connection");
                reader = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How often the sampler reads every queue's totals, and how much history it keeps.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const KEEP_MS: i64 = 65 * 60 * 1000;

/// One reading of a queue's totals.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub completed: i64,
    pub failed: i64,
}

/// Totals over time per queue, in memory (since this dashboard started).
#[derive(Default)]
pub struct History {
    queues: Mutex<BTreeMap<String, VecDeque<Sample>>>,
    /// Queues whose first look (the rebuilt hour) is under way.
    looking: Mutex<std::collections::BTreeSet<String>>,
}

impl History {
    pub fn record(&self, q: &str, s: Sample) {
        let mut map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let ring = map.entry(q.to_string()).or_default();
        ring.push_back(s);
        while ring.front().is_some_and(|f| s.at_ms - f.at_ms > KEEP_MS) {
            ring.pop_front();
        }
    }

    pub fn knows(&self, q: &str) -> bool {
        self.queues.lock().map(|m| m.contains_key(q)).unwrap_or(false)
    }

    pub fn samples(&self, q: &str) -> Vec<Sample> {
        let map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        map.get(q).map(|r| r.iter().copied().collect()).unwrap_or_default()
    }
}

/// Per-minute (completed, failed) over the `minutes` before `now_ms`, oldest first, from
/// the samples (a minute without samples on both sides is None: not measured).
pub fn per_minute(samples: &[Sample], now_ms: i64, minutes: usize) -> Vec<Option<(i64, i64)>> {
    // a page's own reading, taken a moment after its clock, belongs to its last minute
    let now_ms = samples.last().map_or(now_ms, |s| s.at_ms.max(now_ms));
    let at = |t: i64| samples.iter().rev().find(|s| s.at_ms <= t).copied();
    (0..minutes)
        .map(|i| {
            let end = now_ms - (minutes - 1 - i) as i64 * 60_000;
            let start = end - 60_000;
            let first_seen = samples.first()?.at_ms;
            if end <= first_seen {
                return None;
            }
            let a = at(start).unwrap_or(*samples.first()?);
            let b = at(end)?;
            Some(((b.completed - a.completed).max(0), (b.failed - a.failed).max(0)))
        })
        .collect()
}

/// A page shows a queue the sampler has not seen yet: its hour is rebuilt now, in the
/// background, so the page's next refresh has a chart.
pub fn first_look(backend: &Arc<Backend>, history: &Arc<History>, q: &str) {
    if history.knows(q) {
        return;
    }
    if !history.looking.lock().map(|mut l| l.insert(q.to_string())).unwrap_or(false) {
        return;
    }
    let (backend, history, q) = (backend.clone(), history.clone(), q.to_string());
    tokio::spawn(async move {
        if let Ok(st) = aijob::stats(&backend, &q).await {
            sample_one(&backend, &history, &q, &st).await;
        }
        if let Ok(mut l) = history.looking.lock() {
            l.remove(&q);
        }
    });
}

async fn sample_one(backend: &Backend, history: &History, q: &str, st: &BTreeMap<String, i64>) {
    let now = Sample {
        at_ms: now_ms(),
        completed: st.get("completed").copied().unwrap_or(0),
        failed: st.get("failed").copied().unwrap_or(0),
    };
    if !history.knows(q) {
        if let Ok(past) = past_hour(backend, q, now).await {
            for s in past {
                history.record(q, s);
            }
        }
    }
    history.record(q, now);
}

/// Reads every queue's totals every SAMPLE_EVERY: one QUEUE.LIST per master and one
/// QUEUE.STATS per queue, whatever the number of jobs. A queue seen for the first time
/// gets its last hour from the events stream, once.
pub async fn sample_forever(backend: Arc<Backend>, history: Arc<History>) {
    loop {
        if let Ok(names) = aijob::queues(&backend, 10_000).await {
            for q in names {
                if let Ok(st) = aijob::stats(&backend, &q).await {
                    sample_one(&backend, &history, &q, &st).await;
                }
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Most events-stream entries read to rebuild a queue's last hour.
const BACKFILL_READ: usize = 20_000;

/// The queue's totals at each minute of the last hour, worked back from `now` by the
/// `done` and `error` events of the events stream (XREAD from an hour ago).
async fn past_hour(backend: &Backend, q: &str, now: Sample) -> Result<Vec<Sample>, aijob::Failed> {
    let key = format!("aijob:{{{q}}}:events");
    let mut last = format!("{}-0", now.at_ms - 3_600_000);
    let mut ends: Vec<(i64, bool)> = Vec::new();
    let mut read = 0;
    while read < BACKFILL_READ {
        let mut c = redis::cmd("XREAD");
        c.arg("COUNT").arg(1000).arg("STREAMS").arg(&key).arg(&last);
        let entries = aijob::stream_entries(&backend.query(&c).await?);
        let Some((tail, _)) = entries.last() else { break };
        last = tail.clone();
        read += entries.len();
        for (id, fields) in &entries {
            let ms = id.split('-').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            match fields.get("type").map(String::as_str) {
                Some("done") => ends.push((ms, true)),
                Some("error") => ends.push((ms, false)),
                _ => {}
            }
        }
    }
    Ok(rebuild(&ends, now))
}

/// Samples at each whole minute from the first end to `now`: the totals then were today's
/// minus what ended after.
pub fn rebuild(ends: &[(i64, bool)], now: Sample) -> Vec<Sample> {
    let Some(first) = ends.iter().map(|e| e.0).min() else { return Vec::new() };
    let mut out = Vec::new();
    let mut t = first - first.rem_euclid(60_000);
    while t < now.at_ms {
        let (done_after, failed_after) =
            ends.iter().filter(|e| e.0 > t).fold((0, 0), |(d, f), e| if e.1 { (d + 1, f) } else { (d, f + 1) });
        out.push(Sample { at_ms: t, completed: now.completed - done_after, failed: now.failed - failed_after });
        t += 60_000;
    }
    out
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_deltas_of_the_totals() {
        let s = |at_ms, completed, failed| Sample { at_ms, completed, failed };
        let samples = vec![s(0, 0, 0), s(30_000, 5, 1), s(60_000, 10, 1), s(120_000, 40, 3)];
        let m = per_minute(&samples, 120_000, 3);
        assert_eq!(m, vec![None, Some((10, 1)), Some((30, 2))]);
    }

    #[test]
    fn the_past_hour_is_rebuilt_from_the_ends() {
        let now = Sample { at_ms: 600_000, completed: 10, failed: 2 };
        let ends = [(130_000, true), (150_000, false), (400_000, true), (590_000, true)];
        let past = rebuild(&ends, now);
        assert_eq!(past.first().unwrap(), &Sample { at_ms: 120_000, completed: 7, failed: 1 });
        assert_eq!(past.len(), 8);
        let mut all = past.clone();
        all.push(now);
        let minutes = per_minute(&all, 600_000, 10);
        let total: (i64, i64) = minutes.iter().flatten().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(total, (3, 1));
    }

    #[test]
    fn history_forgets_past_the_hour() {
        let h = History::default();
        for i in 0..100 {
            h.record("q", Sample { at_ms: i * 60_000, completed: i, failed: 0 });
        }
        let kept = h.samples("q");
        assert!(kept.len() <= 66 && kept.last().unwrap().completed == 99);
    }
}
