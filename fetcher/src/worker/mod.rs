//! The worker: claims jobs, runs each in a task of its own, and drains on shutdown.
//!
//! - `startup`: the lease, the checks and the start lines;
//! - `discovery`: the queues of the --queues patterns, looked up again and again;
//! - `claim`: the claim loop (weighted, then blocking) and the slots of --concurrency;
//! - `task`: one job: its calls (`call`: the legs of its plan, cooldowns, budgets, timeout;
//!   `stream`: a streamed leg's text appended to the job's output stream) with heartbeats
//!   beside it; `inputs`: the parents' results its claim left out, read before the call;
//! - `report`: the final update or release, sent until it lands, and the outcome;
//! - `drain`: the shutdown's grace and deadlines;
//! - `commands` and `job`: the job commands and the claimed job, pure;
//! - `shared`: what the claim loop and the job tasks share.

mod call;
mod claim;
mod commands;
mod discovery;
mod drain;
mod inputs;
mod job;
mod report;
mod shared;
mod startup;
mod stream;
mod task;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::cooldown::Breaker;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::rconn::Redis;
use crate::secret::Redactor;
use crate::server;

use shared::Shared;

/// The two links to Redis: blocking claims have one of their own (on a cluster, a cluster
/// connection of their own), so that heartbeats and final updates never queue behind them.
struct Links {
    main: Redis,
    claims: Redis,
}

impl Links {
    fn new(cfg: &Config, metrics: &Metrics) -> Result<Links> {
        let link = |timeout| Redis::new(&cfg.redis.seeds, cfg.cluster, timeout, metrics.redis_up.clone());
        let claim_timeout = Duration::from_millis(cfg.claim_block_ms) + Duration::from_secs(5);
        Ok(Links { main: link(Duration::from_secs(5))?, claims: link(claim_timeout)? })
    }
}

/// Runs until `shutdown`, then drains. `force` (a second signal) cuts the grace short.
pub async fn run(cfg: Config, shutdown: CancellationToken, force: CancellationToken) -> Result<()> {
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::default());
    let redactor = Redactor::new(cfg.secrets());
    let links = Links::new(&cfg, &metrics)?;
    let providers = Providers::new(&cfg.providers, cfg.timeout, redactor.clone())?;
    let limits = Limits::new(links.main.clone(), &cfg, metrics.clone());
    let breaker = Breaker::new(links.main.clone(), &cfg, metrics.clone());
    startup::log_providers(&providers, &limits);
    let server = server::Running::start(cfg.listen, &metrics, &links.main, &redactor);

    let Some(lease_ms) = startup::lease_ms(&cfg, &links.main, &shutdown).await else {
        info!("stopped before Redis was reachable");
        server.stop().await;
        return Ok(());
    };
    if limits.any() || breaker.enabled() {
        startup::check_ratelimit_commands(&links.main).await?;
    }
    startup::log_started(&cfg, lease_ms, &limits);
    startup::log_fallbacks(&cfg);
    let discovery = discovery::Discovery::start(&cfg, &links.main, &limits, &shutdown).await;

    let (abort, hard) = (CancellationToken::new(), CancellationToken::new());
    let (stop_claims, sole_queue) = (shutdown.clone(), std::sync::Mutex::new(None));
    let shared = Shared {
        cfg,
        redis: links.main,
        providers,
        limits,
        breaker,
        metrics,
        redactor,
        lease_ms,
        abort,
        hard,
        stop_claims,
        sole_queue,
    };
    let shared = Arc::new(shared);
    let mut tasks = JoinSet::new();
    claim::claim_loop(&shared, &links.claims, &mut tasks, discovery.found.clone(), &shutdown).await;
    discovery.stop();
    drain::drain(&shared, &mut tasks, &force).await;
    server.stop().await;
    info!("fetcher stopped");
    Ok(())
}
