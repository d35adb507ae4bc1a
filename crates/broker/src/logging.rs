//! Logging for every shell, set up one way: stderr (filter from `KEYCARD_BROKER_LOG` or
//! `RUST_LOG`, else the shell's default) and a daily file `broker.log.*` in the log folder
//! (info and up), the folder the window's Settings shows. No token is ever logged, so the file
//! may be attached to a bug report.

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::Paths;

/// Keeps the file writer flushing; hold it for the life of the process.
#[must_use = "dropping the guard stops the log file writer"]
pub struct LogGuard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the logger for this process (the first call wins). The log folder comes from the
/// same environment as the config (`KEYCARD_BROKER_HOME`); when it cannot be created, logs go
/// to stderr only and a warning says why.
pub fn init(stderr_default: &str) -> LogGuard {
    let filter = std::env::var("KEYCARD_BROKER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(stderr_default));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let dir = Paths::from_env().map_err(|e| e.to_string()).and_then(|p| {
        std::fs::create_dir_all(&p.log_dir)
            .map(|()| p.log_dir.clone())
            .map_err(|e| format!("{}: {e}", p.log_dir.display()))
    });
    let (file, writer, problem) = match dir {
        Ok(dir) => {
            let appender = tracing_appender::rolling::daily(dir, "broker.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(EnvFilter::new("info"));
            (Some(layer), Some(guard), None)
        }
        Err(problem) => (None, None, Some(problem)),
    };
    let installed = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .is_ok();
    if let Some(problem) = problem {
        tracing::warn!(%problem, "no log file; logging to stderr only");
    }
    LogGuard {
        _writer: installed.then_some(writer).flatten(),
    }
}
