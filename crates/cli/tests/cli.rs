//! The `keycard-broker` binary end to end: real zone emulator (oidc-provider), real
//! gnome-keyring, the authorize URL followed by an HTTP client as a browser would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use serde_json::{Value, json};
use testkit::{ZoneEmulator, authorize, callback_prefix, free_port};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const FIXTURE: &str = "http://127.0.0.1:9/api";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

struct Home {
    dir: tempfile::TempDir,
    port: u16,
    /// Everything the binary printed, for the leak check.
    transcript: std::sync::Mutex<String>,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            transcript: Default::default(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycard-broker"));
        cmd.args(args)
            .env("KEYCARD_BROKER_HOME", self.dir.path())
            // Debug logs from every crate: the leak check covers the chattiest setting.
            .env("RUST_LOG", "debug")
            .env_remove("KEYCARD_ZONE")
            .env_remove("KEYCARD_CLIENT_ID")
            .env_remove("KEYCARD_CLIENT_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn record(&self, run: &Run) {
        let mut t = self.transcript.lock().unwrap();
        t.push_str(&run.stdout);
        t.push_str(&run.stderr);
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(args)).await
    }

    async fn run_with(&self, mut cmd: Command) -> Run {
        let out = cmd.output().await.unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        };
        self.record(&run);
        run
    }

    async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a browser round (`login`/`connect`/`reconnect --no-browser`): the first stdout
    /// line is the authorization URL, which the test follows like a browser.
    async fn round(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).await.unwrap();
        assert!(
            first.starts_with("http://127.0.0.1:"),
            "first line is the URL: {first:?}"
        );
        let (status, page) = authorize(first.trim(), &callback_prefix(self.port)).await;
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).await.unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        let code = child.wait().await.unwrap().code().unwrap_or(-1);
        let run = Run {
            code,
            stdout: first + &rest,
            stderr,
        };
        self.record(&run);
        assert_eq!(status, 200, "callback page: {page}");
        run
    }

    async fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"]).await).unwrap()
    }

    fn connection<'a>(status: &'a Value, resource: &str) -> &'a Value {
        status["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["resource"] == resource)
            .unwrap_or_else(|| panic!("{resource} not in {status}"))
    }
}

fn one_line_error(run: &Run) -> String {
    assert_ne!(run.code, 0, "expected failure, got: {}", run.stdout);
    let line = run
        .stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in {:?}", run.stderr));
    line.to_string()
}

#[tokio::test]
async fn full_lifecycle_through_the_cli() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    let port = home.port.to_string();
    home.ok(&["init", "--zone", &zone.issuer, "--port", &port])
        .await;

    let login = home.round(&["login", "--no-browser"]).await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert!(login.stdout.contains("Signed in"), "{}", login.stdout);
    let status = home.status().await;
    assert_eq!(status["zone"], zone.issuer.as_str());
    assert_eq!(status["session"], "signed_in");
    assert_eq!(status["account"], "demo@keycard.test");

    home.ok(&[
        "resources",
        "add",
        FIXTURE,
        "--name",
        "Fixture API",
        "--scopes",
        "read write",
    ])
    .await;
    let connect = home.round(&["connect", FIXTURE, "--no-browser"]).await;
    assert_eq!(connect.code, 0, "{}", connect.stderr);
    // A seed provider by its catalog name.
    let github = home.round(&["connect", "github", "--no-browser"]).await;
    assert_eq!(github.code, 0, "{}", github.stderr);

    let status = home.status().await;
    let fixture = Home::connection(&status, FIXTURE);
    assert_eq!(fixture["status"], "connected");
    assert_eq!(fixture["name"], "Fixture API");
    assert_eq!(fixture["scopes"], json!(["read", "write"]));
    assert!(fixture["connected_at"].is_string());
    for key in [
        "resource",
        "name",
        "status",
        "scopes",
        "connected_at",
        "last_used_at",
        "last_error",
    ] {
        assert!(fixture.get(key).is_some(), "status --json lacks {key}");
    }
    assert_eq!(
        Home::connection(&status, "https://api.github.com")["name"],
        "GitHub"
    );

    let check: Value = serde_json::from_str(&home.ok(&["check", FIXTURE, "--json"]).await).unwrap();
    assert_eq!(check["scopes"], json!(["read", "write"]));
    assert!(Home::connection(&home.status().await, FIXTURE)["last_used_at"].is_string());

    // The zone narrows the grant: the broker says reconnect, the status shows it.
    zone.control("narrow", json!({"resource": FIXTURE, "scopes": ["read"]}))
        .await;
    let err = one_line_error(&home.run(&["check", FIXTURE]).await);
    assert!(err.contains("reconnect"), "{err}");
    let status = home.status().await;
    assert_eq!(
        Home::connection(&status, FIXTURE)["status"],
        "needs_reconnect"
    );
    assert!(Home::connection(&status, FIXTURE)["last_error"].is_string());
    let reconnect = home.round(&["reconnect", FIXTURE, "--no-browser"]).await;
    assert_eq!(reconnect.code, 0, "{}", reconnect.stderr);
    assert_eq!(
        Home::connection(&home.status().await, FIXTURE)["status"],
        "connected"
    );
    home.ok(&["check", FIXTURE]).await;

    let profile = {
        let config = broker::config::Config::load(Some(home.dir.path())).unwrap();
        config.profile()
    };
    let entries = testkit::keychain_entries(&profile);
    assert!(
        entries.contains(&format!("{profile}/session")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&format!("{profile}/connection/{FIXTURE}")),
        "{entries:?}"
    );

    home.ok(&["revoke", FIXTURE]).await;
    assert_eq!(
        Home::connection(&home.status().await, FIXTURE)["status"],
        "revoked"
    );
    let err = one_line_error(&home.run(&["check", FIXTURE]).await);
    assert!(err.contains("not connected"), "{err}");
    assert!(
        !testkit::keychain_entries(&profile).contains(&format!("{profile}/connection/{FIXTURE}"))
    );

    home.ok(&["logout"]).await;
    assert_eq!(home.status().await["session"], "signed_out");
    assert!(testkit::keychain_entries(&profile).is_empty());

    let transcript = home.transcript.lock().unwrap().clone();
    testkit::assert_no_leak(&zone.issued().await, home.dir.path(), &[&transcript]);
    let logs = testkit::files_under(&home.dir.path().join("logs"));
    assert!(!logs.is_empty(), "the broker writes a log file");
}

#[tokio::test]
async fn failures_are_one_line_reasons() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    let port = home.port.to_string();

    let err = one_line_error(&home.run(&["login", "--no-browser"]).await);
    assert!(err.contains("no Keycard zone configured"), "{err}");

    let err = one_line_error(&home.run(&["init", "--zone", "http://evil.example"]).await);
    assert!(err.contains("https"), "{err}");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let err = one_line_error(&home.run(&["init", "--zone", &dead]).await);
    assert!(err.contains("cannot reach"), "{err}");
    zone.control("discovery", json!({"issuer": "http://elsewhere.example"}))
        .await;
    let err = one_line_error(&home.run(&["init", "--zone", &zone.issuer]).await);
    assert!(err.contains("issuer"), "{err}");
    zone.control("discovery", json!({"issuer": null})).await;

    home.ok(&["init", "--zone", &zone.issuer, "--port", &port])
        .await;
    let err = one_line_error(&home.run(&["connect", "github", "--no-browser"]).await);
    assert!(err.contains("not signed in"), "{err}");
    let err = one_line_error(&home.run(&["connect", "nope", "--no-browser"]).await);
    assert!(err.contains("not a provider in the catalog"), "{err}");
    let err = one_line_error(&home.run(&["resources", "add", "ftp://x"]).await);
    assert!(err.contains("http"), "{err}");

    // Port taken: a clear reason, not a hang.
    let _blocker = std::net::TcpListener::bind(("127.0.0.1", home.port)).unwrap();
    let err = one_line_error(&home.run(&["login", "--no-browser"]).await);
    assert!(err.contains("already in use"), "{err}");
    drop(_blocker);

    // No Secret Service: refuse, never fall back to plaintext.
    let mut cmd = home.command(&["status"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let err = one_line_error(&home.run_with(cmd).await);
    assert!(
        err.contains("keychain unavailable") && err.contains("Secret Service"),
        "{err}"
    );

    // Corrupt config: the file and the fault are named, nothing is overwritten.
    let config = home.dir.path().join("config.toml");
    std::fs::write(&config, "[zone\nissuer = ").unwrap();
    let err = one_line_error(&home.run(&["status"]).await);
    assert!(
        err.contains("config.toml") && err.contains("not a valid"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[zone\nissuer = "
    );
}

#[tokio::test]
async fn login_times_out_cleanly() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    home.ok(&[
        "init",
        "--zone",
        &zone.issuer,
        "--port",
        &home.port.to_string(),
    ])
    .await;
    let err = one_line_error(&home.run(&["login", "--no-browser", "--timeout", "1"]).await);
    assert!(err.contains("no answer from the browser"), "{err}");
    assert_eq!(home.status().await["session"], "signed_out");
}
