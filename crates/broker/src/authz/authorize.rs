//! The authorization endpoint. GET checks the request — client, redirect URI (before any
//! redirect: a bad one gets a page, never a redirect), PKCE S256, `resource` — and shows the
//! consent page; POST takes the user's decision from that page (single-use request id and
//! CSRF token, our own origin only) and redirects back with a code, `state` and `iss`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::consent_page;
use super::token::CodeGrant;
use super::{AgentRecord, Ctx, Registration, cimd};
use crate::policy::Access;

const REQUEST_LIFETIME: Duration = Duration::from_secs(600);
const MAX_PENDING: usize = 64;
/// The form field prefix of a provider's access level.
pub const ACCESS_FIELD: &str = "access:";

/// An authorization request shown to the user and not yet decided.
struct Waiting {
    client: AgentRecord,
    redirect_uri: String,
    state: Option<String>,
    challenge: String,
    resource: String,
    csrf: String,
    offered: Vec<String>,
    created: Instant,
}

#[derive(Default)]
pub(super) struct Pending {
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, waiting: Waiting) -> String {
        let id = super::new_id(18);
        let mut all = self.lock();
        all.retain(|_, w| w.created.elapsed() < REQUEST_LIFETIME);
        if all.len() >= MAX_PENDING
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, w)| w.created)
                .map(|(k, _)| k.clone())
        {
            all.remove(&oldest);
        }
        all.insert(id.clone(), waiting);
        id
    }

    /// Takes a request out (single use), if it is still fresh.
    fn take(&self, id: &str) -> Option<Waiting> {
        self.lock()
            .remove(id)
            .filter(|w| w.created.elapsed() < REQUEST_LIFETIME)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    resource: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

pub(super) async fn show(
    State(ctx): State<Arc<Ctx>>,
    query: Result<Query<AuthorizeQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return page_error(
            "The sign-in request is malformed (a parameter is repeated or unreadable).",
        );
    };
    let Some(client_id) = q.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return page_error("The sign-in request names no client.");
    };
    let client = match find_client(&ctx, client_id).await {
        Ok(client) => client,
        Err(message) => return page_error(&message),
    };
    let Some(redirect_uri) = q.redirect_uri.clone() else {
        return page_error("The sign-in request names no redirect URI.");
    };
    if !super::redirect::matches(&client.redirect_uris, &redirect_uri) {
        return page_error("The redirect URI is not one this agent registered.");
    }
    // The redirect URI is trustworthy from here: errors go back to the agent.
    let back = |error: &str, description: &str| {
        redirect_back(
            &ctx,
            &redirect_uri,
            &[("error", error), ("error_description", description)],
            q.state.as_deref(),
        )
    };
    if q.response_type.as_deref() != Some("code") {
        return back("unsupported_response_type", "use response_type=code");
    }
    let challenge = match (
        q.code_challenge.as_deref(),
        q.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256")) if c.len() == 43 => c.to_string(),
        _ => {
            return back(
                "invalid_request",
                "PKCE with code_challenge_method=S256 is required",
            );
        }
    };
    if q.resource.as_deref() != Some(ctx.endpoint.resource.as_str()) {
        return back("invalid_target", "resource must be this broker's MCP URL");
    }
    let offers = (ctx.providers)();
    let csrf = super::new_id(24);
    let id = ctx.authz.inner.pending.insert(Waiting {
        client: client.clone(),
        redirect_uri: redirect_uri.clone(),
        state: q.state.clone(),
        challenge,
        resource: ctx.endpoint.resource.clone(),
        csrf: csrf.clone(),
        offered: offers.iter().map(|o| o.resource.clone()).collect(),
        created: Instant::now(),
    });
    ctx.authz
        .inner
        .events
        .emit(crate::events::Event::AgentAsks {
            client: client.client_id.clone(),
            name: client.name.clone(),
        });
    consent_page::render(&consent_page::Page {
        client: &client,
        redirect_uri: &redirect_uri,
        offers: &offers,
        request_id: &id,
        csrf: &csrf,
    })
}

/// A registered (DCR) agent, or one described by its metadata document (CIMD). A document's
/// agent is stored only when the user allows it (`decide`): any web page can send a browser
/// here, and a page nobody answered must not add an agent to the list.
async fn find_client(ctx: &Ctx, client_id: &str) -> Result<AgentRecord, String> {
    let store = &ctx.authz.inner.store;
    if cimd::is_document_url(client_id) {
        let mut record = ctx.authz.inner.documents.resolve(client_id).await?;
        if let Ok(Some(known)) = store.client(client_id) {
            record.created_at = known.created_at;
            record.last_seen_at = known.last_seen_at;
        }
        return Ok(record);
    }
    match store.client(client_id) {
        Ok(Some(client)) => Ok(client),
        Ok(None) => {
            Err("This agent is not registered with Keycard Broker (unknown client_id).".into())
        }
        Err(e) => Err(format!("The broker's storage failed: {e}")),
    }
}

pub(super) async fn decide(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if !same_origin(&headers, &ctx) {
        return page_error("The decision did not come from Keycard Broker's own page.");
    }
    let Ok(Form(fields)) = form else {
        return page_error("The decision form is unreadable.");
    };
    let mut seen = std::collections::HashSet::new();
    if fields.iter().any(|(k, _)| !seen.insert(k.as_str())) {
        return page_error("The decision form repeats a field.");
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(waiting) = field("request").and_then(|id| ctx.authz.inner.pending.take(id)) else {
        return page_error(
            "This sign-in request expired or was already answered. Start the sign-in again from the agent.",
        );
    };
    if !field("csrf").is_some_and(|c| constant_time_eq(c.as_bytes(), waiting.csrf.as_bytes())) {
        return page_error("The decision form is not the one Keycard Broker showed.");
    }
    let state = waiting.state.as_deref();
    match field("decision") {
        Some("allow") => {}
        Some("deny") => {
            return redirect_back(
                &ctx,
                &waiting.redirect_uri,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the user denied access"),
                ],
                state,
            );
        }
        _ => return page_error("The decision form has no decision."),
    }
    let mut choices = Vec::new();
    for resource in &waiting.offered {
        let chosen = field(&format!("{ACCESS_FIELD}{resource}")).unwrap_or("none");
        let Some(access) = Access::parse(chosen) else {
            return page_error("The decision form has an unknown access level.");
        };
        choices.push((resource.clone(), access));
    }
    let client_id = waiting.client.client_id.clone();
    // A document's agent (its name and redirect URIs as last fetched), so the token endpoint
    // and the window know it; a DCR agent is stored since it registered.
    if waiting.client.registration == Registration::Cimd
        && let Err(e) = ctx.authz.inner.store.save_client(&waiting.client)
    {
        tracing::error!(error = %e, "cannot store an agent");
        return page_error("The broker's storage failed; nothing was granted. Try again.");
    }
    if let Err(e) = ctx.authz.set_access(&client_id, &choices) {
        tracing::error!(error = %e, "cannot store an agent's access");
        return page_error("The broker's storage failed; nothing was granted. Try again.");
    }
    let code = ctx.authz.inner.tokens.issue_code(CodeGrant {
        client_id: client_id.clone(),
        name: waiting.client.name.clone(),
        redirect_uri: waiting.redirect_uri.clone(),
        challenge: waiting.challenge.clone(),
        resource: waiting.resource.clone(),
    });
    redirect_back(
        &ctx,
        &waiting.redirect_uri,
        &[("code", code.expose_secret())],
        state,
    )
}

/// The form must come from our own page: a present `Origin` (browsers send it on POST) or
/// `Sec-Fetch-Site` must say so.
fn same_origin(headers: &HeaderMap, ctx: &Ctx) -> bool {
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(o) => o
            .to_str()
            .is_ok_and(|o| ctx.endpoint.origins.contains(&o.to_ascii_lowercase())),
    };
    let site_ok = headers
        .get("sec-fetch-site")
        .is_none_or(|s| s == "same-origin" || s == "none");
    origin_ok && site_ok
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 303 to the agent's redirect URI with `params`, `state` and `iss` (RFC 9207).
fn redirect_back(
    ctx: &Ctx,
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return page_error("The redirect URI is unreadable.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &ctx.endpoint.issuer);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url.to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
    )
        .into_response()
}

fn page_error(message: &str) -> Response {
    consent_page::error(StatusCode::BAD_REQUEST, message)
}
