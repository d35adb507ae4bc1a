//! Discovery documents: RFC 9728 protected-resource metadata for `/mcp` (also at the root
//! well-known path, which clients try next) and RFC 8414 server metadata, plus the
//! `WWW-Authenticate` challenge that points agents at them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::{AUTHORIZE_PATH, Ctx, REGISTER_PATH, REVOKE_PATH, TOKEN_PATH};

/// The one scope the broker grants: using its MCP endpoint. What an agent may do with each
/// provider is the user's per-provider choice on the consent page, not a scope.
pub const SCOPE: &str = "mcp";

/// Where the protected-resource metadata of the MCP endpoint on `port` lives.
pub fn resource_metadata_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp")
}

/// The `WWW-Authenticate` value of a 401 from `/mcp`; `error` when a token was presented.
pub fn challenge(port: u16, invalid_token: bool) -> String {
    let metadata = resource_metadata_url(port);
    if invalid_token {
        format!(
            "Bearer realm=\"keycard-broker\", error=\"invalid_token\", resource_metadata=\"{metadata}\", scope=\"{SCOPE}\""
        )
    } else {
        format!(
            "Bearer realm=\"keycard-broker\", resource_metadata=\"{metadata}\", scope=\"{SCOPE}\""
        )
    }
}

pub(super) async fn protected_resource(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    let body = json!({
        "resource": ctx.endpoint.resource,
        "authorization_servers": [ctx.endpoint.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [SCOPE],
        "resource_name": "Keycard Broker",
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body))
}

pub(super) async fn authorization_server(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    let issuer = &ctx.endpoint.issuer;
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "registration_endpoint": format!("{issuer}{REGISTER_PATH}"),
        "revocation_endpoint": format!("{issuer}{REVOKE_PATH}"),
        "scopes_supported": [SCOPE],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body))
}
