//! Talking to the zone emulator and the upstream fixture: real tokens (DCR, authorize rounds
//! with PKCE, RFC 8693 exchange, as in tests/zone/selftest.mjs) and the control APIs.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

pub struct Zone {
    pub issuer: String,
    http: reqwest::Client,
    meta: Value,
    client_id: String,
}

fn endpoint<'a>(meta: &'a Value, name: &str) -> Result<&'a str> {
    meta[name]
        .as_str()
        .ok_or_else(|| anyhow!("zone advertises no {name}"))
}

impl Zone {
    /// Discovery and one dynamically registered native client (the bench's "user agent").
    pub async fn connect(issuer: &str) -> Result<Zone> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let meta: Value = http
            .get(format!("{issuer}/.well-known/oauth-authorization-server"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let reg: Value = http
            .post(endpoint(&meta, "registration_endpoint")?)
            .json(&json!({
                "client_name": "keycard-bench", "application_type": "native",
                "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"], "token_endpoint_auth_method": "none",
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let client_id = reg["client_id"]
            .as_str()
            .ok_or_else(|| anyhow!("registration answered no client_id: {reg}"))?
            .to_string();
        Ok(Zone {
            issuer: issuer.to_string(),
            http,
            meta,
            client_id,
        })
    }

    /// One authorize round (auto-approved by the emulator) for `resource`; the access token.
    pub async fn authorize(&self, resource: &str) -> Result<String> {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = url::Url::parse(endpoint(&self.meta, "authorization_endpoint")?)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid offline_access")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "bench")
            .append_pair("resource", resource);
        let mut next = url;
        for _ in 0..10 {
            if next.as_str().starts_with(REDIRECT) {
                break;
            }
            let res = self.http.get(next.clone()).send().await?;
            if !matches!(res.status().as_u16(), 302 | 303) {
                bail!("authorize hop {next}: HTTP {}", res.status());
            }
            let location = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("redirect without location"))?;
            next = next.join(location)?;
        }
        let code = next
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| anyhow!("no code in the final redirect"))?;
        let t = self
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
                ("client_id", &self.client_id),
            ])
            .await?;
        access_token(&t)
    }

    /// RFC 8693 exchange of `subject` for a token for `resource` (no client auth, as the SDK).
    pub async fn exchange(&self, subject: &str, resource: &str) -> Result<String> {
        let t = self
            .form(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", subject),
                ("subject_token_type", AT_TYPE),
                ("resource", resource),
            ])
            .await?;
        access_token(&t)
    }

    async fn form(&self, params: &[(&str, &str)]) -> Result<Value> {
        let res = self
            .http
            .post(endpoint(&self.meta, "token_endpoint")?)
            .form(params)
            .send()
            .await?;
        let status = res.status();
        let body: Value = res
            .json()
            .await
            .context("token endpoint answered no JSON")?;
        if !status.is_success() {
            bail!("token endpoint HTTP {status}: {body}");
        }
        Ok(body)
    }

    pub async fn control_get(&self, name: &str) -> Result<Value> {
        control_get(&self.http, &format!("{}/__control/{name}", self.issuer)).await
    }

    pub async fn control_post(&self, name: &str, body: Value) -> Result<Value> {
        control_post(
            &self.http,
            &format!("{}/__control/{name}", self.issuer),
            body,
        )
        .await
    }
}

fn access_token(t: &Value) -> Result<String> {
    t["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no access_token in {t}"))
}

pub async fn control_get(http: &reqwest::Client, url: &str) -> Result<Value> {
    Ok(http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

pub async fn control_post(http: &reqwest::Client, url: &str, body: Value) -> Result<Value> {
    Ok(http
        .post(url)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Zone round trips made to the token endpoint (every grant type) since the last reset.
pub fn token_round_trips(counters: &Value) -> u64 {
    counters["token"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
