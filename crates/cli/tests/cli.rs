//! The `keycard-broker` binary end to end: real zone emulator (oidc-provider), real
//! gnome-keyring, the authorize URL followed by an HTTP client as a browser would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use testkit::{ZoneEmulator, free_port};

mod common;

use common::{Home, hint_line, one_line_error};

const FIXTURE: &str = "http://127.0.0.1:9/api";

#[tokio::test]
async fn full_lifecycle_through_the_cli() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    home.init(&zone.issuer).await;

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
    let run = home.run(&["check", FIXTURE]).await;
    let err = one_line_error(&run);
    assert!(err.contains("reconnect"), "{err}");
    assert_eq!(run.code, 2);
    assert_eq!(
        hint_line(&run),
        format!("Run `keycard-broker reconnect {FIXTURE}`.")
    );
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
    testkit::assert_signed_in_and_connected(&profile, FIXTURE);

    home.ok(&["revoke", FIXTURE]).await;
    assert_eq!(
        Home::connection(&home.status().await, FIXTURE)["status"],
        "revoked"
    );
    let run = home.run(&["check", FIXTURE]).await;
    let err = one_line_error(&run);
    assert!(err.contains("not connected"), "{err}");
    assert_eq!(
        hint_line(&run),
        format!("Run `keycard-broker connect {FIXTURE}`.")
    );
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

    // Each failure: one `error:` line, the exit code of its kind, and (where one helps) the
    // next step on the line after it.
    let run = home.run(&["login", "--no-browser"]).await;
    assert!(one_line_error(&run).contains("no Keycard zone configured"));
    assert_eq!(run.code, 2);
    assert!(
        hint_line(&run).contains("keycard-broker init --zone"),
        "{}",
        run.stderr
    );

    let run = home.run(&["init", "--zone", "http://evil.example"]).await;
    assert!(one_line_error(&run).contains("https"), "{}", run.stderr);
    assert_eq!(run.code, 1);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let run = home.run(&["init", "--zone", &dead]).await;
    assert!(
        one_line_error(&run).contains("cannot reach"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 3);
    zone.control("discovery", json!({"issuer": "http://elsewhere.example"}))
        .await;
    let run = home.run(&["init", "--zone", &zone.issuer]).await;
    assert!(one_line_error(&run).contains("issuer"), "{}", run.stderr);
    assert_eq!(run.code, 3);
    zone.control("discovery", json!({"issuer": null})).await;

    home.init(&zone.issuer).await;
    let run = home.run(&["connect", "github", "--no-browser"]).await;
    assert!(
        one_line_error(&run).contains("not signed in"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 2);
    assert_eq!(hint_line(&run), "Run `keycard-broker login`.");
    let run = home.run(&["connect", "nope", "--no-browser"]).await;
    assert!(
        one_line_error(&run).contains("not a provider in the catalog"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 1);
    assert!(
        hint_line(&run).contains("resources add URL"),
        "{}",
        run.stderr
    );
    let run = home.run(&["resources", "add", "ftp://x"]).await;
    assert!(one_line_error(&run).contains("http"), "{}", run.stderr);
    assert_eq!(run.code, 1);

    // Port taken: a clear reason, not a hang.
    let _blocker = std::net::TcpListener::bind(("127.0.0.1", home.port)).unwrap();
    let run = home.run(&["login", "--no-browser"]).await;
    assert!(
        one_line_error(&run).contains("already in use"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 5);
    assert!(hint_line(&run).contains("another port"), "{}", run.stderr);
    drop(_blocker);

    // No Secret Service: refuse, never fall back to plaintext.
    let mut cmd = home.command(&["status"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let run = home.run_with(cmd).await;
    let err = one_line_error(&run);
    assert!(
        err.contains("keychain unavailable") && err.contains("Secret Service"),
        "{err}"
    );
    assert_eq!(run.code, 4);

    // Corrupt config: the file and the fault are named, nothing is overwritten.
    let config = home.dir.path().join("config.toml");
    std::fs::write(&config, "[zone\nissuer = ").unwrap();
    let run = home.run(&["status"]).await;
    let err = one_line_error(&run);
    assert!(
        err.contains("config.toml") && err.contains("not a valid"),
        "{err}"
    );
    assert_eq!(run.code, 5);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[zone\nissuer = "
    );
}

#[tokio::test]
async fn a_port_change_never_costs_the_sign_in() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    home.init(&zone.issuer).await;
    assert_eq!(home.round(&["login", "--no-browser"]).await.code, 0);
    home.ok(&["resources", "add", FIXTURE]).await;
    assert_eq!(
        home.round(&["connect", FIXTURE, "--no-browser"]).await.code,
        0
    );
    let pinned = format!("http://localhost:{}/mcp", home.port);
    assert_eq!(home.status().await["resource"], pinned.as_str());

    // Another port from the environment, then from the config: each new process refreshes
    // the session for the identifier it was signed in for.
    let other = free_port().to_string();
    let mut check = home.command(&["check", FIXTURE]);
    check.env("KEYCARD_BROKER_PORT", &other);
    let run = home.run_with(check).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    home.ok(&["init", "--zone", &zone.issuer, "--port", &other])
        .await;
    home.ok(&["check", FIXTURE]).await;
    let status = home.status().await;
    assert_eq!(status["session"], "signed_in");
    assert_eq!(status["resource"], pinned.as_str());

    // A deliberate new identifier says plainly that it takes a new sign-in; nothing is lost
    // meanwhile.
    let out = home
        .ok(&[
            "init",
            "--zone",
            &zone.issuer,
            "--port",
            &other,
            "--resource",
            "http://localhost:7777/mcp",
        ])
        .await;
    assert!(
        out.contains("signed in for") && out.contains("keycard-broker login"),
        "{out}"
    );
    home.ok(&["check", FIXTURE]).await;

    // `--since` spans past the calendar are a usage error (exit 1), never a panic.
    for since in ["99999999999999d", "9999999999d"] {
        let run = home.run(&["audit", "--since", since]).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        let err = one_line_error(&run);
        assert!(err.contains("--since"), "{err}");
    }
    testkit::assert_no_leak(
        &zone.issued().await,
        home.dir.path(),
        &[&home.transcript.lock().unwrap().clone()],
    );
}

#[tokio::test]
async fn login_times_out_cleanly() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    home.init(&zone.issuer).await;
    let run = home.run(&["login", "--no-browser", "--timeout", "1"]).await;
    assert!(
        one_line_error(&run).contains("no answer from the browser"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code, 2);
    assert!(hint_line(&run).contains("--timeout"), "{}", run.stderr);
    assert_eq!(home.status().await["session"], "signed_out");
}
