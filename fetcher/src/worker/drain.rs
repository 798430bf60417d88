//! Shutdown (SIGTERM/SIGINT): no more claims (a claim already sent is finished, and what it
//! returns is given back at once); running jobs get --grace to finish; then their calls are
//! dropped and each job is given back with JOB.RELEASE (the attempt does not count). Final
//! updates still being retried get max(--grace, 5 s) more, then 2 s before the tasks are
//! aborted. A second signal skips the grace.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::shared::Shared;

/// What final updates and releases get after the grace.
pub fn after_grace(grace: Duration) -> Duration {
    grace.max(Duration::from_secs(5))
}

/// The last wait before the remaining tasks are aborted.
const LAST_WAIT: Duration = Duration::from_secs(2);

pub async fn drain(sh: &Shared, tasks: &mut JoinSet<()>, force: &CancellationToken) {
    if tasks.is_empty() {
        return;
    }
    let grace_s = sh.cfg.grace.as_secs_f64();
    info!(running = tasks.len(), grace_s, "shutting down: no more claims, letting running calls finish");
    let finished = tokio::select! {
        r = tokio::time::timeout(sh.cfg.grace, join_all(tasks)) => r.is_ok(),
        _ = force.cancelled() => false,
    };
    if finished {
        return;
    }
    info!(running = tasks.len(), "grace over: aborting the running calls and giving their jobs back");
    sh.abort.cancel();
    if tokio::time::timeout(after_grace(sh.cfg.grace), join_all(tasks)).await.is_ok() {
        return;
    }
    warn!(running = tasks.len(), "giving up on the last final updates and releases");
    sh.hard.cancel();
    if tokio::time::timeout(LAST_WAIT, join_all(tasks)).await.is_err() {
        tasks.abort_all();
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(r) = tasks.join_next().await {
        if r.is_err_and(|e| e.is_panic()) {
            error!("a job task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_updates_get_at_least_five_seconds_after_the_grace() {
        assert_eq!(after_grace(Duration::ZERO), Duration::from_secs(5));
        assert_eq!(after_grace(Duration::from_secs(30)), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn join_all_survives_a_panicking_task() {
        let mut tasks = JoinSet::new();
        tasks.spawn(async { panic!("boom") });
        tasks.spawn(async {});
        join_all(&mut tasks).await;
        assert!(tasks.is_empty());
    }
}
