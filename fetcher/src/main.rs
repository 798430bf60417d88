//! aijob-fetcher: flags and wiring. The work is in `worker`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod config;
mod cooldown;
mod fallback;
mod limits;
mod metrics;
mod outcome;
mod placeholders;
mod providers;
mod queues;
mod rconn;
mod redis_url;
mod secret;
mod server;
mod text;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args = config::Args::parse();
    let cfg = match config::Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aijob-fetcher: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logs(&cfg);
    tracing::debug!(config = ?cfg, "configuration");
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aijob-fetcher: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fetcher failed");
            ExitCode::from(1)
        }
    }
}

async fn run(cfg: config::Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let force = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (s, f) = (shutdown.clone(), force.clone());
    tokio::spawn(async move {
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        tracing::info!(signal = name, "stopping: no more claims");
        s.cancel();
        let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
        tracing::warn!(signal = name, "second signal: aborting the running calls now");
        f.cancel();
    });
    worker::run(cfg, shutdown, force).await
}

fn init_logs(cfg: &config::Config) {
    let b = tracing_subscriber::fmt()
        .with_max_level(cfg.log_level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match cfg.log_format {
        config::LogFormat::Json => b.json().flatten_event(true).init(),
        config::LogFormat::Text => b.init(),
    }
}
