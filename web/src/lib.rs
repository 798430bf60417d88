//! aijob-web: a dashboard for aijob. It talks to Redis only through aijob commands (and
//! XREAD of the documented events stream), so it works wherever the module runs,
//! Redis Cluster included. See docs/dashboard.md.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod aijob;
pub mod app;
pub mod backend;
pub mod config;
pub mod live;
pub mod security;
pub mod state;
pub mod time;
pub mod views;

use std::sync::Arc;

use tokio::net::TcpListener;

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    config: config::Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let backend = Arc::new(backend::Backend::new(&config.redis_url)?);
    let history = Arc::new(live::History::default());
    let sampler = tokio::spawn(live::sample_forever(backend.clone(), history.clone()));
    let state = state::AppState {
        config: Arc::new(config),
        backend,
        hub: Arc::new(live::Hub::default()),
        history,
        bulk: Default::default(),
    };
    let r = axum::serve(listener, app::router(state)).with_graceful_shutdown(shutdown).await;
    sampler.abort();
    Ok(r?)
}
