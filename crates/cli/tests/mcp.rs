//! The loopback MCP endpoint end to end: `keycard-broker serve` with the zone emulator, the
//! upstream fixture (which only accepts tokens the zone issued for it) and gnome-keyring.
//! Admin commands run while `serve` runs, so they go over the control socket. The endpoint's
//! refusals (Host, Origin, tokens, sizes) are probed in `attacks.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mcp, one_line_error, raw_socket, refused_status, stack, text_of};
use serde_json::{Value, json};

#[tokio::test]
async fn tools_call_apis_as_the_user_and_never_leak_the_token() {
    let s = stack(Some("read write")).await;
    let api = s.upstream.api();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let mut seen = String::new();

    let tools = mcp.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names.len(), 3);
    for n in ["list_connections", "call_api", "connect"] {
        assert!(names.contains(&n), "{names:?}");
    }

    let list = mcp.tool("list_connections", json!({})).await;
    let conn = &list["structuredContent"]["connections"][0];
    assert_eq!(conn["resource"], api.as_str());
    assert_eq!(conn["status"], "connected");
    assert_eq!(conn["api_bases"], json!([api.clone()]));

    let items = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/items")}),
        )
        .await;
    assert_eq!(items["isError"], false, "{items}");
    assert_eq!(items["structuredContent"]["status"], 200);
    assert_eq!(items["structuredContent"]["body"][1]["name"], "beta");
    seen.push_str(&items.to_string());

    let created = mcp
        .tool(
            "call_api",
            json!({"method": "POST", "url": format!("{api}/items"), "body": {"name": "gamma"},
            "headers": {"X-Trace": "t-1"}}),
        )
        .await;
    assert_eq!(created["structuredContent"]["status"], 201, "{created}");
    assert_eq!(created["structuredContent"]["body"]["name"], "gamma");

    // Upstream echoing the token back: scrubbed from body and headers.
    let echo = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/echo-token")}),
        )
        .await;
    assert_eq!(echo["structuredContent"]["status"], 200);
    assert!(echo.to_string().contains("[REDACTED]"), "{echo}");
    seen.push_str(&echo.to_string());

    // Refusals, each a tool error that says what to do.
    let outside = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": "https://example.com/x"}),
        )
        .await;
    assert_eq!(outside["isError"], true);
    assert!(
        text_of(&outside).contains("not under any connected provider"),
        "{outside}"
    );
    assert!(
        text_of(&outside).contains("Fixture API"),
        "lists what is connected: {outside}"
    );
    let userinfo = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": api.replace("http://", "http://x@") + "/items"}),
        )
        .await;
    assert_eq!(userinfo["isError"], true);
    let same_host_other_path = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{}/__control/stats", s.upstream.url)}),
        )
        .await;
    assert_eq!(
        same_host_other_path["isError"], true,
        "outside the API base on the same host"
    );
    let auth = mcp
        .tool("call_api", json!({"method": "GET", "url": format!("{api}/items"), "headers": {"Authorization": "Bearer mine"}}))
        .await;
    assert_eq!(auth["isError"], true);
    assert!(text_of(&auth).contains("Authorization"), "{auth}");
    let crlf = mcp
        .tool("call_api", json!({"method": "GET", "url": format!("{api}/items"), "headers": {"X-A": "a\r\nX-Injected: 1"}}))
        .await;
    assert_eq!(crlf["isError"], true);
    let redirect = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/redirect?to=http://127.0.0.2:9/steal")}),
        )
        .await;
    assert_eq!(redirect["isError"], true);
    assert!(text_of(&redirect).contains("redirect"), "{redirect}");
    let big = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/big?kb=1024")}),
        )
        .await;
    assert_eq!(big["structuredContent"]["truncated"], true);

    // Upstream 401: the broker drops its cached token, gets a new one, retries once.
    s.zone.reset_counters().await;
    s.upstream.control("reject-next", json!({"count": 1})).await;
    let retried = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/items")}),
        )
        .await;
    assert_eq!(retried["structuredContent"]["status"], 200, "{retried}");
    assert_eq!(s.zone.token_calls("token_exchange").await, 1);

    // Audit: every call, with client, host and path, never the query or a token.
    let audit: Value =
        serde_json::from_str(&s.home.ok(&["audit", "--client", "agent-1", "--json"]).await)
            .unwrap();
    let records = audit.as_array().unwrap();
    let calls: Vec<&Value> = records.iter().filter(|r| r["kind"] == "call_api").collect();
    assert!(calls.len() >= 10, "{audit}");
    assert!(
        calls
            .iter()
            .any(|r| r["status"] == 201 && r["method"] == "POST" && r["path"] == "/api/items")
    );
    assert!(calls.iter().any(|r| r["outcome"] == "refused"));
    assert!(
        !audit.to_string().contains("steal"),
        "no query strings in the audit log"
    );
    let tokens: Value = serde_json::from_str(&s.home.ok(&["audit", "--json"]).await).unwrap();
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "token" && r["client"].is_null())
    );

    let transcript = s.home.transcript.lock().unwrap().clone();
    testkit::assert_no_leak(
        &s.zone.issued().await,
        s.home.dir.path(),
        &[&transcript, &seen],
    );
}

#[tokio::test]
async fn narrowed_scope_at_the_upstream_needs_reconnect_and_reconnect_fixes_it() {
    // The consent asks for read and write; the zone names no scopes in its answers and
    // renews by refresh (no scope asked), so only the upstream can tell that write is gone.
    let s = common::stack_with(Some("read write"), &["--strategy", "refresh-with-resource"]).await;
    let api = s.upstream.api();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let post = json!({"method": "POST", "url": format!("{api}/items"), "body": {"name": "x"}});
    assert_eq!(
        mcp.tool("call_api", post.clone()).await["structuredContent"]["status"],
        201
    );

    s.zone.control("scope-field", json!({"mode": "omit"})).await;
    s.zone
        .control("narrow", json!({"resource": api, "scopes": ["read"]}))
        .await;
    // The next token the broker gets is narrowed: force one with an upstream 401.
    s.upstream.control("reject-next", json!({"count": 1})).await;
    let refused = mcp.tool("call_api", post.clone()).await;
    assert_eq!(refused["isError"], true, "{refused}");
    let text = text_of(&refused);
    assert!(
        text.contains("insufficient_scope") && text.contains("reconnect"),
        "{text}"
    );

    let status: Value = serde_json::from_str(&s.home.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["connections"][0]["status"], "needs_reconnect");
    assert!(
        status["connections"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("write"),
        "{status}"
    );
    // Until the user acts, agents get the same clear answer without zone traffic.
    let again = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/items")}),
        )
        .await;
    assert!(text_of(&again).contains("reconnect"), "{again}");

    let reconnect = s.home.round(&["reconnect", &api, "--no-browser"]).await;
    assert_eq!(reconnect.code, 0, "{}", reconnect.stderr);
    let status: Value = serde_json::from_str(&s.home.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["connections"][0]["status"], "connected");
    assert_eq!(
        status["connections"][0]["scopes"],
        json!(["read", "write"]),
        "no scope named: what the consent asked for"
    );
    assert_eq!(
        mcp.tool("call_api", post).await["structuredContent"]["status"],
        201
    );
}

#[tokio::test]
async fn one_agents_write_on_a_read_only_connection_blocks_nobody() {
    // The consent asks only for read: a 403 for write is this call's problem, not a reason
    // to stop every agent's reads.
    let s = stack(Some("read")).await;
    let api = s.upstream.api();
    s.zone
        .control("narrow", json!({"resource": api, "scopes": ["read"]}))
        .await;
    s.upstream.control("reject-next", json!({"count": 1})).await;
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let get = json!({"method": "GET", "url": format!("{api}/items")});
    let post = json!({"method": "POST", "url": format!("{api}/items"), "body": {"name": "x"}});
    let refused = mcp.tool("call_api", post).await;
    assert_eq!(refused["isError"], true, "{refused}");
    let text = text_of(&refused);
    assert!(
        text.contains("needs write") && text.contains("granted: read"),
        "the missing scope in words: {text}"
    );
    let status: Value = serde_json::from_str(&s.home.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["connections"][0]["status"], "connected", "{status}");
    let other = Mcp::connect(&s.serving.url, &s.token).await;
    for client in [&mcp, &other] {
        assert_eq!(
            client.tool("call_api", get.clone()).await["structuredContent"]["status"],
            200
        );
    }
}

/// A stand-in proxy: counts connections and what they asked for, answers 502.
async fn recording_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            log.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or_default().to_string());
            let _ = stream
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (url, seen)
}

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[tokio::test]
async fn loopback_never_goes_through_a_proxy_and_the_network_does() {
    let s = stack(None).await;
    let (proxy, seen) = recording_proxy().await;
    // The stdio bridge (token from the keychain) with every proxy variable set.
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("claude_desktop_config.json");
    s.home
        .ok(&[
            "clients",
            "config",
            "claude-desktop",
            "desktop",
            "--write",
            "--file",
            file.to_str().unwrap(),
        ])
        .await;
    let mut bridge = s.home.command(&["stdio", "--client", "desktop"]);
    for var in PROXY_VARS {
        bridge.env(var, &proxy);
    }
    bridge
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = bridge.spawn().unwrap();
    let through_bridge = Mcp::over_stdio(&mut child).await;
    assert_eq!(
        through_bridge.tool("list_connections", json!({})).await["isError"],
        false
    );
    drop(through_bridge);
    let _ = child.kill().await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "loopback traffic went to the proxy: {:?}",
        seen.lock().unwrap()
    );

    // A broker started with the proxy set: the loopback zone and API stay direct, an https
    // API goes through the proxy.
    let other = common::Home::new();
    other.init(&s.zone.issuer).await;
    let mut serve = other.command(&["serve"]);
    for var in PROXY_VARS {
        serve.env(var, &proxy);
    }
    serve.env_remove("NO_PROXY").env_remove("no_proxy");
    let serving = other.serve_with(serve).await;
    assert_eq!(other.round(&["login", "--no-browser"]).await.code, 0);
    let api = s.upstream.api();
    other.ok(&["resources", "add", &api]).await;
    other
        .ok(&["resources", "add", "https://api.proxied.test/v1"])
        .await;
    for resource in [api.as_str(), "https://api.proxied.test/v1"] {
        let round = other.round(&["connect", resource, "--no-browser"]).await;
        assert_eq!(round.code, 0, "{}", round.stderr);
    }
    let added: Value =
        serde_json::from_str(&other.ok(&["clients", "add", "a", "--json"]).await).unwrap();
    let mcp = Mcp::connect(&serving.url, added["token"].as_str().unwrap()).await;
    let direct = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/items")}),
        )
        .await;
    assert_eq!(direct["structuredContent"]["status"], 200, "{direct}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    let proxied = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": "https://api.proxied.test/v1/user"}),
        )
        .await;
    assert_eq!(proxied["isError"], true, "the stand-in proxy answers 502");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec!["CONNECT api.proxied.test:443 HTTP/1.1".to_string()]
    );
}

#[tokio::test]
async fn connect_tool_starts_a_consent_round() {
    let s = stack(None).await;
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let result = mcp.tool("connect", json!({"resource": "github"})).await;
    let text = text_of(&result);
    // No URL elicitation declared by this client, no browser here: the link is in the text.
    // It is the broker's own page, which sends the browser on to the zone.
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("http://127.0.0.1:{}/connect/", s.home.port)))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!link.contains(&s.token) && !link.contains("state="));
    let (status, _) = testkit::authorize(link, &testkit::callback_prefix(s.home.port)).await;
    assert_eq!(status, 200);
    // The broker completes the round in the background.
    let mut connected = false;
    for _ in 0..50 {
        let status: Value = serde_json::from_str(&s.home.ok(&["status", "--json"]).await).unwrap();
        if status["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["resource"] == "https://api.github.com" && c["status"] == "connected")
        {
            connected = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(connected, "github connected after the agent-started round");
    let err = one_line_error(&s.home.run(&["connect", "nope", "--no-browser"]).await);
    assert!(err.contains("not a provider"), "{err}");
}

#[tokio::test]
async fn client_config_write_gives_a_working_client() {
    let s = stack(None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.json");
    std::fs::write(
        &file,
        r#"{"mcpServers":{"other":{"url":"http://x"}},"keep":true}"#,
    )
    .unwrap();
    let write_config = [
        "clients",
        "config",
        "cursor",
        "cursor",
        "--static-token",
        "--write",
        "--file",
        file.to_str().unwrap(),
    ];
    let out = s.home.ok(&write_config).await;
    assert!(out.contains("backup"), "{out}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["keep"], true);
    assert_eq!(written["mcpServers"]["other"]["url"], "http://x");
    let entry = &written["mcpServers"]["keycard-broker"];
    assert_eq!(entry["url"], s.serving.url.as_str());
    let token = entry["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let mcp = Mcp::connect(&s.serving.url, &token).await;
    assert_eq!(
        mcp.tool("list_connections", json!({})).await["isError"],
        false
    );
    // Writing it again rotates the token: the old one dies.
    s.home.ok(&write_config).await;
    let refused = mcp
        .try_tool("list_connections", json!({}))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&refused), Some(401), "{refused}");
    let list: Value =
        serde_json::from_str(&s.home.ok(&["clients", "list", "--json"]).await).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "cursor" && c["last_seen_at"].is_string())
    );
    assert!(
        !list.to_string().contains("kcb_"),
        "clients list never shows tokens"
    );
    // Without --static-token, a client that signs in with OAuth gets an entry with no token,
    // and the broker answers it with the challenge that starts its sign-in.
    let oauth_file = dir.path().join("oauth.json");
    s.home
        .ok(&[
            "clients",
            "config",
            "cursor",
            "cursor-oauth",
            "--write",
            "--file",
            oauth_file.to_str().unwrap(),
        ])
        .await;
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&oauth_file).unwrap()).unwrap();
    let entry = &written["mcpServers"]["keycard-broker"];
    assert_eq!(entry["url"], s.serving.url.as_str());
    assert!(entry.get("headers").is_none(), "{entry}");
    let challenge = reqwest::Client::new()
        .post(s.serving.url.as_str())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"].to_str().unwrap();
    assert!(header.contains("resource_metadata="), "{header}");
}

#[tokio::test]
async fn upstream_401_storm_retries_once_per_call_and_never_loops() {
    let s = stack(None).await;
    let api = s.upstream.api();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let get = json!({"method": "GET", "url": format!("{api}/items")});
    assert_eq!(
        mcp.tool("call_api", get.clone()).await["structuredContent"]["status"],
        200
    );
    s.zone.reset_counters().await;
    s.upstream.control("reject-next", json!({"count": 6})).await;
    for _ in 0..3 {
        // Each call: 401, fresh token, one retry, 401 again → the agent sees the 401.
        let r = mcp.tool("call_api", get.clone()).await;
        assert_eq!(r["structuredContent"]["status"], 401, "{r}");
    }
    assert_eq!(
        s.zone.token_calls("token_exchange").await,
        3,
        "one new token per call, no loop"
    );
    assert!(s.upstream.stats().await["requests"].as_u64().unwrap() >= 7);
    let ok = mcp.tool("call_api", get).await;
    assert_eq!(
        ok["structuredContent"]["status"], 200,
        "recovers when the storm ends"
    );
    let status: Value = serde_json::from_str(&s.home.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(
        status["connections"][0]["status"], "connected",
        "a 401 storm is not a reconnect"
    );
}

#[tokio::test]
async fn pause_stops_every_agent_until_resume() {
    let s = stack(None).await;
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    s.home.ok(&["pause"]).await;
    let status: Value = serde_json::from_str(&s.home.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["paused"], true);
    let refused = mcp
        .try_tool("list_connections", json!({}))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&refused), Some(503), "{refused}");
    // rmcp's client keeps the status only: the words an agent's user reads come over raw HTTP.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let r = common::post_raw(&s.serving.url, &s.token, list).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("paused"));
    s.home.ok(&["resume"]).await;
    assert_eq!(
        mcp.tool("list_connections", json!({})).await["isError"],
        false,
        "the same session works again"
    );
    // With no broker running, pausing has nothing to act on: a clear refusal.
    let idle = common::Home::new();
    let run = idle.run(&["pause"]).await;
    let err = one_line_error(&run);
    assert!(err.contains("no Keycard Broker is running"), "{err}");
    assert_eq!(run.code, 2);
    assert_eq!(
        common::hint_line(&run),
        "Start `keycard-broker serve` (or the tray app) first."
    );
}

/// The agent socket (remote agents reach it through a forwarded socket): `stdio --socket
/// --token-env` (no keychain, as on a remote host) reaches the same tools, the activity log says
/// `via: socket`, and the socket's guard answers like the port's — a foreign Host 403 (the
/// port's own Host included), an unknown token 401, a body over the cap 413.
#[tokio::test]
async fn the_agent_socket_serves_the_same_tools_to_a_token_from_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let s = stack(None).await;
    let about: Value = serde_json::from_str(&s.home.ok(&["about", "--json"]).await).unwrap();
    let socket = std::path::PathBuf::from(about["agent_socket"].as_str().unwrap());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", socket.display());

    let mut bridge = s.home.command(&[
        "stdio",
        "--socket",
        socket.to_str().unwrap(),
        "--token-env",
        "REMOTE_TOKEN",
    ]);
    bridge
        .env("REMOTE_TOKEN", &s.token)
        // A remote host has no keychain: the bridge must not need one.
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = bridge.spawn().unwrap();
    let mcp = Mcp::over_stdio(&mut child).await;
    let items = format!("{}/items", s.upstream.api());
    let answer = mcp
        .tool("call_api", json!({"method": "GET", "url": items}))
        .await;
    assert_eq!(answer["structuredContent"]["status"], 200, "{answer}");
    drop(mcp);

    let records: Value =
        serde_json::from_str(&s.home.ok(&["audit", "--client", "agent-1", "--json"]).await)
            .unwrap();
    let calls: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "call_api")
        .collect();
    assert_eq!(calls.len(), 1, "{records}");
    assert_eq!(calls[0]["via"], "socket");

    let port = s.home.port;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post = |host: &str, token: &str, length: usize| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{init}"
        )
    };
    let cases = [
        (post("localhost", &s.token, init.len()), "200"),
        (
            post(&format!("127.0.0.1:{port}"), &s.token, init.len()),
            "403",
        ),
        (post("evil.example", &s.token, init.len()), "403"),
        (post("localhost", "kcb_unknown", init.len()), "401"),
        (post("localhost", &s.token, 6 * 1024 * 1024), "413"),
    ];
    for (request, status) in cases {
        let line = raw_socket(&socket, request.as_bytes()).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "want {status}, got {line:?} for {}",
            request.lines().nth(1).unwrap_or_default()
        );
    }
}

/// `[broker] agent_socket = false`: no socket file, and `about` says there is none.
#[tokio::test]
async fn the_agent_socket_can_be_turned_off() {
    let zone = testkit::ZoneEmulator::start().await;
    let home = common::Home::new();
    let port = home.port.to_string();
    home.ok(&["init", "--zone", zone.issuer.as_str(), "--port", &port])
        .await;
    let config = home.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("agent_socket = true"), "{text}");
    let text = text.replace("agent_socket = true", "agent_socket = false");
    std::fs::write(&config, text).unwrap();
    let _serving = home.serve().await;
    let about: Value = serde_json::from_str(&home.ok(&["about", "--json"]).await).unwrap();
    assert_eq!(about["agent_socket"], Value::Null, "{about}");
    assert!(!home.dir.path().join("agent").join("agent.sock").exists());
    assert!(home.dir.path().join("control.sock").exists());
}
