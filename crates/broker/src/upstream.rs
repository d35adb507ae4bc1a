//! Calls to provider APIs on an agent's behalf (trust boundary 3 of DESIGN.md): the token is
//! injected only for URLs under the grant's API base, redirects elsewhere are refused, the
//! caller may not set credentials, and the token is scrubbed from whatever comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::catalog::Provider;

/// Bodies returned to the agent are cut past this many bytes (`truncated: true`).
pub const RESPONSE_LIMIT: usize = 512 * 1024;
/// Request bodies an agent may send upstream.
pub const REQUEST_LIMIT: usize = 4 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
const REDACTED: &str = "[REDACTED]";

/// Headers an agent may never set: credentials are the broker's job, framing is the client's.
const FORBIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// Response headers worth showing an agent; everything else (Set-Cookie …) stays behind.
const SAFE_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "cache-control",
    "etag",
    "last-modified",
    "link",
    "location",
    "retry-after",
    "date",
    "www-authenticate",
    "x-request-id",
    "x-github-request-id",
];

/// `call_api` arguments (part of the product's tool contract).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct ApiRequest {
    /// HTTP method: GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    pub method: String,
    /// Absolute URL under a connected provider's API base.
    pub url: String,
    /// Extra request headers (never Authorization or Cookie: the broker authenticates).
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Request body: a JSON value is sent as JSON; a string is sent as is.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Resource identifier of the grant to use (default: longest API-base match).
    #[serde(default)]
    pub resource: Option<String>,
}

/// What `call_api` returns.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiResponse {
    pub status: u16,
    /// A safe subset of the response headers.
    pub headers: BTreeMap<String, String>,
    /// JSON when the upstream answered JSON, text otherwise.
    pub body: serde_json::Value,
    /// True when the body was cut at the response limit (512 KiB).
    pub truncated: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("unsupported method {0:?}; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")]
    InvalidMethod(String),
    #[error(
        "the {0} header may not be set by the caller; Keycard Broker authenticates the request itself"
    )]
    ForbiddenHeader(String),
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    #[error("the request body is larger than {REQUEST_LIMIT} bytes")]
    BodyTooLarge,
    #[error(
        "refused to follow a redirect to {0}: only URLs under the grant's API base receive the token"
    )]
    RedirectRefused(String),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("the upstream API could not be reached: {0}")]
    Unreachable(String),
}

/// Whether `target` lies under `base`: same scheme, host and port, and a path prefix that
/// ends on a segment boundary (`/api` covers `/api/x`, not `/apix`). Both are parsed URLs,
/// so IP encodings, dot segments and default ports are already normalised.
pub fn is_under(base: &Url, target: &Url) -> bool {
    if base.scheme() != target.scheme()
        || base.host() != target.host()
        || base.port_or_known_default() != target.port_or_known_default()
        || !target.username().is_empty()
        || target.password().is_some()
    {
        return false;
    }
    let prefix = base.path().trim_end_matches('/');
    let path = target.path();
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// Parses an agent-supplied URL; only absolute http(s) without user info.
pub fn parse_target(url: &str) -> Result<Url, CallError> {
    let bad = |reason: &str| CallError::InvalidUrl {
        url: url.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http(s) URLs"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("user info is not allowed"));
    }
    if parsed.host().is_none() {
        return Err(bad("no host"));
    }
    Ok(parsed)
}

/// The provider whose API base is the longest prefix of `target`, among `candidates`.
pub fn pick<'a>(candidates: &'a [Provider], target: &Url) -> Option<&'a Provider> {
    candidates
        .iter()
        .filter_map(|p| {
            p.api_bases
                .iter()
                .filter_map(|b| Url::parse(b).ok())
                .filter(|b| is_under(b, target))
                .map(|b| b.as_str().trim_end_matches('/').len())
                .max()
                .map(|len| (len, p))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

/// True when `target` is under any of the provider's API bases.
pub fn covers(provider: &Provider, target: &Url) -> bool {
    pick(std::slice::from_ref(provider), target).is_some()
}

/// A prepared request: validated method, headers and body.
#[derive(Debug)]
pub struct Prepared {
    method: reqwest::Method,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
}

pub fn prepare(req: &ApiRequest) -> Result<Prepared, CallError> {
    let method = match req.method.to_ascii_uppercase().as_str() {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "PATCH" => reqwest::Method::PATCH,
        "DELETE" => reqwest::Method::DELETE,
        "HEAD" => reqwest::Method::HEAD,
        "OPTIONS" => reqwest::Method::OPTIONS,
        _ => {
            return Err(CallError::InvalidMethod(
                req.method.chars().take(20).collect(),
            ));
        }
    };
    let mut headers = HeaderMap::new();
    for (name, value) in req.headers.iter().flatten() {
        let lower = name.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
            return Err(CallError::ForbiddenHeader(name.clone()));
        }
        // Header types reject CR/LF and other bytes that could split the request.
        let header_name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| CallError::InvalidHeader(name.chars().take(64).collect()))?;
        let header_value = HeaderValue::from_str(value)
            .map_err(|_| CallError::InvalidHeader(name.chars().take(64).collect()))?;
        headers.append(header_name, header_value);
    }
    let body = match &req.body {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(text.clone().into_bytes()),
        Some(value) => {
            if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Some(serde_json::to_vec(value).map_err(|_| CallError::InvalidHeader("body".into()))?)
        }
    };
    if body.as_ref().is_some_and(|b| b.len() > REQUEST_LIMIT) {
        return Err(CallError::BodyTooLarge);
    }
    Ok(Prepared {
        method,
        headers,
        body,
    })
}

/// One upstream exchange's raw outcome, before it is shaped for the agent.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub complete: bool,
}

impl Raw {
    /// RFC 6750 `insufficient_scope` in `WWW-Authenticate` on a 403.
    pub fn insufficient_scope(&self) -> bool {
        self.status == 403
            && self
                .headers
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("insufficient_scope")))
    }
}

/// HTTP client for upstream calls: redirects are handled by hand (see [`send`]).
pub fn http_client() -> Result<reqwest::Client, CallError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("keycard-broker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CallError::Unreachable(e.to_string()))
}

/// Sends the request with the token, following redirects only while they stay under one of
/// `bases`. Reads at most the response limit plus the token's length, so scrubbing can never
/// leave half a token at the cut.
pub async fn send(
    http: &reqwest::Client,
    prepared: &Prepared,
    url: &Url,
    token: &SecretString,
    bases: &[Url],
) -> Result<Raw, CallError> {
    let mut method = prepared.method.clone();
    let mut body = prepared.body.clone();
    let mut target = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut request = http
            .request(method.clone(), target.clone())
            .headers(prepared.headers.clone())
            .bearer_auth(token.expose_secret());
        if let Some(b) = &body {
            request = request.body(b.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| CallError::Unreachable(describe(&e)))?;
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(reqwest::header::LOCATION)
        {
            let next = location
                .to_str()
                .ok()
                .and_then(|l| target.join(l).ok())
                .ok_or_else(|| CallError::RedirectRefused("an unreadable Location".into()))?;
            if !bases.iter().any(|b| is_under(b, &next)) {
                return Err(CallError::RedirectRefused(origin(&next)));
            }
            if status == reqwest::StatusCode::SEE_OTHER
                || ((status == reqwest::StatusCode::MOVED_PERMANENTLY
                    || status == reqwest::StatusCode::FOUND)
                    && method == reqwest::Method::POST)
            {
                method = reqwest::Method::GET;
                body = None;
            }
            target = next;
            continue;
        }
        let cap = RESPONSE_LIMIT + token.expose_secret().len();
        let mut bytes = Vec::new();
        let mut complete = true;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CallError::Unreachable(describe(&e)))?
        {
            if bytes.len() + chunk.len() > cap {
                bytes.extend_from_slice(&chunk[..cap - bytes.len()]);
                complete = false;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(Raw {
            status: status.as_u16(),
            headers: response.headers().clone(),
            body: bytes,
            complete,
        });
    }
    Err(CallError::TooManyRedirects)
}

/// Shapes the raw answer for the agent: token scrubbed everywhere, safe headers only, JSON
/// parsed when it is JSON and whole, body cut at the limit.
pub fn shape(raw: Raw, token: &SecretString) -> ApiResponse {
    let secret = token.expose_secret();
    let mut text = String::from_utf8_lossy(&raw.body).into_owned();
    if !secret.is_empty() {
        text = text.replace(secret, REDACTED);
    }
    let mut truncated = !raw.complete;
    if text.len() > RESPONSE_LIMIT {
        let mut cut = RESPONSE_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    let mut headers = BTreeMap::new();
    for (name, value) in raw.headers.iter() {
        let n = name.as_str();
        let safe = SAFE_RESPONSE_HEADERS.contains(&n)
            || n.starts_with("x-ratelimit-")
            || n.starts_with("ratelimit");
        if !safe {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).replace(secret, REDACTED);
        headers
            .entry(n.to_string())
            .and_modify(|existing: &mut String| {
                existing.push_str(", ");
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    let is_json = headers
        .get("content-type")
        .is_some_and(|t| t.contains("json"));
    let body = if is_json && !truncated {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    } else {
        serde_json::Value::String(text)
    };
    ApiResponse {
        status: raw.status,
        headers,
        body,
        truncated,
    }
}

fn origin(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.scheme().to_string(),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        // Without the URL: its query may carry anything.
        e.to_string()
            .split(" for url")
            .next()
            .unwrap_or("request failed")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn provider(resource: &str, bases: &[&str]) -> Provider {
        Provider {
            slug: resource.into(),
            name: resource.into(),
            resource: resource.into(),
            api_bases: bases.iter().map(|b| b.to_string()).collect(),
            scopes: vec![],
            docs_url: None,
            custom: true,
        }
    }

    #[test]
    fn prefix_matching_respects_segments_hosts_and_encodings() {
        let base = url("http://127.0.0.1:9000/api");
        assert!(is_under(&base, &url("http://127.0.0.1:9000/api")));
        assert!(is_under(&base, &url("http://127.0.0.1:9000/api/x?y=1")));
        assert!(!is_under(&base, &url("http://127.0.0.1:9000/apix")));
        assert!(!is_under(&base, &url("http://127.0.0.1:9000/api/../admin")));
        assert!(!is_under(
            &base,
            &url("http://127.0.0.1:9000/api/%2e%2e/admin")
        ));
        assert!(!is_under(&base, &url("http://127.0.0.1:9001/api/x")));
        assert!(!is_under(&base, &url("https://127.0.0.1:9000/api/x")));
        assert!(!is_under(&base, &url("http://localhost:9000/api/x")));
        assert!(!is_under(&base, &url("http://evil@127.0.0.1:9000/api/x")));
        // Alternative IP spellings normalise to the same host and so still match only it.
        assert!(is_under(&base, &url("http://0x7f.0.0.1:9000/api/x")));
        assert!(!is_under(
            &url("https://api.github.com"),
            &url("https://api.github.com.evil.io/")
        ));
        assert!(is_under(
            &url("https://api.github.com"),
            &url("https://API.GITHUB.COM:443/user")
        ));
    }

    #[test]
    fn longest_prefix_wins() {
        let ps = vec![
            provider("a", &["https://api.atlassian.com"]),
            provider("jira", &["https://api.atlassian.com/ex/jira"]),
        ];
        let p = pick(&ps, &url("https://api.atlassian.com/ex/jira/1/rest")).unwrap();
        assert_eq!(p.resource, "jira");
        assert_eq!(
            pick(&ps, &url("https://api.atlassian.com/me"))
                .unwrap()
                .resource,
            "a"
        );
        assert!(pick(&ps, &url("https://example.com/")).is_none());
    }

    #[test]
    fn caller_credentials_and_crlf_are_refused() {
        let mut req = ApiRequest {
            method: "GET".into(),
            url: "https://x".into(),
            headers: Some(BTreeMap::from([(
                "Authorization".into(),
                "Bearer x".into(),
            )])),
            body: None,
            resource: None,
        };
        assert!(matches!(prepare(&req), Err(CallError::ForbiddenHeader(_))));
        req.headers = Some(BTreeMap::from([("cookie".into(), "a=b".into())]));
        assert!(matches!(prepare(&req), Err(CallError::ForbiddenHeader(_))));
        req.headers = Some(BTreeMap::from([("X-A".into(), "a\r\nInjected: 1".into())]));
        assert!(matches!(prepare(&req), Err(CallError::InvalidHeader(_))));
        req.headers = Some(BTreeMap::from([("Bad Name".into(), "v".into())]));
        assert!(matches!(prepare(&req), Err(CallError::InvalidHeader(_))));
        req.headers = None;
        req.method = "TRACE".into();
        assert!(matches!(prepare(&req), Err(CallError::InvalidMethod(_))));
        req.method = "post".into();
        req.body = Some(serde_json::json!({"a": 1}));
        let p = prepare(&req).unwrap();
        assert_eq!(p.headers["content-type"], "application/json");
    }

    #[test]
    fn target_urls_are_validated() {
        assert!(parse_target("file:///etc/passwd").is_err());
        assert!(parse_target("http://u:p@h/").is_err());
        assert!(parse_target("not a url").is_err());
        assert!(parse_target("https://api.github.com/user").is_ok());
    }

    #[test]
    fn shaping_scrubs_the_token_and_truncates() {
        let token = SecretString::from("tok-123456789");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-echo", HeaderValue::from_static("tok-123456789"));
        headers.insert("location", HeaderValue::from_static("/a?t=tok-123456789"));
        headers.insert("set-cookie", HeaderValue::from_static("s=1"));
        let raw = Raw {
            status: 200,
            headers,
            body: br#"{"echo":"Bearer tok-123456789"}"#.to_vec(),
            complete: true,
        };
        let shaped = shape(raw, &token);
        let all = serde_json::to_string(&shaped).unwrap();
        assert!(!all.contains("tok-123456789"));
        assert_eq!(shaped.body["echo"], "Bearer [REDACTED]");
        assert!(!shaped.headers.contains_key("x-echo"));
        assert!(!shaped.headers.contains_key("set-cookie"));
        assert_eq!(shaped.headers["location"], "/a?t=[REDACTED]");

        let big = Raw {
            status: 200,
            headers: HeaderMap::new(),
            body: vec![b'a'; RESPONSE_LIMIT + 10],
            complete: true,
        };
        let shaped = shape(big, &token);
        assert!(shaped.truncated);
        assert_eq!(shaped.body.as_str().unwrap().len(), RESPONSE_LIMIT);
    }
}
