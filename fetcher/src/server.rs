//! /healthz (200 when Redis answers PING, 503 otherwise) and /metrics (Prometheus text),
//! served by axum until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Metrics};
use crate::rconn::Redis;
use crate::secret::Redactor;

#[derive(Clone)]
struct Ctx {
    metrics: Arc<Metrics>,
    redis: Redis,
    redactor: Redactor,
}

/// The routes (GET and HEAD; other methods get 405, other paths 404).
fn router(metrics: Arc<Metrics>, redis: Redis, redactor: Redactor) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(Ctx { metrics, redis, redactor })
}

async fn metrics_text(State(c): State<Ctx>) -> impl IntoResponse {
    // Queue names come from the operator and Redis: scrubbed like every other output.
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], c.redactor.scrub(&c.metrics.render()))
}

async fn healthz(State(c): State<Ctx>) -> (StatusCode, &'static str) {
    let ping = tokio::time::timeout(Duration::from_secs(2), c.redis.query(&redis::cmd("PING"))).await;
    match ping {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable\n"),
    }
}

/// Serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    redis: Redis,
    redactor: Redactor,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    axum::serve(listener, router(metrics, redis, redactor))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(|e| anyhow::anyhow!("the metrics server: {e}"))
}

/// The server task, when --listen asked for one.
pub struct Running {
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stop: CancellationToken,
}

impl Running {
    pub fn start(addr: Option<SocketAddr>, metrics: &Arc<Metrics>, redis: &Redis, redactor: &Redactor) -> Running {
        let stop = CancellationToken::new();
        let task = addr.map(|a| tokio::spawn(serve(a, metrics.clone(), redis.clone(), redactor.clone(), stop.clone())));
        Running { task, stop }
    }

    /// Stops serving; logs how the server ended.
    pub async fn stop(self) {
        self.stop.cancel();
        let Some(task) = self.task else { return };
        match task.await {
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "the metrics server failed"),
            Err(e) => tracing::error!(error = %e, "the metrics server panicked"),
            Ok(Ok(())) => {}
        }
    }
}
