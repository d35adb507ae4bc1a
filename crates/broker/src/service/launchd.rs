//! The launchd agent (`~/Library/LaunchAgents/cloud.keycard.broker.plist`): started at login
//! (`RunAtLoad`), started again when it exits with a failure (`KeepAlive` → `SuccessfulExit`
//! false), output in the broker's log folder. The plist text is built and tested everywhere;
//! `launchctl` runs only on macOS, where this code path has not been run by our tests.

use std::path::{Path, PathBuf};

use super::{Installed, Removed, Runner, ServiceError, ServiceStatus, Spec, said};

pub const LABEL: &str = "cloud.keycard.broker";

pub fn path(home: &Path) -> PathBuf {
    home.join("Library")
        .join("LaunchAgents")
        .join(format!("{LABEL}.plist"))
}

fn xml(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plist's text.
pub fn plist(spec: &Spec) -> String {
    let mut env = String::new();
    if !spec.env.is_empty() {
        env.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (name, value) in &spec.env {
            env.push_str(&format!(
                "    <key>{}</key>\n    <string>{}</string>\n",
                xml(name),
                xml(value)
            ));
        }
        env.push_str("  </dict>\n");
    }
    let log = xml(&spec.log_dir.join("service.log").display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `keycard-broker service install`; `keycard-broker service uninstall` removes it. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{exe}</string>
    <string>serve</string>
  </array>
{env}  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>10</integer>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#,
        exe = xml(&spec.exe.display().to_string()),
    )
}

/// `gui/<uid>`: the login session's launchd domain.
fn domain(runner: &dyn Runner) -> Result<String, ServiceError> {
    let out = runner
        .run("id", &["-u"])
        .map_err(|e| ServiceError::Manager {
            command: "id -u".into(),
            output: e.to_string(),
        })?;
    Ok(format!("gui/{}", out.stdout.trim()))
}

fn launchctl(runner: &dyn Runner, args: &[&str]) -> Result<super::Output, ServiceError> {
    let failed = |output: String| ServiceError::Manager {
        command: format!("launchctl {}", args.join(" ")),
        output,
    };
    let out = runner
        .run("launchctl", args)
        .map_err(|e| failed(e.to_string()))?;
    if out.success {
        Ok(out)
    } else {
        Err(failed(said(&out)))
    }
}

pub fn install(spec: &Spec, path: &Path, runner: &dyn Runner) -> Result<Installed, ServiceError> {
    let text = plist(spec);
    super::write_file(path, &text, 0o644)?;
    let file = path.display().to_string();
    let verified = match runner.run("plutil", &["-lint", &file]) {
        Ok(out) if out.success => Some(true),
        Ok(out) => {
            return Err(ServiceError::Invalid {
                tool: "plutil -lint".into(),
                output: said(&out),
            });
        }
        Err(_) => None,
    };
    let domain = domain(runner)?;
    let target = format!("{domain}/{LABEL}");
    // An earlier version may be loaded: unload it first (failing when none is, which is fine).
    let _ = runner.run("launchctl", &["bootout", &target]);
    launchctl(runner, &["bootstrap", &domain, &file])?;
    let started = running(runner, &target);
    Ok(Installed {
        manager: "launchd".into(),
        file,
        verified,
        manager_running: true,
        started,
        message: format!(
            "Keycard Broker runs as the launchd agent {LABEL} and starts at login; output: {}.",
            spec.log_dir.join("service.log").display()
        ),
    })
}

fn running(runner: &dyn Runner, target: &str) -> bool {
    runner
        .run("launchctl", &["print", target])
        .is_ok_and(|o| o.success && o.stdout.lines().any(|l| l.trim() == "state = running"))
}

pub fn uninstall(path: &Path, runner: &dyn Runner) -> Result<Removed, ServiceError> {
    if let Ok(domain) = domain(runner) {
        let _ = runner.run("launchctl", &["bootout", &format!("{domain}/{LABEL}")]);
    }
    let removed = super::remove_file(path)?;
    let file = path.display().to_string();
    Ok(Removed {
        manager: "launchd".into(),
        message: if removed {
            format!("Stopped {LABEL} and removed {file}.")
        } else {
            format!("No service was installed ({file} does not exist).")
        },
        file,
        removed,
        manager_running: true,
    })
}

pub fn status(path: &Path, broker_answers: bool, runner: &dyn Runner) -> ServiceStatus {
    let installed = path.exists();
    let running = domain(runner).is_ok_and(|d| self::running(runner, &format!("{d}/{LABEL}")));
    let file = path.display().to_string();
    ServiceStatus {
        manager: "launchd".into(),
        message: match (installed, running) {
            (false, _) => format!("The service is not installed ({file} does not exist)."),
            (true, true) => format!("{LABEL} is running."),
            (true, false) => format!("{LABEL} is installed but not running."),
        },
        file,
        installed,
        manager_running: true,
        state: Some(if running { "running" } else { "not running" }.into()),
        enabled: Some(installed),
        running,
        broker_answers,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_plist_is_a_valid_property_list() {
        let spec = Spec {
            exe: "/Applications/Keycard Broker.app/Contents/MacOS/keycard-broker".into(),
            env: vec![("KEYCARD_BROKER_HOME".into(), "/Users/a/<b & c>".into())],
            log_dir: "/Users/a/Library/Logs/keycard-broker".into(),
        };
        let text = plist(&spec);
        assert!(text.contains("<string>/Users/a/&lt;b &amp; c&gt;</string>"));
        assert!(text.contains("<key>RunAtLoad</key>\n  <true/>"));
        // Parsed by a real plist reader where one is installed (Python's plistlib).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.plist");
        std::fs::write(&file, &text).unwrap();
        let script =
            "import json,plistlib,sys; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))";
        let Ok(out) = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .output()
        else {
            eprintln!("python3 is not installed: the plist was not parsed");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["Label"], LABEL);
        assert_eq!(doc["ProgramArguments"][0], spec.exe.display().to_string());
        assert_eq!(doc["ProgramArguments"][1], "serve");
        assert_eq!(
            doc["EnvironmentVariables"]["KEYCARD_BROKER_HOME"],
            "/Users/a/<b & c>"
        );
        assert_eq!(doc["KeepAlive"]["SuccessfulExit"], false);
        assert_eq!(doc["RunAtLoad"], true);
    }
}
