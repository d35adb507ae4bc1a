//! An agent's side of signing in to a running broker, over plain HTTP with no redirects
//! followed: registration, the authorization request, the consent form (as the user's browser
//! would post it), the token endpoint, and `/mcp` with the token it got.

use base64::Engine as _;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{Stack, post_raw};

/// What agents register: loopback without a port, so any port matches at request time.
pub const REDIRECT: &str = "http://127.0.0.1/callback";
/// What they send in the authorization and token requests.
pub const CALLBACK: &str = "http://127.0.0.1:53682/callback";

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        use std::hash::{BuildHasher, RandomState};
        // 64 hex characters from randomly keyed hashers: unguessable enough for a test.
        let verifier: String = (0..4)
            .map(|_| format!("{:016x}", RandomState::new().hash_one(0u8)))
            .collect();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// The value of a hidden field of the consent form.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..][..html[start..].find('"').unwrap()].to_string()
}

/// The query of a redirect's `Location`.
pub fn location_query(r: &Response) -> std::collections::HashMap<String, String> {
    let location = r.headers()["location"].to_str().unwrap();
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The broker's authorization server, as an agent (and its user's browser) reach it.
pub struct AuthServer {
    pub base: String,
    pub mcp: String,
    pub api: String,
    pub http: reqwest::Client,
}

impl AuthServer {
    pub fn of(s: &Stack) -> AuthServer {
        let base = format!("http://127.0.0.1:{}", s.home.port);
        AuthServer {
            mcp: format!("{base}/mcp"),
            base,
            api: s.upstream.api(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
        }
    }

    pub async fn register(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/oauth/register", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// A registered agent's client id.
    pub async fn client(&self, name: &str) -> String {
        let (status, body) = self
            .register(json!({"client_name": name, "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["client_id"].as_str().unwrap().to_string()
    }

    /// A well-formed authorization request; `extra` replaces parameters (empty: leaves it out).
    pub async fn authorize(
        &self,
        client_id: &str,
        pkce: &Pkce,
        extra: &[(&str, &str)],
    ) -> Response {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("state", "st-1"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", self.mcp.as_str()),
        ];
        for (k, v) in extra {
            params.retain(|(name, _)| name != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        self.http
            .get(format!("{}/oauth/authorize", self.base))
            .query(&params)
            .send()
            .await
            .unwrap()
    }

    /// The consent page's form, answered: `decision` and the fixture's access level.
    pub fn answer(html: &str, decision: &str, api: &str, level: &str) -> Vec<(String, String)> {
        vec![
            ("request".into(), hidden(html, "request")),
            ("csrf".into(), hidden(html, "csrf")),
            ("decision".into(), decision.into()),
            (format!("access:{api}"), level.into()),
        ]
    }

    /// Posts the consent form with the given request headers (Origin, Sec-Fetch-Site).
    pub async fn decide(&self, form: &[(String, String)], headers: &[(&str, &str)]) -> Response {
        let mut request = self
            .http
            .post(format!("{}/oauth/authorize", self.base))
            .form(form);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.unwrap()
    }

    /// The user allows `level` on the fixture: the code.
    pub async fn code(&self, client_id: &str, pkce: &Pkce, level: &str) -> String {
        let page = self.authorize(client_id, pkce, &[]).await;
        assert_eq!(page.status(), StatusCode::OK);
        let form = Self::answer(&page.text().await.unwrap(), "allow", &self.api, level);
        let r = self.decide(&form, &[("origin", &self.base)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let q = location_query(&r);
        assert_eq!(
            (q["state"].as_str(), q["iss"].as_str()),
            ("st-1", self.base.as_str())
        );
        q["code"].clone()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn exchange(&self, client_id: &str, code: &str, pkce: &Pkce) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", &pkce.verifier),
        ])
        .await
    }

    /// A whole sign-in with `level` on the fixture: (access token, refresh token).
    pub async fn sign_in(&self, client_id: &str, level: &str) -> (String, String) {
        let pkce = Pkce::new();
        let code = self.code(client_id, &pkce, level).await;
        let (status, tokens) = self.exchange(client_id, &code, &pkce).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        (
            tokens["access_token"].as_str().unwrap().to_string(),
            tokens["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    /// `/mcp`'s answer to an `initialize` with `token`: the status and `WWW-Authenticate`.
    pub async fn mcp_status(&self, token: &str) -> (u16, String) {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"}}});
        let r = post_raw(&self.mcp, token, init).await;
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), challenge)
    }
}

/// The OAuth error code of a token or registration answer.
pub fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}
