//! The math of RATELIMIT.HIT / RATELIMIT.PEEK and of charged claims (docs/limits.md#rate-limits
//! and #charged-claims). Pure: the module decodes the key, calls [`State::hit`] (or `peek`, `settle`),
//! and writes [`encode`] back with an absolute expiry `now + reset_ms`, or deletes the
//! key when [`State::is_empty`].
//!
//! # Algorithm
//!
//! Each window (LIMIT n, PERIOD P ms) is a ring of sub-window buckets of granularity
//! `g = ceil(P / 64)` ms: bucket `k` holds the cost admitted at instants in
//! `[k*g, (k+1)*g)` and counts at instant `t` while `t < (k+1)*g + P - 1`, its *expiry*.
//! Every hit of the real window `[t-P+1, t]` lies in a bucket that still counts at `t`,
//! so admitting only when `held + COST <= LIMIT` keeps the strict rule: in every
//! interval of P ms the admitted cost never exceeds LIMIT. A hit is admitted only if
//! every window admits it, and then it is added to every window; a denied hit changes
//! nothing.
//!
//! # Precision
//!
//! A hit admitted at `t` counts through `t + P - 1` at least (the strict rule) and through
//! `t + P + g - 2` at most. Equivalently: HIT never admits what an exact sliding log of
//! P ms would refuse, and always admits what an exact sliding log of `P + g - 1` ms
//! would admit. So the limiter gives capacity back at most `g - 1` ms (under P/64) late
//! (PERIOD 60000: g = 938 ms; PERIOD 1000: g = 16 ms; PERIOD <= 64: g = 1, exact).
//! `retry_after_ms` is exact for this algorithm: retrying `retry_after_ms` later is
//! admitted if nothing else arrived, 1 ms earlier is not.
//!
//! # Memory
//!
//! Only non-empty buckets are stored, and only while they count: under a clock that never
//! goes back a window holds at most 65 buckets, whatever LIMIT is. At most
//! [`MAX_WINDOWS`] windows and [`MAX_BUCKETS`] buckets per window are kept (a clock that
//! jumps back could otherwise add more: the oldest bucket is then folded into the next
//! one, which counts longer, so the strict rule still holds). A key is at most a few KB.
//! The strict rule is stated for a clock that never goes back: a bucket pruned at a later
//! instant is gone if the clock then returns; everything still stored keeps counting.
//!
//! # Windows that change
//!
//! Windows are matched by PERIOD; the granularity depends on PERIOD only, so a new
//! LIMIT keeps the history. An admitted hit drops the stored windows it was not given;
//! new ones start empty.
//!
//! # Encoding (version 1)
//!
//! A Redis string, all integers LEB128 varints (at most 10 bytes):
//!
//! ```text
//! 0xA1                       tag: aijob rate limit, format version 1
//! nwin                       0..=8 windows, periods distinct
//! per window:
//!   period                   1..=MAX_PERIOD ms
//!   nbuckets                 1..=MAX_BUCKETS
//!   zigzag(k0) count0        first bucket index, its cost (>= 1)
//!   (k - prev_k) count       each next bucket: index step (>= 1), cost (>= 1)
//! ```
//!
//! Nothing may follow. [`decode`] refuses anything else, so a hand-edited key is an error,
//! never a panic or an unbounded allocation.

use crate::error::{AiError, Result};

/// Buckets per PERIOD: the granularity is `ceil(PERIOD / SUB_WINDOWS)` ms.
pub const SUB_WINDOWS: i64 = 64;
/// Windows per key.
pub const MAX_WINDOWS: usize = 8;
/// Buckets stored per window; a monotonic clock needs at most `SUB_WINDOWS + 1`.
pub const MAX_BUCKETS: usize = 72;
/// The longest PERIOD (about 31 years): keeps every instant far from overflow.
pub const MAX_PERIOD: i64 = 1_000_000_000_000;

const TAG: u8 = 0xA1;
const WHAT: &str = "rate limit state";

/// One `LIMIT n PERIOD ms` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: i64,
    pub period: i64,
}

/// The reply of RATELIMIT.HIT / PEEK: `[allowed, remaining, retry_after_ms, reset_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The least, over the windows, still admissible now (after this hit if admitted).
    pub remaining: i64,
    /// 0 if allowed, else how long until this COST would be admitted.
    pub retry_after_ms: i64,
    /// Until nothing stored counts any more; 0 when nothing is stored. The key's PTTL.
    pub reset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bucket {
    k: i64,
    n: i64,
}

/// A window's period and how many of the next buckets of `State::buckets` are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    period: i64,
    len: usize,
}

/// The buckets of every window of one key. One flat vector (windows one after the other,
/// each sorted by bucket index) so that a decode costs one allocation.
#[derive(Debug, Clone, Default)]
pub struct State {
    heads: [Head; MAX_WINDOWS],
    nwin: usize,
    buckets: Vec<Bucket>,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.heads() == other.heads() && self.buckets == other.buckets
    }
}

impl Eq for State {}

/// The bucket geometry of one PERIOD.
#[derive(Debug, Clone, Copy)]
struct Geo {
    period: i64,
    g: i64,
}

impl Geo {
    fn new(period: i64) -> Geo {
        // check_args keeps periods positive; clamping only keeps bad input from dividing by 0.
        let period = period.max(1);
        let g = period / SUB_WINDOWS + i64::from(period % SUB_WINDOWS != 0);
        Geo { period, g }
    }

    fn bucket(self, t: i64) -> i64 {
        t.div_euclid(self.g)
    }

    /// The first instant at which bucket `k` no longer counts.
    fn expiry(self, k: i64) -> i64 {
        k.saturating_add(1).saturating_mul(self.g).saturating_add(self.period - 1)
    }

    /// The buckets of a sorted slice that still count at `now`: a suffix.
    fn counting(self, buckets: &[Bucket], now: i64) -> &[Bucket] {
        let first = buckets.partition_point(|b| self.expiry(b.k) <= now);
        buckets.get(first..).unwrap_or(&[])
    }
}

/// Refuses what HIT/PEEK/CHARGE cannot honour, naming the argument.
pub fn check_args(windows: &[Window], cost: i64) -> Result<()> {
    if windows.is_empty() {
        return Err(AiError::arg("LIMIT", "is required: give at least one LIMIT n PERIOD ms"));
    }
    if windows.len() > MAX_WINDOWS {
        return Err(AiError::arg("LIMIT", format!("may be given at most {MAX_WINDOWS} times")));
    }
    if cost < 0 {
        return Err(AiError::arg("COST", format!("must not be negative, got {cost}")));
    }
    for (i, w) in windows.iter().enumerate() {
        check_window(w, cost)?;
        if windows.iter().take(i).any(|o| o.period == w.period) {
            return Err(AiError::arg("PERIOD", format!("{} is given twice", w.period)));
        }
    }
    Ok(())
}

fn check_window(w: &Window, cost: i64) -> Result<()> {
    if w.limit <= 0 {
        return Err(AiError::arg("LIMIT", format!("must be positive, got {}", w.limit)));
    }
    if w.period <= 0 {
        return Err(AiError::arg("PERIOD", format!("must be positive, got {}", w.period)));
    }
    if w.period > MAX_PERIOD {
        return Err(AiError::arg("PERIOD", format!("must be at most {MAX_PERIOD}, got {}", w.period)));
    }
    if cost > w.limit {
        return Err(AiError::arg("COST", format!("{cost} is greater than LIMIT {}", w.limit)));
    }
    Ok(())
}

/// What the windows say about one hit, before anything is taken.
struct Verdict {
    allowed: bool,
    /// min over windows of LIMIT - held.
    room: i128,
    /// The instant at which every window would admit the hit.
    until: i64,
}

fn sum(buckets: &[Bucket]) -> i128 {
    buckets.iter().map(|b| i128::from(b.n)).sum()
}

/// The instant from which `held` (of the counting `buckets`) is at most `target`: buckets
/// leave in index order, so it is the expiry of the last one that has to go.
fn drained_at(geo: Geo, buckets: &[Bucket], mut held: i128, target: i128, now: i64) -> i64 {
    let mut at = now;
    for b in buckets {
        if held <= target {
            break;
        }
        held -= i128::from(b.n);
        at = geo.expiry(b.k);
    }
    at
}

impl State {
    fn heads(&self) -> &[Head] {
        self.heads.get(..self.nwin).unwrap_or(&[])
    }

    /// The window of `period`: its head's index and its range in `buckets`.
    fn find(&self, period: i64) -> Option<(usize, usize, usize)> {
        let mut start = 0;
        for (i, h) in self.heads().iter().enumerate() {
            if h.period == period {
                return Some((i, start, start + h.len));
            }
            start += h.len;
        }
        None
    }

    fn buckets_of(&self, period: i64) -> &[Bucket] {
        self.find(period).and_then(|(_, s, e)| self.buckets.get(s..e)).unwrap_or(&[])
    }

    fn clear(&mut self) {
        self.heads = [Head::default(); MAX_WINDOWS];
        self.nwin = 0;
        self.buckets.clear();
    }

    /// True when nothing is stored: the module deletes the key.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The cost window `period` holds at `now` (0 for a window not stored).
    pub fn held(&self, period: i64, now: i64) -> i64 {
        let geo = Geo::new(period);
        let held = sum(geo.counting(self.buckets_of(period), now));
        i64::try_from(held).unwrap_or(i64::MAX)
    }

    /// Milliseconds until no stored bucket counts; 0 when none does.
    pub fn reset_ms(&self, now: i64) -> i64 {
        let mut start = 0;
        let mut last = now;
        for h in self.heads() {
            start += h.len;
            // The newest bucket of a window expires last.
            if let Some(b) = start.checked_sub(1).and_then(|i| self.buckets.get(i)) {
                last = last.max(Geo::new(h.period).expiry(b.k));
            }
        }
        last.saturating_sub(now)
    }

    fn verdict(&self, windows: &[Window], cost: i64, now: i64) -> Verdict {
        let mut v = Verdict { allowed: true, room: i128::MAX, until: now };
        for w in windows {
            let geo = Geo::new(w.period);
            let counting = geo.counting(self.buckets_of(w.period), now);
            let held = sum(counting);
            let room = i128::from(w.limit) - held;
            v.room = v.room.min(room);
            // COST 0 takes nothing, so it is admitted even over an overrun.
            if cost > 0 && i128::from(cost) > room {
                v.allowed = false;
                let target = i128::from(w.limit) - i128::from(cost);
                v.until = v.until.max(drained_at(geo, counting, held, target, now));
            }
        }
        v
    }

    fn decision(&self, v: &Verdict, taken: i64, now: i64) -> Decision {
        let remaining = (v.room - i128::from(taken)).clamp(0, i128::from(i64::MAX));
        Decision {
            allowed: v.allowed,
            remaining: i64::try_from(remaining).unwrap_or(i64::MAX),
            retry_after_ms: if v.allowed { 0 } else { v.until.saturating_sub(now) },
            reset_ms: self.reset_ms(now),
        }
    }

    /// RATELIMIT.HIT: admits `cost` at `now` if every window has room, and takes it from
    /// every window. `windows` and `cost` must have passed [`check_args`] (otherwise the
    /// numbers mean nothing, but nothing panics). A denied hit leaves the state exactly as
    /// it was, so the key needs no write. After the call `reset_ms` equals
    /// `self.reset_ms(now)`.
    pub fn hit(&mut self, windows: &[Window], cost: i64, now: i64) -> Decision {
        let v = self.verdict(windows, cost, now);
        if !v.allowed {
            return self.decision(&v, 0, now);
        }
        self.compact(now, |p| windows.iter().any(|w| w.period == p));
        if cost > 0 {
            for w in windows {
                let geo = Geo::new(w.period);
                self.adjust(geo, geo.bucket(now), cost);
            }
        }
        self.decision(&v, cost, now)
    }

    /// RATELIMIT.PEEK: what HIT would answer, except that nothing is taken: `remaining`
    /// is what is admissible now and `reset_ms` is the state's as it stands.
    pub fn peek(&self, windows: &[Window], cost: i64, now: i64) -> Decision {
        let v = self.verdict(windows, cost, now);
        self.decision(&v, 0, now)
    }

    /// Settling (docs/limits.md#settling-usage): a charge taken at `charged_at` turned out to cost
    /// `delta` more (or less, when negative). The delta goes into the very bucket the charge
    /// went into, in every window of `periods` where that bucket still counts at `now`;
    /// elsewhere nothing changes. A bucket never goes below 0; above LIMIT it may.
    pub fn settle(&mut self, periods: &[i64], charged_at: i64, delta: i64, now: i64) {
        self.compact(now, |_| true);
        if delta == 0 {
            return;
        }
        for (i, &p) in periods.iter().enumerate() {
            let geo = Geo::new(p);
            let k = geo.bucket(charged_at);
            let repeated = periods.iter().take(i).any(|&o| o == p);
            if !repeated && geo.expiry(k) > now {
                self.adjust(geo, k, delta);
            }
        }
    }

    /// Adds `delta` to bucket `k` of the window of `geo.period`, creating window and
    /// bucket for a positive delta, removing a bucket that drops to 0.
    fn adjust(&mut self, geo: Geo, k: i64, delta: i64) {
        let (i, start, end) = match self.find(geo.period) {
            Some(found) => found,
            None if delta > 0 && self.nwin < MAX_WINDOWS => self.push_head(geo.period),
            None => return,
        };
        let Some(slice) = self.buckets.get(start..end) else {
            return;
        };
        let pos = slice.partition_point(|b| b.k < k);
        if slice.get(pos).is_some_and(|b| b.k == k) {
            self.bump(i, start + pos, delta);
        } else if delta > 0 {
            self.insert(i, start, end, start + pos, Bucket { k, n: delta });
        }
    }

    /// Appends an empty window; its range is the (empty) end of `buckets`.
    fn push_head(&mut self, period: i64) -> (usize, usize, usize) {
        let i = self.nwin;
        if let Some(h) = self.heads.get_mut(i) {
            *h = Head { period, len: 0 };
            self.nwin += 1;
        }
        let end = self.buckets.len();
        (i, end, end)
    }

    fn bump(&mut self, head: usize, at: usize, delta: i64) {
        let Some(b) = self.buckets.get_mut(at) else {
            return;
        };
        b.n = b.n.saturating_add(delta).max(0);
        if b.n == 0 {
            self.buckets.remove(at);
            self.shrink_head(head);
        }
    }

    /// Inserts `b` at `at` in window `head` (range `start..end`); a full window first folds
    /// its oldest bucket into the next one, which counts longer (still strict).
    fn insert(&mut self, head: usize, start: usize, end: usize, at: usize, b: Bucket) {
        if at > self.buckets.len() {
            return;
        }
        if end.saturating_sub(start) < MAX_BUCKETS {
            self.buckets.insert(at, b);
            if let Some(h) = self.heads.get_mut(head) {
                h.len += 1;
            }
            return;
        }
        if at == start {
            // Older than all: the oldest stored bucket counts longer, so charge it there.
            if let Some(first) = self.buckets.get_mut(start) {
                first.n = first.n.saturating_add(b.n);
            }
            return;
        }
        let oldest = self.buckets.remove(start);
        if let Some(next) = self.buckets.get_mut(start) {
            next.n = next.n.saturating_add(oldest.n);
        }
        self.buckets.insert(at - 1, b);
    }

    /// Window `head` lost a bucket; a window left without any goes away.
    fn shrink_head(&mut self, head: usize) {
        let Some(h) = self.heads.get_mut(head) else {
            return;
        };
        h.len = h.len.saturating_sub(1);
        if h.len > 0 {
            return;
        }
        for j in head..self.nwin {
            let next = self.heads.get(j + 1).copied().unwrap_or_default();
            if let Some(h) = self.heads.get_mut(j) {
                *h = next;
            }
        }
        self.nwin = self.nwin.saturating_sub(1);
    }

    /// Prunes the buckets that no longer count at `now`, drops the windows `keep` refuses
    /// and the windows left empty. A window's buckets are sorted by index and a bucket's
    /// expiry grows with its index, so the pruned ones are a prefix, found by binary
    /// search; the rest move down in one copy per window (this runs on every hit).
    fn compact(&mut self, now: i64, keep: impl Fn(i64) -> bool) {
        let heads = self.heads;
        let mut kept = [0usize; MAX_WINDOWS];
        let (mut read, mut write) = (0usize, 0usize);
        for (j, h) in heads.iter().enumerate().take(self.nwin) {
            let start = read.min(self.buckets.len());
            let end = read.saturating_add(h.len).min(self.buckets.len());
            read = read.saturating_add(h.len);
            if !keep(h.period) {
                continue;
            }
            let geo = Geo::new(h.period);
            let slice = self.buckets.get(start..end).unwrap_or(&[]);
            let first = start + slice.partition_point(|b| geo.expiry(b.k) <= now);
            self.buckets.copy_within(first..end, write);
            if let Some(k) = kept.get_mut(j) {
                *k = end - first;
            }
            write += end - first;
        }
        self.buckets.truncate(write);
        self.rebuild_heads(&kept);
    }

    fn rebuild_heads(&mut self, kept: &[usize; MAX_WINDOWS]) {
        let mut out = 0;
        for (j, &len) in kept.iter().enumerate().take(self.nwin) {
            let Some(period) = self.heads.get(j).map(|h| h.period) else {
                break;
            };
            if len > 0 {
                if let Some(h) = self.heads.get_mut(out) {
                    *h = Head { period, len };
                }
                out += 1;
            }
        }
        for h in self.heads.iter_mut().skip(out) {
            *h = Head::default();
        }
        self.nwin = out;
    }
}

/// The state as a Redis string (see the module doc for the format).
pub fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + state.nwin * 4 + state.buckets.len() * 5);
    encode_into(state, &mut out);
    out
}

/// [`encode`] into a reused buffer (cleared first).
pub fn encode_into(state: &State, out: &mut Vec<u8>) {
    out.clear();
    out.push(TAG);
    put(out, state.nwin as u64);
    let mut rest = state.buckets.as_slice();
    for h in state.heads() {
        let (mine, next) = rest.split_at(h.len.min(rest.len()));
        rest = next;
        put(out, h.period as u64);
        put(out, mine.len() as u64);
        let mut prev = None;
        for b in mine {
            match prev {
                None => put(out, zigzag(b.k)),
                Some(p) => put(out, b.k.wrapping_sub(p) as u64),
            }
            put(out, b.n as u64);
            prev = Some(b.k);
        }
    }
}

/// Reads a stored state; anything [`encode`] cannot have written is an error.
pub fn decode(bytes: &[u8]) -> Result<State> {
    let mut state = State::default();
    decode_into(bytes, &mut state)?;
    Ok(state)
}

/// [`decode`] into a reused state (its bucket buffer is kept). On error the state is
/// left empty.
pub fn decode_into(bytes: &[u8], state: &mut State) -> Result<()> {
    state.clear();
    if read_state(&mut Reader { bytes, pos: 0 }, state).is_none() {
        state.clear();
        return Err(AiError::corrupt(WHAT));
    }
    Ok(())
}

/// None for anything encode cannot have written (an Option, not an error, keeps the
/// hot loop free of a large return value).
fn read_state(r: &mut Reader, state: &mut State) -> Option<()> {
    (r.byte()? == TAG).then_some(())?;
    let nwin = r.bounded(MAX_WINDOWS as u64)? as usize;
    // One allocation: a bucket takes at least 2 bytes, and no key holds more than the cap.
    state.buckets.reserve((r.bytes.len() / 2).min(MAX_WINDOWS * MAX_BUCKETS) + 1);
    for i in 0..nwin {
        let period = i64::try_from(r.varint()?).ok().filter(|p| (1..=MAX_PERIOD).contains(p))?;
        if state.heads().iter().any(|h| h.period == period) {
            return None;
        }
        let len = read_buckets(r, state)?;
        *state.heads.get_mut(i)? = Head { period, len };
        state.nwin = i + 1;
    }
    (r.pos == r.bytes.len()).then_some(())
}

/// Reads one window's buckets onto `state.buckets`; returns how many.
fn read_buckets(r: &mut Reader, state: &mut State) -> Option<usize> {
    let len = r.bounded(MAX_BUCKETS as u64)? as usize;
    if len == 0 {
        return None;
    }
    let mut k = unzigzag(r.varint()?);
    for i in 0..len {
        if i > 0 {
            let step = i64::try_from(r.varint()?).ok().filter(|&s| s >= 1)?;
            k = k.checked_add(step)?;
        }
        let n = i64::try_from(r.varint()?).ok().filter(|&n| n >= 1)?;
        state.buckets.push(Bucket { k, n });
    }
    Some(len)
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = self.bytes.get(self.pos).copied()?;
        self.pos += 1;
        Some(b)
    }

    /// An unsigned LEB128 of at most 10 bytes that fits in 64 bits.
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        // Bucket steps and most counts take one or two bytes: decode those inline.
        let first = self.byte()?;
        if first < 0x80 {
            return Some(u64::from(first));
        }
        let second = self.byte()?;
        let v = u64::from(first & 0x7f) | u64::from(second & 0x7f) << 7;
        if second < 0x80 {
            return Some(v);
        }
        self.rest(v)
    }

    /// The bytes of a varint after its first two.
    #[inline(never)]
    fn rest(&mut self, mut v: u64) -> Option<u64> {
        for i in 2..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return None;
            }
            v |= part << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn bounded(&mut self, max: u64) -> Option<u64> {
        self.varint().filter(|&v| v <= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(limit: i64, period: i64) -> Window {
        Window { limit, period }
    }

    fn stored(s: &State, period: i64) -> usize {
        s.buckets_of(period).len()
    }

    #[test]
    fn counts_up_to_limit() {
        let ws = [w(3, 1000)];
        let mut s = State::default();
        let mut rem = vec![];
        for t in 0..3 {
            let d = s.hit(&ws, 1, t);
            assert!(d.allowed);
            assert_eq!(d.retry_after_ms, 0);
            rem.push(d.remaining);
        }
        assert_eq!(rem, vec![2, 1, 0]);
        let d = s.hit(&ws, 1, 3);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // g = 16: bucket 0 counts until 16 + 999 = 1015.
        assert_eq!(d.retry_after_ms, 1012);
        assert_eq!(d.reset_ms, 1012);
        assert_eq!(s.held(1000, 3), 3);
    }

    #[test]
    fn cost_takes_that_much() {
        let ws = [w(10, 1000)];
        let mut s = State::default();
        assert_eq!(s.hit(&ws, 4, 0).remaining, 6);
        assert_eq!(s.hit(&ws, 4, 1).remaining, 2);
        let d = s.hit(&ws, 4, 2);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 2);
        assert!(s.hit(&ws, 2, 3).allowed);
        let d = s.hit(&ws, 0, 4);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(s.held(1000, 4), 10);
    }

    #[test]
    fn cost_zero_consumes_nothing_and_stores_nothing() {
        let mut s = State::default();
        let d = s.hit(&[w(1, 1000)], 0, 5);
        assert_eq!(d, Decision { allowed: true, remaining: 1, retry_after_ms: 0, reset_ms: 0 });
        assert!(s.is_empty());
    }

    #[test]
    fn windows_are_all_or_nothing() {
        let ws = [w(2, 1000), w(5, 60_000)];
        let mut s = State::default();
        assert_eq!(s.hit(&ws, 1, 0).remaining, 1);
        assert_eq!(s.hit(&ws, 1, 10).remaining, 0);
        let before = s.clone();
        let d = s.hit(&ws, 1, 20);
        assert!(!d.allowed);
        assert_eq!(s, before, "a denied hit changes nothing");
        assert_eq!(s.held(60_000, 20), 2);
        // The short window frees at 1015; the long one still has room for 3.
        assert_eq!(d.retry_after_ms, 1015 - 20);
        let d = s.hit(&ws, 1, 1015);
        assert_eq!((d.allowed, d.remaining), (true, 1));
        assert_eq!(s.held(60_000, 1015), 3);
        // The long window decides now: 5 taken once it is full.
        assert!(s.hit(&ws, 1, 1016).allowed);
        assert!(s.hit(&ws, 1, 2100).allowed);
        let d = s.hit(&ws, 1, 2101);
        assert!(!d.allowed);
        assert_eq!(s.held(1000, 2101), 1);
        // g = 938: bucket 0 of the long window counts until 938 + 59_999.
        assert_eq!(d.retry_after_ms, 938 + 59_999 - 2101);
    }

    #[test]
    fn peek_takes_nothing() {
        let ws = [w(3, 1000)];
        let mut s = State::default();
        s.hit(&ws, 2, 0);
        let before = s.clone();
        let p = s.peek(&ws, 1, 5);
        assert_eq!(p, Decision { allowed: true, remaining: 1, retry_after_ms: 0, reset_ms: 1010 });
        let p = s.peek(&ws, 2, 5);
        assert_eq!(p, Decision { allowed: false, remaining: 1, retry_after_ms: 1010, reset_ms: 1010 });
        assert_eq!(s, before);
        let h = s.hit(&ws, 2, 5);
        assert_eq!((h.allowed, h.retry_after_ms), (p.allowed, p.retry_after_ms));
        assert_eq!(State::default().peek(&ws, 3, 0).remaining, 3);
    }

    #[test]
    fn retry_after_is_exact() {
        let ws = [w(10, 640)]; // g = 10
        let mut s = State::default();
        s.hit(&ws, 3, 0); // bucket 0: counts until 10 + 639 = 649
        s.hit(&ws, 3, 25); // bucket 2: until 669
        s.hit(&ws, 4, 47); // bucket 4: until 689
        let d = s.hit(&ws, 6, 100);
        assert!(!d.allowed);
        // Room for 6 needs held <= 4: buckets 0 and 2 must go.
        assert_eq!(d.retry_after_ms, 669 - 100);
        assert!(!s.peek(&ws, 6, 100 + d.retry_after_ms - 1).allowed);
        assert!(s.peek(&ws, 6, 100 + d.retry_after_ms).allowed);
        let d = s.hit(&ws, 10, 100);
        assert_eq!(d.retry_after_ms, 689 - 100);
    }

    #[test]
    fn exact_for_short_periods() {
        // PERIOD <= 64 means g = 1: an exact sliding window.
        let ws = [w(1, 50)];
        let mut s = State::default();
        assert!(s.hit(&ws, 1, 100).allowed);
        let d = s.hit(&ws, 1, 120);
        assert_eq!(d.retry_after_ms, 30);
        assert!(!s.hit(&ws, 1, 149).allowed);
        assert!(s.hit(&ws, 1, 150).allowed);
    }

    #[test]
    fn reset_ms_tracks_the_last_bucket() {
        let mut s = State::default();
        assert_eq!(s.reset_ms(0), 0);
        let ws = [w(100, 1000), w(100, 10)];
        assert_eq!(s.hit(&ws, 1, 0).reset_ms, 1015);
        // Bucket 31 of PERIOD 1000 counts until 32 * 16 + 999 = 1511.
        assert_eq!(s.hit(&ws, 1, 500).reset_ms, 1011);
        assert_eq!(s.reset_ms(500), 1511 - 500);
        assert_eq!(s.reset_ms(1510), 1);
        assert_eq!(s.reset_ms(1511), 0);
        assert_eq!(s.peek(&ws, 1, 1511).remaining, 100);
        s.settle(&[], 0, 0, 1511);
        assert!(s.is_empty());
    }

    #[test]
    fn changed_windows_match_by_period() {
        let mut s = State::default();
        for t in 0..3 {
            s.hit(&[w(5, 1000)], 1, t);
        }
        // A new LIMIT keeps the history.
        assert!(s.hit(&[w(4, 1000)], 1, 3).allowed);
        assert!(!s.hit(&[w(4, 1000)], 1, 4).allowed);
        // A denied hit drops nothing, even with other windows.
        assert!(!s.hit(&[w(4, 1000), w(10, 2000)], 1, 5).allowed);
        assert_eq!(s.held(1000, 5), 4);
        // An admitted one drops what it was not given; new windows start empty.
        let d = s.hit(&[w(10, 2000)], 1, 6);
        assert_eq!((d.allowed, d.remaining), (true, 9));
        assert_eq!(s.held(1000, 6), 0);
        assert_eq!(s.heads().len(), 1);
        assert_eq!(d.reset_ms, 32 + 1999 - 6);
        // Order does not matter.
        let ws = [w(10, 3000), w(10, 2000)];
        assert_eq!(s.hit(&ws, 2, 7).remaining, 7);
        assert_eq!(s.hit(&[ws[1], ws[0]], 1, 8).remaining, 6);
    }

    #[test]
    fn settle_moves_the_charged_bucket() {
        let ws = [w(10, 1000), w(100, 60_000)];
        let mut s = State::default();
        s.hit(&ws, 5, 0); // buckets 0 and 0
        s.hit(&ws, 2, 1000); // buckets 62 and 1
        s.settle(&[1000, 60_000], 0, 3, 1001);
        assert_eq!((s.held(1000, 1001), s.held(60_000, 1001)), (10, 10));
        s.settle(&[1000, 60_000], 0, -8, 1002);
        assert_eq!((s.held(1000, 1002), s.held(60_000, 1002)), (2, 2));
        // Bucket 0 of the short window left it at 1015; only the long one changes, and
        // its bucket 0, emptied above, takes the overrun since it still counts.
        s.settle(&[1000, 60_000], 0, 7, 1015);
        assert_eq!((s.held(1000, 1015), s.held(60_000, 1015)), (2, 9));
        // Never below 0, and a bucket at 0 is gone.
        s.settle(&[1000, 60_000], 1000, -50, 1016);
        assert_eq!((s.held(1000, 1016), s.held(60_000, 1016)), (0, 7));
        assert_eq!(stored(&s, 1000), 0);
        // A bucket emptied by a settle still takes a later overrun while it counts.
        s.settle(&[1000], 1000, 4, 1016);
        assert_eq!(s.held(1000, 1016), 4);
    }

    #[test]
    fn overrun_denies_until_back_under() {
        let ws = [w(10, 640)]; // g = 10
        let mut s = State::default();
        s.hit(&ws, 5, 0); // until 649
        s.hit(&ws, 5, 30); // until 679
        s.settle(&[640], 0, 20, 40);
        assert_eq!(s.held(640, 40), 30);
        let d = s.hit(&ws, 1, 40);
        assert_eq!((d.allowed, d.remaining, d.retry_after_ms), (false, 0, 649 - 40));
        assert!(!s.peek(&ws, 1, 648).allowed);
        assert!(s.peek(&ws, 1, 649).allowed);
        assert!(s.hit(&ws, 0, 40).allowed, "COST 0 takes nothing");
        let d = s.hit(&ws, 10, 40);
        assert_eq!(d.retry_after_ms, 679 - 40);
    }

    #[test]
    fn settle_ignores_unknown_and_expired() {
        let mut s = State::default();
        s.settle(&[1000], 0, -5, 0);
        assert!(s.is_empty());
        s.settle(&[1000], 0, 5, 2000);
        assert!(s.is_empty());
        s.settle(&[1000, 1000], 0, 5, 10);
        assert_eq!(s.held(1000, 10), 5, "a period given twice settles once");
    }

    #[test]
    fn check_args_names_the_argument() {
        assert!(check_args(&[w(5, 10), w(5, 20)], 5).is_ok());
        assert!(check_args(&[w(5, 10)], 0).is_ok());
        let nine: Vec<_> = (1..=9).map(|p| w(1, p)).collect();
        for (ws, cost, arg) in [
            (vec![], 1, "LIMIT"),
            (nine, 1, "LIMIT"),
            (vec![w(0, 10)], 0, "LIMIT"),
            (vec![w(5, 0)], 1, "PERIOD"),
            (vec![w(5, MAX_PERIOD + 1)], 1, "PERIOD"),
            (vec![w(5, 10), w(6, 10)], 1, "PERIOD"),
            (vec![w(5, 10), w(4, 20)], 5, "COST"),
            (vec![w(5, 10)], -1, "COST"),
        ] {
            let e = check_args(&ws, cost).unwrap_err();
            assert!(e.message.starts_with(arg), "{arg}: {}", e.message);
            assert!(e.to_string().starts_with("ERR "));
        }
    }

    #[test]
    fn large_limits_stay_small() {
        let ws = [w(2_000_000, 60_000), w(100_000, 1000), w(50_000_000, 3_600_000)];
        let mut s = State::default();
        let mut max_len = 0;
        for t in (0..200_000).step_by(7) {
            s.hit(&ws, 1000 + t % 4000, 1_700_000_000_000 + t);
            max_len = max_len.max(encode(&s).len());
            assert!(s.heads().iter().all(|h| h.len <= SUB_WINDOWS as usize + 1));
        }
        assert!(max_len < 1200, "{max_len} bytes");
    }

    #[test]
    fn a_clock_that_jumps_back_stays_bounded_and_keeps_every_hit() {
        let ws = [w(100_000, 6400)]; // g = 100
        let mut s = State::default();
        let t0 = 1_000_000;
        let mut most = 0;
        // 64 buckets, then the clock goes back 6400 ms and fills 64 more before them:
        // the window is full after 8 and folds, oldest first, then new ones older than all.
        let times = (0..64).map(|i| t0 + 6400 + i * 100).chain((0..64).map(|i| t0 + i * 100));
        for t in times.chain((1..20).map(|i| t0 - i * 100)) {
            let before = s.held(6400, t);
            assert!(s.hit(&ws, 1, t).allowed);
            // Folding moves cost to a later bucket, which counts longer; none is lost.
            assert_eq!(s.held(6400, t), before + 1);
            most = most.max(stored(&s, 6400));
        }
        assert_eq!(most, MAX_BUCKETS, "the fold was exercised");
        assert_eq!(s.held(6400, t0 - 1900), 64 * 2 + 19);
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn encoding_is_compact_and_round_trips() {
        assert_eq!(encode(&State::default()), vec![TAG, 0]);
        assert_eq!(decode(&[TAG, 0]).unwrap(), State::default());
        let mut s = State::default();
        s.hit(&[w(1000, 64)], 300, 5); // g = 1
        s.hit(&[w(1000, 64)], 1, 7);
        assert_eq!(encode(&s), vec![TAG, 1, 64, 2, 10, 0xAC, 0x02, 2, 1]);
        assert_eq!(decode(&encode(&s)).unwrap(), s);
        let mut reused = State::default();
        decode_into(&encode(&s), &mut reused).unwrap();
        assert_eq!(reused, s);
        assert!(decode_into(b"junk", &mut reused).is_err());
        assert!(reused.is_empty());
    }

    #[test]
    fn decode_refuses_nonsense() {
        let overlong = [TAG, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        for bad in [
            &[][..],
            &[0x00, 0][..],
            &[TAG][..],
            &[TAG, 0, 0][..],                        // trailing byte
            &[TAG, 9][..],                           // too many windows
            &[TAG, 1, 0, 1, 0, 1][..],               // period 0
            &[TAG, 1, 10, 0][..],                    // window without buckets
            &[TAG, 1, 10, 73][..],                   // too many buckets
            &[TAG, 1, 10, 1, 0, 0][..],              // empty bucket
            &[TAG, 1, 10, 2, 0, 1, 0, 1][..],        // step 0
            &[TAG, 2, 10, 1, 0, 1, 10, 1, 0, 1][..], // period twice
            &[TAG, 1, 10, 1, 0][..],                 // cut short
            &overlong[..],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let e = decode(b"hello").unwrap_err();
        assert_eq!(e.to_string(), "ERR corrupt rate limit state: the key was changed outside aijob");
    }

    fn period_strategy() -> impl Strategy<Value = i64> {
        prop_oneof![1i64..=70, 71i64..2000, Just(1000), Just(60_000), 2000i64..100_000]
    }

    fn limit_strategy() -> impl Strategy<Value = i64> {
        prop_oneof![1i64..=10, 10i64..1000, 1000i64..3_000_000]
    }

    fn windows_strategy() -> impl Strategy<Value = Vec<Window>> {
        prop::collection::vec((limit_strategy(), period_strategy()), 1..=3).prop_map(|v| {
            let mut out: Vec<Window> = Vec::new();
            for (limit, period) in v {
                if out.iter().all(|o| o.period != period) {
                    out.push(w(limit, period));
                }
            }
            out
        })
    }

    /// Sum of the costs admitted at instants in `[from, to]`.
    fn sum_in(log: &[(i64, i64)], from: i64, to: i64) -> i64 {
        log.iter().filter(|(t, _)| *t >= from && *t <= to).map(|(_, c)| c).sum()
    }

    fn check_denied_retry(s: &State, ws: &[Window], cost: i64, now: i64, d: Decision) {
        assert!(d.retry_after_ms >= 1);
        let at = now + d.retry_after_ms;
        assert!(s.peek(ws, cost, at).allowed, "admitted after retry_after_ms");
        assert!(!s.peek(ws, cost, at - 1).allowed, "not 1 ms earlier");
        let mut later = s.clone();
        assert!(later.hit(ws, cost, at).allowed);
    }

    fn check_reset(s: &State, ws: &[Window], now: i64, d: Decision) {
        assert_eq!(d.reset_ms, s.reset_ms(now));
        let end = now + d.reset_ms;
        assert!(ws.iter().all(|w| s.held(w.period, end) == 0));
        if d.reset_ms > 0 {
            assert!(ws.iter().any(|w| s.held(w.period, end - 1) > 0));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Strict, never worse than a sliding log of PERIOD + g - 1, exact retry_after.
        #[test]
        fn replay_against_a_sliding_log(
            ws in windows_strategy(),
            start in 0i64..2_000_000_000_000,
            ops in prop::collection::vec((0i64..3000, 0u32..=100), 1..150),
        ) {
            let min_limit = ws.iter().map(|w| w.limit).min().unwrap_or(1);
            let mut s = State::default();
            let mut log: Vec<(i64, i64)> = Vec::new();
            let mut now = start;
            for (dt, frac) in ops {
                // Mostly tiny steps, so windows fill up.
                now += if dt < 2500 { dt % 7 } else { dt };
                let cost = (min_limit * i64::from(frac) / 100).max(i64::from(frac % 3 == 0 && frac > 0));
                let cost = cost.min(min_limit);
                let fits_long_log = ws.iter().all(|w| {
                    let g = Geo::new(w.period).g;
                    sum_in(&log, now - (w.period + g - 1) + 1, now) + cost <= w.limit
                });
                let peeked = s.peek(&ws, cost, now);
                let d = s.hit(&ws, cost, now);
                prop_assert_eq!((peeked.allowed, peeked.retry_after_ms), (d.allowed, d.retry_after_ms));
                if d.allowed {
                    log.push((now, cost));
                    for w in &ws {
                        prop_assert!(sum_in(&log, now - w.period + 1, now) <= w.limit, "strict");
                    }
                    let least = ws.iter().map(|w| w.limit - s.held(w.period, now)).min().unwrap_or(0);
                    prop_assert_eq!(d.remaining, least);
                } else {
                    prop_assert!(cost > 0);
                    prop_assert!(!fits_long_log, "denied what a log of PERIOD + g - 1 admits");
                    check_denied_retry(&s, &ws, cost, now, d);
                }
                check_reset(&s, &ws, now, d);
                prop_assert!(s.heads().iter().all(|h| h.len <= SUB_WINDOWS as usize + 1));
                prop_assert_eq!(decode(&encode(&s)).unwrap(), s.clone());
            }
        }

        /// After charges and settles every window holds what was really used.
        #[test]
        fn settles_hold_the_real_usage(
            ws in windows_strategy(),
            start in 0i64..2_000_000_000_000,
            ops in prop::collection::vec((0i64..3000, 0i64..=50, any::<bool>(), 0usize..1000), 1..120),
        ) {
            let min_limit = ws.iter().map(|w| w.limit).min().unwrap_or(1);
            let periods: Vec<i64> = ws.iter().map(|w| w.period).collect();
            let mut s = State::default();
            // (charged_at, cost, settled delta)
            let mut charges: Vec<(i64, i64, Option<i64>)> = Vec::new();
            let mut now = start;
            for (dt, x, settle, pick) in ops {
                now += if dt < 2500 { dt % 7 } else { dt };
                if settle && !charges.is_empty() {
                    let n = charges.len();
                    let Some(c) = charges.get_mut(pick % n) else { continue };
                    if c.2.is_none() {
                        let delta = x * 2 - c.1; // real usage 0..=100 vs. the estimate
                        s.settle(&periods, c.0, delta, now);
                        c.2 = Some(delta);
                    }
                } else {
                    let cost = x.min(min_limit);
                    let d = s.hit(&ws, cost, now);
                    if d.allowed {
                        charges.push((now, cost, None));
                    } else {
                        check_denied_retry(&s, &ws, cost, now, d);
                    }
                    check_reset(&s, &ws, now, d);
                }
                for w in &ws {
                    let geo = Geo::new(w.period);
                    let real: i64 = charges
                        .iter()
                        .filter(|c| geo.expiry(geo.bucket(c.0)) > now)
                        .map(|c| c.1 + c.2.unwrap_or(0))
                        .sum();
                    prop_assert_eq!(s.held(w.period, now), real);
                }
                prop_assert_eq!(decode(&encode(&s)).unwrap(), s.clone());
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let mut tagged = vec![TAG];
            tagged.extend_from_slice(&bytes);
            if let Ok(s) = decode(&tagged) {
                prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
            }
        }

        /// Valid encodings with one byte changed or cut: still Ok or Err, never a panic,
        /// and whatever decodes is a state the limiter can use.
        #[test]
        fn mutated_encodings_never_panic(
            ws in windows_strategy(),
            hits in prop::collection::vec((0i64..500, 1i64..5), 1..40),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let mut s = State::default();
            let mut now = 1_700_000_000_000;
            for (dt, c) in hits {
                now += dt;
                s.hit(&ws, c.min(1), now);
            }
            let mut bytes = encode(&s);
            let i = at.index(bytes.len());
            if cut { bytes.truncate(i) } else if let Some(b) = bytes.get_mut(i) { *b = byte }
            if let Ok(mut t) = decode(&bytes) {
                t.hit(&ws, 1, now);
                t.settle(&[ws[0].period], now, 3, now);
                let _ = t.reset_ms(now);
                prop_assert_eq!(decode(&encode(&t)).unwrap(), t);
            }
        }
    }
}
