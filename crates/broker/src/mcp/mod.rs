//! The loopback MCP endpoint (`/mcp`, Streamable HTTP via rmcp): the request guard, the
//! tools agents call, and the stdio bridge for stdio-only clients.

pub mod bridge;
pub mod guard;
pub mod json_reply;
pub mod tools;

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::Broker;

pub use crate::net::{MCP_PATH, mcp_url, own_hosts, own_origins};

/// Largest MCP request body accepted (a `call_api` body plus JSON-RPC framing).
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// The `/mcp` route: guard first (Host, Origin, bearer, query, size), then rmcp, which
/// serves 2025-11-25 (sessions) and 2026-07-28 (stateless) from the one endpoint; beside it,
/// the authorization server agents sign in with (`authz`).
pub fn router(broker: Arc<Broker>, port: u16) -> axum::Router {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = own_hosts(port);
    // An empty list would disable rmcp's own Origin check; ours runs first anyway.
    config.allowed_origins = own_origins(port);
    // Single answers as JSON (stateless requests here; session requests in `json_reply`).
    config.json_response = true;
    let tools_broker = broker.clone();
    let service = StreamableHttpService::new(
        move || Ok(tools::BrokerTools::new(tools_broker.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let state = Arc::new(guard::Guard::new(
        broker.clients().clone(),
        broker.authz().clone(),
        port,
        broker.pause_switch(),
    ));
    let offers = broker.clone();
    let providers: crate::authz::Providers = Arc::new(move || offers.consent_offers());
    axum::Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn(json_reply::single_answers))
        .layer(axum::middleware::from_fn_with_state(state, guard::check))
        .merge(broker.authz().router(port, providers))
}
