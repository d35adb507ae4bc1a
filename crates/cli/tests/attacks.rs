//! Attack probes against a running broker, one test per family so that one failure does not
//! hide the others: DNS rebinding (Host, Origin), credentials, oversize input, SSRF through
//! `call_api`, path and routing tricks, the token echoed back in every encoding, the OAuth
//! callback, the `connect` tool, plain-http API bases, the audit log, and agent sign-in (the
//! broker's own authorization server, in `attacks_oauth/`). Each family runs
//! against its own stack (zone emulator, upstream fixture, `serve`, signed in, fixture
//! connected), asserts every probe's exact outcome and its own probe count, and ends with the
//! leak check: nothing a probe saw, nothing the broker logged and no file it wrote contains a
//! token the zone issued or the client token. `Guard::decide` alone is covered branch by branch
//! in crates/broker/src/mcp/guard_tests.rs; the endpoint probes here check the guard as
//! `serve` runs it, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks_oauth;
mod common;

use common::{Mcp, Probes, Stack, raw_http, refused_status, stack, text_of};
use serde_json::{Value, json};

const HOST_AND_ORIGIN: usize = 18;
const CREDENTIALS: usize = 10;
const OVERSIZE: usize = 2;
const SSRF: usize = 24;
const PATHS_AND_ROUTING: usize = 17;
const TOKEN_ECHOES: usize = 15;
const CALLBACK: usize = 7;
const CONNECT_TOOL: usize = 3;
const PLAIN_HTTP: usize = 1;
const AUDIT: usize = 1;
const AGENT_SIGN_IN: usize = attacks_oauth::SIGN_IN;
const AGENT_TOKENS: usize = attacks_oauth::TOKENS;

/// Every family's probe count; README.md gives their sum.
const FAMILIES: [usize; 12] = [
    HOST_AND_ORIGIN,
    CREDENTIALS,
    OVERSIZE,
    SSRF,
    PATHS_AND_ROUTING,
    TOKEN_ECHOES,
    CALLBACK,
    CONNECT_TOOL,
    PLAIN_HTTP,
    AUDIT,
    AGENT_SIGN_IN,
    AGENT_TOKENS,
];

#[test]
fn readme_counts_every_probe() {
    let total: usize = FAMILIES.iter().sum();
    let readme = include_str!("../../../README.md");
    assert!(
        readme.contains(&format!("{total} attack probes")),
        "README.md should say `{total} attack probes`"
    );
}

/// One HTTP request at `/mcp` and the status it must get. `None` leaves the header as
/// reqwest sends it (Host) or out (Origin, Authorization).
struct EndpointProbe {
    name: &'static str,
    host: Option<String>,
    origin: Option<String>,
    authorization: Option<String>,
    /// Path and query.
    target: String,
    status: u16,
}

fn endpoint(
    name: &'static str,
    host: Option<String>,
    origin: Option<String>,
    authorization: Option<String>,
    status: u16,
) -> EndpointProbe {
    EndpointProbe {
        name,
        host,
        origin,
        authorization,
        target: "/mcp".into(),
        status,
    }
}

/// Sends each probe as an `initialize` POST. Raw reqwest on purpose: the probes forge the
/// very headers (Host, Origin, Authorization, credentials in the query) that an MCP client
/// library sets for itself, and assert the HTTP status the guard answers.
async fn endpoint_probes(s: &Stack, probes: Vec<EndpointProbe>, p: &mut Probes) {
    let port = s.home.port;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}});
    for probe in probes {
        let mut r = http
            .post(format!("http://127.0.0.1:{port}{}", probe.target))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(h) = probe.host {
            r = r.header("host", h);
        }
        if let Some(o) = probe.origin {
            r = r.header("origin", o);
        }
        if let Some(a) = probe.authorization {
            r = r.header("authorization", a);
        }
        let response = r.send().await.unwrap();
        assert_eq!(response.status().as_u16(), probe.status, "{}", probe.name);
        if probe.status == 401 {
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{}",
                probe.name
            );
        }
        p.ran(&response.text().await.unwrap_or_default());
    }
}

#[tokio::test]
async fn host_and_origin() {
    let s = stack(None).await;
    let port = s.home.port;
    let bearer = Some(format!("Bearer {}", s.token));
    let own = |h: &str| Some(h.to_string());
    let mut p = Probes::default();
    let probes = vec![
        endpoint("positive control", None, None, bearer.clone(), 200),
        endpoint(
            "host casing is fine",
            own(&format!("LOCALHOST:{port}")),
            None,
            bearer.clone(),
            200,
        ),
        endpoint(
            "ipv6 loopback host",
            own(&format!("[::1]:{port}")),
            None,
            bearer.clone(),
            200,
        ),
        endpoint(
            "rebinding name",
            own(&format!("evil.example:{port}")),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "rebinding name, caps",
            own(&format!("EVIL.EXAMPLE:{port}")),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "loopback-looking name",
            own(&format!("127.0.0.1.nip.io:{port}")),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "localhost suffix",
            own(&format!("localhost.evil.example:{port}")),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "host without port",
            own("127.0.0.1"),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "host other port",
            own(&format!("127.0.0.1:{}", port.wrapping_add(1))),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "host hex ip",
            own(&format!("0x7f000001:{port}")),
            None,
            bearer.clone(),
            403,
        ),
        endpoint(
            "host decimal ip",
            own(&format!("2130706433:{port}")),
            None,
            bearer.clone(),
            403,
        ),
        endpoint("ipv6 other port", own("[::1]:1"), None, bearer.clone(), 403),
        endpoint(
            "foreign origin",
            None,
            own("http://evil.example"),
            bearer.clone(),
            403,
        ),
        endpoint("null origin", None, own("null"), bearer.clone(), 403),
        endpoint(
            "origin other port",
            None,
            own("http://127.0.0.1:1"),
            bearer.clone(),
            403,
        ),
        endpoint(
            "origin https",
            None,
            own(&format!("https://127.0.0.1:{port}")),
            bearer.clone(),
            403,
        ),
        endpoint(
            "origin suffix",
            None,
            own(&format!("http://localhost:{port}.evil.example")),
            bearer.clone(),
            403,
        ),
        endpoint(
            "origin casing is fine",
            None,
            own(&format!("http://LOCALHOST:{port}")),
            bearer.clone(),
            200,
        ),
    ];
    endpoint_probes(&s, probes, &mut p).await;
    p.finish(&s, "host and origin", HOST_AND_ORIGIN).await;
}

#[tokio::test]
async fn bearer_and_query_credentials() {
    let s = stack(None).await;
    let bearer = Some(format!("Bearer {}", s.token));
    let own = |h: &str| Some(h.to_string());
    let zone_token = s
        .zone
        .issued()
        .await
        .into_iter()
        .find(|t| t.len() > 30)
        .unwrap();
    let mut p = Probes::default();
    let mut probes = vec![
        endpoint("no token", None, None, None, 401),
        endpoint("empty bearer", None, None, own("Bearer "), 401),
        endpoint(
            "forged token",
            None,
            None,
            own("Bearer kcb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            401,
        ),
        endpoint("foreign token", None, None, own("Bearer ghp_notours"), 401),
        endpoint("basic auth", None, None, own("Basic a2NiOnNlY3JldA=="), 401),
        endpoint(
            "zone token passthrough",
            None,
            None,
            Some(format!("Bearer {zone_token}")),
            401,
        ),
    ];
    for (name, authorization, target) in [
        (
            "token in query",
            None,
            format!("/mcp?access_token={}", s.token),
        ),
        ("token param", bearer.clone(), "/mcp?token=x".to_string()),
        (
            "authorization param",
            bearer.clone(),
            "/mcp?Authorization=x".to_string(),
        ),
    ] {
        probes.push(EndpointProbe {
            target,
            ..endpoint(name, None, None, authorization, 400)
        });
    }
    endpoint_probes(&s, probes, &mut p).await;

    // A removed client is refused on its very next request (the running broker learns of the
    // removal over the control socket at once).
    let added: Value =
        serde_json::from_str(&s.home.ok(&["clients", "add", "doomed", "--json"]).await).unwrap();
    let doomed = Mcp::connect(&s.serving.url, added["token"].as_str().unwrap()).await;
    s.home.ok(&["clients", "remove", "doomed"]).await;
    let refused = doomed
        .try_tool("list_connections", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        refused_status(&refused),
        Some(401),
        "removed client: {refused}"
    );
    p.ran(&refused.to_string());
    p.finish(&s, "bearer and query credentials", CREDENTIALS)
        .await;
}

/// Raw bytes on a TCP socket: a declared body past the limit, and a header no HTTP client
/// would send.
#[tokio::test]
async fn oversize_body_and_headers() {
    let s = stack(None).await;
    let port = s.home.port;
    let mut p = Probes::default();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 6291456\r\n\r\n",
        s.token
    );
    let line = raw_http(port, head.as_bytes()).await;
    assert!(line.starts_with("HTTP/1.1 413"), "oversize body: {line}");
    p.ran(&line);
    let huge_header = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let line = raw_http(port, huge_header.as_bytes()).await;
    assert!(
        line.is_empty() || line.starts_with("HTTP/1.1 431") || line.starts_with("HTTP/1.1 400"),
        "oversize header: {line}"
    );
    p.ran(&line);
    p.finish(&s, "oversize body and headers", OVERSIZE).await;
}

#[tokio::test]
async fn ssrf_through_call_api() {
    let s = stack(None).await;
    let port = s.home.port;
    let api = s.upstream.api();
    let up = s.upstream.url.clone();
    let up_port = up.rsplit(':').next().unwrap().to_string();
    let mut p = Probes::default();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
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
        p.ran(&result.to_string());
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
    p.ran(&same_host_ip_spelling.to_string());
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
    p.ran(&within.to_string());
    p.finish(&s, "SSRF through call_api", SSRF).await;
}

/// Paths some servers resolve outside the base; routing, encoding and range headers.
#[tokio::test]
async fn path_tricks_and_routing_headers() {
    let s = stack(None).await;
    let api = s.upstream.api();
    let mut p = Probes::default();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
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
        p.ran(&result.to_string());
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
    p.ran(&headers.to_string());
    p.finish(&s, "path tricks and routing headers", PATHS_AND_ROUTING)
        .await;
}

/// The upstream sends the token back in every encoding it could: scrubbed before the agent
/// sees it.
#[tokio::test]
async fn token_echoes_are_scrubbed() {
    let s = stack(None).await;
    let api = s.upstream.api();
    let mut p = Probes::default();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
    let echo = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/echo-token")}),
        )
        .await;
    assert!(text_of(&echo).contains("[REDACTED]"), "{echo}");
    p.ran(&echo.to_string());
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
        p.ran(&leak.to_string());
        p.saw(&you_sent);
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
        p.ran(&created.to_string());
    }
    let gzip = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/gzip")}),
        )
        .await;
    assert_eq!(gzip["isError"], true, "{gzip}");
    assert!(text_of(&gzip).contains("gzip"), "{gzip}");
    p.ran(&gzip.to_string());
    // token‖token‖padding‖token with the third copy straddling what the broker reads. The
    // token's length comes from what the fixture says it received (set-up, not a probe).
    let headers = mcp
        .tool(
            "call_api",
            json!({"method": "GET", "url": format!("{api}/headers")}),
        )
        .await;
    p.saw(&headers.to_string());
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
        p.ran(&body);
    }
    p.finish(&s, "token echoes", TOKEN_ECHOES).await;
}

/// CSRF, forged and replayed state, and a callback without `iss` when the zone promises one
/// (RFC 9207).
#[tokio::test]
async fn oauth_callback_csrf_replay_and_iss() {
    let s = stack(None).await;
    let port = s.home.port;
    let mut p = Probes::default();
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
        p.ran(&response.text().await.unwrap());
    }
    // Replay: a completed round's redirect, delivered again.
    let round = s.home.round(&["connect", "github", "--no-browser"]).await;
    assert_eq!(round.code, 0);
    let url = round.stdout.lines().next().unwrap().to_string();
    let callback = testkit::authorize_until_callback(&url, &testkit::callback_prefix(port)).await;
    let (status, page) = testkit::deliver(callback.as_str()).await;
    assert_eq!(status, 400, "replayed state");
    p.ran(&page);

    let pending = tokio::spawn({
        let home_dir = s.home.dir.path().to_path_buf();
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
    p.ran(&page);
    p.finish(&s, "OAuth callback", CALLBACK).await;
}

/// No state or PKCE value reaches the agent; one round per provider; floods are bounded.
#[tokio::test]
async fn connect_tool_links_and_flood() {
    let s = stack(None).await;
    let port = s.home.port;
    let mut p = Probes::default();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
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
    p.ran(&again.to_string());
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
    p.ran(&unknown.text().await.unwrap_or_default());
    for resource in ["gmail", "slack", "linear"] {
        let r = mcp.tool("connect", json!({"resource": resource})).await;
        assert_ne!(r["isError"], true, "{resource}: {r}");
    }
    let flood = mcp.tool("connect", json!({"resource": "sentry"})).await;
    assert_eq!(flood["isError"], true, "{flood}");
    assert!(text_of(&flood).contains("already waiting"), "{flood}");
    p.ran(&flood.to_string());
    p.finish(&s, "connect tool", CONNECT_TOOL).await;
}

#[tokio::test]
async fn plain_http_only_for_loopback_api_bases() {
    let s = stack(None).await;
    let mut p = Probes::default();
    let clear = s
        .home
        .run(&["resources", "add", "http://api.example.com/v1"])
        .await;
    assert_ne!(clear.code, 0);
    assert!(clear.stderr.contains("https"), "{}", clear.stderr);
    p.ran(&clear.stderr);
    p.finish(&s, "plain-http API bases", PLAIN_HTTP).await;
}

#[tokio::test]
async fn refused_calls_keep_the_query_out_of_the_audit_log() {
    let s = stack(None).await;
    let mut p = Probes::default();
    let mcp = Mcp::connect(&s.serving.url, &s.token).await;
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
    p.ran(&refused.to_string());
    p.finish(&s, "audit", AUDIT).await;
}
