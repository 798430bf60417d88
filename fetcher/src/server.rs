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
use tokio::net::TcpListener;
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
    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    serve_on(listener, router(metrics, redis, redactor), stop).await
}

async fn serve_on(listener: TcpListener, router: Router, stop: CancellationToken) -> anyhow::Result<()> {
    axum::serve(listener, router)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, out)
    }

    #[tokio::test]
    async fn routes_statuses_and_content() {
        let metrics = Arc::new(Metrics::default());
        // Nothing listens on port 1: Redis is unreachable.
        let redis = Redis::new(&["redis://127.0.0.1:1".into()], false, Duration::from_secs(1), Arc::default()).unwrap();
        let redactor = Redactor::new([crate::secret::Secret::new("queue-secret-1")]);
        metrics.claimed("queue-secret-1", 1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_on(listener, router(metrics, redis, redactor), stop.clone()));

        let (status, text) = ask(addr, "GET", "/metrics?x=1").await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("content-type: text/plain; version=0.0.4"), "{text}");
        assert!(text.contains("aijob_fetcher_claims_total{queue=\"[redacted]\"} 1"), "{text}");
        let (status, text) = ask(addr, "HEAD", "/metrics").await;
        assert!(status == 200 && !text.contains("aijob_fetcher_in_flight"), "{text}");
        let (status, text) = ask(addr, "GET", "/healthz").await;
        assert!(status == 503 && text.ends_with("redis unreachable\n"), "{text}");
        assert_eq!(ask(addr, "GET", "/nope").await.0, 404);
        assert_eq!(ask(addr, "POST", "/metrics").await.0, 405);

        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
