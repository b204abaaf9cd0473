//! `akted`: the gRPC daemon of akte.
//!
//! `akted --data-dir ./data` starts on the embedded store with defaults: gRPC on
//! 127.0.0.1:50051 (plain text, loopback only), metrics on 127.0.0.1:9464, and, on the first
//! start, an admin token in `./data/bootstrap-token`. SIGTERM or SIGINT stop it gracefully:
//! no new connections, calls in flight drained (up to `--drain-timeout-secs`), store
//! flushed, exit 0.
//!
//! Exit codes: 0 after a graceful stop; 2 usage or configuration error; 3 any other error.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use akte_server::config::{Overrides, ServerConfig};
use akte_server::server::ServerError;

#[derive(Parser)]
#[command(
    name = "akted",
    version,
    about = "akted: the gRPC daemon of akte (records management for E-Akte)",
    long_about = "akted: the gRPC daemon of akte.\n\nSettings come from defaults, a TOML file (--config), AKTED_* environment variables and flags, later ones winning. Logs go to standard error; set AKTED_LOG (e.g. info, debug, akte_server=debug) to choose what is logged."
)]
struct Args {
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    // Before any thread exists (alloc.rs says why).
    akte_server::alloc::limit_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AKTED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = match ServerConfig::resolve(&args.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("akted: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match akte_server::server::runtime(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("akted: starting the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(run(cfg));
    // Blocking work still running after the drain deadline gets a moment to finish.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("akted: error: {e:#}");
            match e.downcast_ref::<ServerError>() {
                Some(ServerError::PlainTextNotLoopback(_)) | Some(ServerError::Tls(_)) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::from(3),
            }
        }
    }
}

async fn run(cfg: ServerConfig) -> Result<()> {
    let data_dir = cfg.data_dir.clone();
    let running = akte_server::server::start(cfg)
        .await
        .with_context(|| format!("starting akted on {}", data_dir.display()))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for SIGINT")?;
            tracing::info!("SIGINT received");
        }
    }
    running.shutdown().await.context("shutting down")?;
    Ok(())
}
