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
}
