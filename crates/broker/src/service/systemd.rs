//! The systemd user unit (`~/.config/systemd/user/keycard-broker.service`): restarted on
//! failure, at most five times in five minutes (a broker that cannot start — no keychain,
//! another broker on the port — says why in the journal instead of looping), logs to journald.

use std::path::{Path, PathBuf};

use super::{Installed, Output, Removed, Runner, ServiceError, ServiceStatus, Spec, said};

pub const UNIT: &str = "keycard-broker.service";

/// `<config dir>/systemd/user/keycard-broker.service`.
pub fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("systemd").join("user").join(UNIT)
}

/// A value in a unit file: double-quoted, `\` and `"` escaped, `%` (specifiers) doubled, and
/// `$` doubled where the line expands variables (ExecStart).
fn quote(value: &str, in_command: bool) -> Result<String, ServiceError> {
    if value.chars().any(char::is_control) {
        return Err(ServiceError::Unsupported(format!(
            "{value:?} holds a control character a unit file cannot carry"
        )));
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if in_command => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// The unit's text.
pub fn unit(spec: &Spec) -> Result<String, ServiceError> {
    let mut env = String::new();
    for (name, value) in &spec.env {
        env.push_str(&format!(
            "Environment={}\n",
            quote(&format!("{name}={value}"), false)?
        ));
    }
    Ok(format!(
        "# Written by `keycard-broker service install`; `keycard-broker service uninstall` removes it.\n\
         [Unit]\n\
         Description=Keycard Broker (credential broker for AI agents)\n\
         StartLimitIntervalSec=300\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         Type=exec\n\
         ExecStart={exe} serve\n\
         {env}\
         Restart=on-failure\n\
         RestartSec=5\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe = quote(&spec.exe.display().to_string(), true)?,
    ))
}

/// `systemctl --user ARGS`, failing with what it said.
fn systemctl(runner: &dyn Runner, args: &[&str]) -> Result<Output, ServiceError> {
    let mut all = vec!["--user"];
    all.extend_from_slice(args);
    let failed = |output: String| ServiceError::Manager {
        command: format!("systemctl {}", all.join(" ")),
        output,
    };
    let out = runner
        .run("systemctl", &all)
        .map_err(|e| failed(e.to_string()))?;
    if out.success {
        Ok(out)
    } else {
        Err(failed(said(&out)))
    }
}

/// Whether a systemd user manager answers (none in containers, CI, or before a login session).
fn manager_running(runner: &dyn Runner) -> bool {
    runner
        .run("systemctl", &["--user", "show-environment"])
        .is_ok_and(|o| o.success)
}

/// Checks the unit with `systemd-analyze verify` under its own name in a scratch folder
/// before it replaces the installed one. `None`: the tool is not installed.
fn verify(text: &str, runner: &dyn Runner) -> Result<Option<bool>, ServiceError> {
    let io = |e: std::io::Error| ServiceError::Io {
        path: PathBuf::from("a scratch folder"),
        reason: e.to_string(),
    };
    let dir = tempfile::tempdir().map_err(io)?;
    let file = dir.path().join(UNIT);
    std::fs::write(&file, text).map_err(io)?;
    let file = file.display().to_string();
    match runner.run("systemd-analyze", &["verify", &file]) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(e)),
        Ok(out) if out.success => Ok(Some(true)),
        Ok(out) => Err(ServiceError::Invalid {
            tool: "systemd-analyze verify".into(),
            output: said(&out),
        }),
    }
}

pub fn install(spec: &Spec, path: &Path, runner: &dyn Runner) -> Result<Installed, ServiceError> {
    let text = unit(spec)?;
    let verified = verify(&text, runner)?;
    super::write_file(path, &text, 0o644)?;
    let file = path.display().to_string();
    let start = format!("systemctl --user daemon-reload && systemctl --user enable --now {UNIT}");
    if !manager_running(runner) {
        return Ok(Installed {
            manager: "systemd".into(),
            file: file.clone(),
            verified,
            manager_running: false,
            started: false,
            message: format!(
                "No systemd user manager is running, so nothing was started; the unit is written at {file}. Start it with `{start}` in a login session (on a server, `loginctl enable-linger $USER` keeps it running after you log out)."
            ),
        });
    }
    systemctl(runner, &["daemon-reload"])?;
    systemctl(runner, &["enable", UNIT])?;
    // restart, not start: a reinstall (another executable, other variables) takes effect now.
    systemctl(runner, &["restart", UNIT])?;
    let started = state(runner).as_deref() == Some("active");
    let message = if started {
        format!(
            "Keycard Broker runs as the systemd user service {UNIT} and starts at login; logs: `journalctl --user -u {UNIT}`."
        )
    } else {
        format!(
            "{UNIT} is installed and enabled but not running; see why with `journalctl --user -u {UNIT}`."
        )
    };
    Ok(Installed {
        manager: "systemd".into(),
        file,
        verified,
        manager_running: true,
        started,
        message,
    })
}

pub fn uninstall(path: &Path, runner: &dyn Runner) -> Result<Removed, ServiceError> {
    let running = manager_running(runner);
    if running && path.exists() {
        systemctl(runner, &["disable", "--now", UNIT])?;
    }
    let removed = super::remove_file(path)?;
    if running && removed {
        systemctl(runner, &["daemon-reload"])?;
    }
    let file = path.display().to_string();
    let message = match (removed, running) {
        (false, _) => format!("No service was installed ({file} does not exist)."),
        (true, true) => format!("Stopped and disabled {UNIT}, and removed {file}."),
        (true, false) => format!(
            "Removed {file} (no systemd user manager is running, so there was nothing to stop)."
        ),
    };
    Ok(Removed {
        manager: "systemd".into(),
        file,
        removed,
        manager_running: running,
        message,
    })
}

/// `systemctl --user is-active`: it prints the state and exits non-zero unless active.
fn state(runner: &dyn Runner) -> Option<String> {
    runner
        .run("systemctl", &["--user", "is-active", UNIT])
        .ok()
        .map(|o| o.stdout.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn status(path: &Path, broker_answers: bool, runner: &dyn Runner) -> ServiceStatus {
    let installed = path.exists();
    let manager_running = manager_running(runner);
    let (state, enabled) = if manager_running {
        let enabled = runner
            .run("systemctl", &["--user", "is-enabled", UNIT])
            .ok()
            .map(|o| o.stdout.trim() == "enabled");
        (state(runner), enabled)
    } else {
        (None, None)
    };
    let running = state.as_deref() == Some("active");
    let file = path.display().to_string();
    let message = match (installed, manager_running, running) {
        (false, ..) => format!("The service is not installed ({file} does not exist)."),
        (true, false, _) => format!(
            "Installed at {file}, but no systemd user manager is running, so it is not running as a service."
        ),
        (true, true, true) => format!("{UNIT} is running."),
        (true, true, false) => format!(
            "{UNIT} is installed but {}; see `journalctl --user -u {UNIT}`.",
            state.as_deref().unwrap_or("not running")
        ),
    };
    ServiceStatus {
        manager: "systemd".into(),
        file,
        installed,
        manager_running,
        state,
        enabled,
        running,
        broker_answers,
        message,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Mutex;

    use super::*;

    /// Records every call; `manager` says whether `systemctl --user` answers.
    struct Fake {
        manager: bool,
        calls: Mutex<Vec<String>>,
    }

    impl Runner for Fake {
        fn run(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{program} {}", args.join(" ")));
            match (program, args) {
                ("systemd-analyze", _) => Err(std::io::ErrorKind::NotFound.into()),
                ("systemctl", [_, "is-active", _]) => Ok(Output {
                    success: self.manager,
                    stdout: if self.manager { "active\n" } else { "" }.into(),
                    stderr: String::new(),
                }),
                _ => Ok(Output {
                    success: self.manager,
                    ..Output::default()
                }),
            }
        }
    }

    fn spec() -> Spec {
        Spec {
            exe: "/opt/Keycard Broker/bin/keycard-broker".into(),
            env: vec![("KEYCARD_BROKER_HOME".into(), "/home/a/100%$x \"q\"".into())],
            log_dir: "/tmp".into(),
        }
    }

    #[test]
    fn the_unit_quotes_paths_and_escapes_specifiers() {
        let text = unit(&spec()).unwrap();
        assert!(
            text.contains("ExecStart=\"/opt/Keycard Broker/bin/keycard-broker\" serve\n"),
            "{text}"
        );
        assert!(
            text.contains("Environment=\"KEYCARD_BROKER_HOME=/home/a/100%%$x \\\"q\\\"\"\n"),
            "{text}"
        );
        for line in [
            "Restart=on-failure",
            "StandardOutput=journal",
            "WantedBy=default.target",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}");
        }
        let dollar = Spec {
            exe: "/a$b/kb".into(),
            env: vec![],
            log_dir: "/".into(),
        };
        assert!(
            unit(&dollar)
                .unwrap()
                .contains("ExecStart=\"/a$$b/kb\" serve")
        );
        let newline = Spec {
            exe: "/a\nb".into(),
            env: vec![],
            log_dir: "/".into(),
        };
        assert!(unit(&newline).is_err());
    }

    #[test]
    fn install_enables_and_restarts_where_a_manager_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let fake = Fake {
            manager: true,
            calls: Mutex::default(),
        };
        let done = install(&spec(), &path, &fake).unwrap();
        assert!(done.started && done.manager_running);
        assert_eq!(done.verified, None);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            unit(&spec()).unwrap()
        );
        let calls = fake.calls.lock().unwrap().clone();
        let tail: Vec<&str> = calls.iter().map(String::as_str).skip(2).collect();
        assert_eq!(
            tail,
            [
                "systemctl --user daemon-reload",
                "systemctl --user enable keycard-broker.service",
                "systemctl --user restart keycard-broker.service",
                "systemctl --user is-active keycard-broker.service",
            ]
        );
        let status = status(&path, false, &fake);
        assert!(status.installed && status.running);
        let gone = uninstall(&path, &fake).unwrap();
        assert!(gone.removed && !path.exists());
        assert!(
            fake.calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c == "systemctl --user disable --now keycard-broker.service")
        );
    }

    #[test]
    fn without_a_manager_the_unit_is_written_and_nothing_is_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let fake = Fake {
            manager: false,
            calls: Mutex::default(),
        };
        let done = install(&spec(), &path, &fake).unwrap();
        assert!(!done.started && !done.manager_running);
        assert!(
            done.message
                .starts_with("No systemd user manager is running"),
            "{}",
            done.message
        );
        assert!(path.exists());
        assert!(
            !fake
                .calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.contains("enable"))
        );
        let status = status(&path, false, &fake);
        assert!(status.installed && !status.running && status.state.is_none());
        assert!(uninstall(&path, &fake).unwrap().removed);
        assert!(
            !uninstall(&path, &fake).unwrap().removed,
            "a second uninstall finds nothing"
        );
    }
}
