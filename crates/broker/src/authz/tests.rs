//! The authorization server over real HTTP on loopback: discovery, registration, the consent
//! form, code exchange, rotation, replay and revocation, and the probes an attacker would try.

use std::sync::Arc;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::policy::Access;

pub(super) struct Server {
    pub(super) authz: Authz,
    pub(super) base: String,
    pub(super) http: reqwest::Client,
}

pub(super) const GITHUB: &str = "https://api.github.com";
pub(super) const LINEAR: &str = "https://api.linear.app";
pub(super) const REDIRECT: &str = "http://127.0.0.1/callback";

pub(super) async fn server() -> Server {
    let db = Arc::new(crate::db::Db::open_in_memory().unwrap());
    let authz = Authz::new(db, Events::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let providers: Providers = Arc::new(|| {
        vec![
            Offer {
                resource: GITHUB.into(),
                name: "GitHub".into(),
            },
            Offer {
                resource: LINEAR.into(),
                name: "Linear".into(),
            },
        ]
    });
    let app = authz.router(port, providers);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        authz,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap(),
    }
}

pub(super) struct Pkce {
    pub(super) verifier: String,
    pub(super) challenge: String,
}

pub(super) fn new_pkce() -> Pkce {
    let verifier = new_id(40);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

/// The value of a hidden field in the consent page.
pub(super) fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..][..html[start..].find('"').unwrap()].to_string()
}

pub(super) fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

impl Server {
    pub(super) fn resource(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub(super) async fn register(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{REGISTER_PATH}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    pub(super) async fn client(&self, name: &str) -> String {
        let (status, body) = self
            .register(json!({"client_name": name, "redirect_uris": [REDIRECT]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["client_id"].as_str().unwrap().to_string()
    }

    pub(super) async fn authorize(&self, params: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .get(format!("{}{AUTHORIZE_PATH}", self.base))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// A well-formed authorization request; `extra` replaces or adds parameters.
    pub(super) async fn consent(
        &self,
        client_id: &str,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let resource = self.resource();
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:4567/callback"),
            ("state", "st-1"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", resource.as_str()),
        ];
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        self.authorize(&params).await
    }

    pub(super) async fn decide(
        &self,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{AUTHORIZE_PATH}", self.base))
            .form(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send().await.unwrap()
    }

    /// Consent with the given levels; returns the code.
    pub(super) async fn code(
        &self,
        client_id: &str,
        pkce: &Pkce,
        levels: &[(&str, &str)],
    ) -> String {
        let page = self
            .consent(client_id, pkce, &[])
            .await
            .text()
            .await
            .unwrap();
        let (request, csrf) = (hidden(&page, "request"), hidden(&page, "csrf"));
        let mut form = vec![
            ("request", request.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", "allow"),
        ];
        let fields: Vec<(String, &str)> = levels
            .iter()
            .map(|(r, l)| (format!("access:{r}"), *l))
            .collect();
        form.extend(fields.iter().map(|(k, v)| (k.as_str(), *v)));
        let r = self.decide(&form, Some(&self.base)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let q = query_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(q["state"], "st-1");
        assert_eq!(q["iss"], self.base, "RFC 9207 iss on the response");
        q["code"].clone()
    }

    pub(super) async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{TOKEN_PATH}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        (r.status(), r.json().await.unwrap())
    }

    pub(super) async fn exchange(
        &self,
        client_id: &str,
        code: &str,
        pkce: &Pkce,
    ) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:4567/callback"),
            ("code_verifier", &pkce.verifier),
        ])
        .await
    }

    pub(super) async fn refresh(&self, client_id: &str, refresh: &str) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh),
        ])
        .await
    }
}

pub(super) fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn discovery_documents_name_this_broker() {
    let s = server().await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let prm: Value = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(prm["resource"], s.resource());
        assert_eq!(prm["authorization_servers"], json!([s.base]));
    }
    let meta: Value = s
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], s.base);
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(meta["token_endpoint"], format!("{}{TOKEN_PATH}", s.base));
    let rebound = s
        .http
        .get(format!("{}/.well-known/oauth-authorization-server", s.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN, "DNS rebinding");
}

#[tokio::test]
async fn sign_in_grants_what_the_user_chose_and_refresh_rotates() {
    let s = server().await;
    let client_id = s.client("Claude <Code>").await;
    let pkce = new_pkce();
    let page = s.consent(&client_id, &pkce, &[]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Claude &lt;Code&gt;") && !html.contains("<Code>"),
        "escaped name"
    );
    assert!(html.contains("data-testid=\"unverified\""));
    assert!(html.contains(&format!("name=\"access:{GITHUB}\"")));
    assert!(!html.contains("<script"), "no JavaScript");

    let code = s
        .code(&client_id, &pkce, &[(GITHUB, "read"), (LINEAR, "ask")])
        .await;
    let mut access = s.authz.access().unwrap();
    access.sort_by(|a, b| a.resource.cmp(&b.resource));
    assert_eq!(
        access
            .iter()
            .map(|a| (a.client.as_str(), a.resource.as_str(), a.access))
            .collect::<Vec<_>>(),
        vec![
            (client_id.as_str(), GITHUB, Access::Read),
            (client_id.as_str(), LINEAR, Access::Ask)
        ]
    );
    let (status, tokens) = s.exchange(&client_id, &code, &pkce).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        tokens["token_type"].as_str().unwrap().to_ascii_lowercase(),
        "bearer"
    );
    assert!(tokens["expires_in"].as_u64().unwrap() <= 3600);
    let access_token = text(&tokens, "access_token");
    let refresh = text(&tokens, "refresh_token");
    assert!(access_token.starts_with(ACCESS_PREFIX) && refresh.starts_with(REFRESH_PREFIX));
    let caller = s.authz.authenticate(&access_token).unwrap();
    assert_eq!(caller.client_id, client_id);
    assert_eq!(caller.name, "Claude <Code>");

    // Rotation: a new pair; the old access token keeps working until it expires.
    let (status, rotated) = s.refresh(&client_id, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_access = text(&rotated, "access_token");
    let new_refresh = text(&rotated, "refresh_token");
    assert_ne!(new_refresh, refresh);
    assert!(s.authz.authenticate(&new_access).is_some());

    // Replaying the old refresh token ends the whole sign-in.
    let (status, replay) = s.refresh(&client_id, &refresh).await;
    assert_eq!(
        (status, text(&replay, "error").as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(
        s.authz.authenticate(&new_access).is_none(),
        "replay revokes the grant"
    );
    assert!(s.authz.authenticate(&access_token).is_none());
    let (status, _) = s.refresh(&client_id, &new_refresh).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the rotated token died with its grant"
    );
}

#[tokio::test]
async fn codes_are_single_use_bound_to_client_and_verifier() {
    let s = server().await;
    let a = s.client("A").await;
    let b = s.client("B").await;
    let pkce = new_pkce();
    let code = s.code(&a, &pkce, &[(GITHUB, "write")]).await;
    let (status, e) = s.exchange(&b, &code, &pkce).await;
    assert_eq!(
        (status, text(&e, "error").as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "code for another client"
    );
    let wrong = Pkce {
        verifier: new_id(40),
        challenge: String::new(),
    };
    let (status, _) = s.exchange(&a, &code, &wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "wrong verifier");
    let (status, tokens) = s.exchange(&a, &code, &pkce).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let first = text(&tokens, "access_token");
    let (status, e) = s.exchange(&a, &code, &pkce).await;
    assert_eq!(
        (status, text(&e, "error").as_str()),
        (StatusCode::BAD_REQUEST, "invalid_grant"),
        "code replay"
    );
    assert!(
        s.authz.authenticate(&first).is_none(),
        "a replayed code ends the sign-in it made"
    );
    let (status, e) = s
        .token(&[
            ("grant_type", "password"),
            ("client_id", &a),
            ("username", "u"),
        ])
        .await;
    assert_eq!(
        (status, text(&e, "error").as_str()),
        (StatusCode::BAD_REQUEST, "unsupported_grant_type")
    );
    let (status, e) = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &a),
            ("resource", "https://elsewhere.example/mcp"),
        ])
        .await;
    assert_eq!(
        (status, text(&e, "error").as_str()),
        (StatusCode::BAD_REQUEST, "invalid_target")
    );
}

#[tokio::test]
async fn sign_out_and_revocation_end_access_at_once() {
    let s = server().await;
    let client_id = s.client("A").await;
    let pkce = new_pkce();
    let code = s.code(&client_id, &pkce, &[(GITHUB, "read")]).await;
    let (_, tokens) = s.exchange(&client_id, &code, &pkce).await;
    let access = text(&tokens, "access_token");
    let refresh = text(&tokens, "refresh_token");
    assert!(s.authz.sign_out(&client_id).unwrap());
    assert!(s.authz.authenticate(&access).is_none());
    let (status, _) = s.refresh(&client_id, &refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let again = new_pkce();
    let code = s.code(&client_id, &again, &[(GITHUB, "read")]).await;
    let (_, tokens) = s.exchange(&client_id, &code, &again).await;
    let access = text(&tokens, "access_token");
    let r = s
        .http
        .post(format!("{}{REVOKE_PATH}", s.base))
        .form(&[("token", text(&tokens, "refresh_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        s.authz.authenticate(&access).is_none(),
        "revoking the refresh token ends the grant"
    );
    let r = s
        .http
        .post(format!("{}{REVOKE_PATH}", s.base))
        .form(&[("token", "kcbr_unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "RFC 7009: unknown tokens are not an error"
    );
}
