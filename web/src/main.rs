//! aijob-web: `aijob-web --listen 127.0.0.1:8080 --redis-url redis://127.0.0.1:6379`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use clap::Parser;

use aijob_web::config::{redact_url, Args, Config};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
    let config = match Config::from_args(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aijob-web: {e}");
            std::process::exit(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aijob-web: cannot listen on {}: {e}", config.listen);
            std::process::exit(2);
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    eprintln!(
        "aijob-web: serving http://{addr} for {}{}",
        redact_url(&config.redis_url),
        if config.read_only { " (read-only)" } else { "" }
    );
    let shutdown = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    if let Err(e) = aijob_web::serve(config, listener, shutdown).await {
        eprintln!("aijob-web: {e}");
        std::process::exit(1);
    }
}
