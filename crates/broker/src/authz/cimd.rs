//! Client ID Metadata Documents: an agent whose `client_id` is an https URL publishes its
//! name and redirect URIs there; the broker fetches the document (bounded in size and time,
//! no redirects, cached per `Cache-Control`) and trusts the name as much as the origin.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use url::Url;

use super::{AgentRecord, Registration, redirect, register::clean_name};

const MAX_DOCUMENT_BYTES: usize = 8 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_CACHED: usize = 128;
/// Extra trusted root (PEM) for metadata fetches, for tests with their own CA.
pub const CA_ENV: &str = "KEYCARD_BROKER_CIMD_CA";

/// True when `client_id` names a metadata document rather than a registration.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
}

pub(super) struct Documents {
    cache: Mutex<HashMap<String, (AgentRecord, Instant)>>,
}

impl Documents {
    pub fn new() -> Documents {
        Documents {
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The agent a document URL describes, fetched unless a fresh copy is cached.
    pub async fn resolve(&self, client_id: &str) -> Result<AgentRecord, String> {
        if let Some((record, until)) = self.lock().get(client_id)
            && *until > Instant::now()
        {
            return Ok(record.clone());
        }
        let url = check_url(client_id)?;
        let (document, ttl) = fetch(&url).await?;
        let record = accept(client_id, document)?;
        if let Some(ttl) = ttl {
            let mut cache = self.lock();
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                client_id.to_string(),
                (record.clone(), Instant::now() + ttl),
            );
        }
        Ok(record)
    }

    /// A document as if just fetched (tests have no https server of their own).
    #[cfg(test)]
    pub fn remember(&self, record: AgentRecord) {
        let until = Instant::now() + DEFAULT_TTL;
        self.lock()
            .insert(record.client_id.clone(), (record, until));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AgentRecord, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_url(client_id: &str) -> Result<Url, String> {
    let url = Url::parse(client_id).map_err(|e| format!("client_id is not a URL: {e}"))?;
    // Dot segments and other spellings the parser would rewrite are refused: the document
    // must name exactly the URL it was fetched from.
    let path_ok = url.path() != "/" && url.as_str() == client_id;
    if url.scheme() != "https"
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || !path_ok
    {
        return Err("a metadata document client_id must be an https URL with a path, no fragment and no credentials".into());
    }
    Ok(url)
}

async fn fetch(url: &Url) -> Result<(Document, Option<Duration>), String> {
    let client = http_client().map_err(|e| format!("cannot fetch client metadata: {e}"))?;
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| why("cannot fetch the client metadata document", e))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(format!(
            "the client metadata document answered HTTP {}, a redirect; redirects are not followed",
            status.as_u16()
        ));
    }
    if !status.is_success() {
        return Err(format!(
            "the client metadata document answered HTTP {}",
            status.as_u16()
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err("the client metadata document is too large".into());
    }
    let ttl = cache_ttl(response.headers());
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout(FETCH_TIMEOUT, response.chunk())
            .await
            .map_err(|_| too_slow())?
            .map_err(|e| why("cannot read the client metadata document", e))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err("the client metadata document is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    let document = serde_json::from_slice(&body)
        .map_err(|e| format!("the client metadata document is not valid JSON metadata: {e}"))?;
    Ok((document, ttl))
}

fn http_client() -> Result<reqwest::Client, String> {
    let mut builder = crate::net::client_builder(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .https_only(true);
    // Set but empty counts as unset (a script's optional knob passed through).
    if let Some(path) = std::env::var_os(CA_ENV).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path).map_err(|e| format!("{CA_ENV}: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{CA_ENV}: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| e.to_string())
}

fn too_slow() -> String {
    format!(
        "the client metadata document took too long (over {} s)",
        FETCH_TIMEOUT.as_secs()
    )
}

/// A failed fetch in words the user can act on: reqwest says only "error sending request"; the
/// cause (a timeout, an untrusted certificate, a refused connection) is further down.
fn why(context: &str, e: reqwest::Error) -> String {
    if e.is_timeout() {
        return too_slow();
    }
    let mut cause = None;
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        cause = Some(inner.to_string());
        source = inner.source();
    }
    let e = e.without_url();
    match cause {
        Some(cause) => format!("{context}: {e} ({cause})"),
        None => format!("{context}: {e}"),
    }
}

/// `Cache-Control`: `no-store`/`no-cache` → not cached; `max-age` clamped; else an hour.
fn cache_ttl(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let Some(value) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(DEFAULT_TTL);
    };
    let mut ttl = DEFAULT_TTL;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return None;
        }
        if let Some(secs) = directive.strip_prefix("max-age=")
            && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
        {
            ttl = Duration::from_secs(secs).clamp(MIN_TTL, MAX_TTL);
        }
    }
    Some(ttl)
}

fn accept(client_id: &str, document: Document) -> Result<AgentRecord, String> {
    if document.client_id != client_id {
        return Err("the client metadata document names another client_id".into());
    }
    if let Some(method) = &document.token_endpoint_auth_method
        && method != "none"
    {
        return Err(format!(
            "token_endpoint_auth_method {method:?} is not supported (public clients only)"
        ));
    }
    if document.redirect_uris.is_empty() || document.redirect_uris.len() > 10 {
        return Err("the client metadata document needs 1 to 10 redirect_uris".into());
    }
    for uri in &document.redirect_uris {
        redirect::check(uri)?;
    }
    Ok(AgentRecord {
        client_id: client_id.to_string(),
        name: clean_name(document.client_name.as_deref()),
        registration: Registration::Cimd,
        redirect_uris: document.redirect_uris,
        created_at: Utc::now(),
        last_seen_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_and_cache_rules() {
        assert!(check_url("https://agent.example/client.json").is_ok());
        for bad in [
            "http://agent.example/client.json",
            "https://agent.example/",
            "https://agent.example/a/../b",
            "https://u:p@agent.example/c",
            "https://agent.example/c#f",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(cache_ttl(&h), Some(DEFAULT_TTL));
        h.insert(
            reqwest::header::CACHE_CONTROL,
            "public, max-age=5".parse().unwrap(),
        );
        assert_eq!(cache_ttl(&h), Some(MIN_TTL));
        h.insert(
            reqwest::header::CACHE_CONTROL,
            "max-age=999999".parse().unwrap(),
        );
        assert_eq!(cache_ttl(&h), Some(MAX_TTL));
        h.insert(reqwest::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(cache_ttl(&h), None);
    }

    #[test]
    fn a_document_must_name_itself_and_native_redirects() {
        let id = "https://agent.example/client.json";
        let doc = |client_id: &str, uris: Vec<&str>| Document {
            client_id: client_id.into(),
            client_name: Some("Agent <b>".into()),
            redirect_uris: uris.into_iter().map(String::from).collect(),
            token_endpoint_auth_method: None,
        };
        let ok = accept(id, doc(id, vec!["http://127.0.0.1/cb"])).unwrap();
        assert_eq!(ok.registration, Registration::Cimd);
        assert_eq!(ok.name, "Agent <b>", "escaped when shown, not mangled here");
        assert!(
            accept(
                id,
                doc("https://other.example/c", vec!["http://127.0.0.1/cb"])
            )
            .is_err()
        );
        assert!(accept(id, doc(id, vec!["http://evil.example/cb"])).is_err());
        assert!(accept(id, doc(id, vec![])).is_err());
    }
}
