//! `--json` on every command, the error document, exit codes by error code, and the next step
//! a human failure names. Real zone emulator and gnome-keyring, as in the other suites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use testkit::{ZoneEmulator, free_port};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

mod common;

use common::{Home, hint_line, json_doc, json_error, one_line_error, stack};

const FIXTURE: &str = "http://127.0.0.1:9/api";

enum Want {
    /// Success: the JSON pointer in the document holds this value.
    Ok(&'static str, Value),
    /// Success with any document.
    Any,
    /// Failure with this code.
    Err(&'static str),
}

/// The subcommands `--help` lists (without `help`).
async fn subcommands(home: &Home, args: &[&str]) -> Vec<String> {
    let help = home.ok(&[args, &["--help"][..]].concat()).await;
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_command_answers_in_json_without_a_zone() {
    let home = Home::new();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let table: Vec<(Vec<&str>, Want)> = vec![
        (vec!["status"], Want::Ok("/session", json!("signed_out"))),
        (vec!["about"], Want::Ok("/zone", Value::Null)),
        (vec!["login", "--no-browser"], Want::Err("not_configured")),
        (
            vec!["connect", "github", "--no-browser"],
            Want::Err("not_signed_in"),
        ),
        (
            vec!["reconnect", "github", "--no-browser"],
            Want::Err("not_signed_in"),
        ),
        (vec!["check", "github"], Want::Err("not_connected")),
        (vec!["revoke", "github"], Want::Err("not_connected")),
        (vec!["logout"], Want::Ok("/session", json!("signed_out"))),
        (
            vec![
                "resources",
                "add",
                "https://api.example.com/v1",
                "--name",
                "Example",
            ],
            Want::Ok("/name", json!("Example")),
        ),
        (vec!["resources", "list"], Want::Any),
        (
            vec!["resources", "remove", "https://api.example.com/v1"],
            Want::Ok("/ok", json!(true)),
        ),
        (vec!["resources", "remove", "nope"], Want::Err("not_found")),
        (
            vec!["resources", "add", "ftp://x"],
            Want::Err("invalid_input"),
        ),
        (
            vec!["clients", "add", "agent-a"],
            Want::Ok("/name", json!("agent-a")),
        ),
        (
            vec!["clients", "add", "agent-a"],
            Want::Err("already_exists"),
        ),
        (
            vec!["clients", "access", "agent-a", "github=read", "*=ask"],
            Want::Ok("/client", json!("agent-a")),
        ),
        (
            vec!["clients", "access", "agent-a", "nowhere=read"],
            Want::Err("not_found"),
        ),
        (
            vec!["clients", "list"],
            Want::Ok("/0/access/0", json!(["*", "ask"])),
        ),
        (vec!["clients", "signout", "nobody"], Want::Err("not_found")),
        (vec!["approvals"], Want::Err("not_running")),
        (
            vec!["approve", "abc", "--for", "1h"],
            Want::Err("not_running"),
        ),
        (
            vec!["approve", "abc", "--for", "2h"],
            Want::Err("invalid_input"),
        ),
        (vec!["deny", "abc"], Want::Err("not_running")),
        (
            vec!["policy", "check"],
            Want::Ok("/file_exists", json!(false)),
        ),
        (vec!["policy", "show", "--client", "agent-a"], Want::Any),
        (
            vec!["clients", "config", "cursor", "agent-a"],
            Want::Ok("/kind", json!("cursor")),
        ),
        (
            vec!["clients", "kinds"],
            Want::Ok("/0/kind", json!("claude-code")),
        ),
        (
            vec!["clients", "remove", "agent-a"],
            Want::Ok("/removed", json!("agent-a")),
        ),
        (vec!["clients", "remove", "agent-a"], Want::Err("not_found")),
        (
            vec!["clients", "config", "emacs", "x"],
            Want::Err("invalid_input"),
        ),
        (
            vec!["remote", "ssh", "devbox", "--remote-user", "alice"],
            Want::Ok("/client", json!("ssh-devbox")),
        ),
        (
            vec!["remote", "devcontainer", "--folder", "/nowhere/web"],
            Want::Ok("/client", json!("devcontainer-web")),
        ),
        (
            vec!["remote", "ssh", "-oProxyCommand=x"],
            Want::Err("invalid_input"),
        ),
        (vec!["service", "status"], Want::Any),
        // install and uninstall act on this user's real service: their runs are in remote.rs,
        // with HOME in a temp folder.
        (
            vec!["service", "install", "--now"],
            Want::Err("invalid_input"),
        ),
        (
            vec!["service", "uninstall", "--now"],
            Want::Err("invalid_input"),
        ),
        (vec!["audit"], Want::Ok("", json!([]))),
        (vec!["audit", "--since", "5x"], Want::Err("invalid_input")),
        (vec!["pause"], Want::Err("not_running")),
        (vec!["resume"], Want::Err("not_running")),
        (
            vec!["stdio", "--client", "desk"],
            Want::Err("not_configured"),
        ),
        (
            vec!["stdio", "--token-env", "KCB_TEST_UNSET_TOKEN"],
            Want::Err("not_configured"),
        ),
        (
            vec![
                "bridge",
                "--listen",
                "10.0.0.1:9",
                "--socket",
                "/nonexistent",
            ],
            Want::Err("invalid_input"),
        ),
        (
            vec!["serve", "--port", taken_port.as_str()],
            Want::Err("port_in_use"),
        ),
        (
            vec!["init", "--zone", dead.as_str()],
            Want::Err("zone_unreachable"),
        ),
        (
            vec!["init", "--zone", "http://evil.example"],
            Want::Err("invalid_input"),
        ),
        (vec!["nope"], Want::Err("invalid_input")),
        (vec![], Want::Err("invalid_input")),
    ];

    // The table covers every command the binary has.
    let mut listed = subcommands(&home, &[]).await;
    for group in ["clients", "resources", "policy", "remote", "service"] {
        listed.retain(|c| c != group);
        for sub in subcommands(&home, &[group]).await {
            listed.push(format!("{group} {sub}"));
        }
    }
    assert_eq!(listed.len(), 35, "{listed:?}");
    for command in &listed {
        assert!(
            table
                .iter()
                .any(|(args, _)| args.join(" ").starts_with(command.as_str())),
            "`{command}` is not in the --json table"
        );
    }

    for (args, want) in &table {
        let mut with_json = args.clone();
        with_json.push("--json");
        let run = home.run(&with_json).await;
        match want {
            Want::Ok(pointer, value) => {
                assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
                let doc = json_doc(&run);
                assert!(doc.get("error").is_none(), "{args:?}: {doc}");
                assert_eq!(doc.pointer(pointer), Some(value), "{args:?}: {doc}");
            }
            Want::Any => {
                assert_eq!(run.code, 0, "{args:?}: {}{}", run.stdout, run.stderr);
                assert!(json_doc(&run).get("error").is_none(), "{args:?}");
            }
            Want::Err(code) => {
                json_error(&run, code);
            }
        }
    }
    // `--json` before the command means the same.
    let run = home.run(&["--json", "status"]).await;
    assert_eq!(json_doc(&run)["session"], "signed_out");
    // Help and version are not failures.
    assert_eq!(home.run(&["--help", "--json"]).await.code, 0);
    assert_eq!(home.run(&["--version"]).await.code, 0);
    drop(taken);
}

#[tokio::test]
async fn a_client_config_that_cannot_be_written_still_shows_its_new_token() {
    let home = Home::new();
    let not_a_dir = home.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").unwrap();
    let file = not_a_dir.join("mcp.json");
    let file = file.to_str().unwrap();

    let run = home
        .run(&[
            "clients",
            "config",
            "cursor",
            "desk",
            "--static-token",
            "--file",
            file,
            "--json",
        ])
        .await;
    let doc = json_doc(&run);
    assert_eq!(doc["error"]["code"], "config_file", "{doc}");
    assert_eq!(run.code, 5);
    let token = doc["token"].as_str().unwrap();
    assert!(token.starts_with("kcb_"), "{doc}");
    assert!(doc["snippet"].as_str().unwrap().contains(token), "{doc}");
    assert!(doc["written"].is_null());

    // Without --json: the entry on stdout, the write error and what to do on stderr.
    let run = home
        .run(&[
            "clients",
            "config",
            "cursor",
            "desk",
            "--static-token",
            "--file",
            file,
        ])
        .await;
    assert_eq!(run.code, 5);
    let entry: Value = serde_json::from_str(&run.stdout).unwrap();
    let bearer = entry["mcpServers"]["keycard-broker"]["headers"]["Authorization"]
        .as_str()
        .unwrap();
    assert!(bearer.starts_with("Bearer kcb_"), "{entry}");
    assert_ne!(bearer, format!("Bearer {token}"), "a new token each time");
    assert!(one_line_error(&run).contains("mcp.json"), "{}", run.stderr);
    assert!(hint_line(&run).contains("printed above"), "{}", run.stderr);
    // The client exists with the token printed last.
    let list = json_doc(&home.run(&["clients", "list", "--json"]).await);
    assert_eq!(list[0]["name"], "desk");
}

#[tokio::test]
async fn serve_json_says_it_is_ready_in_one_line() {
    let home = Home::new();
    let port = free_port().to_string();
    let mut child = home
        .command(&["serve", "--port", &port, "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("ready in time")
        .unwrap()
        .expect("a ready line");
    let about: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        about["mcp_url"],
        format!("http://127.0.0.1:{port}/mcp").as_str()
    );
    assert_eq!(about["port"], port.parse::<u16>().unwrap());
    assert!(about["data_dir"].is_string());
    // While it runs, pause answers in JSON through the control socket.
    let paused = json_doc(&home.run(&["pause", "--json"]).await);
    assert_eq!(paused["paused"], true);
    let resumed = json_doc(&home.run(&["resume", "--json"]).await);
    assert_eq!(resumed["paused"], false);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test]
async fn codes_exit_codes_and_hints_against_a_zone() {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    home.init(&zone.issuer).await;

    // Not signed in: 2, and the human error says to log in.
    json_error(
        &home
            .run(&["connect", "github", "--no-browser", "--json"])
            .await,
        "not_signed_in",
    );
    let run = home.run(&["connect", "github", "--no-browser"]).await;
    assert_eq!(run.code, 2);
    assert!(one_line_error(&run).contains("not signed in"));
    assert_eq!(hint_line(&run), "Run `keycard-broker login`.");

    // An unknown resource: 1, not_found; the hint says how to add one.
    json_error(&home.run(&["check", "nope", "--json"]).await, "not_found");
    let run = home.run(&["check", "nope"]).await;
    assert_eq!(run.code, 1);
    assert!(
        hint_line(&run).contains("keycard-broker resources add URL"),
        "{}",
        run.stderr
    );

    // Browser rounds with --json: the URL on stderr, one document on stdout.
    let login = home.round_json(&["login", "--no-browser"]).await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    let status = json_doc(&login);
    assert_eq!(status["session"], "signed_in");
    assert_eq!(status["account"], "demo@keycard.test");
    home.ok(&["resources", "add", FIXTURE, "--scopes", "read write"])
        .await;
    let connect = home.round_json(&["connect", FIXTURE, "--no-browser"]).await;
    assert_eq!(connect.code, 0, "{}", connect.stderr);
    assert_eq!(json_doc(&connect)["resource"], FIXTURE);
    let check = json_doc(&home.run(&["check", FIXTURE, "--json"]).await);
    assert_eq!(check["scopes"], json!(["read", "write"]));

    // Narrowed at the zone: needs_reconnect, 2, and the hint names reconnect.
    zone.control("narrow", json!({"resource": FIXTURE, "scopes": ["read"]}))
        .await;
    let error = json_error(
        &home.run(&["check", FIXTURE, "--json"]).await,
        "needs_reconnect",
    );
    assert!(error["resource"].is_string(), "{error}");
    let run = home.run(&["check", FIXTURE]).await;
    assert_eq!(run.code, 2);
    assert_eq!(
        hint_line(&run),
        format!("Run `keycard-broker reconnect {FIXTURE}`.")
    );
    let reconnect = home
        .round_json(&["reconnect", FIXTURE, "--no-browser"])
        .await;
    assert_eq!(reconnect.code, 0, "{}", reconnect.stderr);

    // Revoked: not_connected, and the hint names connect.
    let revoked = json_doc(&home.run(&["revoke", FIXTURE, "--json"]).await);
    assert_eq!(revoked["resource"], FIXTURE);
    json_error(
        &home.run(&["check", FIXTURE, "--json"]).await,
        "not_connected",
    );
    let run = home.run(&["check", FIXTURE]).await;
    assert_eq!(
        hint_line(&run),
        format!("Run `keycard-broker connect {FIXTURE}`.")
    );

    let out = json_doc(&home.run(&["logout", "--json"]).await);
    assert_eq!(out["session"], "signed_out");

    // The zone goes away: 3, zone_unreachable.
    zone.stop().await;
    json_error(
        &home.run(&["login", "--no-browser", "--json"]).await,
        "zone_unreachable",
    );
    let run = home.run(&["login", "--no-browser"]).await;
    assert_eq!(run.code, 3);
    assert!(hint_line(&run).contains("network"), "{}", run.stderr);
}

#[tokio::test]
async fn json_through_the_running_broker() {
    let s = stack(Some("read write")).await;
    let api = s.upstream.api();
    let status = json_doc(&s.home.run(&["status", "--json"]).await);
    assert_eq!(status["session"], "signed_in");
    assert_eq!(Home::connection(&status, &api)["status"], "connected");

    let setup = json_doc(
        &s.home
            .run(&["clients", "config", "claude-desktop", "desk", "--json"])
            .await,
    );
    assert_eq!(setup["kind"], "claude-desktop");
    assert_eq!(setup["name"], "desk");
    assert!(setup["token"].as_str().unwrap().starts_with("kcb_"));
    // The stdio bridge finds the token the running broker stored and relays MCP.
    let mut bridge = s
        .home
        .command(&["stdio", "--client", "desk"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = bridge.stdin.take().unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "keycard-tests", "version": "1"}}});
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .unwrap();
    let mut lines = tokio::io::BufReader::new(bridge.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer");
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
    drop(stdin);
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), bridge.wait())
        .await
        .expect("the bridge ends with stdin")
        .unwrap();
    assert!(done.success(), "{done}");

    s.zone
        .control("narrow", json!({"resource": api, "scopes": ["read"]}))
        .await;
    json_error(
        &s.home.run(&["check", &api, "--json"]).await,
        "needs_reconnect",
    );
    json_error(
        &s.home.run(&["revoke", "nope", "--json"]).await,
        "not_found",
    );
    assert!(json_doc(&s.home.run(&["audit", "--json"]).await).is_array());
}
