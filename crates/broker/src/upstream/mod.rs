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

mod scrub;
mod shape;

pub use scrub::{REDACTED, Scrubber};
pub use shape::{EVENT_BUDGET, Limits, RESPONSE_LIMIT, event_size, shape, shape_with};

/// Request bodies an agent may send upstream.
pub const REQUEST_LIMIT: usize = 4 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;

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
    #[error("the {name} header may not be set by the caller: {why}")]
    ForbiddenHeader { name: String, why: &'static str },
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
    #[error(
        "the upstream answered with Content-Encoding {0:?}, which Keycard Broker cannot inspect for the token; nothing was returned"
    )]
    UnreadableEncoding(String),
    #[error(
        "refused to send the token to {0} over plain http: only loopback API bases may use http"
    )]
    InsecureBase(String),
}

/// The rule a refused header breaks, in words for the agent.
fn forbidden_header(lower: &str) -> Option<&'static str> {
    let credentials = "Keycard Broker authenticates the request itself";
    let routing = "routing overrides could send the request outside the provider's API base";
    let reshaping =
        "Keycard Broker asks for the whole, unencoded body so it can remove the token from it";
    let framing = "the broker frames the request itself";
    Some(match lower {
        "authorization" | "proxy-authorization" | "cookie" => credentials,
        "x-original-url"
        | "x-rewrite-url"
        | "forwarded"
        | "x-http-method-override"
        | "x-http-method"
        | "x-method-override" => routing,
        "accept-encoding" | "accept-charset" | "range" | "if-range" => reshaping,
        "host" | "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade" => {
            framing
        }
        _ if lower.starts_with("x-forwarded-") => routing,
        _ if lower.starts_with("proxy-") => credentials,
        _ => return None,
    })
}

/// The URL as it may be shown or logged: no query, no fragment, at most 200 characters.
pub fn display_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].chars().take(200).collect()
}

/// Path shapes that some servers resolve outside the prefix the broker checked: `;` path
/// parameters (`/base/..;/admin` on Tomcat and Spring) and encoded separators (`%2F`, `%5C`).
fn unsafe_path(path: &str) -> Option<&'static str> {
    if path.contains(';') {
        return Some(
            "`;` path parameters are refused (servers such as Tomcat resolve `..;` outside the API base)",
        );
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Some(
            "encoded `/` or `\\` (%2F, %5C) in a path segment is refused (proxies may decode it and leave the API base)",
        );
    }
    None
}

/// Only loopback hosts may receive a token over plain http.
pub fn is_secure_base(url: &Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && crate::net::is_loopback_url(url))
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

/// Parses an agent-supplied URL; only absolute http(s) without user info, and no path a
/// server could resolve outside the API base.
pub fn parse_target(url: &str) -> Result<Url, CallError> {
    let bad = |reason: &str| CallError::InvalidUrl {
        url: display_url(url),
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
    if let Some(rule) = unsafe_path(parsed.path()) {
        return Err(bad(rule));
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

impl Prepared {
    /// The body as it will be sent (empty when there is none), for the approval preview.
    pub fn body_bytes(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }
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
        if let Some(why) = forbidden_header(&lower) {
            return Err(CallError::ForbiddenHeader {
                name: name.chars().take(64).collect(),
                why,
            });
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
    /// RFC 6750 `insufficient_scope` in `WWW-Authenticate` on a 403: the scopes the API named
    /// (empty when it named none).
    pub fn insufficient_scope(&self) -> Option<Vec<String>> {
        if self.status != 403 {
            return None;
        }
        self.headers
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("insufficient_scope"))
            .map(named_scopes)
    }
}

/// The `scope="…"` parameter of a `WWW-Authenticate: Bearer` challenge, split.
fn named_scopes(challenge: &str) -> Vec<String> {
    let Some(at) = challenge.find("scope=\"") else {
        return Vec::new();
    };
    let rest = &challenge[at + "scope=\"".len()..];
    let value = rest.split('"').next().unwrap_or("");
    crate::zone::split_scopes(value)
        .into_iter()
        .take(32)
        .map(|s| s.chars().take(100).collect())
        .collect()
}

/// HTTP clients for upstream calls (loopback without proxy, the rest with the user's proxy
/// settings); redirects are handled by hand (see [`send`]).
pub fn http_clients() -> Result<crate::net::Clients, CallError> {
    crate::net::Clients::build(|b| {
        // An idle connection is dropped before common servers drop it (Node: 5 s, nginx:
        // 75 s): reusing one the server is closing fails the call with "error sending request".
        b.redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(4))
    })
    .map_err(|e| CallError::Unreachable(e.to_string()))
}

/// Sends the request with the token, following redirects only while they stay under one of
/// `bases`. Reads at most the response limit plus the token's length, so scrubbing can never
/// leave half a token at the cut.
pub async fn send(
    http: &crate::net::Clients,
    prepared: &Prepared,
    url: &Url,
    token: &SecretString,
    bases: &[Url],
) -> Result<Raw, CallError> {
    let mut method = prepared.method.clone();
    let mut body = prepared.body.clone();
    let mut target = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        if !is_secure_base(&target) {
            return Err(CallError::InsecureBase(origin(&target)));
        }
        let mut request = http
            .for_url(&target)
            .request(method.clone(), target.clone())
            .headers(prepared.headers.clone())
            // The body must arrive as it is, or the scrubber could not see the token in it.
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
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
            if !bases.iter().any(|b| is_under(b, &next)) || unsafe_path(next.path()).is_some() {
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
        if let Some(encoding) = response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|e| !e.is_empty() && e != "identity")
        {
            return Err(CallError::UnreadableEncoding(
                encoding.chars().take(40).collect(),
            ));
        }
        // Room past the limit for one escaped copy, so scrubbing sees whole copies up to it.
        let cap = RESPONSE_LIMIT + 12 * token.expose_secret().len();
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
mod tests;
