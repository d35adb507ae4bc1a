//! What an attacker would try against the authorization server: redirect URIs it never
//! registered, downgraded PKCE, another resource, a forged or replayed consent form, a web
//! page that sends the browser here with a metadata document nobody allowed.

use reqwest::StatusCode;
use serde_json::json;

use super::tests::{GITHUB, REDIRECT, hidden, new_pkce, query_of, server, text};
use super::{AgentRecord, Registration};

#[tokio::test]
async fn bad_authorization_requests_never_redirect_anywhere_unregistered() {
    let s = server().await;
    let client_id = s.client("A").await;
    let pkce = new_pkce();
    // Before the redirect URI is known good: a page, not a redirect.
    for extra in [
        vec![("redirect_uri", "http://127.0.0.1:4567/elsewhere")],
        vec![("redirect_uri", "https://evil.example/callback")],
        vec![("redirect_uri", "")],
        vec![("client_id", "dcr:unknown")],
    ] {
        let r = s.consent(&client_id, &pkce, &extra).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(r.headers().get("location").is_none(), "{extra:?}");
    }
    // After: back to the agent with the error, state and iss.
    for (extra, error) in [
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", "")], "invalid_request"),
        (
            vec![("resource", "http://127.0.0.1:1/mcp")],
            "invalid_target",
        ),
        (vec![("resource", "")], "invalid_target"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
    ] {
        let r = s.consent(&client_id, &pkce, &extra).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{extra:?}");
        let q = query_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], error, "{extra:?}");
        assert_eq!(q["iss"], s.base);
    }
    let (status, e) = s
        .register(json!({"client_name": "x", "redirect_uris": ["http://evil.example/cb"]}))
        .await;
    assert_eq!(
        (status, text(&e, "error").as_str()),
        (StatusCode::BAD_REQUEST, "invalid_redirect_uri")
    );
}

#[tokio::test]
async fn the_consent_form_refuses_forgery_and_deny_grants_nothing() {
    let s = server().await;
    let client_id = s.client("A").await;
    let pkce = new_pkce();
    let page = s
        .consent(&client_id, &pkce, &[])
        .await
        .text()
        .await
        .unwrap();
    let (request, csrf) = (hidden(&page, "request"), hidden(&page, "csrf"));
    let allow = |csrf: &str| {
        vec![
            ("request".to_string(), request.clone()),
            ("csrf".to_string(), csrf.to_string()),
            ("decision".to_string(), "allow".to_string()),
            (format!("access:{GITHUB}"), "write".to_string()),
        ]
    };
    let send = |form: Vec<(String, String)>, origin: Option<&'static str>| {
        let s = &s;
        async move {
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            s.decide(&form, origin).await
        }
    };
    let r = send(allow(&csrf), Some("https://evil.example")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "foreign origin");
    let r = send(allow("forged"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "wrong CSRF token");
    assert!(s.authz.access().unwrap().is_empty());
    // The forged attempt used the request up: the real page must start again.
    let r = send(allow(&csrf), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "single use");

    let page = s
        .consent(&client_id, &pkce, &[])
        .await
        .text()
        .await
        .unwrap();
    let form = [
        ("request", hidden(&page, "request")),
        ("csrf", hidden(&page, "csrf")),
        ("decision", "deny".to_string()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = s.decide(&form, Some(&s.base)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
    assert!(s.authz.access().unwrap().is_empty());
}

/// Any web page can send the browser to the authorization endpoint with a document URL of its
/// own: the page alone, or a denial, must add no agent. Allowing stores it as verified by its
/// origin, port included.
#[tokio::test]
async fn a_metadata_document_agent_is_stored_only_when_the_user_allows_it() {
    let s = server().await;
    let url = "https://agent.example:8443/client.json";
    s.authz.inner.documents.remember(AgentRecord {
        client_id: url.into(),
        name: "Doc Agent".into(),
        registration: Registration::Cimd,
        redirect_uris: vec![REDIRECT.into()],
        created_at: chrono::Utc::now(),
        last_seen_at: None,
    });
    let pkce = new_pkce();
    let page = s.consent(url, &pkce, &[]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("data-testid=\"verified\"") && html.contains("agent.example:8443"),
        "{html}"
    );
    assert!(
        s.authz.agents().unwrap().is_empty(),
        "a page alone stores nothing"
    );
    let form = [
        ("request", hidden(&html, "request")),
        ("csrf", hidden(&html, "csrf")),
        ("decision", "deny".to_string()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        s.decide(&form, Some(&s.base)).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(
        s.authz.agents().unwrap().is_empty(),
        "a denial stores nothing"
    );

    let code = s.code(url, &pkce, &[(GITHUB, "read")]).await;
    let agents = s.authz.agents().unwrap();
    assert_eq!(
        agents
            .iter()
            .map(|a| (a.client_id.as_str(), a.registration))
            .collect::<Vec<_>>(),
        vec![(url, Registration::Cimd)]
    );
    let (status, tokens) = s.exchange(url, &code, &pkce).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let caller = s
        .authz
        .authenticate(&text(&tokens, "access_token"))
        .unwrap();
    assert_eq!(
        (caller.client_id.as_str(), caller.name.as_str()),
        (url, "Doc Agent")
    );
}
