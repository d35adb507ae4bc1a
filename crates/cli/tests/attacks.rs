//! Attack probes against a running broker, collected in one place: DNS rebinding variants,
//! token games, SSRF through `call_api`, header injection, oversize input, callback CSRF.
//! Each probe asserts the exact outcome; at the end nothing any probe saw, nothing the broker
//! logged and no file it wrote contains a token the zone issued or the client token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mcp, raw_http, stack, text_of};
use serde_json::{Value, json};

/// One HTTP probe at `/mcp`: (name, Host, Origin, Authorization, path+query, status).
type Probe = (
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    u16,
);

#[tokio::test]
async fn attack_probes() {
    let s = stack(None).await;
    let port = s.home.port;
    let api = s.upstream.api();
    let up = s.upstream.url.clone();
    let up_port = up.rsplit(':').next().unwrap().to_string();
    let bearer = Some(format!("Bearer {}", s.token));
    let zone_token = s
        .zone
        .issued()
        .await
        .into_iter()
        .find(|t| t.len() > 30)
        .unwrap();
    let own = |h: &str| Some(h.to_string());
    let mut seen = String::new();
    let mut count = 0;

    // ---- 1. Endpoint guard: rebinding, origins, credentials ----
    let probes: Vec<Probe> = vec![
        (
            "positive control",
            None,
            None,
            bearer.clone(),
            "/mcp".into(),
            200,
        ),
        (
            "host casing is fine",
            own(&format!("LOCALHOST:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            200,
        ),
        (
            "ipv6 loopback host",
            own(&format!("[::1]:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            200,
        ),
        (
            "rebinding name",
            own(&format!("evil.example:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "rebinding name, caps",
            own(&format!("EVIL.EXAMPLE:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "loopback-looking name",
            own(&format!("127.0.0.1.nip.io:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "localhost suffix",
            own(&format!("localhost.evil.example:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "host without port",
            own("127.0.0.1"),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "host other port",
            own(&format!("127.0.0.1:{}", port.wrapping_add(1))),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "host hex ip",
            own(&format!("0x7f000001:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "host decimal ip",
            own(&format!("2130706433:{port}")),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "ipv6 other port",
            own("[::1]:1"),
            None,
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "foreign origin",
            None,
            own("http://evil.example"),
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "null origin",
            None,
            own("null"),
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "origin other port",
            None,
            own("http://127.0.0.1:1"),
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "origin https",
            None,
            own(&format!("https://127.0.0.1:{port}")),
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "origin suffix",
            None,
            own(&format!("http://localhost:{port}.evil.example")),
            bearer.clone(),
            "/mcp".into(),
            403,
        ),
        (
            "origin casing is fine",
            None,
            own(&format!("http://LOCALHOST:{port}")),
            bearer.clone(),
            "/mcp".into(),
            200,
        ),
        ("no token", None, None, None, "/mcp".into(), 401),
        (
            "empty bearer",
            None,
            None,
            own("Bearer "),
            "/mcp".into(),
            401,
        ),
        (
            "forged token",
            None,
            None,
            own("Bearer kcb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            "/mcp".into(),
            401,
        ),
        (
            "foreign token",
            None,
            None,
            own("Bearer ghp_notours"),
            "/mcp".into(),
            401,
        ),
        (
            "basic auth",
            None,
            None,
            own("Basic a2NiOnNlY3JldA=="),
            "/mcp".into(),
            401,
        ),
        (
            "zone token passthrough",
            None,
            None,
            Some(format!("Bearer {zone_token}")),
            "/mcp".into(),
            401,
        ),
        (
            "token in query",
            None,
            None,
            None,
            format!("/mcp?access_token={}", s.token),
            400,
        ),
        (
            "token param",
            None,
            None,
            bearer.clone(),
            "/mcp?token=x".into(),
            400,
        ),
        (
            "authorization param",
            None,
            None,
            bearer.clone(),
            "/mcp?Authorization=x".into(),
            400,
        ),
    ];
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}});
    for (name, host, origin, auth, path, want) in probes {
        let mut r = http
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status().as_u16(), want, "{name}");
        if want == 401 {
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{name}"
            );
        }
        seen.push_str(&response.text().await.unwrap_or_default());
        count += 1;
    }

    // ---- 2. Oversize input ----
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 6291456\r\n\r\n",
        s.token
    );
    let line = raw_http(port, head.as_bytes()).await;
    assert!(line.starts_with("HTTP/1.1 413"), "oversize body: {line}");
    count += 1;
    let huge_header = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let line = raw_http(port, huge_header.as_bytes()).await;
    assert!(
        line.is_empty() || line.starts_with("HTTP/1.1 431") || line.starts_with("HTTP/1.1 400"),
        "oversize header: {line}"
    );
    count += 1;

    // ---- 3. SSRF and injection through call_api ----
    let mut mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let refused: Vec<(&str, Value)> = vec![
        (
            "other host",
            json!({"method": "GET", "url": "https://example.com/"}),
        ),
        (
            "localhost alias of the base",
            json!({"method": "GET", "url": format!("http://localhost:{up_port}/api/items")}),
        ),
        (
            "same host, outside the base",
            json!({"method": "GET", "url": format!("{up}/__control/stats")}),
        ),
        (
            "dot segments out of the base",
            json!({"method": "GET", "url": format!("{api}/../__control/stats")}),
        ),
        (
            "encoded dot segments",
            json!({"method": "GET", "url": format!("{api}/%2e%2e/__control/stats")}),
        ),
        (
            "prefix without segment boundary",
            json!({"method": "GET", "url": format!("{api}x/items")}),
        ),
        (
            "userinfo",
            json!({"method": "GET", "url": api.replace("http://", "http://user:pw@") + "/items"}),
        ),
        (
            "userinfo host confusion",
            json!({"method": "GET", "url": format!("http://127.0.0.1:{up_port}@evil.example/api")}),
        ),
        (
            "mapped ipv6 loopback",
            json!({"method": "GET", "url": format!("http://[::ffff:127.0.0.1]:{up_port}/api/items")}),
        ),
        (
            "other port",
            json!({"method": "GET", "url": format!("http://127.0.0.1:{}/api/items", port)}),
        ),
        (
            "file scheme",
            json!({"method": "GET", "url": "file:///etc/passwd"}),
        ),
        (
            "gopher scheme",
            json!({"method": "GET", "url": format!("gopher://127.0.0.1:{up_port}/api")}),
        ),
        (
            "redirect to another host",
            json!({"method": "GET", "url": format!("{api}/redirect?to=http://127.0.0.2:9/x")}),
        ),
        (
            "redirect outside the base",
            json!({"method": "GET", "url": format!("{api}/redirect?to={up}/__control/stats")}),
        ),
        (
            "caller Authorization",
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {"Authorization": "Bearer x"}}),
        ),
        (
            "caller Cookie",
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {"Cookie": "s=1"}}),
        ),
        (
            "caller Proxy-Authorization",
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {"Proxy-Authorization": "x"}}),
        ),
        (
            "caller Host",
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {"Host": "evil.example"}}),
        ),
        (
            "CRLF in header value",
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {"X-A": "a\r\nAuthorization: Bearer x"}}),
        ),
        (
            "CRLF in header name",
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {"X-A\r\nX-B": "a"}}),
        ),
        (
            "TRACE method",
            json!({"method": "TRACE", "url": format!("{api}/items")}),
        ),
        (
            "unknown resource",
            json!({"method": "GET", "url": format!("{api}/items"), "resource": "https://api.github.com"}),
        ),
    ];
    let stats_before = s.upstream.stats().await;
    for (name, args) in refused {
        let result = mcp.tool("call_api", args).await;
        assert_eq!(result["isError"], true, "{name}: {result}");
        seen.push_str(&result.to_string());
        count += 1;
    }
    let stats_after = s.upstream.stats().await;
    // Only the two redirect probes reached the upstream (and got no further).
    let delta =
        stats_after["requests"].as_u64().unwrap() - stats_before["requests"].as_u64().unwrap();
    assert_eq!(
        delta, 2,
        "refused calls never reach the upstream: {stats_before} → {stats_after}"
    );
    let same_host_ip_spelling = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("http://0x7f.0.0.1:{up_port}/api/items")}),
        )
        .await;
    assert_eq!(
        same_host_ip_spelling["structuredContent"]["status"], 200,
        "an IP spelling normalises to the same host"
    );
    let within = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/redirect?to={api}/items")}),
        )
        .await;
    assert_eq!(
        within["structuredContent"]["status"], 200,
        "redirects within the base are followed"
    );
    let echo = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/echo-token")}),
        )
        .await;
    assert!(text_of(&echo).contains("[REDACTED]"));
    seen.push_str(&echo.to_string());
    count += 3;

    // ---- 4. OAuth callback: CSRF, forged and replayed state, wrong iss ----
    let cb = |q: &str| format!("http://127.0.0.1:{port}/callback{q}");
    for (name, q) in [
        ("no state", "?code=abc".to_string()),
        ("forged state", "?code=abc&state=forged".to_string()),
        (
            "csrf error injection",
            "?error=access_denied&state=whatever".to_string(),
        ),
        ("empty", String::new()),
        ("huge query", format!("?state={}", "a".repeat(10_000))),
    ] {
        let response = reqwest::get(cb(&q)).await.unwrap();
        assert_eq!(response.status(), 400, "{name}");
        seen.push_str(&response.text().await.unwrap());
        count += 1;
    }
    // Replay: a completed round's redirect, delivered again.
    let round = s.home.round(&["connect", "github", "--no-browser"]).await;
    assert_eq!(round.code, 0);
    let url = round.stdout.lines().next().unwrap().to_string();
    let callback = testkit::authorize_until_callback(&url, &testkit::callback_prefix(port)).await;
    assert_eq!(
        testkit::deliver(callback.as_str()).await.0,
        400,
        "replayed state"
    );
    count += 1;

    // A removed client is refused on its very next request (the running broker learns of the
    // removal over the control socket at once).
    let added: Value =
        serde_json::from_str(&s.home.ok(&["clients", "add", "doomed", "--json"]).await).unwrap();
    let doomed = Mcp::connect(&s.serving.url, added["token"].as_str().unwrap()).await;
    s.home.ok(&["clients", "remove", "doomed"]).await;
    let r = doomed
        .post(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
        .await;
    assert_eq!(r.status(), 401, "removed client");
    count += 1;

    // ---- 5. Paths some servers resolve outside the base; routing, encoding, range headers ----
    let before = s.upstream.stats().await["requests"].as_u64().unwrap();
    let mut escaping: Vec<(String, Value)> = [
        format!("{api}/..;/__control/stats"),
        format!("{api}/items;jsessionid=1"),
        format!("{api}/..%2f__control/stats"),
        format!("{api}/..%2F__control/stats"),
        format!("{api}/..%5c__control/stats"),
        format!("{api}/..%5C__control/stats"),
    ]
    .into_iter()
    .map(|url| (url.clone(), json!({"method": "GET", "url": url})))
    .collect();
    for header in [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "Forwarded",
        "X-HTTP-Method-Override",
        "Accept-Encoding",
        "Accept-Charset",
        "Range",
        "If-Range",
    ] {
        escaping.push((
            header.to_string(),
            json!({"method": "GET", "url": format!("{api}/items"), "headers": {header: "/__control/stats"}}),
        ));
    }
    for (name, args) in escaping {
        let result = mcp.tool("call_api", args).await;
        assert_eq!(result["isError"], true, "{name}: {result}");
        let text = text_of(&result);
        assert!(
            text.contains("refused") || text.contains("may not be set"),
            "{name}: the message names the rule: {text}"
        );
        seen.push_str(&result.to_string());
        count += 1;
    }
    assert_eq!(
        s.upstream.stats().await["requests"].as_u64().unwrap(),
        before,
        "refused requests never reach the upstream"
    );
    // The broker asks for the body as it is, so the scrubber sees what the agent will.
    let headers = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/headers")}),
        )
        .await;
    assert_eq!(
        headers["structuredContent"]["body"]["accept-encoding"], "identity",
        "{headers}"
    );
    count += 1;

    // ---- 6. The token in every encoding an upstream could send it back in ----
    for form in [
        "plain",
        "escaped",
        "escaped_upper",
        "mixed",
        "percent",
        "base64",
        "base64url",
    ] {
        let leak = mcp
            .tool(
                "call_api",
                json!({"method": "GET", "url": format!("{api}/leak?form={form}")}),
            )
            .await;
        assert_eq!(leak["structuredContent"]["status"], 200, "{form}: {leak}");
        let you_sent = leak["structuredContent"]["body"]["you_sent"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(you_sent.contains("[REDACTED]"), "{form}: {leak}");
        seen.push_str(&leak.to_string());
        seen.push_str(&you_sent);
        count += 1;
    }
    for form in ["percent", "base64url"] {
        let created = mcp
            .tool(
                "call_api",
                json!({"method": "GET", "url": format!("{api}/leak-location?form={form}")}),
            )
            .await;
        let location = created["structuredContent"]["headers"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            location.contains("?t=") && location.contains("[REDACTED]"),
            "{form}: {created}"
        );
        seen.push_str(&created.to_string());
        count += 1;
    }
    let gzip = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/gzip")}),
        )
        .await;
    assert_eq!(gzip["isError"], true, "{gzip}");
    assert!(text_of(&gzip).contains("gzip"), "{gzip}");
    seen.push_str(&gzip.to_string());
    count += 1;
    // token‖token‖padding‖token with the third copy straddling what the broker reads.
    let len = headers["structuredContent"]["body"]["authorization"]
        .as_str()
        .and_then(|a| a.split("len=").nth(1))
        .and_then(|n| n.trim_end_matches('>').parse::<usize>().ok())
        .unwrap();
    let limit = broker::upstream::RESPONSE_LIMIT;
    for pad in [
        limit + 10 * len - len / 2,
        limit - len - len / 2,
        limit - 3 * len + 20,
        100,
    ] {
        let cut = mcp
            .tool(
                "call_api",
                json!({"method": "GET", "url": format!("{api}/leak-cut?pad={pad}")}),
            )
            .await;
        assert_eq!(cut["structuredContent"]["status"], 200, "pad {pad}");
        let body = cut["structuredContent"]["body"]
            .as_str()
            .unwrap()
            .to_string();
        for token in s.zone.issued().await {
            assert!(
                !body.contains(&token[..8.min(token.len())]),
                "pad {pad}: a prefix of an issued token survived the cut"
            );
        }
        seen.push_str(&body);
        count += 1;
    }

    // ---- 7. A callback without iss, when the zone promises one (RFC 9207) ----
    let pending = tokio::spawn({
        let home_dir = s.home.dir.path().to_path_buf();
        let port = s.home.port;
        async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycard-broker"));
            cmd.args(["connect", "github", "--no-browser", "--timeout", "20"])
                .env("KEYCARD_BROKER_HOME", &home_dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let url = lines.next_line().await.unwrap().unwrap();
            let callback =
                testkit::authorize_until_callback(&url, &testkit::callback_prefix(port)).await;
            let without_iss: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(callback.query_pairs().filter(|(k, _)| k != "iss"))
                .finish();
            let stripped = format!("http://127.0.0.1:{port}/callback?{without_iss}");
            let delivered = testkit::deliver(&stripped).await;
            let out = child.wait_with_output().await.unwrap();
            (delivered, out)
        }
    });
    let ((status, page), out) = pending.await.unwrap();
    assert_eq!(status, 400, "callback without iss: {page}");
    assert!(page.contains("iss"), "{page}");
    assert!(!out.status.success(), "the round fails");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("iss"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    seen.push_str(&page);
    count += 1;

    // ---- 8. The connect tool: no state or PKCE value reaches the agent; floods are bounded ----
    let first = mcp.tool("connect", json!({"resource": "github"})).await;
    let text = text_of(&first);
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("http://127.0.0.1:{port}/connect/")))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    for secret_param in ["state=", "code_challenge", "authorize"] {
        assert!(!text.contains(secret_param), "{secret_param} in {text}");
    }
    let again = mcp.tool("connect", json!({"resource": "github"})).await;
    assert!(
        text_of(&again).contains(&link),
        "a second request reuses the round"
    );
    count += 1;
    let follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&link)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), 303);
    let location = follow.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&s.zone.issuer) && location.contains("state="));
    assert_eq!(follow.headers()["referrer-policy"], "no-referrer");
    let unknown = reqwest::get(format!("http://127.0.0.1:{port}/connect/0123456789abcdef"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    count += 1;
    for resource in ["gmail", "slack", "linear"] {
        let r = mcp.tool("connect", json!({"resource": resource})).await;
        assert_ne!(r["isError"], true, "{resource}: {r}");
    }
    let flood = mcp.tool("connect", json!({"resource": "sentry"})).await;
    assert_eq!(flood["isError"], true, "{flood}");
    assert!(text_of(&flood).contains("already waiting"), "{flood}");
    seen.push_str(&flood.to_string());
    count += 1;

    // ---- 9. Plain http only for loopback API bases ----
    let clear = s
        .home
        .run(&["resources", "add", "http://api.example.com/v1"])
        .await;
    assert_ne!(clear.code, 0);
    assert!(clear.stderr.contains("https"), "{}", clear.stderr);
    count += 1;

    // ---- 10. Refused calls keep the query out of the audit log ----
    let refused = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": "https://example.com/x?steal=s3cr3t-query"}),
        )
        .await;
    assert_eq!(refused["isError"], true);
    assert!(!text_of(&refused).contains("s3cr3t-query"));
    let audit = s.home.ok(&["audit", "--json"]).await;
    assert!(!audit.contains("s3cr3t-query"), "query in the audit log");
    count += 1;

    println!("attack probes: {count}");
    assert!(count >= 40, "at least 40 probes ran ({count})");
    let mut secrets = s.zone.issued().await;
    secrets.push(s.token.clone());
    let transcript = s.home.transcript.lock().unwrap().clone();
    testkit::assert_no_leak(
        &secrets[..secrets.len() - 1],
        s.home.dir.path(),
        &[&transcript, &seen],
    );
    // The client token may appear only where the test itself put it (the transcript of
    // `clients add`); never in a response, a log line or a file.
    for (path, bytes) in testkit::files_under(s.home.dir.path()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&s.token),
            "client token in {}",
            path.display()
        );
    }
    assert!(
        !seen.contains(&s.token),
        "client token echoed in a response"
    );
}
