//! The loopback MCP endpoint (`/mcp`, Streamable HTTP via rmcp): the request guard, the
//! tools agents call, and the stdio bridge for stdio-only clients.

pub mod bridge;
pub mod guard;
pub mod json_reply;
pub mod relay;
pub mod socket;
pub mod tools;

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::Broker;

pub use crate::net::{MCP_PATH, mcp_url, own_hosts, own_origins};
pub use socket::{AgentSocket, SOCKET_HOST, agent_socket_path};

/// Largest MCP request body accepted (a `call_api` body plus JSON-RPC framing).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// The `/mcp` route: guard first (Host, Origin, bearer, query, size), then rmcp, which
/// serves 2025-11-25 (sessions) and 2026-07-28 (stateless) from the one endpoint; beside it,
/// the authorization server agents sign in with (`authz`).
pub fn router(broker: Arc<Broker>, port: u16) -> axum::Router {
    let guard = guard::Guard::new(
        broker.clients().clone(),
        broker.authz().clone(),
        port,
        broker.pause_switch(),
    );
    let offers = broker.clone();
    let providers: crate::authz::Providers = Arc::new(move || offers.consent_offers());
    endpoint(broker.clone(), own_hosts(port), own_origins(port), guard)
        .merge(broker.authz().router(port, providers))
}

/// The agent socket's `/mcp`: the same endpoint behind the socket's guard. Agents that come
/// this way hold a static client token (a remote host cannot finish an OAuth sign-in whose
/// metadata names this machine's loopback), so the authorization server is not served here.
pub fn socket_router(broker: Arc<Broker>, port: u16) -> axum::Router {
    let guard = guard::Guard::for_socket(
        broker.clients().clone(),
        broker.authz().clone(),
        port,
        broker.pause_switch(),
    );
    endpoint(
        broker,
        vec![SOCKET_HOST.to_string()],
        own_origins(port),
        guard,
    )
}

/// rmcp's Streamable HTTP service for the broker's tools, behind `guard`.
fn endpoint(
    broker: Arc<Broker>,
    hosts: Vec<String>,
    origins: Vec<String>,
    guard: guard::Guard,
) -> axum::Router {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = hosts;
    // An empty list would disable rmcp's own Origin check; ours runs first anyway.
    config.allowed_origins = origins;
    // Single answers as JSON (stateless requests here; session requests in `json_reply`).
    config.json_response = true;
    let service = StreamableHttpService::new(
        move || Ok(tools::BrokerTools::new(broker.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(json_reply::single_answers))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            guard::check,
        ))
}
