//! An OAuth agent signs in to `keycard-broker serve` the way tests/mcp/oauth_check.py's does,
//! in Rust: discovery from the MCP URL, Dynamic Client Registration, the consent page over
//! HTTP (its hidden `request` and `csrf` fields, an `access:<resource>` level per provider,
//! posted with our own `Origin`), the redirect read but never followed, and the code
//! exchanged with its PKCE verifier for a `kcba_` access token.

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Where the broker sends the user back; nothing listens there (the redirect is only read).
const REDIRECT: &str = "http://127.0.0.1:53682/callback";
const ACCESS_FIELD: &str = "access:";

/// A signed-in agent.
pub struct Agent {
    /// `dcr:…`: the policy's principal.
    pub client_id: String,
    /// `kcba_…`.
    pub access_token: String,
}

/// Signs in a new agent named `name` at the broker serving `mcp_url`, choosing `level` for
/// the provider `resource` and `none` for every other provider the consent page offers.
pub async fn sign_in(mcp_url: &str, name: &str, resource: &str, level: &str) -> Result<Agent> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mcp = url::Url::parse(mcp_url)?;
    let origin = mcp.origin().ascii_serialization();

    // Discovery: the protected resource names its authorization server.
    let prm = get_json(
        &http,
        &format!("{origin}/.well-known/oauth-protected-resource/mcp"),
    )
    .await?;
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .ok_or_else(|| anyhow!("no authorization server in {prm}"))?;
    let meta = get_json(
        &http,
        &format!("{issuer}/.well-known/oauth-authorization-server"),
    )
    .await?;
    let endpoint = |key: &str| {
        meta[key]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the broker advertises no {key}: {meta}"))
    };

    // Dynamic Client Registration: a public native client.
    let registered = http
        .post(endpoint("registration_endpoint")?)
        .json(&json!({
            "client_name": name, "redirect_uris": [REDIRECT],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "token_endpoint_auth_method": "none",
        }))
        .send()
        .await?;
    let status = registered.status();
    let registered: Value = registered.json().await?;
    ensure!(status.as_u16() == 201, "DCR: HTTP {status}: {registered}");
    let client_id = registered["client_id"]
        .as_str()
        .ok_or_else(|| anyhow!("DCR answered no client_id: {registered}"))?
        .to_string();

    // The authorization request (PKCE S256, RFC 8707 resource = the MCP URL).
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
    let authorize = endpoint("authorization_endpoint")?;
    let page = http
        .get(&authorize)
        .query(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", mcp_url),
            ("scope", "mcp"),
        ])
        .send()
        .await?;
    let status = page.status();
    let html = page.text().await?;
    ensure!(
        status.as_u16() == 200,
        "consent page: HTTP {status}: {html}"
    );

    // The user's answer: the form's hidden fields, a level per offered provider, "allow".
    let mut form = vec![
        ("request".to_string(), hidden(&html, "request")?),
        ("csrf".to_string(), hidden(&html, "csrf")?),
        ("decision".to_string(), "allow".to_string()),
    ];
    let offered = selects(&html);
    ensure!(
        offered.iter().any(|r| r == resource),
        "the consent page does not offer {resource} (offers: {offered:?})"
    );
    for r in &offered {
        let chosen = if r == resource { level } else { "none" };
        form.push((format!("{ACCESS_FIELD}{r}"), chosen.to_string()));
    }
    let action = authorize.split('?').next().unwrap_or(&authorize);
    let answer = http
        .post(action)
        .header(reqwest::header::ORIGIN, &origin)
        .form(&form)
        .send()
        .await?;
    let status = answer.status();
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_string);
    let Some(location) = location.filter(|_| status.as_u16() == 303) else {
        bail!(
            "consent decision: HTTP {status}: {}",
            answer.text().await.unwrap_or_default()
        );
    };
    ensure!(
        location.starts_with(REDIRECT),
        "redirected elsewhere: {location}"
    );
    let back = url::Url::parse(&location)?;
    let param = |key: &str| {
        back.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    ensure!(
        param("state").as_deref() == Some(state.as_str()),
        "state came back changed: {location}"
    );
    ensure!(
        param("iss").as_deref() == Some(issuer),
        "iss is not the issuer: {location}"
    );
    let code = param("code").ok_or_else(|| anyhow!("no code in the redirect: {location}"))?;

    // The code for tokens.
    let tokens = http
        .post(endpoint("token_endpoint")?)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
            ("resource", mcp_url),
        ])
        .send()
        .await?;
    let status = tokens.status();
    let tokens: Value = tokens.json().await?;
    ensure!(status.as_u16() == 200, "token exchange: HTTP {status}");
    let access_token = tokens["access_token"]
        .as_str()
        .filter(|t| t.starts_with("kcba_"))
        .ok_or_else(|| anyhow!("the token endpoint issued no broker access token"))?
        .to_string();
    Ok(Agent {
        client_id,
        access_token,
    })
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value> {
    http.get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("GET {url}"))
}

/// The value of the form's `<input … name="NAME" value="…">`.
fn hidden(html: &str, name: &str) -> Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .map(|i| i + marker.len())
        .ok_or_else(|| anyhow!("the consent form has no {name} field"))?;
    let rest = html.get(start..).unwrap_or_default();
    let end = rest
        .find('"')
        .ok_or_else(|| anyhow!("the consent form's {name} field is unterminated"))?;
    Ok(unescape(rest.get(..end).unwrap_or_default()))
}

/// The providers offered: the resource of every `<select … name="access:RESOURCE">`.
fn selects(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in html.match_indices("<select") {
        let tag = html
            .get(i..)
            .and_then(|rest| rest.find('>').and_then(|end| rest.get(..end)))
            .unwrap_or_default();
        let marker = format!("name=\"{ACCESS_FIELD}");
        if let Some(start) = tag.find(&marker).map(|s| s + marker.len())
            && let Some(value) = tag.get(start..).and_then(|v| v.split('"').next())
        {
            out.push(unescape(value));
        }
    }
    out
}

/// HTML attribute escapes as maud writes them.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_consent_form_as_maud_writes_it() {
        let html = r#"<form method="post" action="/oauth/authorize"><input type="hidden" name="request" value="r-1"><input type="hidden" name="csrf" value="c&amp;2"><select id="access:http://127.0.0.1:9/api" name="access:http://127.0.0.1:9/api"><option value="none" selected>No</option></select><select id="access:https://x.example/?a=1&amp;b=2" name="access:https://x.example/?a=1&amp;b=2"></select></form>"#;
        assert_eq!(hidden(html, "request").unwrap(), "r-1");
        assert_eq!(hidden(html, "csrf").unwrap(), "c&2");
        assert!(hidden(html, "nope").is_err());
        assert_eq!(
            selects(html),
            ["http://127.0.0.1:9/api", "https://x.example/?a=1&b=2"]
        );
    }
}
