//! The claim loop, the job tasks with their heartbeats, and the drain on shutdown.
//!
//! Claiming. JOB.CLAIM BLOCK waits on one queue only, so several weighted queues are served
//! in two steps, looping:
//! 1. a non-blocking pass: the free slots are dealt out over the queues by weight (smooth
//!    weighted round robin over the `--queues` entries, then round robin over the queues of
//!    an entry; see `queues.rs`), and each queue dealt some is asked for them at once
//!    (`JOB.CLAIM q COUNT k`, all queues concurrently: on a cluster each goes to its own
//!    master). A queue that hands out fewer than asked is left out for the rest of the pass
//!    and what it left is dealt out again to the others.
//! 2. when the pass found nothing anywhere: `JOB.CLAIM q BLOCK <--claim-block> COUNT 1` on the
//!    next queue by weight, so an idle fetcher costs one command a second and wakes at once
//!    for that queue; a job on another queue waits at most --claim-block ms.
//!
//! Patterns in --queues are looked up at start and again every --discover-every ms by a task
//! of their own; the claim loop takes the new list before its next pass.
//!
//! The blocking claim runs on a connection of its own, so heartbeats and final updates
//! never queue behind it. A slot is taken before claiming and held until the job task ends:
//! never more than --concurrency jobs are held.
//!
//! Each job task: reads the payload, waits for the provider's rate limits, makes the call
//! (bounded by --timeout), and sends the final JOB.UPDATE with the claim's TOKEN. Meanwhile a
//! heartbeat (`JOB.UPDATE q id TOKEN t` every lease/3) keeps the lease; when it hears
//! LEASELOST, CANCELED or NOTFOUND the call is dropped and nothing is written. The final
//! update is retried with backoff (Redis away, reconnects) until it lands or Redis answers
//! that it never will (LEASELOST, CANCELED, NOTFOUND, BADSTATE).
//!
//! Shutdown (SIGTERM/SIGINT): no more claims (a claim already sent is finished, and what it
//! returns is given back at once); running jobs get --grace to finish; then their calls are
//! dropped and each job is given back with JOB.RELEASE (the attempt does not count). Final
//! updates still being retried get max(--grace, 5 s) more. A second signal skips the grace.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use redis::Value;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::limits::{ChargePlan, Limits};
use crate::metrics::{self, Metrics};
use crate::providers::{self, Call, Failure, Providers, Success};
use crate::queues::{self, Picker, Sel};
use crate::rconn::{self, Backoff, Record, Redis};
use crate::secret::Redactor;

/// Everything the job tasks share.
struct Shared {
    cfg: Arc<Config>,
    redis: Redis,
    providers: Providers,
    limits: Limits,
    metrics: Arc<Metrics>,
    redactor: Redactor,
    lease_ms: u64,
    /// The grace is over: drop running calls and give their jobs back.
    abort: CancellationToken,
    /// Give up retrying final updates and releases too.
    hard: CancellationToken,
}

/// A claimed job.
#[derive(Debug, Clone)]
struct Job {
    queue: String,
    id: String,
    token: String,
    payload: Vec<u8>,
    attempts: i64,
    max_attempts: i64,
    cost: u64,
    /// The provider whose budgets the claim itself charged (a charged claim), if any.
    charged: Option<String>,
}

impl Job {
    fn from_record(queue: &str, r: &Record, charged: Option<String>) -> Option<Job> {
        Some(Job {
            queue: queue.to_string(),
            id: r.str("id")?,
            token: r.str("token")?,
            payload: r.bytes("payload").unwrap_or_default(),
            attempts: r.int("attempts").unwrap_or(0),
            max_attempts: r.int("max_attempts").unwrap_or(0),
            cost: r.int("cost").unwrap_or(1).max(0) as u64,
            charged,
        })
    }
}

/// Runs until `shutdown`, then drains. `force` (a second signal) cuts the grace short.
pub async fn run(cfg: Config, shutdown: CancellationToken, force: CancellationToken) -> Result<()> {
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::default());
    let redactor = Redactor::new(cfg.secrets());
    let redis = Redis::new(&cfg.redis_seeds, cfg.cluster, Duration::from_secs(5), metrics.redis_up.clone())?;
    // Blocking claims have a connection of their own (on a cluster, a cluster connection of
    // their own), so that heartbeats and final updates never queue behind them.
    let claim_redis = Redis::new(
        &cfg.redis_seeds,
        cfg.cluster,
        Duration::from_millis(cfg.claim_block_ms) + Duration::from_secs(5),
        metrics.redis_up.clone(),
    )?;
    let providers = Providers::new(&cfg, redactor.clone())?;
    let limits = Limits::new(redis.clone(), &cfg, metrics.clone());

    let enabled = providers.enabled_names();
    if enabled == ["echo"] {
        warn!("echo only: no API keys set (GEMINI_API_KEY, OPENAI_API_KEY) and no --http-endpoint; jobs for other providers fail with class config");
    }
    for p in &enabled {
        match limits.describe(p) {
            Some(l) => info!(provider = p, limits = %l, "provider enabled"),
            None => info!(provider = p, "provider enabled, no rate limit"),
        }
    }

    let stop_server = CancellationToken::new();
    let server = cfg.listen.map(|addr| {
        tokio::spawn(metrics::serve(addr, metrics.clone(), redis.clone(), redactor.clone(), stop_server.clone()))
    });

    let Some(lease_ms) = lease_ms(&cfg, &redis, &shutdown).await else {
        info!("stopped before Redis was reachable");
        return Ok(());
    };
    if limits.any() {
        check_ratelimit_commands(&redis).await?;
    }
    let entries: Vec<String> = cfg.queues.iter().map(|e| format!("{}:{}", e.text, e.weight)).collect();
    info!(
        redis = %crate::config::redact_url(&cfg.redis_url),
        cluster = cfg.cluster,
        queues = ?entries,
        concurrency = cfg.concurrency,
        lease_ms,
        worker = %cfg.worker,
        "fetcher started"
    );
    if limits.any() {
        for e in &cfg.queues {
            if let Sel::Names(ns) = &e.sel {
                for q in ns.iter().take(16) {
                    info!(queue = %q, mode = %limits.charge_mode(q), "rate limits");
                }
            }
        }
    }

    // Patterns: look them up once before claiming, then every --discover-every.
    let globs = queues::globs(&cfg.queues);
    let (found_tx, found_rx) = watch::channel(BTreeSet::new());
    let discovery = if globs.is_empty() {
        None
    } else {
        if let Some(found) = discover(&redis, &globs, &BTreeSet::new(), &limits).await {
            found_tx.send_replace(found);
        }
        let (r, l, g, stop) = (redis.clone(), limits.clone(), globs.clone(), shutdown.clone());
        let every = Duration::from_millis(cfg.discover_every_ms);
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                let before = found_tx.borrow().clone();
                if let Some(found) = discover(&r, &g, &before, &l).await {
                    found_tx.send_replace(found);
                }
            }
        }))
    };

    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        redis,
        providers,
        limits,
        metrics,
        redactor,
        lease_ms,
        abort: CancellationToken::new(),
        hard: CancellationToken::new(),
    });
    let mut tasks = JoinSet::new();
    claim_loop(&shared, &claim_redis, &mut tasks, found_rx, &shutdown).await;
    if let Some(d) = discovery {
        d.abort();
    }
    drain(&shared, &mut tasks, &force).await;
    stop_server.cancel();
    if let Some(s) = server {
        match s.await {
            Ok(Err(e)) => error!(error = %e, "the metrics server failed"),
            Err(e) => error!(error = %e, "the metrics server panicked"),
            Ok(Ok(())) => {}
        }
    }
    info!("fetcher stopped");
    Ok(())
}

/// The lease to claim with: --lease, else the module's `aijob.lease-ms`. Waits for Redis.
async fn lease_ms(cfg: &Config, redis: &Redis, shutdown: &CancellationToken) -> Option<u64> {
    if let Some(l) = cfg.lease_ms {
        return Some(l);
    }
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        match redis.query(redis::cmd("CONFIG").arg("GET").arg("aijob.lease-ms")).await {
            Ok(Value::Array(items)) if items.len() == 2 => {
                if let Some(ms) = rconn::as_string(&items[1]).and_then(|s| s.parse::<u64>().ok()).filter(|ms| *ms > 0) {
                    return Some(ms);
                }
                warn!("aijob.lease-ms is not a positive number; claiming with 30000 ms");
                return Some(30_000);
            }
            Ok(Value::Map(items)) if items.len() == 1 => {
                if let Some(ms) = rconn::as_string(&items[0].1).and_then(|s| s.parse::<u64>().ok()).filter(|ms| *ms > 0)
                {
                    return Some(ms);
                }
                return Some(30_000);
            }
            Ok(_) => {
                warn!("CONFIG GET aijob.lease-ms gave nothing (is the aijob module loaded?); claiming with 30000 ms");
                return Some(30_000);
            }
            Err(e) if !rconn::is_transport(&e) => {
                warn!(error = %rconn::describe(&e), "CONFIG GET aijob.lease-ms refused (set --lease); claiming with 30000 ms");
                return Some(30_000);
            }
            Err(e) => {
                warn!(error = %rconn::describe(&e), "Redis is not reachable yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// --rpm/--tpm need RATELIMIT.HIT and RATELIMIT.PEEK: refuse to start without them rather
/// than fail every job.
async fn check_ratelimit_commands(redis: &Redis) -> Result<()> {
    let v = redis
        .query(redis::cmd("COMMAND").arg("INFO").arg("RATELIMIT.HIT").arg("RATELIMIT.PEEK"))
        .await
        .map_err(|e| anyhow::anyhow!("COMMAND INFO failed: {}", rconn::describe(&e)))?;
    let known = match &v {
        Value::Array(items) => items.len() == 2 && items.iter().all(|i| !matches!(i, Value::Nil)),
        _ => false,
    };
    if !known {
        anyhow::bail!("--rpm/--tpm need RATELIMIT.HIT and RATELIMIT.PEEK, which this Redis does not have (is the aijob module loaded, and recent enough?)");
    }
    Ok(())
}

/// One discovery round: the queues the patterns match now (SCAN on every master), or None
/// when Redis could not be asked (the previous list stays). Logs what changed.
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
    let found: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| queues::queue_of_meta_key(k))
        .filter(|q| globs.iter().any(|g| queues::glob_match(g, q)))
        .collect();
    let added: Vec<&String> = found.difference(before).collect();
    let gone: Vec<&String> = before.difference(&found).collect();
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

fn claim_cmd(sh: &Shared, queue: &str, count: usize, block_ms: Option<u64>, plan: Option<&ChargePlan>) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.CLAIM");
    // JOB.CLAIM hands out at most 1000 jobs a call.
    let count = count.clamp(1, 1000);
    cmd.arg(queue).arg("WORKER").arg(&sh.cfg.worker).arg("LEASE").arg(sh.lease_ms).arg("COUNT").arg(count);
    if let Some(b) = block_ms {
        cmd.arg("BLOCK").arg(b);
    }
    if let Some(p) = plan {
        for a in &p.args {
            cmd.arg(a);
        }
    }
    cmd
}

/// True when Redis refused a charged claim for a reason that will not go away (a module
/// without CHARGE, a key in another slot).
fn charges_refused(e: &redis::RedisError) -> bool {
    match rconn::code(e) {
        Some("CROSSSLOT") => true,
        Some("ERR") => e.detail().is_some_and(|d| d.to_ascii_uppercase().contains("CHARGE")),
        _ => false,
    }
}

/// One JOB.CLAIM; the jobs it handed out.
async fn claim_one(
    sh: &Shared,
    redis: &Redis,
    queue: &str,
    count: usize,
    block_ms: Option<u64>,
) -> Result<Vec<Job>, redis::RedisError> {
    let plan = sh.limits.charge_plan(queue);
    let v = match redis.query(&claim_cmd(sh, queue, count, block_ms, plan.as_ref())).await {
        Ok(v) => v,
        Err(e) if plan.is_some() && charges_refused(&e) => {
            if sh.limits.refuse_charges(queue) {
                error!(queue, error = %rconn::describe(&e), "Redis refused a charged claim; this queue's jobs are charged per call from now on");
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    let recs = rconn::records(&v);
    let charged = plan.map(|p| p.provider);
    let jobs: Vec<Job> = recs.iter().filter_map(|r| Job::from_record(queue, r, charged.clone())).collect();
    if jobs.len() < recs.len() {
        error!(queue, "JOB.CLAIM returned a record without id or token; it will come back when its lease expires");
    }
    if !jobs.is_empty() {
        sh.metrics.claimed(queue, jobs.len());
    }
    Ok(jobs)
}

/// The non-blocking weighted pass, then (when it found nothing) one blocking claim. An
/// error after some jobs were claimed still hands those jobs over (they hold leases).
async fn claim_batch(
    sh: &Shared,
    redis: &Redis,
    picker: &mut Picker,
    want: usize,
    shutdown: &CancellationToken,
) -> (Vec<Job>, Option<redis::RedisError>) {
    let mut out = Vec::new();
    let mut first_err = None;
    let mut empty: HashSet<String> = HashSet::new();
    while out.len() < want && first_err.is_none() {
        // Deal the free slots out by weight, then ask every queue dealt some at once.
        let mut deal: Vec<(String, usize)> = Vec::new();
        for _ in out.len()..want {
            let Some(q) = picker.next(&empty) else { break };
            match deal.iter_mut().find(|(d, _)| *d == q) {
                Some((_, n)) => *n += 1,
                None => deal.push((q, 1)),
            }
        }
        if deal.is_empty() {
            break;
        }
        let asks = deal.iter().map(|(q, n)| claim_one(sh, redis, q, *n, None));
        let results = futures::future::join_all(asks).await;
        for ((q, n), r) in deal.into_iter().zip(results) {
            match r {
                Ok(got) => {
                    if got.len() < n {
                        empty.insert(q);
                    }
                    out.extend(got);
                }
                Err(e) => {
                    empty.insert(q);
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    if first_err.is_some() || !out.is_empty() {
        return (out, first_err);
    }
    match picker.next(&HashSet::new()) {
        Some(q) => match claim_one(sh, redis, &q, 1, Some(sh.cfg.claim_block_ms)).await {
            Ok(got) => (got, None),
            Err(e) => (out, Some(e)),
        },
        None => {
            // No queue yet (patterns that match nothing so far): wait as a blocking claim would.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sh.cfg.claim_block_ms)) => {}
                _ = shutdown.cancelled() => {}
            }
            (out, None)
        }
    }
}

async fn claim_loop(
    sh: &Arc<Shared>,
    redis: &Redis,
    tasks: &mut JoinSet<()>,
    mut found: watch::Receiver<BTreeSet<String>>,
    shutdown: &CancellationToken,
) {
    let sem = Arc::new(Semaphore::new(sh.cfg.concurrency));
    let mut picker = Picker::new(&sh.cfg.queues);
    picker.set(queues::assign(&sh.cfg.queues, &found.borrow_and_update()));
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        while tasks.try_join_next().is_some() {}
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            p = sem.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let mut permits = vec![first];
        while let Ok(p) = sem.clone().try_acquire_owned() {
            permits.push(p);
        }
        if found.has_changed().unwrap_or(false) {
            picker.set(queues::assign(&sh.cfg.queues, &found.borrow_and_update()));
        }
        let (jobs, err) = claim_batch(sh, redis, &mut picker, permits.len(), shutdown).await;
        let failed = err.map(|e| {
            let wait = backoff.next_delay();
            warn!(error = %rconn::describe(&e), retry_in_ms = wait.as_millis() as u64, "claim failed");
            wait
        });
        if failed.is_none() {
            backoff.reset();
        }
        for job in jobs {
            let Some(permit) = permits.pop() else {
                // Never happens: a claim asks for at most as many jobs as there are slots.
                error!(queue = %job.queue, id = %job.id, "claimed more jobs than free slots; giving it back");
                release(sh, &job).await;
                continue;
            };
            if shutdown.is_cancelled() {
                info!(queue = %job.queue, id = %job.id, "claimed while shutting down; giving it back");
                release(sh, &job).await;
                continue;
            }
            tasks.spawn(run_job(sh.clone(), job, permit));
        }
        drop(permits);
        if let Some(wait) = failed {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            if e.is_panic() {
                error!("a job task panicked");
            }
        }
    }
}

async fn drain(sh: &Arc<Shared>, tasks: &mut JoinSet<()>, force: &CancellationToken) {
    if tasks.is_empty() {
        return;
    }
    info!(
        running = tasks.len(),
        grace_s = sh.cfg.grace.as_secs_f64(),
        "shutting down: no more claims, letting running calls finish"
    );
    let finished = tokio::select! {
        r = tokio::time::timeout(sh.cfg.grace, join_all(tasks)) => r.is_ok(),
        _ = force.cancelled() => false,
    };
    if finished {
        return;
    }
    info!(running = tasks.len(), "grace over: aborting the running calls and giving their jobs back");
    sh.abort.cancel();
    let extra = sh.cfg.grace.max(Duration::from_secs(5));
    if tokio::time::timeout(extra, join_all(tasks)).await.is_err() {
        warn!(running = tasks.len(), "giving up on the last final updates and releases");
        sh.hard.cancel();
        if tokio::time::timeout(Duration::from_secs(2), join_all(tasks)).await.is_err() {
            tasks.abort_all();
        }
    }
}

/// How a job task ended, for the log line and the metrics.
struct Outcome {
    outcome: &'static str,
    class: String,
    status: Option<String>,
    error: Option<String>,
}

async fn run_job(sh: Arc<Shared>, job: Job, _permit: OwnedSemaphorePermit) {
    sh.metrics.in_flight_add(1);
    let started = Instant::now();
    let parsed = providers::parse_payload(&job.payload);
    let (provider, model) = match &parsed {
        Ok(c) => (providers::label(&c.provider), c.model.clone()),
        Err(_) => ("unknown", None),
    };
    announce(&sh, &job, provider, model.as_deref()).await;
    let lost = CancellationToken::new();
    let hb = tokio::spawn(heartbeat(sh.clone(), job.clone(), lost.clone()));

    enum Step {
        Called(Box<(Option<Call>, Result<Success, Failure>)>),
        Lost,
        Released(bool),
    }
    let step = tokio::select! {
        r = execute(&sh, parsed, &job) => Step::Called(Box::new(r)),
        _ = lost.cancelled() => Step::Lost,
        _ = sh.abort.cancelled() => {
            hb.abort();
            Step::Released(release(&sh, &job).await)
        }
    };
    hb.abort();
    let why_lost = match hb.await {
        Ok(Some(reason)) => reason,
        _ => String::new(),
    };

    let o = match step {
        Step::Called(b) => {
            let (call, r) = *b;
            finish(&sh, &job, call.as_ref(), r).await
        }
        Step::Released(true) => {
            Outcome { outcome: "released", class: String::new(), status: Some("queued".into()), error: None }
        }
        Step::Released(false) => Outcome { outcome: "lost", class: "release".into(), status: None, error: None },
        Step::Lost => Outcome { outcome: "lost", class: why_lost, status: None, error: None },
    };
    sh.metrics.job(&job.queue, provider, o.outcome, &o.class);
    sh.metrics.in_flight_add(-1);
    let ms = started.elapsed().as_millis() as u64;
    let model = model.unwrap_or_default();
    let status = o.status.unwrap_or_default();
    match (o.outcome, o.error) {
        ("done", _) => {
            info!(queue = %job.queue, id = %job.id, provider, model, attempt = job.attempts, outcome = "done", status, ms, "job finished")
        }
        (outcome, Some(err)) => {
            warn!(queue = %job.queue, id = %job.id, provider, model, attempt = job.attempts, max_attempts = job.max_attempts, outcome, class = %o.class, status, ms, error = %err, "job finished")
        }
        (outcome, None) => {
            warn!(queue = %job.queue, id = %job.id, provider, model, attempt = job.attempts, outcome, class = %o.class, status, ms, "job finished")
        }
    }
}

/// Reads the call, waits for the rate limits, calls. Returns the call (when the payload
/// was readable) and the outcome.
async fn execute(sh: &Shared, parsed: Result<Call, Failure>, job: &Job) -> (Option<Call>, Result<Success, Failure>) {
    let call = match parsed {
        Ok(c) => c,
        Err(f) => return (None, Err(f)),
    };
    let provider = match sh.providers.get(&call.provider) {
        Ok(p) => p,
        Err(f) => return (Some(call), Err(f)),
    };
    // A charged claim already took this provider's budgets; anything else is charged here.
    match job.charged.as_deref() {
        Some(p) if p == call.provider => {}
        other => {
            if let Some(p) = other {
                warn!(queue = %job.queue, id = %job.id, bound = p, provider = %providers::label(&call.provider), "the job names another provider than its queue's --queue-provider: charged per call too");
            }
            if let Err(f) = sh.limits.acquire(&job.queue, &call.provider, job.cost).await {
                return (Some(call), Err(f));
            }
        }
    }
    let r = execute_call(sh, &call, provider).await;
    (Some(call), r)
}

async fn execute_call(sh: &Shared, call: &Call, provider: Arc<dyn providers::Provider>) -> Result<Success, Failure> {
    let t = Instant::now();
    let r = match tokio::time::timeout(sh.cfg.timeout, provider.call(call)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::retry("timeout", "the provider did not answer within the timeout")),
    };
    sh.metrics.call(providers::label(&call.provider), t.elapsed());
    r
}

/// One PROGRESS update before the call, so subscribers see what the job is waiting on.
/// A refusal here (lease lost, canceled) is left to the heartbeat to act on.
async fn announce(sh: &Shared, job: &Job, provider: &str, model: Option<&str>) {
    let text = match model {
        Some(m) => format!("calling {provider} {m}"),
        None => format!("calling {provider}"),
    };
    let mut cmd = job_update(job);
    cmd.arg("PROGRESS").arg(text);
    if let Err(e) = sh.redis.query(&cmd).await {
        debug!(queue = %job.queue, id = %job.id, error = %rconn::describe(&e), "progress update not taken");
    }
}

/// Heartbeats every lease/3 until aborted. Returns why the job was lost, if it was.
async fn heartbeat(sh: Arc<Shared>, job: Job, lost: CancellationToken) -> Option<String> {
    let every = Duration::from_millis((sh.lease_ms / 3).max(20));
    let cmd = job_update(&job);
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        // After a failure, try again sooner: the lease is running out.
        wait = (every / 3).max(Duration::from_millis(20));
        match sh.redis.query(&cmd).await {
            Ok(_) => wait = every,
            Err(e) => match rconn::code(&e) {
                Some(c @ ("LEASELOST" | "CANCELED" | "NOTFOUND" | "BADSTATE")) => {
                    let reason = c.to_ascii_lowercase();
                    info!(queue = %job.queue, id = %job.id, reason, "heartbeat refused: dropping the call");
                    lost.cancel();
                    return Some(reason);
                }
                _ => {
                    warn!(queue = %job.queue, id = %job.id, error = %rconn::describe(&e), "heartbeat failed; retrying")
                }
            },
        }
    }
}

/// What the final JOB.UPDATE (or JOB.RELEASE) came to.
enum Landed {
    /// The reply: the job's new status.
    Status(String),
    /// Redis refused for good (the code word: LEASELOST, CANCELED, NOTFOUND, BADSTATE...).
    Refused(String, String),
    /// Shutdown's last deadline passed before Redis answered.
    GaveUp,
}

/// Sends a command until it lands or Redis refuses it for good; a lost link is retried
/// with backoff (100 ms doubling to 1 s: a restarted Redis should get the result before its
/// timer expires the lease) until the shutdown's last deadline.
async fn until_landed(sh: &Shared, job: &Job, what: &str, cmd: &redis::Cmd) -> Landed {
    let mut backoff = Backoff::new(Duration::from_secs(1));
    let mut failed_before = false;
    loop {
        match sh.redis.query(cmd).await {
            Ok(v) => {
                if failed_before {
                    info!(queue = %job.queue, id = %job.id, what, "landed after reconnecting");
                }
                return Landed::Status(rconn::as_string(&v).unwrap_or_default());
            }
            Err(e) if rconn::is_transport(&e) => {
                let wait = backoff.next_delay();
                warn!(queue = %job.queue, id = %job.id, what, error = %rconn::describe(&e), retry_in_ms = wait.as_millis() as u64, "Redis unreachable; retrying");
                failed_before = true;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = sh.hard.cancelled() => return Landed::GaveUp,
                }
            }
            Err(e) => {
                let code = rconn::code(&e).unwrap_or("ERR").to_string();
                if failed_before && matches!(code.as_str(), "LEASELOST" | "BADSTATE") {
                    // An earlier try may have landed before the link broke.
                    info!(queue = %job.queue, id = %job.id, what, code, "refused after a reconnect: an earlier try may have landed");
                }
                return Landed::Refused(code, rconn::describe(&e));
            }
        }
    }
}

/// `JOB.UPDATE q id TOKEN t`, the start of every update a worker makes to its job.
fn job_update(job: &Job) -> redis::Cmd {
    let mut cmd = redis::cmd("JOB.UPDATE");
    cmd.arg(&job.queue).arg(&job.id).arg("TOKEN").arg(&job.token);
    cmd
}

fn update_error(job: &Job, f: &Failure, redactor: &Redactor) -> redis::Cmd {
    let mut cmd = job_update(job);
    cmd.arg("STATUS")
        .arg("error")
        .arg("ERROR")
        .arg(redactor.scrub(&f.message))
        .arg("CLASS")
        .arg(redactor.scrub(&f.class));
    if !f.retry {
        cmd.arg("NORETRY");
    } else if let Some(d) = f.delay_ms {
        cmd.arg("DELAY").arg(d);
    }
    cmd
}

/// The final JOB.UPDATE of a finished call.
async fn finish(sh: &Shared, job: &Job, call: Option<&Call>, r: Result<Success, Failure>) -> Outcome {
    let f: Failure = match (call, r) {
        (Some(call), Ok(s)) => {
            let result = sh.redactor.scrub_json(providers::result_json(call, &s));
            let mut cmd = job_update(job);
            cmd.arg("STATUS")
                .arg("done")
                .arg("RESULT")
                .arg(result.to_string())
                .arg("USAGE")
                .arg(sh.limits.settle_usage(&s.usage));
            match until_landed(sh, job, "final update", &cmd).await {
                Landed::Status(st) => {
                    return Outcome { outcome: "done", class: String::new(), status: Some(st), error: None };
                }
                Landed::Refused(code, detail) if code == "TOOBIG" => {
                    Failure::fatal("toobig", format!("the result could not be stored: {detail}"))
                }
                other => return lost(other),
            }
        }
        (None, Ok(_)) => Failure::fatal("payload", "the payload could not be read"),
        (_, Err(f)) => f,
    };
    let f = Failure { message: sh.redactor.scrub(&f.message), ..f };
    match until_landed(sh, job, "final update", &update_error(job, &f, &sh.redactor)).await {
        Landed::Status(st) => {
            let outcome = if st == "error" { "failed" } else { "retry" };
            Outcome { outcome, class: f.class, status: Some(st), error: Some(f.message) }
        }
        other => lost(other),
    }
}

fn lost(l: Landed) -> Outcome {
    match l {
        Landed::Refused(code, detail) => {
            Outcome { outcome: "lost", class: code.to_ascii_lowercase(), status: None, error: Some(detail) }
        }
        Landed::GaveUp => Outcome {
            outcome: "lost",
            class: "unreachable".into(),
            status: None,
            error: Some("Redis stayed unreachable through the shutdown".into()),
        },
        Landed::Status(st) => Outcome { outcome: "done", class: String::new(), status: Some(st), error: None },
    }
}

/// Gives a job back without counting the attempt. True when it landed.
async fn release(sh: &Shared, job: &Job) -> bool {
    let mut cmd = redis::cmd("JOB.RELEASE");
    cmd.arg(&job.queue).arg(&job.id).arg("TOKEN").arg(&job.token);
    match until_landed(sh, job, "release", &cmd).await {
        Landed::Status(_) => {
            info!(queue = %job.queue, id = %job.id, "released");
            true
        }
        Landed::Refused(code, _) => {
            info!(queue = %job.queue, id = %job.id, code, "release refused");
            false
        }
        Landed::GaveUp => {
            warn!(queue = %job.queue, id = %job.id, "release never landed; the lease will expire");
            false
        }
    }
}
