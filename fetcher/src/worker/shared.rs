//! What the claim loop and every job task share.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cooldown::Breaker;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::rconn::Redis;
use crate::secret::Redactor;

/// Everything the job tasks share.
pub struct Shared {
    pub(super) cfg: Arc<Config>,
    pub(super) redis: Redis,
    pub(super) providers: Providers,
    pub(super) limits: Limits,
    pub(super) breaker: Breaker,
    pub(super) metrics: Arc<Metrics>,
    pub(super) redactor: Redactor,
    pub(super) lease_ms: u64,
    /// The grace is over: drop running calls and give their jobs back.
    pub(super) abort: CancellationToken,
    /// Give up retrying final updates and releases too.
    pub(super) hard: CancellationToken,
    /// Shutting down: no job is claimed any more (with NEXT either).
    pub(super) stop_claims: CancellationToken,
    /// The one queue the claim loop serves, when it serves exactly one: a job task then
    /// claims its next job with its final update (JOB.UPDATE ... NEXT), which cannot
    /// change what the weighted pick would hand out.
    pub(super) sole_queue: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// Whether a job of `queue` may claim its successor with its final update.
    pub(super) fn may_take_next(&self, queue: &str) -> bool {
        !self.stop_claims.is_cancelled() && self.sole_queue.lock().map(|q| q.as_deref() == Some(queue)).unwrap_or(false)
    }
}
