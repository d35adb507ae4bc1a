//! Dynamic Client Registration (RFC 7591) for native agents: public clients only, redirect
//! URIs by the rules of `redirect`. The name is what the agent says about itself, so the
//! consent page marks it unverified.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{AgentChange, AgentRecord, Ctx, Registration, redirect};

const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 2048;
const MAX_NAME_CHARS: usize = 80;
/// Registered agents kept at most; a local process must not fill the disk with them.
const MAX_CLIENTS: usize = 500;
/// DCR client ids carry a colon, which no static client name can: the two never collide.
pub const DCR_PREFIX: &str = "dcr:";

#[derive(Debug, Deserialize)]
pub(super) struct RegistrationRequest {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

pub(super) async fn register(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Result<Json<RegistrationRequest>, JsonRejection>,
) -> Response {
    if super::token::foreign_origin(&headers, &ctx.endpoint) {
        return refuse(
            "invalid_client_metadata",
            "cross-origin registration is refused",
        );
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(e) => {
            return refuse(
                "invalid_client_metadata",
                &format!("unreadable registration: {e}"),
            );
        }
    };
    let client = match validate(request) {
        Ok(client) => client,
        Err((code, message)) => return refuse(code, &message),
    };
    match ctx.authz.inner.store.clients() {
        Ok(all) if all.len() >= MAX_CLIENTS => {
            return refuse(
                "invalid_client_metadata",
                "too many agents are registered; remove some in Keycard Broker",
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot count agent clients");
            return refuse("server_error", "the broker's storage failed");
        }
    }
    if let Err(e) = ctx.authz.inner.store.save_client(&client) {
        tracing::error!(error = %e, "cannot store an agent registration");
        return refuse("server_error", "the broker's storage failed");
    }
    ctx.authz
        .changed(&client.client_id, AgentChange::Registered);
    tracing::info!(client_id = %client.client_id, "agent registered (DCR)");
    let body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at.timestamp(),
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

fn validate(request: RegistrationRequest) -> Result<AgentRecord, (&'static str, String)> {
    if request.redirect_uris.is_empty() {
        return Err(("invalid_redirect_uri", "redirect_uris is required".into()));
    }
    if request.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err((
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect_uris"),
        ));
    }
    for uri in &request.redirect_uris {
        if uri.len() > MAX_URI_LEN {
            return Err(("invalid_redirect_uri", "a redirect_uri is too long".into()));
        }
        redirect::check(uri).map_err(|m| ("invalid_redirect_uri", m))?;
    }
    if let Some(grants) = &request.grant_types
        && grants
            .iter()
            .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return Err((
            "invalid_client_metadata",
            "grant_types may be authorization_code and refresh_token only".into(),
        ));
    }
    if let Some(types) = &request.response_types
        && types.iter().any(|t| t != "code")
    {
        return Err((
            "invalid_client_metadata",
            "response_types may be code only".into(),
        ));
    }
    Ok(AgentRecord {
        client_id: format!("{DCR_PREFIX}{}", super::new_id(16)),
        name: clean_name(request.client_name.as_deref()),
        registration: Registration::Dcr,
        redirect_uris: request.redirect_uris,
        created_at: Utc::now(),
        last_seen_at: None,
    })
}

/// A display name: no control characters, bounded, never empty.
pub(super) fn clean_name(name: Option<&str>) -> String {
    let cleaned: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "Unnamed agent".to_string()
    } else {
        cleaned.to_string()
    }
}

fn refuse(code: &str, message: &str) -> Response {
    let status = if code == "server_error" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        Json(json!({"error": code, "error_description": message})),
    )
        .into_response()
}
