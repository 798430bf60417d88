//! One atomic step over a queue: reads go to the store (cached where a step reads the
//! same thing twice), writes collect as ops and are applied together by `commit`.
//! `place` and `unplace` are the only code that knows which indexes a status uses.

use crate::config::{Config, EXPIRY_GRACE_MS};
use crate::error::{AiError, Result};
use crate::job::{Priority, Status};
use crate::json::ObjectWriter;
use crate::keys::{Key, QueueKeys};
use crate::queue::overlay::Overlay;
use crate::record::{self, JobState};
use crate::rng::Entropy;
use crate::store::{Event, Op, Score, Store, ZRange};

/// What the logic gets from the shell besides the store: the clock read once, the
/// configs, and randomness.
pub struct Env<'e> {
    pub now: i64,
    pub config: Config,
    pub entropy: &'e mut dyn Entropy,
}

/// Module-wide counters a step moved; the shell adds them to `INFO aijob`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub created: u64,
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    pub retried: u64,
    pub claims: u64,
    pub expired_leases: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub coalesced: u64,
    pub schedule_runs: u64,
    pub charges_denied: u64,
    pub usage_settled: u64,
    /// COST charges a USAGE left as taken: their key was not declared with CHARGE.
    pub usage_unsettled: u64,
    /// Index entries dropped because they named a job that is gone or in another status.
    pub index_entries_dropped: u64,
    /// Index entries put back for a job record an index had lost.
    pub records_reindexed: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.created += o.created;
        self.completed += o.completed;
        self.failed += o.failed;
        self.canceled += o.canceled;
        self.retried += o.retried;
        self.claims += o.claims;
        self.expired_leases += o.expired_leases;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.coalesced += o.coalesced;
        self.schedule_runs += o.schedule_runs;
        self.charges_denied += o.charges_denied;
        self.usage_settled += o.usage_settled;
        self.usage_unsettled += o.usage_unsettled;
        self.index_entries_dropped += o.index_entries_dropped;
        self.records_reindexed += o.records_reindexed;
    }
}

/// Queue-wide fields of the `meta` hash.
pub mod meta {
    pub const SEQ: &str = "seq";
    pub const TURN: &str = "turn";
    pub const PAUSED: &str = "paused";
    pub const GROUP_CAP: &str = "groupcap";
    pub const CACHE_GEN: &str = "cache_gen";
    pub const CREATED: &str = "created";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    pub const RETRIED: &str = "retried";
    pub const HITS: &str = "hits";
    pub const MISSES: &str = "misses";
    pub const COALESCED: &str = "coalesced";

    pub fn queued(p: crate::job::Priority) -> &'static str {
        match p {
            crate::job::Priority::High => "queued_high",
            crate::job::Priority::Normal => "queued_normal",
            crate::job::Priority::Low => "queued_low",
        }
    }
}

/// Group hash fields.
mod group_field {
    pub const RUNNING: &str = "running";
    pub const CAP: &str = "cap";
    pub const PARKED: &str = "parked";
}

fn parse_i64(v: Option<Vec<u8>>, what: &str) -> Result<Option<i64>> {
    match v {
        None => Ok(None),
        Some(b) => crate::record::int(&b).map(Some).ok_or_else(|| AiError::corrupt(what)),
    }
}

/// A group as this step sees it: its hash (`running`, `cap`, `parked`) read when first
/// needed, its turn-set memberships and queued counts read when first needed, all of it
/// changed in memory and written at commit. A group is in the turn set of a priority
/// exactly when it has queued jobs there and is below its cap ("parked" otherwise), so a
/// claim never walks over groups it cannot serve. A group with nothing queued, nothing
/// running and no cap of its own is dropped.
#[derive(Debug, Clone, Default)]
struct GroupView {
    name: Vec<u8>,
    loaded: bool,
    running: i64,
    cap: Option<i64>,
    had_cap: bool,
    parked: bool,
    changed: bool,
    /// Something left it (a priority emptied, running reached 0): check at commit.
    maybe_empty: bool,
    registered: Option<bool>,
    queued: PerPriority<Option<i64>>,
    in_turns: PerPriority<Option<bool>>,
    /// `running`, `parked` and `cap` as read: a step that moves them back (a job finished
    /// and the next claimed in one step) writes nothing.
    stored: (i64, bool, Option<i64>),
}

/// One value per priority, found by a match: no index that could fall outside.
#[derive(Debug, Clone, Copy, Default)]
struct PerPriority<T> {
    high: T,
    normal: T,
    low: T,
}

impl<T: Copy> PerPriority<T> {
    fn at(&self, p: Priority) -> T {
        match p {
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }

    fn set(&mut self, p: Priority, v: T) {
        match p {
            Priority::High => self.high = v,
            Priority::Normal => self.normal = v,
            Priority::Low => self.low = v,
        }
    }
}

/// A group this step has looked at: made only by `Tx::group`, which pushes the view it
/// names, and no view is removed during a step, so it always names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GroupIx(usize);

/// The `meta` fields a step may change, read with one HMGET and written with one HSET.
const META_FIELDS: [&str; 11] = [
    meta::SEQ,
    meta::TURN,
    meta::GROUP_CAP,
    "queued_high",
    "queued_normal",
    "queued_low",
    meta::CREATED,
    meta::COMPLETED,
    meta::FAILED,
    meta::RETRIED,
    meta::MISSES,
];

/// Each field is read the first time the step needs it (a step touches two to four).
#[derive(Debug, Default)]
struct MetaView {
    values: [Option<i64>; META_FIELDS.len()],
    changed: [bool; META_FIELDS.len()],
}

pub struct Tx<'a, S: Store> {
    pub s: &'a mut S,
    pub q: &'a QueueKeys,
    pub now: i64,
    pub config: Config,
    pub tally: Tally,
    ops: Vec<Op>,
    meta: MetaView,
    groups: Vec<GroupView>,
    /// A turn set, a group's queued jobs or a limiter changed in this step: what a claim
    /// would read from the store is no longer what the step sees.
    claim_inputs_changed: bool,
    /// The flow fields this step changed (statuses, counts), which its later reads must see.
    pub overlay: Overlay,
    /// While set, events wait in `late_events` for the end of the step: a cascade's events
    /// follow the event of the job that caused them (a parent's `done` before its
    /// dependents' `queued`).
    pub defer_events: bool,
    late_events: Vec<Op>,
}

impl<'a, S: Store> Tx<'a, S> {
    pub fn new(s: &'a mut S, q: &'a QueueKeys, now: i64, config: Config) -> Self {
        Tx {
            s,
            q,
            now,
            config,
            tally: Tally::default(),
            ops: Vec::with_capacity(16),
            meta: MetaView::default(),
            groups: Vec::new(),
            claim_inputs_changed: false,
            overlay: Overlay::default(),
            defer_events: false,
            late_events: Vec::new(),
        }
    }

    /// Whether this step changed a turn set, a group's queued jobs or a limiter's state: a
    /// claim reads those from the store, so it may not share the step (see `next.rs`).
    pub fn claim_inputs_changed(&self) -> bool {
        self.claim_inputs_changed
    }

    /// A limiter's state was written in this step (a USAGE settle): a CHARGE admit that read
    /// the store now would miss it.
    pub fn note_limiter_written(&mut self) {
        self.claim_inputs_changed = true;
    }

    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    fn meta_index(field: &str) -> Option<usize> {
        META_FIELDS.iter().position(|f| *f == field)
    }

    fn meta_value(&mut self, i: usize) -> Result<i64> {
        if let Some(v) = self.meta.values.get(i).copied().flatten() {
            return Ok(v);
        }
        let field = *META_FIELDS.get(i).ok_or_else(|| AiError::corrupt("queue meta"))?;
        let v = parse_i64(self.s.hget(&self.q.meta(), field.as_bytes())?, "queue meta")?.unwrap_or(0);
        if let Some(slot) = self.meta.values.get_mut(i) {
            *slot = Some(v);
        }
        Ok(v)
    }

    /// A field of `meta` as this step sees it (0 when unset).
    pub fn meta_i64(&mut self, field: &str) -> Result<i64> {
        match Self::meta_index(field) {
            Some(i) => self.meta_value(i),
            None => {
                let v = self.s.hget(&self.q.meta(), field.as_bytes())?;
                Ok(parse_i64(v, "queue meta")?.unwrap_or(0))
            }
        }
    }

    fn meta_set(&mut self, field: &str, value: i64) -> Result<()> {
        match Self::meta_index(field) {
            Some(i) => {
                if let Some(slot) = self.meta.values.get_mut(i) {
                    *slot = Some(value);
                }
                if let Some(c) = self.meta.changed.get_mut(i) {
                    *c = true;
                }
            }
            None => self.ops.push(Op::HSet(self.q.meta(), vec![(field.into(), value.to_string().into_bytes())])),
        }
        Ok(())
    }

    /// Adds to a queue counter of `meta` (written once, at commit).
    pub fn incr_meta(&mut self, field: &str, by: i64) -> Result<()> {
        let v = self.meta_i64(field)?;
        self.meta_set(field, v.saturating_add(by))
    }

    /// The next creation sequence of the queue (orders JOB.LIST, FIFO within a group).
    pub fn next_seq(&mut self) -> Result<i64> {
        if self.meta_i64(meta::SEQ)? == 0 {
            let mut indexes: Vec<Key> = Status::ALL.iter().map(|st| self.q.status(*st)).collect();
            indexes.push(self.q.groups());
            self.restore_counter(meta::SEQ, &indexes)?;
        }
        self.incr_meta(meta::SEQ, 1)?;
        self.meta_i64(meta::SEQ)
    }

    fn next_turn(&mut self) -> Result<i64> {
        if self.meta_i64(meta::TURN)? == 0 {
            let indexes: Vec<Key> = Priority::ORDER.iter().map(|p| self.q.turns(*p)).collect();
            self.restore_counter(meta::TURN, &indexes)?;
        }
        self.incr_meta(meta::TURN, 1)?;
        self.meta_i64(meta::TURN)
    }

    /// A counter of `meta` that reads 0 while indexes scored by it hold entries was lost
    /// (`meta` evicted or deleted): it goes on from the highest score, so new entries still
    /// sort after old ones. Costs a few reads while the counter is 0 (a queue's first job).
    /// True when the counter was raised.
    pub fn restore_counter(&mut self, field: &str, indexes: &[Key]) -> Result<bool> {
        let top = highest_score(self.s, indexes)?;
        if top <= self.meta_i64(field)? {
            return Ok(false);
        }
        self.meta_set(field, top)?;
        Ok(true)
    }

    fn default_cap(&mut self) -> Result<i64> {
        self.meta_i64(meta::GROUP_CAP)
    }

    /// The group's slot in this step, without reading anything yet.
    fn group(&mut self, name: &[u8]) -> GroupIx {
        if let Some(i) = self.groups.iter().position(|g| g.name == name) {
            return GroupIx(i);
        }
        self.groups.push(GroupView { name: name.to_vec(), ..Default::default() });
        GroupIx(self.groups.len() - 1)
    }

    // The two places a group view is indexed: a `GroupIx` is always in range (see there).
    #[allow(clippy::indexing_slicing)]
    fn g(&self, gi: GroupIx) -> &GroupView {
        &self.groups[gi.0]
    }

    #[allow(clippy::indexing_slicing)]
    fn gv(&mut self, gi: GroupIx) -> &mut GroupView {
        &mut self.groups[gi.0]
    }

    /// Reads the group's hash the first time this step needs it.
    fn load_group(&mut self, gi: GroupIx) -> Result<()> {
        if self.g(gi).loaded {
            return Ok(());
        }
        let key = self.q.group(&self.g(gi).name);
        let v = self.s.hmget(&key, &[group_field::RUNNING, group_field::CAP, group_field::PARKED])?;
        let mut it = v.into_iter();
        let mut next = |what| parse_i64(it.next().flatten(), what);
        let running = next("group running")?;
        let cap = next("group cap")?;
        let parked = next("group parked")?;
        let g = self.gv(gi);
        g.loaded = true;
        g.running = running.unwrap_or(0);
        g.cap = cap.filter(|c| *c > 0);
        g.had_cap = g.cap.is_some();
        g.parked = parked.unwrap_or(0) == 1;
        g.stored = (g.running, g.parked, g.cap);
        Ok(())
    }

    /// Lists the group in `groups` (QUEUE.GROUPS) unless it is there.
    fn register_group(&mut self, gi: GroupIx) -> Result<()> {
        if self.g(gi).registered == Some(true) {
            return Ok(());
        }
        let name = self.g(gi).name.clone();
        if self.s.zscore(&self.q.groups(), &name)?.is_none() {
            let score = self.next_seq()?;
            self.ops.push(Op::ZAdd(self.q.groups(), Score::At(score), name));
        }
        self.gv(gi).registered = Some(true);
        Ok(())
    }

    /// The running limit of a group: its own cap, else the queue default; None = no limit.
    fn cap_of(&mut self, gi: GroupIx) -> Result<Option<i64>> {
        self.load_group(gi)?;
        if let Some(c) = self.g(gi).cap {
            return Ok(Some(c));
        }
        let d = self.default_cap()?;
        Ok((d > 0).then_some(d))
    }

    fn queued_in(&mut self, gi: GroupIx, p: Priority) -> Result<i64> {
        if let Some(n) = self.g(gi).queued.at(p) {
            return Ok(n);
        }
        let name = self.g(gi).name.clone();
        let n = self.s.zcard(&self.q.queued(p, &name))?;
        self.gv(gi).queued.set(p, Some(n));
        Ok(n)
    }

    fn in_turns(&mut self, gi: GroupIx, p: Priority) -> Result<bool> {
        if let Some(b) = self.g(gi).in_turns.at(p) {
            return Ok(b);
        }
        let name = self.g(gi).name.clone();
        let b = self.s.zscore(&self.q.turns(p), &name)?.is_some();
        self.gv(gi).in_turns.set(p, Some(b));
        Ok(b)
    }

    fn set_turn(&mut self, gi: GroupIx, p: Priority, member: bool) -> Result<()> {
        self.claim_inputs_changed = true;
        let name = self.g(gi).name.clone();
        if member {
            let t = self.next_turn()?;
            self.ops.push(Op::ZAdd(self.q.turns(p), Score::At(t), name));
        } else if self.in_turns(gi, p)? {
            self.ops.push(Op::ZRem(self.q.turns(p), name));
        }
        self.gv(gi).in_turns.set(p, Some(member));
        Ok(())
    }

    /// Re-checks a group against its cap: parks it (out of every turn set) at the cap,
    /// unparks it (back into the turn sets where it has queued jobs) below.
    fn recheck_cap(&mut self, gi: GroupIx) -> Result<()> {
        let at_cap = match self.cap_of(gi)? {
            Some(cap) => self.g(gi).running >= cap,
            None => false,
        };
        if at_cap == self.g(gi).parked {
            return Ok(());
        }
        self.gv(gi).parked = at_cap;
        self.gv(gi).changed = true;
        for p in Priority::ORDER {
            if at_cap {
                self.set_turn(gi, p, false)?;
            } else if self.queued_in(gi, p)? > 0 && !self.in_turns(gi, p)? {
                self.set_turn(gi, p, true)?;
            }
        }
        Ok(())
    }

    /// Puts a job into the indexes of `to`. `score` is the status's own ordering value:
    /// `run_at` for delayed, `lease_until` (or Inf) for running, `expire_at` when finished.
    pub fn place(&mut self, job: &JobState, to: Status, score: Score) -> Result<()> {
        let id = job.id.clone();
        self.ops.push(Op::ZAdd(self.q.status(to), Score::At(job.seq), id.clone()));
        match to {
            Status::Queued => {
                self.claim_inputs_changed = true;
                let gi = self.group(&job.group);
                let p = job.priority;
                self.ops.push(Op::ZAdd(self.q.queued(p, &job.group), Score::At(job.seq), id.clone()));
                if let Some(n) = self.g(gi).queued.at(p) {
                    self.gv(gi).queued.set(p, Some(n + 1));
                }
                self.take_turns(gi, p)?;
                // a job queued now keeps its group listed, whatever left it in this step
                // (a requeued job's lease: running went to 0 before its queued count is known)
                self.gv(gi).maybe_empty = false;
                self.incr_meta(meta::queued(p), 1)?;
                self.place_deadline(job);
            }
            Status::Delayed => {
                self.ops.push(Op::ZAdd(self.q.delayed(), score, id));
                self.place_deadline(job);
            }
            Status::Running => {
                self.ops.push(Op::ZAdd(self.q.leases(), score, id));
                let gi = self.group(&job.group);
                self.load_group(gi)?;
                self.gv(gi).running += 1;
                self.gv(gi).changed = true;
                self.recheck_cap(gi)?;
            }
            Status::Done | Status::Error | Status::Canceled => {
                // +inf: a parent kept for its dependents (docs/flows.md#retention)
                self.ops.push(Op::ZAdd(self.q.expiry(), score, id.clone()));
                if let Score::At(at) = score {
                    self.ops.push(Op::PExpireAt(self.q.job(&id), at + EXPIRY_GRACE_MS));
                }
            }
            // waiting for its parents: in no claim, clock or deadline index
            Status::Waiting => {}
        }
        Ok(())
    }

    /// A group with a job queued at `p` takes turns there unless it is at its cap; true
    /// when it was not taking turns and now does.
    fn take_turns(&mut self, gi: GroupIx, p: Priority) -> Result<bool> {
        // a group already taking turns at this priority is listed and not parked
        if self.in_turns(gi, p)? {
            return Ok(false);
        }
        self.load_group(gi)?;
        self.register_group(gi)?;
        if self.g(gi).parked {
            return Ok(false);
        }
        self.set_turn(gi, p, true)?;
        Ok(true)
    }

    /// Repair: the group of a queued job is listed in `groups` and takes turns at the job's
    /// priority (unless parked at its cap); the count of entries this put back.
    pub fn restore_turns(&mut self, group: &[u8], p: Priority) -> Result<u64> {
        let gi = self.group(group);
        let listed = self.g(gi).registered == Some(true) || self.s.zscore(&self.q.groups(), group)?.is_some();
        let turned = self.take_turns(gi, p)?;
        if !listed {
            self.register_group(gi)?;
        }
        Ok(u64::from(!listed) + u64::from(turned))
    }

    fn place_deadline(&mut self, job: &JobState) {
        if let Some(at) = job.deadline_at {
            self.ops.push(Op::ZAdd(self.q.deadlines(), Score::At(at), job.id.clone()));
        }
    }

    /// Takes a job out of the indexes of `from`. With `rotate`, a queued job's group goes
    /// to the back of its priority's turns when it still has jobs there (a claim).
    pub fn unplace(&mut self, job: &JobState, from: Status, rotate: bool) -> Result<()> {
        let id = job.id.clone();
        self.ops.push(Op::ZRem(self.q.status(from), id.clone()));
        match from {
            Status::Queued => {
                self.claim_inputs_changed = true;
                let gi = self.group(&job.group);
                let p = job.priority;
                let n = (self.queued_in(gi, p)? - 1).max(0);
                self.ops.push(Op::ZRem(self.q.queued(p, &job.group), id.clone()));
                self.gv(gi).queued.set(p, Some(n));
                if n == 0 {
                    self.set_turn(gi, p, false)?;
                    self.gv(gi).maybe_empty = true;
                } else if rotate && self.in_turns(gi, p)? && self.s.zcard(&self.q.turns(p))? > 1 {
                    // to the back of the turns (a lone group stays where it is)
                    self.set_turn(gi, p, true)?;
                }
                self.incr_meta(meta::queued(p), -1)?;
                self.unplace_deadline(job);
            }
            Status::Delayed => {
                self.ops.push(Op::ZRem(self.q.delayed(), id));
                self.unplace_deadline(job);
            }
            Status::Running => {
                self.ops.push(Op::ZRem(self.q.leases(), id));
                if job.charges.is_some() {
                    // the attempt's charges are settled (USAGE) or kept as charged: either
                    // way a later attempt must not settle them again
                    self.hdel(&job.id, &[crate::record::CHARGES]);
                }
                let gi = self.group(&job.group);
                self.load_group(gi)?;
                let g = self.gv(gi);
                g.running = (g.running - 1).max(0);
                g.changed = true;
                g.maybe_empty |= g.running == 0;
                self.recheck_cap(gi)?;
            }
            Status::Done | Status::Error | Status::Canceled => {
                self.ops.push(Op::ZRem(self.q.expiry(), id.clone()));
                self.ops.push(Op::Persist(self.q.job(&id)));
            }
            Status::Waiting => {}
        }
        Ok(())
    }

    fn unplace_deadline(&mut self, job: &JobState) {
        if job.deadline_at.is_some() {
            self.ops.push(Op::ZRem(self.q.deadlines(), job.id.clone()));
        }
    }

    /// Sets a group's own cap (None removes it) and re-checks it.
    pub fn set_group_cap(&mut self, name: &[u8], cap: Option<i64>) -> Result<()> {
        let gi = self.group(name);
        self.load_group(gi)?;
        if cap.is_some() {
            self.register_group(gi)?;
        }
        let g = self.gv(gi);
        g.cap = cap;
        g.changed = true;
        g.maybe_empty = cap.is_none();
        self.recheck_cap(gi)
    }

    /// The queue-wide default cap changed: re-checks one group without its own cap.
    pub fn recheck_group(&mut self, name: &[u8], default_cap: i64) -> Result<()> {
        if let Some(slot) = Self::meta_index(meta::GROUP_CAP).and_then(|i| self.meta.values.get_mut(i)) {
            *slot = Some(default_cap);
        }
        let gi = self.group(name);
        self.recheck_cap(gi)
    }

    /// A job's record gets the HSET of `fields` (one op per step and job).
    pub fn hset(&mut self, id: &[u8], fields: Vec<(&str, Vec<u8>)>) {
        let fields = fields.into_iter().map(|(f, v)| (f.as_bytes().to_vec(), v)).collect();
        self.ops.push(Op::HSet(self.q.job(id), fields));
    }

    pub fn hdel(&mut self, id: &[u8], fields: &[&str]) {
        let fields = fields.iter().map(|f| f.as_bytes().to_vec()).collect();
        self.ops.push(Op::HDel(self.q.job(id), fields));
    }

    /// Publishes a job event and appends it to the queue's stream.
    pub fn event(&mut self, job: &JobState, kind: &'static str, status: Status, extra: &[(&str, &[u8], bool)]) {
        // the fixed fields take about 160 bytes, with a queue name and progress text
        let size = 160 + self.q.name().len() + job.progress.as_ref().map_or(0, Vec::len);
        let mut w =
            ObjectWriter::with_capacity(size + extra.iter().map(|(n, v, _)| n.len() + v.len() + 8).sum::<usize>());
        w.string("type", kind.as_bytes())
            .string(record::ID, &job.id)
            .string(record::QUEUE, self.q.name())
            .string(record::STATUS, status.as_str().as_bytes());
        match &job.progress {
            Some(p) => w.string(record::PROGRESS, p),
            None => w.null(record::PROGRESS),
        };
        w.int(record::PERCENT, job.percent).int("at", self.now);
        for (name, value, is_json) in extra {
            if *is_json {
                w.raw(name, value);
            } else {
                w.string(name, value);
            }
        }
        let maxlen = self.config.events_maxlen;
        let op = Op::Event(Event {
            stream: (maxlen > 0).then(|| (self.q.events(), maxlen)),
            channel: self.q.job_channel(&job.id),
            kind,
            id: job.id.clone(),
            doc: w.finish(),
        });
        if self.defer_events {
            self.late_events.push(op);
        } else {
            self.ops.push(op);
        }
    }

    /// Wakes the clients blocked in JOB.CLAIM on this queue.
    pub fn wake_claimers(&mut self) {
        self.ops.push(Op::Wake(self.q.meta()));
    }

    /// The writes of every group this step changed: its hash, or its removal when it has
    /// nothing queued, nothing running and no cap of its own.
    fn group_ops(&mut self) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        for gi in (0..self.groups.len()).map(GroupIx) {
            let g = self.g(gi);
            if !g.changed && !g.maybe_empty {
                continue;
            }
            if g.maybe_empty && !g.loaded {
                // a queued job left (a delete, a cancel): whether the group is idle needs
                // its hash, else a group that once had a cap would stay forever
                self.load_group(gi)?;
            }
            let g = self.g(gi);
            let idle = g.loaded && g.running == 0 && g.cap.is_none();
            if g.maybe_empty && idle {
                let mut queued = 0;
                for p in Priority::ORDER {
                    queued += self.queued_in(gi, p)?;
                }
                if queued == 0 {
                    ops.push(Op::Del(self.q.group(&self.g(gi).name)));
                    ops.push(Op::ZRem(self.q.groups(), self.g(gi).name.clone()));
                    continue;
                }
            }
            let g = self.g(gi);
            if !g.changed || g.stored == (g.running, g.parked, g.cap) {
                continue;
            }
            let key: Key = self.q.group(&g.name);
            let mut fields = vec![
                (group_field::RUNNING.as_bytes().to_vec(), g.running.to_string().into_bytes()),
                (group_field::PARKED.as_bytes().to_vec(), (g.parked as i64).to_string().into_bytes()),
            ];
            match g.cap {
                Some(c) => fields.push((group_field::CAP.as_bytes().to_vec(), c.to_string().into_bytes())),
                None if g.had_cap => ops.push(Op::HDel(key.clone(), vec![group_field::CAP.as_bytes().to_vec()])),
                None => {}
            }
            ops.push(Op::HSet(key, fields));
        }
        Ok(ops)
    }

    /// Applies everything this step wrote, in one batch, and returns what it counted.
    pub fn commit(mut self) -> Result<Tally> {
        let mut ops = std::mem::take(&mut self.ops);
        ops.extend(self.group_ops()?);
        ops.append(&mut self.late_events);
        let fields: Vec<(Vec<u8>, Vec<u8>)> = META_FIELDS
            .iter()
            .zip(self.meta.values)
            .zip(self.meta.changed)
            .filter_map(|((f, v), changed)| {
                Some((f.as_bytes().to_vec(), v.filter(|_| changed)?.to_string().into_bytes()))
            })
            .collect();
        if !fields.is_empty() {
            ops.insert(0, Op::HSet(self.q.meta(), fields));
        }
        if !ops.is_empty() {
            self.s.apply(ops)?;
        }
        Ok(self.tally)
    }
}

/// The highest finite score in any of `indexes` (0 when they are all empty).
fn highest_score<S: Store>(s: &mut S, indexes: &[Key]) -> Result<i64> {
    let mut top = 0i64;
    for key in indexes {
        let last = ZRange { reverse: true, max: f64::MAX, ..ZRange::first(1) };
        if let Some((_, score)) = s.zrange(key, last)?.into_iter().next() {
            if score.is_finite() {
                top = top.max(score as i64);
            }
        }
    }
    Ok(top)
}

/// When a finished job's retention ends.
pub fn expire_at(job: &JobState, now: i64, config: &Config) -> i64 {
    now.saturating_add(job.retention_ms.unwrap_or(config.retention_ms))
}

/// Reads a job's control fields; None when there is no such job.
pub fn load_job<S: Store>(s: &mut S, q: &QueueKeys, id: &[u8]) -> Result<Option<JobState>> {
    let v = s.hmget(&q.job(id), &crate::record::STATE_FIELDS)?;
    if v.iter().all(Option::is_none) {
        return Ok(None);
    }
    JobState::from_fields(id, v).map(Some)
}
