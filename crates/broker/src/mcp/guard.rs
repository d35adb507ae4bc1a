//! Checks every HTTP request before rmcp sees it (trust boundary 1 of DESIGN.md). Any local
//! process can reach the port and any web page can try DNS rebinding, so: `Host` must be a
//! loopback name with our port, a present `Origin` must be ours (403), an OAuth access token
//! or a static client token is required (401 + `WWW-Authenticate` naming the metadata), credentials in the query string are
//! refused (400), and bodies are capped (413).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{MAX_REQUEST_BYTES, own_origins};
use crate::activity::Via;
use crate::authz::Authz;
use crate::clients::Clients;

/// Query parameters that would carry a credential; refused outright (they end up in logs).
const CREDENTIAL_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "bearer",
    "authorization",
    "api_key",
    "apikey",
    "key",
    "client_token",
];

/// The agent a request authenticated as; rmcp hands it to the tools inside the request's
/// `http::request::Parts`.
pub use crate::authz::Agent as AgentClient;

pub struct Guard {
    clients: Clients,
    authz: Authz,
    /// The 401 challenges, naming our protected-resource metadata.
    challenge: String,
    invalid_token: String,
    /// The user paused agent access (tray / `keycard-broker pause`).
    paused: Arc<std::sync::atomic::AtomicBool>,
    hosts: Vec<String>,
    origins: Vec<String>,
    /// The listener this guard stands in front of.
    via: Via,
}

impl Guard {
    pub fn new(
        clients: Clients,
        authz: Authz,
        port: u16,
        paused: Arc<std::sync::atomic::AtomicBool>,
    ) -> Guard {
        Guard {
            clients,
            authz,
            challenge: crate::authz::challenge(port, false),
            invalid_token: crate::authz::challenge(port, true),
            paused,
            hosts: super::own_hosts(port),
            origins: own_origins(port),
            via: Via::Loopback,
        }
    }

    /// The guard of the agent socket: the same checks, except that the only `Host` is
    /// [`SOCKET_HOST`](super::SOCKET_HOST) (what the bridges send) and no `Origin` is ours — no
    /// browser reaches a Unix socket, and the HTTP bridge checks its own before it relays.
    pub fn for_socket(
        clients: Clients,
        authz: Authz,
        port: u16,
        paused: Arc<std::sync::atomic::AtomicBool>,
    ) -> Guard {
        Guard {
            hosts: vec![super::SOCKET_HOST.to_string()],
            origins: Vec::new(),
            via: Via::Socket,
            ..Guard::new(clients, authz, port, paused)
        }
    }

    /// The decision for one request's head: the agent, or the refusal to send.
    pub fn decide(&self, headers: &HeaderMap, query: Option<&str>) -> Result<AgentClient, Refusal> {
        check_host_and_origin(headers, &self.hosts, &self.origins)?;
        if let Some(query) = query {
            let has_credential = url::form_urlencoded::parse(query.as_bytes())
                .any(|(k, _)| CREDENTIAL_PARAMS.contains(&k.to_ascii_lowercase().as_str()));
            if has_credential {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "credentials in the query string are refused; send Authorization: Bearer",
                ));
            }
        }
        if let Some(length) = single(headers, header::CONTENT_LENGTH)
            && length
                .parse::<usize>()
                .map_or(true, |n| n > MAX_REQUEST_BYTES)
        {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ));
        }
        let Some(authorization) = single(headers, header::AUTHORIZATION) else {
            return Err(self.unauthorized(
                headers.contains_key(header::AUTHORIZATION),
                "missing bearer token",
            ));
        };
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.unauthorized(true, "malformed Authorization header"))?;
        let client = if token.starts_with(crate::authz::ACCESS_PREFIX) {
            Ok(self.authz.authenticate(token).map(|caller| AgentClient {
                key: caller.client_id,
                name: caller.name,
                oauth: true,
                via: self.via,
            }))
        } else {
            self.clients.authenticate(token).map(|name| {
                name.map(|n| AgentClient {
                    via: self.via,
                    ..AgentClient::static_client(&n)
                })
            })
        };
        match client {
            Ok(Some(_)) if self.paused.load(std::sync::atomic::Ordering::Relaxed) => Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "agent access is paused in Keycard Broker; the user can resume it from the tray",
            )),
            Ok(Some(client)) => Ok(client),
            Ok(None) => Err(self.unauthorized(true, "unknown, expired or removed client token")),
            Err(e) => {
                tracing::error!(error = %e, "client lookup failed");
                Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "client registry unavailable",
                ))
            }
        }
    }
}

/// DNS rebinding: `Host` must be one of `hosts`, and an `Origin`, when present, one of
/// `origins` (403 otherwise). Shared with the HTTP bridge, which guards its own listener.
pub fn check_host_and_origin(
    headers: &HeaderMap,
    hosts: &[String],
    origins: &[String],
) -> Result<(), Refusal> {
    let host = single(headers, header::HOST).map(|h| h.to_ascii_lowercase());
    if !host.is_some_and(|h| hosts.contains(&h)) {
        return Err(refuse(StatusCode::FORBIDDEN, "forbidden host"));
    }
    if headers.contains_key(header::ORIGIN) {
        let origin = single(headers, header::ORIGIN).map(|o| o.to_ascii_lowercase());
        if !origin.is_some_and(|o| origins.contains(&o)) {
            return Err(refuse(StatusCode::FORBIDDEN, "forbidden origin"));
        }
    }
    Ok(())
}

/// The middleware in front of `/mcp`.
pub async fn check(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    match guard.decide(request.headers(), request.uri().query()) {
        Ok(client) => {
            request.extensions_mut().insert(client);
            // Caps bodies sent without Content-Length (chunked) too.
            let (parts, body) = request.into_parts();
            let limited = Body::new(http_body_util::Limited::new(body, MAX_REQUEST_BYTES));
            next.run(Request::from_parts(parts, limited)).await
        }
        Err(refusal) => {
            let mut response = refusal.into_response();
            // The body stays unread. When it has not arrived by the time the answer is written,
            // hyper drops the connection afterwards without a word, and a client that reuses it
            // (an agent's discovery request right after this 401) sees it die. Say so up front
            // (RFC 9112 §9.6), so the client opens a new one.
            if declares_body(request.headers()) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// True when the request has a body (chunked, or a Content-Length other than 0).
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// Why a request was turned away: status, a short reason, and the 401 challenge if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
    pub challenge: Option<String>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response();
        if let Some(challenge) = self.challenge
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The header's value if it is present exactly once and readable.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(|v| v.trim().to_string())
}

fn refuse(status: StatusCode, message: &'static str) -> Refusal {
    Refusal {
        status,
        message,
        challenge: None,
    }
}

impl Guard {
    /// A 401 whose challenge names the protected-resource metadata (RFC 9728), so an agent
    /// can discover how to sign in.
    fn unauthorized(&self, presented: bool, message: &'static str) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message,
            challenge: Some(if presented {
                self.invalid_token.clone()
            } else {
                self.challenge.clone()
            }),
        }
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
