//! Logging for every shell, set up one way: stderr (filter from `KEYCARD_BROKER_LOG` or
//! `RUST_LOG`, else the shell's default) and a daily file `broker.log.*` in the log folder
//! (info and up). No token is ever logged, so the file may be attached to a bug report.

use std::path::Path;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

/// Keeps the file writer flushing; hold it for the life of the process.
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Installs the logger (once per process; later calls change nothing). Without a log folder,
/// or when it cannot be created, logs go to stderr only.
pub fn init(log_dir: Option<&Path>, stderr_default: &str) -> LogGuard {
    let filter = std::env::var("KEYCARD_BROKER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(stderr_default));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let (file, guard) = match log_dir.map(|d| (d, std::fs::create_dir_all(d))) {
        Some((dir, Ok(()))) => {
            let appender = tracing_appender::rolling::daily(dir, "broker.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(EnvFilter::new("info"));
            (Some(layer), Some(guard))
        }
        _ => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    LogGuard(guard)
}
