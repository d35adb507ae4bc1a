//! The HTTP bridge (`keycard-broker bridge --listen 127.0.0.1:PORT --socket PATH`): an MCP
//! endpoint on a remote host's loopback that relays every request to a forwarded agent
//! socket, for HTTP-only clients. It holds no token: each client sends its own bearer, which
//! the broker at the other end of the socket checks — on a shared host, anyone can reach the
//! loopback port, so a relay that added a token would hand the agent's access to every user.
//! It is also a listener a web page can try to reach (DNS rebinding), so it checks `Host` and
//! `Origin` against its own address exactly as the broker does, then relays with the socket's
//! Host and without the browser's Origin.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::bridge::Endpoint;
use super::guard::check_host_and_origin;
use super::{MAX_REQUEST_BYTES, MCP_PATH, own_hosts, own_origins};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the HTTP bridge listens on loopback only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Client(String),
}

/// Headers that describe one hop, never relayed (RFC 9110 §7.6.1), plus the ones the relay
/// replaces (Host, Origin: checked here; Content-Length: set for the body it sends).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "origin",
    "content-length",
];

struct Relay {
    http: reqwest::Client,
    url: String,
    socket: String,
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// A bound relay, serving until [`Bound::serve`]'s `stop` resolves.
pub struct Bound {
    listener: tokio::net::TcpListener,
    relay: Relay,
}

/// Binds the loopback address (port 0 picks one) for relaying to `socket`.
pub async fn bind(listen: SocketAddr, socket: Endpoint) -> Result<Bound, RelayError> {
    if !listen.ip().is_loopback() {
        return Err(RelayError::NotLoopback(listen));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| RelayError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| RelayError::Listen {
        addr: listen,
        reason: e.to_string(),
    })?;
    let http = socket
        .client()
        .map_err(|e| RelayError::Client(e.to_string()))?;
    Ok(Bound {
        listener,
        relay: Relay {
            http,
            url: socket.url(),
            socket: socket.describe(),
            hosts: own_hosts(addr.port()),
            origins: own_origins(addr.port()),
        },
    })
}

impl Bound {
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Relays `/mcp` until `stop` resolves; every other path is 404.
    pub async fn serve(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = axum::Router::new()
            .route(MCP_PATH, axum::routing::any(relay))
            .with_state(std::sync::Arc::new(self.relay));
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop)
            .await
    }
}

async fn relay(State(relay): State<std::sync::Arc<Relay>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(refusal) = check_host_and_origin(&parts.headers, &relay.hosts, &relay.origins) {
        return refusal.into_response();
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let mut upstream = relay.http.request(parts.method, &relay.url).body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(_) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!(
                    "Keycard Broker is not reachable through {} (is the forwarding SSH session up?)",
                    relay.socket
                ),
            )
                .into_response();
        }
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if !is_hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    // Streamed as it arrives: an SSE answer carries progress while a write waits for approval.
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH
}
