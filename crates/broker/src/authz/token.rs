//! Codes and tokens. Authorization codes (2 minutes, single use) and access tokens (1 hour)
//! live only in memory, by hash: a restart just makes agents refresh. Refresh tokens (30
//! days) are rows in SQLite, by hash; each use rotates them, and a second use of one — a
//! stolen copy racing the agent — ends that whole sign-in (RFC 9700 §4.14.2).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oauth2::basic::{BasicErrorResponseType, BasicTokenResponse, BasicTokenType};
use oauth2::{
    AccessToken, EmptyExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RefreshToken, Scope,
    StandardErrorResponse, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::metadata::SCOPE;
use super::{ACCESS_PREFIX, AgentChange, CODE_PREFIX, Ctx, Endpoint, REFRESH_PREFIX};
use crate::clients::hash_token;

pub const ACCESS_LIFETIME: Duration = Duration::from_secs(3600);
const REFRESH_LIFETIME_DAYS: i64 = 30;
const CODE_LIFETIME: Duration = Duration::from_secs(120);
/// Codes waiting for their exchange; beyond this the oldest are dropped.
const MAX_CODES: usize = 256;

/// The agent a request authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub client_id: String,
    pub name: String,
}

struct AccessEntry {
    caller: Caller,
    grant_id: String,
    expires: Instant,
}

/// What a code was issued for; checked again at the exchange.
pub(super) struct CodeGrant {
    pub client_id: String,
    pub name: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub resource: String,
}

struct CodeEntry {
    grant: CodeGrant,
    issued: Instant,
    /// The sign-in the code was exchanged for: a replayed code ends it.
    redeemed: Option<String>,
}

#[derive(Default)]
pub(super) struct Tokens {
    access: Mutex<HashMap<String, AccessEntry>>,
    codes: Mutex<HashMap<String, CodeEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tokens {
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        if !token.starts_with(ACCESS_PREFIX) {
            return None;
        }
        let hash = hash_token(token);
        let mut access = lock(&self.access);
        match access.get(&hash) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.caller.clone()),
            Some(_) => {
                access.remove(&hash);
                None
            }
            None => None,
        }
    }

    pub fn issue_code(&self, grant: CodeGrant) -> SecretString {
        let code = super::new_secret(CODE_PREFIX);
        let mut codes = lock(&self.codes);
        let now = Instant::now();
        codes.retain(|_, c| now.duration_since(c.issued) < CODE_LIFETIME * 5);
        if codes.len() >= MAX_CODES
            && let Some(oldest) = codes
                .iter()
                .min_by_key(|(_, c)| c.issued)
                .map(|(k, _)| k.clone())
        {
            codes.remove(&oldest);
        }
        codes.insert(
            hash_token(code.expose_secret()),
            CodeEntry {
                grant,
                issued: now,
                redeemed: None,
            },
        );
        code
    }

    fn issue_access(&self, caller: &Caller, grant_id: &str) -> SecretString {
        let token = super::new_secret(ACCESS_PREFIX);
        let mut access = lock(&self.access);
        let now = Instant::now();
        access.retain(|_, e| e.expires > now);
        access.insert(
            hash_token(token.expose_secret()),
            AccessEntry {
                caller: caller.clone(),
                grant_id: grant_id.to_string(),
                expires: now + ACCESS_LIFETIME,
            },
        );
        token
    }

    pub fn forget_client(&self, client_id: &str) {
        lock(&self.access).retain(|_, e| e.caller.client_id != client_id);
        lock(&self.codes).retain(|_, c| c.grant.client_id != client_id);
    }

    fn forget_grant(&self, grant_id: &str) {
        lock(&self.access).retain(|_, e| e.grant_id != grant_id);
    }

    fn forget_access(&self, token: &str) -> bool {
        lock(&self.access).remove(&hash_token(token)).is_some()
    }
}

/// The token request (RFC 6749 §4.1.3, §6); a repeated parameter fails to parse.
#[derive(Debug, Deserialize)]
pub(super) struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    refresh_token: Option<String>,
    resource: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

pub(super) async fn token(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if foreign_origin(&headers, &ctx.endpoint) {
        return oauth_error(
            BasicErrorResponseType::InvalidRequest,
            "cross-origin token requests are refused",
        );
    }
    let Ok(Form(form)) = form else {
        return oauth_error(
            BasicErrorResponseType::InvalidRequest,
            "the token request must be one form-encoded body without repeated parameters",
        );
    };
    if let Some(resource) = &form.resource
        && resource != &ctx.endpoint.resource
    {
        return oauth_error(
            BasicErrorResponseType::Extension("invalid_target".into()),
            "tokens are issued only for this broker's MCP endpoint",
        );
    }
    let Some(client_id) = form.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return client_error("client_id is required (public clients authenticate with it)");
    };
    match form.grant_type.as_deref() {
        Some("authorization_code") => exchange_code(&ctx, client_id, &form),
        Some("refresh_token") => rotate(&ctx, client_id, &form),
        Some(_) => oauth_error(
            BasicErrorResponseType::UnsupportedGrantType,
            "use authorization_code or refresh_token",
        ),
        None => oauth_error(
            BasicErrorResponseType::InvalidRequest,
            "grant_type is required",
        ),
    }
}

fn exchange_code(ctx: &Ctx, client_id: &str, form: &TokenForm) -> Response {
    let tokens = &ctx.authz.inner.tokens;
    let (Some(code), Some(verifier)) = (form.code.as_deref(), form.code_verifier.as_deref()) else {
        return oauth_error(
            BasicErrorResponseType::InvalidRequest,
            "code and code_verifier are required",
        );
    };
    let hash = hash_token(code);
    let grant_id = super::new_id(16);
    let (client, name) = {
        let mut codes = lock(&tokens.codes);
        let Some(entry) = codes.get_mut(&hash) else {
            return invalid_grant("unknown or expired code");
        };
        if let Some(earlier) = entry.redeemed.clone() {
            // A replayed code: whoever holds it is not the agent that redeemed it first.
            drop(codes);
            end_grant(ctx, &earlier);
            return invalid_grant("the code was already used; that sign-in has been ended");
        }
        if entry.issued.elapsed() > CODE_LIFETIME {
            codes.remove(&hash);
            return invalid_grant("the code expired");
        }
        let grant = &entry.grant;
        if grant.client_id != client_id {
            return invalid_grant("the code was issued to another client");
        }
        if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
            return invalid_grant("redirect_uri differs from the authorization request");
        }
        if grant.resource != ctx.endpoint.resource {
            return invalid_grant("the code was issued for another resource");
        }
        if !pkce_ok(verifier, &grant.challenge) {
            return invalid_grant("code_verifier does not match the code_challenge");
        }
        entry.redeemed = Some(grant_id.clone());
        (grant.client_id.clone(), grant.name.clone())
    };
    issue_pair(
        ctx,
        Caller {
            client_id: client,
            name,
        },
        &grant_id,
        AgentChange::SignedIn,
    )
}

fn rotate(ctx: &Ctx, client_id: &str, form: &TokenForm) -> Response {
    let Some(presented) = form.refresh_token.as_deref() else {
        return oauth_error(
            BasicErrorResponseType::InvalidRequest,
            "refresh_token is required",
        );
    };
    if !presented.starts_with(REFRESH_PREFIX) {
        return invalid_grant("unknown refresh token");
    }
    let store = &ctx.authz.inner.store;
    let hash = hash_token(presented);
    let row = match store.refresh(&hash) {
        Ok(Some(row)) => row,
        Ok(None) => return invalid_grant("unknown refresh token"),
        Err(e) => return server_error(&e),
    };
    if row.client_id != client_id {
        return invalid_grant("the refresh token was issued to another client");
    }
    if row.used {
        end_grant(ctx, &row.grant_id);
        return invalid_grant("the refresh token was already used; that sign-in has been ended");
    }
    if row.expires_at <= chrono::Utc::now() {
        let _ = store.delete_grant(&row.grant_id);
        return invalid_grant("the refresh token expired; sign in again");
    }
    match store.use_refresh(&hash) {
        Ok(true) => {}
        Ok(false) => {
            end_grant(ctx, &row.grant_id);
            return invalid_grant(
                "the refresh token was already used; that sign-in has been ended",
            );
        }
        Err(e) => return server_error(&e),
    }
    let name = match store.client(&row.client_id) {
        Ok(Some(client)) => client.name,
        Ok(None) => return invalid_grant("the client is no longer registered"),
        Err(e) => return server_error(&e),
    };
    let caller = Caller {
        client_id: row.client_id,
        name,
    };
    issue_pair(ctx, caller, &row.grant_id, AgentChange::SignedIn)
}

/// Ends one sign-in everywhere: refresh rows and live access tokens.
fn end_grant(ctx: &Ctx, grant_id: &str) {
    ctx.authz.inner.tokens.forget_grant(grant_id);
    if let Err(e) = ctx.authz.inner.store.delete_grant(grant_id) {
        tracing::error!(error = %e, "cannot delete a replayed sign-in's refresh tokens");
    }
    tracing::warn!("a replayed agent credential ended its sign-in");
}

fn issue_pair(ctx: &Ctx, caller: Caller, grant_id: &str, change: AgentChange) -> Response {
    let refresh = super::new_secret(REFRESH_PREFIX);
    let expires = chrono::Utc::now() + chrono::Duration::days(REFRESH_LIFETIME_DAYS);
    if let Err(e) = ctx.authz.inner.store.insert_refresh(
        &hash_token(refresh.expose_secret()),
        &caller.client_id,
        grant_id,
        expires,
    ) {
        return server_error(&e);
    }
    let _ = ctx.authz.inner.store.touch(&caller.client_id);
    let access = ctx.authz.inner.tokens.issue_access(&caller, grant_id);
    ctx.authz.changed(&caller.client_id, change);
    let mut body = BasicTokenResponse::new(
        AccessToken::new(access.expose_secret().to_string()),
        BasicTokenType::Bearer,
        EmptyExtraTokenFields {},
    );
    body.set_expires_in(Some(&ACCESS_LIFETIME));
    body.set_refresh_token(Some(RefreshToken::new(refresh.expose_secret().to_string())));
    body.set_scopes(Some(vec![Scope::new(SCOPE.to_string())]));
    debug_assert!(body.refresh_token().is_some());
    (StatusCode::OK, no_store(), Json(body)).into_response()
}

fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed
        && PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.to_string(),
        ))
        .as_str()
            == challenge
}

/// RFC 7009: always 200; a refresh token ends its sign-in, an access token just itself.
#[derive(Debug, Deserialize)]
pub(super) struct RevokeForm {
    token: Option<String>,
}

pub(super) async fn revoke(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if foreign_origin(&headers, &ctx.endpoint) {
        return oauth_error(
            BasicErrorResponseType::InvalidRequest,
            "cross-origin requests are refused",
        );
    }
    let Ok(Form(RevokeForm { token: Some(token) })) = form else {
        return oauth_error(BasicErrorResponseType::InvalidRequest, "token is required");
    };
    if token.starts_with(ACCESS_PREFIX) {
        ctx.authz.inner.tokens.forget_access(&token);
    } else if token.starts_with(REFRESH_PREFIX) {
        match ctx.authz.inner.store.refresh(&hash_token(&token)) {
            Ok(Some(row)) => {
                ctx.authz.inner.tokens.forget_grant(&row.grant_id);
                if let Err(e) = ctx.authz.inner.store.delete_grant(&row.grant_id) {
                    return server_error(&e);
                }
                ctx.authz.changed(&row.client_id, AgentChange::SignedOut);
            }
            Ok(None) => {}
            Err(e) => return server_error(&e),
        }
    }
    (StatusCode::OK, no_store()).into_response()
}

/// A browser page (any origin but ours) must not use the token or revocation endpoints.
pub(super) fn foreign_origin(headers: &HeaderMap, endpoint: &Endpoint) -> bool {
    headers.get(header::ORIGIN).is_some_and(|o| {
        o.to_str()
            .map(|o| !endpoint.origins.contains(&o.to_ascii_lowercase()))
            .unwrap_or(true)
    })
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

fn oauth_error(kind: BasicErrorResponseType, description: &str) -> Response {
    let status = match kind {
        BasicErrorResponseType::InvalidClient => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    let body: StandardErrorResponse<BasicErrorResponseType> =
        StandardErrorResponse::new(kind, Some(description.to_string()), None);
    (status, no_store(), Json(body)).into_response()
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(BasicErrorResponseType::InvalidGrant, description)
}

fn client_error(description: &str) -> Response {
    oauth_error(BasicErrorResponseType::InvalidClient, description)
}

fn server_error(e: &crate::db::DbError) -> Response {
    tracing::error!(error = %e, "agent token storage failed");
    oauth_error(
        BasicErrorResponseType::Extension("server_error".into()),
        "the broker's storage failed; try again",
    )
}
