//! Every key name of a queue, in one place. All of them share the hash tag `{Q}`, so one
//! queue is one cluster slot, the same slot as the key `Q` itself.

use crate::error::Result;
use crate::job::{Priority, Status};
use crate::names;

pub type Key = Vec<u8>;

/// The key names of queue `Q`: `aijob:{Q}:<suffix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKeys {
    /// `aijob:{Q}:`; the name is the part between the braces (one allocation, not two).
    prefix: Vec<u8>,
}

const OPEN: &[u8] = b"aijob:{";
const CLOSE: &[u8] = b"}:";

impl QueueKeys {
    /// Validates the queue name (`Q` in error messages).
    pub fn new(queue: &[u8]) -> Result<Self> {
        names::validate("Q", queue)?;
        let mut prefix = Vec::with_capacity(OPEN.len() + queue.len() + CLOSE.len());
        prefix.extend_from_slice(OPEN);
        prefix.extend_from_slice(queue);
        prefix.extend_from_slice(CLOSE);
        Ok(QueueKeys { prefix })
    }

    pub fn name(&self) -> &[u8] {
        let end = self.prefix.len().saturating_sub(CLOSE.len());
        self.prefix.get(OPEN.len()..end).unwrap_or_default()
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn key(&self, parts: &[&[u8]]) -> Key {
        let len = self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut k = Vec::with_capacity(len);
        k.extend_from_slice(&self.prefix);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    /// Hash: one job's record.
    pub fn job(&self, id: &[u8]) -> Key {
        self.key(&[b"job:", id])
    }

    /// Sorted set: the jobs that named job `id` in AFTER, scored by their sequence
    /// (docs/flows.md): a cascade walks them in creation order on every server alike.
    pub fn dependents(&self, id: &[u8]) -> Key {
        self.key(&[b"dependents:", id])
    }

    /// Hash: queue counters and settings (also the key blocked claims wait on).
    pub fn meta(&self) -> Key {
        self.key(&[b"meta"])
    }

    /// Sorted set: the job ids in one status, scored by creation sequence.
    pub fn status(&self, status: Status) -> Key {
        self.key(&[b"s:", status.as_str().as_bytes()])
    }

    /// Sorted set: one group's queued jobs at one priority, scored by sequence (FIFO).
    pub fn queued(&self, priority: Priority, group: &[u8]) -> Key {
        self.key(&[b"q:", priority.as_str().as_bytes(), b":", group])
    }

    /// Sorted set: the groups with claimable jobs at one priority, scored by turn.
    pub fn turns(&self, priority: Priority) -> Key {
        self.key(&[b"rr:", priority.as_str().as_bytes()])
    }

    /// Hash: one group's counters and cap.
    pub fn group(&self, group: &[u8]) -> Key {
        self.key(&[b"grp:", group])
    }

    /// Sorted set: every group with live jobs or a cap, scored by first appearance.
    pub fn groups(&self) -> Key {
        self.key(&[b"groups"])
    }

    /// Sorted set: delayed jobs by `run_at`.
    pub fn delayed(&self) -> Key {
        self.key(&[b"delayed"])
    }

    /// Sorted set: running jobs by `lease_until` (+inf when the app runs it without lease).
    pub fn leases(&self) -> Key {
        self.key(&[b"leases"])
    }

    /// Sorted set: queued or delayed jobs with a DEADLINE, by deadline.
    pub fn deadlines(&self) -> Key {
        self.key(&[b"deadlines"])
    }

    /// Sorted set: finished jobs by the instant their retention ends.
    pub fn expiry(&self) -> Key {
        self.key(&[b"expiry"])
    }

    /// Hash: content hash -> the live job that computes it.
    pub fn pending(&self) -> Key {
        self.key(&[b"pending"])
    }

    /// Hash: one cache entry (`value`, `etag`) of cache generation `generation`.
    pub fn cache(&self, generation: i64, hash: &[u8]) -> Key {
        self.key(&[b"cache:", generation.to_string().as_bytes(), b":", hash])
    }

    /// Sorted set: the cache entries of one generation, by expiry.
    pub fn cache_index(&self, generation: i64) -> Key {
        self.key(&[b"cacheidx:", generation.to_string().as_bytes()])
    }

    /// Sorted set: cleared cache generations whose entries are still being freed.
    pub fn cache_drops(&self) -> Key {
        self.key(&[b"cachedrop"])
    }

    /// Stream: every job event.
    pub fn events(&self) -> Key {
        self.key(&[b"events"])
    }

    /// Stream: one job's output (JOB.APPEND), ids `<epoch>-<n>` (docs/streams.md).
    pub fn out(&self, id: &[u8]) -> Key {
        self.key(&[b"out:", id])
    }

    /// Pub/sub channel of one job's events (a channel, not a key).
    pub fn job_channel(&self, id: &[u8]) -> Key {
        self.job(id)
    }

    /// Hash: one schedule.
    pub fn schedule(&self, name: &[u8]) -> Key {
        self.key(&[b"sched:", name])
    }

    /// Sorted set: schedules by next run (+inf when paused).
    pub fn schedules(&self) -> Key {
        self.key(&[b"schedules"])
    }
}

/// The queue name inside a key of ours, `aijob:{Q}:...`, or None for any other key.
pub fn queue_of_key(key: &[u8]) -> Option<&[u8]> {
    let rest = key.strip_prefix(b"aijob:{")?;
    let end = rest.iter().position(|&b| b == b'}')?;
    let (name, after) = rest.split_at(end);
    if after.get(1) != Some(&b':') || names::validate("Q", name).is_err() {
        return None;
    }
    Some(name)
}

/// The queue and job id of a job record's key, `aijob:{Q}:job:<id>`; None for any other key.
pub fn job_of_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let queue = queue_of_key(key)?;
    let rest = key.get(OPEN.len() + queue.len() + CLOSE.len()..)?;
    let id = rest.strip_prefix(b"job:")?;
    (!id.is_empty()).then_some((queue, id))
}

/// The queue and schedule name of a schedule's key, `aijob:{Q}:sched:<name>`.
pub fn schedule_of_key(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let queue = queue_of_key(key)?;
    let rest = key.get(OPEN.len() + queue.len() + CLOSE.len()..)?;
    let name = rest.strip_prefix(b"sched:")?;
    (!name.is_empty()).then_some((queue, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let k = QueueKeys::new(b"sketch").unwrap();
        for key in [
            k.job(b"x"),
            k.meta(),
            k.status(Status::Queued),
            k.queued(Priority::High, b"t1"),
            k.turns(Priority::Low),
            k.group(b"t1"),
            k.groups(),
            k.delayed(),
            k.leases(),
            k.deadlines(),
            k.expiry(),
            k.pending(),
            k.cache(3, b"ab"),
            k.cache_index(3),
            k.cache_drops(),
            k.events(),
            k.out(b"x"),
            k.dependents(b"x"),
            k.schedule(b"s"),
            k.schedules(),
        ] {
            assert!(key.starts_with(b"aijob:{sketch}:"), "{}", String::from_utf8_lossy(&key));
            assert_eq!(queue_of_key(&key), Some(&b"sketch"[..]));
        }
        assert_eq!(k.queued(Priority::Normal, b"").as_slice(), b"aijob:{sketch}:q:normal:");
    }

    #[test]
    fn job_of_key_finds_records_only() {
        let k = QueueKeys::new(b"sketch").unwrap();
        assert_eq!(job_of_key(&k.job(b"a:b")), Some((&b"sketch"[..], &b"a:b"[..])));
        for other in
            [k.meta(), k.status(Status::Queued), k.job(b""), k.out(b"x"), b"job:1".to_vec(), b"aijob:{q}:jobs".to_vec()]
        {
            assert_eq!(job_of_key(&other), None, "{}", String::from_utf8_lossy(&other));
        }
        assert_eq!(schedule_of_key(&k.schedule(b"daily")), Some((&b"sketch"[..], &b"daily"[..])));
        assert_eq!(schedule_of_key(&k.schedules()), None);
        assert_eq!(schedule_of_key(&k.job(b"x")), None);
    }

    #[test]
    fn queue_of_key_rejects_foreign_keys() {
        assert_eq!(queue_of_key(b"aijob:{}:meta"), None);
        assert_eq!(queue_of_key(b"job:1"), None);
        assert_eq!(queue_of_key(b"aijob:{q}"), None);
        assert_eq!(queue_of_key(b"aijob:{q}:x"), Some(&b"q"[..]));
    }
}
