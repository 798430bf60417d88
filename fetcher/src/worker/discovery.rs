//! The queues of the --queues patterns: looked up before the first claim, then every
//! --discover-every ms by a task of their own; the claim loop takes the new list before
//! its next pass.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::limits::Limits;
use crate::queues;
use crate::rconn::{self, Redis};

/// The queues found so far, and the task that looks again.
pub struct Discovery {
    pub found: watch::Receiver<BTreeSet<String>>,
    task: Option<JoinHandle<()>>,
}

impl Discovery {
    /// Looks once (when --queues has patterns), then starts looking every --discover-every.
    pub async fn start(cfg: &Config, redis: &Redis, limits: &Limits, shutdown: &CancellationToken) -> Discovery {
        let globs = queues::globs(&cfg.queues);
        let (tx, found) = watch::channel(BTreeSet::new());
        if globs.is_empty() {
            return Discovery { found, task: None };
        }
        if let Some(now) = discover(redis, &globs, &BTreeSet::new(), limits).await {
            tx.send_replace(now);
        }
        let (r, l, stop) = (redis.clone(), limits.clone(), shutdown.clone());
        let every = Duration::from_millis(cfg.discover_every_ms);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let before = tx.borrow().clone();
                if let Some(now) = discover(&r, &globs, &before, &l).await {
                    tx.send_replace(now);
                }
            }
        });
        Discovery { found, task: Some(task) }
    }

    pub fn stop(self) {
        if let Some(t) = self.task {
            t.abort();
        }
    }
}

/// One round: the queues the patterns match now (SCAN on every master), or None when Redis
/// could not be asked (the previous list stays). Logs what changed.
async fn discover(
    redis: &Redis,
    globs: &[String],
    before: &BTreeSet<String>,
    limits: &Limits,
) -> Option<BTreeSet<String>> {
    let keys = match redis.scan_match(&queues::scan_pattern(globs)).await {
        Ok(k) => k,
        Err(e) => {
            warn!(error = %rconn::describe(&e), "looking for the queues of the patterns failed; trying again later");
            return None;
        }
    };
    let found = matching_queues(&keys, globs);
    let (added, gone) = changes(before, &found);
    if !added.is_empty() || !gone.is_empty() {
        info!(added = ?added, gone = ?gone, total = found.len(), "queues of the patterns");
        if limits.any() {
            for q in added.iter().take(16) {
                info!(queue = %q, mode = %limits.charge_mode(q), "rate limits");
            }
        }
    }
    Some(found)
}

/// The queues of the meta keys found that a pattern matches.
pub fn matching_queues(meta_keys: &[Vec<u8>], globs: &[String]) -> BTreeSet<String> {
    meta_keys
        .iter()
        .filter_map(|k| queues::queue_of_meta_key(k))
        .filter(|q| globs.iter().any(|g| queues::glob_match(g, q)))
        .collect()
}

/// The queues added and gone since `before`.
pub fn changes<'a>(before: &'a BTreeSet<String>, now: &'a BTreeSet<String>) -> (Vec<&'a String>, Vec<&'a String>) {
    (now.difference(before).collect(), before.difference(now).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_give_the_queues_a_pattern_matches() {
        let keys: Vec<Vec<u8>> = ["aijob:{q-1}:meta", "aijob:{other}:meta", "aijob:{q-2}:job:x", "aijob:{q-3}:meta"]
            .map(|k| k.as_bytes().to_vec())
            .to_vec();
        let found = matching_queues(&keys, &["q-*".to_string()]);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["q-1", "q-3"]);
    }

    #[test]
    fn changes_are_both_ways() {
        let before: BTreeSet<String> = ["a", "b"].map(String::from).into();
        let now: BTreeSet<String> = ["b", "c"].map(String::from).into();
        let (added, gone) = changes(&before, &now);
        assert_eq!((added, gone), (vec![&"c".to_string()], vec![&"a".to_string()]));
    }
}
