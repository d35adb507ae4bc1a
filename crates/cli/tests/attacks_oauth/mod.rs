//! Attacks on agent sign-in (PROTOCOL.md §3) against a running `serve`: the broker as the
//! authorization server of its own MCP endpoint. Two families, each on its own stack:
//! - the sign-in itself: redirect URIs nobody registered, downgraded or missing PKCE, another
//!   resource, a forged, cross-site or replayed consent form, markup in the agent's name, being
//!   framed, and DNS rebinding against every OAuth endpoint;
//! - what an agent holds afterwards: codes replayed, stolen by another client or exchanged with
//!   the wrong verifier, redirect URI or resource; refresh tokens of another client; tokens
//!   after `clients signout`; a provider the user did not grant; a removed static client.
//!
//! Each probe asserts the exact refusal; the crate's `Probes` counts them and runs the leak
//! check, and the second family also greps every file of the broker for the agent tokens.

mod flow;

use flow::{AuthServer, CALLBACK, Pkce, REDIRECT, error, location_query};
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Mcp, Probes, Stack, stack, text_of};

pub const SIGN_IN: usize = 23;
pub const TOKENS: usize = 14;

/// A page explaining the refusal (`why`): 400, HTML, no redirect.
async fn refused_page(r: reqwest::Response, why: &str, p: &mut Probes) {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
    assert!(r.headers().get("location").is_none(), "{why}: a redirect");
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/html"), "{why}: {kind}");
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("<p role=\"alert\">{why}")), "{html}");
    p.ran(&html);
}

/// Back to the agent's registered redirect URI with `error`, `state` and `iss`.
/// A token request the endpoint must refuse (400 with `code`); its body is a probe seen.
async fn refused_grant(s: &AuthServer, p: &mut Probes, form: &[(&str, &str)], code: &str) {
    let (status, body) = s.token(form).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::BAD_REQUEST, code),
        "{form:?}"
    );
    p.ran(&body.to_string());
}

async fn error_redirect(r: reqwest::Response, s: &AuthServer, want: &str, p: &mut Probes) {
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{want}");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(CALLBACK), "{location}");
    let q = location_query(&r);
    assert_eq!(q["error"], want, "{location}");
    assert_eq!(
        (q["state"].as_str(), q["iss"].as_str()),
        ("st-1", s.base.as_str())
    );
    assert!(!q.contains_key("code"), "{location}");
    p.ran(&location);
}

#[tokio::test]
async fn agent_sign_in_attacks() {
    let stack = stack(None).await;
    let s = AuthServer::of(&stack);
    let mut p = Probes::default();
    let agent = s.client("Probe agent").await;
    let pkce = Pkce::new();

    // Before the redirect URI is known good nothing redirects: a page says why.
    let unregistered = "The redirect URI is not one this agent registered.";
    for (extra, why) in [
        (
            vec![("redirect_uri", "http://127.0.0.1:9/other")],
            unregistered,
        ),
        (
            vec![("redirect_uri", "https://evil.example/callback")],
            unregistered,
        ),
        (
            vec![("client_id", "dcr:AAAAAAAAAAAAAAAAAAAAAA")],
            "This agent is not registered with Keycard Broker",
        ),
    ] {
        refused_page(s.authorize(&agent, &pkce, &extra).await, why, &mut p).await;
    }
    for (name, uri) in [
        ("plain http off loopback", "http://evil.example/callback"),
        ("javascript: redirect", "javascript:alert(1)"),
    ] {
        let (status, body) = s
            .register(json!({"client_name": name, "redirect_uris": [uri]}))
            .await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::BAD_REQUEST, "invalid_redirect_uri"),
            "{name}"
        );
        p.ran(&body.to_string());
    }
    // After it is: back to the agent with the error.
    for (extra, want) in [
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            vec![
                ("code_challenge_method", "plain"),
                ("code_challenge", &pkce.verifier[..43]),
            ],
            "invalid_request",
        ),
        (
            vec![("resource", "https://evil.example/mcp")],
            "invalid_target",
        ),
        (vec![("resource", "")], "invalid_target"),
    ] {
        error_redirect(s.authorize(&agent, &pkce, &extra).await, &s, want, &mut p).await;
    }

    // The consent form: only our own page, once, with its CSRF token.
    let html = s.authorize(&agent, &pkce, &[]).await.text().await.unwrap();
    let allow = AuthServer::answer(&html, "allow", &s.api, "write");
    let evil = [("origin", "https://evil.example")];
    let foreign = "The decision did not come from Keycard Broker's own page.";
    refused_page(s.decide(&allow, &evil).await, foreign, &mut p).await;
    let html = s.authorize(&agent, &pkce, &[]).await.text().await.unwrap();
    let cross = [("sec-fetch-site", "cross-site")];
    let form = AuthServer::answer(&html, "allow", &s.api, "write");
    refused_page(s.decide(&form, &cross).await, foreign, &mut p).await;
    let html = s.authorize(&agent, &pkce, &[]).await.text().await.unwrap();
    let mut forged = AuthServer::answer(&html, "allow", &s.api, "write");
    forged[1].1 = "forged".into();
    let own = [("origin", s.base.as_str())];
    let not_ours = "The decision form is not the one Keycard Broker showed.";
    refused_page(s.decide(&forged, &own).await, not_ours, &mut p).await;
    // The forged answer used the request up: the real one is too late.
    let real = AuthServer::answer(&html, "allow", &s.api, "write");
    let answered = "This sign-in request expired or was already answered.";
    refused_page(s.decide(&real, &own).await, answered, &mut p).await;
    let agents: serde_json::Value =
        serde_json::from_str(&stack.home.ok(&["clients", "list", "--json"]).await).unwrap();
    let mine = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == agent.as_str());
    assert_eq!(
        mine.unwrap()["access"],
        json!([]),
        "a refused form granted something"
    );

    // What the agent says about itself is text, and the page cannot be framed.
    let named = s.client("<script>alert(1)</script> Agent").await;
    let page = s.authorize(&named, &pkce, &[]).await;
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Agent"),
        "{html}"
    );
    assert!(!html.contains("<script"), "markup from the agent: {html}");
    assert!(html.contains("data-testid=\"unverified\""), "{html}");
    p.ran(&html);
    for response in [
        headers,
        s.authorize("dcr:nobody", &pkce, &[])
            .await
            .headers()
            .clone(),
    ] {
        let csp = response["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(response["x-frame-options"], "DENY");
    }
    p.ran("framing");

    // DNS rebinding: a page on another name that resolves to 127.0.0.1.
    let port = stack.home.port;
    let rebound = format!("evil.example:{port}");
    for (method, path) in [
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/.well-known/oauth-protected-resource/mcp"),
        ("GET", "/oauth/authorize"),
        ("POST", "/oauth/register"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/revoke"),
    ] {
        let url = format!("{}{path}", s.base);
        let request = match method {
            "GET" => s.http.get(url),
            _ => s.http.post(url).body("{}"),
        };
        let r = request.header("host", &rebound).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        p.ran(&r.text().await.unwrap());
    }
    // Cross-origin requests to the endpoints a browser page could script.
    let r = s
        .http
        .post(format!("{}/oauth/token", s.base))
        .header("origin", "https://evil.example")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &agent),
            ("refresh_token", "kcbr_x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error(&body), "invalid_request", "{body}");
    p.ran(&body.to_string());
    let r = s
        .http
        .post(format!("{}/oauth/register", s.base))
        .header("origin", "https://evil.example")
        .json(&json!({"client_name": "x", "redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error(&body), "invalid_client_metadata", "{body}");
    p.ran(&body.to_string());
    p.finish(&stack, "agent sign-in", SIGN_IN).await;
}

#[tokio::test]
async fn agent_token_attacks() {
    let stack = stack(None).await;
    let s = AuthServer::of(&stack);
    let mut p = Probes::default();
    let mut issued = Vec::new();
    let (a, b) = (s.client("Agent A").await, s.client("Agent B").await);

    // A code is bound to its client, verifier, redirect URI and resource.
    let pkce = Pkce::new();
    let code = s.code(&a, &pkce, "read").await;
    let (status, body) = s.exchange(&b, &code, &pkce).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "another client"
    );
    p.ran(&body.to_string());
    let (status, body) = s.exchange(&a, &code, &Pkce::new()).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "wrong verifier"
    );
    p.ran(&body.to_string());
    for (name, field, value, want) in [
        (
            "redirect_uri",
            "redirect_uri",
            "http://127.0.0.1:1/callback",
            "invalid_grant",
        ),
        (
            "resource",
            "resource",
            "https://evil.example/mcp",
            "invalid_target",
        ),
    ] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", a.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", pkce.verifier.as_str()),
        ];
        form.retain(|(k, _)| *k != field);
        form.push((field, value));
        let (status, body) = s.token(&form).await;
        assert_eq!(
            (status, error(&body)),
            (StatusCode::BAD_REQUEST, want),
            "{name}"
        );
        p.ran(&body.to_string());
    }
    // The real exchange (positive control), then the same code again: refused, and the sign-in
    // it made ends — whoever replays a code is not the agent that redeemed it.
    let (status, tokens) = s.exchange(&a, &code, &pkce).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let first = tokens["access_token"].as_str().unwrap().to_string();
    issued.extend([
        first.clone(),
        tokens["refresh_token"].as_str().unwrap().to_string(),
    ]);
    assert_eq!(s.mcp_status(&first).await.0, 200);
    p.ran("positive control");
    let (status, body) = s.exchange(&a, &code, &pkce).await;
    assert_eq!(
        (status, error(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "code replay"
    );
    let (status, challenge) = s.mcp_status(&first).await;
    assert_eq!(status, 401, "the replayed code's sign-in still works");
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    p.ran(&body.to_string());

    // Refresh tokens: bound to their client; never a bearer for /mcp.
    let (access, refresh) = s.sign_in(&a, "read").await;
    issued.extend([access.clone(), refresh.clone()]);
    refused_grant(
        &s,
        &mut p,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &b),
            ("refresh_token", &refresh),
        ],
        "invalid_grant",
    )
    .await;
    assert_eq!(
        s.mcp_status(&refresh).await.0,
        401,
        "refresh token as bearer"
    );
    p.ran("refresh as bearer");
    refused_grant(
        &s,
        &mut p,
        &[
            ("grant_type", "password"),
            ("client_id", &a),
            ("username", "u"),
            ("password", "p"),
        ],
        "unsupported_grant_type",
    )
    .await;

    // The policy: a provider the user did not grant, a write with read access.
    let fixture = format!("{}/items", s.api);
    let reader = Mcp::connect(&s.mcp, &access).await;
    let post = reader
        .tool(
            "call_api",
            json!({"method": "POST", "url": fixture, "body": {"n": 1}}),
        )
        .await;
    assert_eq!(post["isError"], true, "{post}");
    assert!(text_of(&post).contains("policy refused"), "{post}");
    p.ran(&post.to_string());
    let (nothing, nothing_refresh) = s.sign_in(&b, "none").await;
    issued.extend([nothing.clone(), nothing_refresh]);
    let denied = Mcp::connect(&s.mcp, &nothing)
        .await
        .tool("call_api", json!({"method": "GET", "url": fixture}))
        .await;
    assert_eq!(denied["isError"], true, "{denied}");
    assert!(text_of(&denied).contains("policy refused"), "{denied}");
    p.ran(&denied.to_string());

    // Sign-out ends every token of the agent at once; the refresh token with them.
    stack.home.ok(&["clients", "signout", &a]).await;
    let (status, challenge) = s.mcp_status(&access).await;
    assert_eq!(status, 401, "an access token after sign-out");
    assert!(
        challenge.contains("error=\"invalid_token\"") && challenge.contains("resource_metadata="),
        "{challenge}"
    );
    p.ran(&challenge);
    refused_grant(
        &s,
        &mut p,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &a),
            ("refresh_token", &refresh),
        ],
        "invalid_grant",
    )
    .await;

    // A static client removed while its agent still holds the token.
    let added = stack.home.ok(&["clients", "add", "doomed", "--json"]).await;
    let doomed = serde_json::from_str::<serde_json::Value>(&added).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(s.mcp_status(&doomed).await.0, 200);
    stack.home.ok(&["clients", "remove", "doomed"]).await;
    let (status, challenge) = s.mcp_status(&doomed).await;
    assert_eq!(status, 401, "a removed client's token");
    p.ran(&challenge);

    no_agent_token_on_disk(&stack, &issued);
    p.finish(&stack, "agent tokens", TOKENS).await;
}

/// The broker keeps hashes of agent tokens only: none is in any file it wrote.
fn no_agent_token_on_disk(stack: &Stack, issued: &[String]) {
    assert!(issued.len() >= 6, "{} tokens", issued.len());
    for (path, bytes) in testkit::files_under(stack.home.dir.path()) {
        let text = String::from_utf8_lossy(&bytes);
        for token in issued {
            assert!(
                !text.contains(token.as_str()),
                "an agent token in {}",
                path.display()
            );
        }
    }
}
