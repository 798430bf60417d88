//! Charged claims and settling (docs/limits.md#charged-claims): a claim takes a job only if every
//! CHARGE admits it by the rules of RATELIMIT.HIT, and takes the charges in the same step;
//! the job's real usage later goes into the very sub-windows the charge went into.

use crate::error::Result;
use crate::limiter;
use crate::queue::claim::{Charge, Gate};
use crate::queue::tx::Tx;
use crate::ratelimit::State;
use crate::record::{self, JobState};
use crate::rng::hex;
use crate::store::Store;

/// The gate of a claim with CHARGE clauses.
pub struct ChargeGate<'a> {
    pub charges: &'a [Charge],
}

/// What one charge took, kept in the job record (`_charges`) for settling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub key: Vec<u8>,
    pub by_cost: bool,
    pub at: i64,
    pub amount: i64,
    pub periods: Vec<i64>,
}

/// A job larger than a window's LIMIT could never be admitted; it is charged the LIMIT
/// (it runs alone in an empty window) and its real usage settles the rest.
fn amount_for(charge: &Charge, job: &JobState) -> i64 {
    if !charge.by_cost {
        return 1;
    }
    let smallest = charge.windows.iter().map(|w| w.limit).min().unwrap_or(0);
    job.cost.min(smallest)
}

impl<S: Store> Gate<S> for ChargeGate<'_> {
    fn admit(&mut self, tx: &mut Tx<S>, job: &JobState) -> Result<std::result::Result<(), i64>> {
        let now = tx.now;
        let mut states: Vec<(Vec<u8>, State)> = Vec::new();
        let mut wait = 0;
        for charge in self.charges {
            // two charges on one key take from one state
            if !states.iter().any(|(k, _)| *k == charge.key) {
                states.push((charge.key.clone(), limiter::load(tx.s, &charge.key)?));
            }
            let Some((_, state)) = states.iter_mut().find(|(k, _)| *k == charge.key) else { continue };
            let d = state.hit(&charge.windows, amount_for(charge, job), now);
            if !d.allowed {
                wait = wait.max(d.retry_after_ms);
            }
        }
        if wait > 0 {
            return Ok(Err(wait));
        }
        for (key, state) in &states {
            tx.push(limiter::store_op(key, state, now));
        }
        let taken: Vec<Taken> = self
            .charges
            .iter()
            .map(|c| Taken {
                key: c.key.clone(),
                by_cost: c.by_cost,
                at: now,
                amount: amount_for(c, job),
                periods: c.windows.iter().map(|w| w.period).collect(),
            })
            .collect();
        tx.hset(&job.id, vec![(record::CHARGES, encode(&taken))]);
        Ok(Ok(()))
    }
}

/// What a USAGE did with the COST charges of the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// Charges moved to the real usage.
    pub settled: u64,
    /// Charges on a key the update did not declare, left as taken.
    pub left: u64,
}

/// Moves every COST charge of `job` on a key of `declared` (the update's CHARGE keys) to
/// its real `usage`. A command writes only the keys it declares, so ACL key patterns and
/// cluster routing see every write: a charge naming any other key (one the caller did not
/// name, or a `_charges` field written by hand) is left as it is and counted in `left`.
pub fn settle<S: Store>(tx: &mut Tx<S>, job: &JobState, usage: i64, declared: &[Vec<u8>]) -> Result<Settled> {
    let mut out = Settled::default();
    let Some(raw) = &job.charges else { return Ok(out) };
    for t in decode(raw).into_iter().filter(|t| t.by_cost) {
        if !declared.contains(&t.key) {
            out.left += 1;
            continue;
        }
        let mut state = limiter::load(tx.s, &t.key)?;
        state.settle(&t.periods, t.at, usage.saturating_sub(t.amount), tx.now);
        tx.push(limiter::store_op(&t.key, &state, tx.now));
        tx.note_limiter_written();
        out.settled += 1;
    }
    Ok(out)
}

/// One line per charge: `c|r at amount p1,p2 hexkey`.
pub fn encode(taken: &[Taken]) -> Vec<u8> {
    let mut out = String::new();
    for t in taken {
        let periods: Vec<String> = t.periods.iter().map(|p| p.to_string()).collect();
        let mode = if t.by_cost { 'c' } else { 'r' };
        out.push_str(&format!("{mode} {} {} {} {}\n", t.at, t.amount, periods.join(","), hex(&t.key)));
    }
    out.into_bytes()
}

/// The charges of `_charges`; lines that do not parse are skipped (nothing to settle).
pub fn decode(raw: &[u8]) -> Vec<Taken> {
    let text = String::from_utf8_lossy(raw);
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Taken> {
    let mut f = line.split(' ');
    let by_cost = f.next()? == "c";
    let at = f.next()?.parse().ok()?;
    let amount = f.next()?.parse().ok()?;
    let periods = f.next()?.split(',').map(|p| p.parse().ok()).collect::<Option<Vec<i64>>>()?;
    let key = unhex(f.next()?)?;
    Some(Taken { key, by_cost, at, amount, periods })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_round_trips_with_binary_keys() {
        let t = vec![
            Taken { key: b"tpm:{q}".to_vec(), by_cost: true, at: 5, amount: 700, periods: vec![60000, 3600000] },
            Taken { key: vec![0, 255, b' ', b'\n'], by_cost: false, at: 6, amount: 1, periods: vec![1000] },
        ];
        assert_eq!(decode(&encode(&t)), t);
        assert!(decode(b"garbage\nc x y z\n").is_empty());
    }
}
