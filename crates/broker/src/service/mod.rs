//! The headless broker as a per-user service: a systemd user unit on Linux, a launchd agent on
//! macOS, both running `keycard-broker serve`. The unit and plist texts are pure functions;
//! every call to `systemctl`/`launchctl` goes through [`Runner`], so tests need neither.
//! (The tray app starts at login through Tauri's autostart plugin instead; run one or the
//! other: a second broker for the same home refuses to start.)

pub mod launchd;
pub mod systemd;

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Variables the service keeps from the shell that installs it: where the broker's home is and
/// the settings that override its config. Never the client secret (it would land in a file).
pub const PASSED_ENV: [&str; 4] = [
    "KEYCARD_BROKER_HOME",
    "KEYCARD_BROKER_PORT",
    "KEYCARD_ZONE",
    "KEYCARD_CLIENT_ID",
];

/// What the service runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// This `keycard-broker`, absolute.
    pub exe: PathBuf,
    pub env: Vec<(String, String)>,
    /// Where launchd writes the service's output (journald takes it on Linux).
    pub log_dir: PathBuf,
}

impl Spec {
    /// The running executable and the [`PASSED_ENV`] variables that are set
    /// (`KEYCARD_BROKER_HOME` made absolute: the service starts in another folder).
    pub fn current(log_dir: &Path) -> Result<Spec, ServiceError> {
        let exe = std::env::current_exe().map_err(|e| ServiceError::Io {
            path: PathBuf::from("the current executable"),
            reason: e.to_string(),
        })?;
        let mut env = Vec::new();
        for name in PASSED_ENV {
            let Some(value) = std::env::var_os(name) else {
                continue;
            };
            let value = if name == "KEYCARD_BROKER_HOME" {
                std::path::absolute(&value)
                    .unwrap_or_else(|_| PathBuf::from(&value))
                    .into_os_string()
            } else {
                value
            };
            let value = value
                .into_string()
                .map_err(|_| ServiceError::Unsupported(format!("{name} is not valid UTF-8")))?;
            env.push((name.to_string(), value));
        }
        Ok(Spec {
            exe,
            env,
            log_dir: log_dir.to_path_buf(),
        })
    }
}

/// One finished command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the service manager's tools.
pub trait Runner {
    /// `Err` with `NotFound` when the program is not installed.
    fn run(&self, program: &str, args: &[&str]) -> std::io::Result<Output>;
}

/// The real programs, on the PATH.
pub struct System;

impl Runner for System {
    fn run(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
        let out = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()?;
        Ok(Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot find the home directory")]
    NoHome,
    #[error("{path}: {reason}", path = path.display())]
    Io { path: PathBuf, reason: String },
    #[error("the generated service file does not validate ({tool}): {output}")]
    Invalid { tool: String, output: String },
    #[error("`{command}` failed: {output}")]
    Manager { command: String, output: String },
    #[error("{0}")]
    Unsupported(String),
}

/// What `install` did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// `systemd` or `launchd`.
    pub manager: String,
    pub file: String,
    /// The file passed `systemd-analyze verify` / `plutil -lint`; `None` when that tool is
    /// missing.
    pub verified: Option<bool>,
    /// A user service manager answered (systemd: `systemctl --user`).
    pub manager_running: bool,
    /// The service is enabled and running now.
    pub started: bool,
    pub message: String,
}

/// What `uninstall` did.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub manager: String,
    pub file: String,
    /// A file was there and is gone.
    pub removed: bool,
    pub manager_running: bool,
    pub message: String,
}

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub manager: String,
    pub file: String,
    pub installed: bool,
    pub manager_running: bool,
    /// The manager's word for it (`active`, `inactive`, `failed`, `running`, …), when asked.
    pub state: Option<String>,
    pub enabled: Option<bool>,
    /// The service manager says it runs.
    pub running: bool,
    /// A broker answers on this home's control socket (the service's, or another one's).
    pub broker_answers: bool,
    pub message: String,
}

/// Writes `text` to `path` atomically (a fresh file renamed into place), creating folders.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), ServiceError> {
    let io = |e: std::io::Error| ServiceError::Io {
        path: path.into(),
        reason: e.to_string(),
    };
    let dir = path
        .parent()
        .ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into()))?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".keycard-broker-")
        .tempfile_in(dir)
        .map_err(io)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn remove_file(path: &Path) -> Result<bool, ServiceError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ServiceError::Io {
            path: path.into(),
            reason: e.to_string(),
        }),
    }
}

/// The service file at its usual place for this platform.
pub fn default_path() -> Result<PathBuf, ServiceError> {
    let base = directories::BaseDirs::new().ok_or(ServiceError::NoHome)?;
    if cfg!(target_os = "macos") {
        Ok(launchd::path(base.home_dir()))
    } else {
        Ok(systemd::path(base.config_dir()))
    }
}

/// Installs (or updates) and starts the service where a manager runs.
pub fn install(spec: &Spec, path: &Path, runner: &dyn Runner) -> Result<Installed, ServiceError> {
    if cfg!(target_os = "macos") {
        launchd::install(spec, path, runner)
    } else if cfg!(target_os = "linux") {
        systemd::install(spec, path, runner)
    } else {
        Err(unsupported())
    }
}

pub fn uninstall(path: &Path, runner: &dyn Runner) -> Result<Removed, ServiceError> {
    if cfg!(target_os = "macos") {
        launchd::uninstall(path, runner)
    } else if cfg!(target_os = "linux") {
        systemd::uninstall(path, runner)
    } else {
        Err(unsupported())
    }
}

/// The manager's view of the service; `broker_answers`: whether a broker answers on the
/// home's control socket (the shell asks it).
pub fn status(
    path: &Path,
    broker_answers: bool,
    runner: &dyn Runner,
) -> Result<ServiceStatus, ServiceError> {
    if cfg!(target_os = "macos") {
        Ok(launchd::status(path, broker_answers, runner))
    } else if cfg!(target_os = "linux") {
        Ok(systemd::status(path, broker_answers, runner))
    } else {
        Err(unsupported())
    }
}

fn unsupported() -> ServiceError {
    ServiceError::Unsupported(
        "a background service is set up on Linux (systemd) and macOS (launchd) only; on Windows use the tray app's \"Start at login\"".into(),
    )
}

/// What a runner said, for an error message.
fn said(out: &Output) -> String {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    text.trim().to_string()
}
