//! The broker as the OAuth authorization server of its own MCP endpoint (PROTOCOL.md §3):
//! agents discover it from the 401 on `/mcp`, register (Dynamic Client Registration, or a
//! Client ID Metadata Document), send the user to the consent page on the loopback origin,
//! and get short-lived opaque access tokens plus rotating refresh tokens.
//!
//! - `metadata`: RFC 9728 protected-resource and RFC 8414 server metadata, the 401 challenge.
//! - `redirect`: which redirect URIs a native client may register and how they match.
//! - `register`: DCR (RFC 7591); `cimd`: client metadata documents fetched by URL.
//! - `authorize` + `consent_page`: the user's decision, per provider.
//! - `token`: codes, access and refresh tokens (hashes only), rotation, reuse detection, revocation.
//! - `store`: the SQLite rows (agent clients, refresh tokens, access choices).

#[cfg(test)]
mod attack_tests;
mod authorize;
mod cimd;
mod consent_page;
mod metadata;
mod redirect;
mod register;
mod store;
#[cfg(test)]
mod tests;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use rand::RngCore;
use secrecy::SecretString;

use crate::db::Db;
pub use crate::events::AgentChange;
use crate::events::Events;

pub use consent_page::Offer;
pub use metadata::{challenge, resource_metadata_url};
pub use register::DCR_PREFIX;
pub use store::{AgentRecord, Registration};
pub use token::Caller;

/// The agent a request to `/mcp` authenticated as.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// The policy's principal: a static client's name, or an OAuth agent's client id.
    pub key: String,
    /// What the user sees (and the activity log records).
    pub name: String,
    /// Signed in with OAuth (false: a static bearer token from a config file).
    pub oauth: bool,
    /// How this request reached the broker (the activity log says so).
    pub via: crate::activity::Via,
}

impl Agent {
    /// A client holding a static token: its name is its key.
    pub fn static_client(name: &str) -> Agent {
        Agent {
            key: name.to_string(),
            name: name.to_string(),
            oauth: false,
            via: crate::activity::Via::Loopback,
        }
    }
}

/// The providers the consent page offers (the connected ones), asked at each request.
pub type Providers = Arc<dyn Fn() -> Vec<Offer> + Send + Sync>;

/// What every route shares.
pub(crate) struct Ctx {
    authz: Authz,
    endpoint: Endpoint,
    providers: Providers,
}

pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REGISTER_PATH: &str = "/oauth/register";
pub const REVOKE_PATH: &str = "/oauth/revoke";

/// Prefixes that make a leaked agent credential recognisable.
pub const ACCESS_PREFIX: &str = "kcba_";
pub const REFRESH_PREFIX: &str = "kcbr_";
const CODE_PREFIX: &str = "kcbc_";

/// What the authorization server knows about where it runs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http://127.0.0.1:<port>`: the issuer and the origin of every endpoint.
    pub issuer: String,
    /// The MCP URL: the only resource (RFC 8707) tokens are issued for.
    pub resource: String,
    /// Host values accepted (loopback names with our port).
    pub hosts: Vec<String>,
    /// Origins a browser-borne request may carry.
    pub origins: Vec<String>,
}

impl Endpoint {
    pub fn new(port: u16) -> Endpoint {
        Endpoint {
            issuer: format!("http://127.0.0.1:{port}"),
            resource: crate::net::mcp_url(port),
            hosts: crate::net::own_hosts(port),
            origins: crate::net::own_origins(port),
        }
    }
}

/// The authorization server: shared by the routes and the MCP guard.
#[derive(Clone)]
pub struct Authz {
    inner: Arc<Inner>,
}

struct Inner {
    store: store::Store,
    /// Bumped on every change of access choices, so the policy knows to rebuild.
    generation: std::sync::atomic::AtomicU64,
    events: Events,
    pending: authorize::Pending,
    tokens: token::Tokens,
    documents: cimd::Documents,
    /// When each agent's "last seen" was last written (at most once a minute per agent).
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

const LAST_SEEN_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(60);

impl Authz {
    pub fn new(db: Arc<Db>, events: Events) -> Authz {
        Authz {
            inner: Arc::new(Inner {
                store: store::Store::new(db),
                generation: std::sync::atomic::AtomicU64::new(0),
                events,
                pending: authorize::Pending::default(),
                tokens: token::Tokens::default(),
                documents: cimd::Documents::new(),
                seen: std::sync::Mutex::default(),
            }),
        }
    }

    /// The routes, for the loopback listener on `port`. Every route checks `Host` (a page on
    /// another name that resolves to 127.0.0.1 must not read the consent form).
    pub fn router(&self, port: u16, providers: Providers) -> Router {
        let endpoint = Endpoint::new(port);
        let hosts = Arc::new(endpoint.hosts.clone());
        let state = Arc::new(Ctx {
            authz: self.clone(),
            endpoint,
            providers,
        });
        Router::new()
            .route(
                "/.well-known/oauth-protected-resource",
                get(metadata::protected_resource),
            )
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(metadata::protected_resource),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata::authorization_server),
            )
            .route(
                "/.well-known/openid-configuration",
                get(metadata::authorization_server),
            )
            .route(REGISTER_PATH, post(register::register))
            .route(AUTHORIZE_PATH, get(authorize::show).post(authorize::decide))
            .route(TOKEN_PATH, post(token::token))
            .route(REVOKE_PATH, post(token::revoke))
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(hosts, check_host))
    }

    /// The agent an access token belongs to, if it is live; notes when it was last seen.
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        let caller = self.inner.tokens.authenticate(token)?;
        let due = {
            let mut seen = self.inner.seen.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            match seen.get(&caller.client_id) {
                Some(at) if now.duration_since(*at) < LAST_SEEN_RESOLUTION => false,
                _ => {
                    seen.insert(caller.client_id.clone(), now);
                    true
                }
            }
        };
        if due && let Err(e) = self.inner.store.touch(&caller.client_id) {
            tracing::warn!(error = %e, "cannot note when an agent was last seen");
        }
        Some(caller)
    }

    /// Every access choice, for the policy.
    pub fn access(&self) -> Result<Vec<crate::policy::AgentAccess>, crate::db::DbError> {
        self.inner.store.access()
    }

    /// Changes whenever an access choice changes.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces what an agent (OAuth client id or static client name) may do per provider.
    pub fn set_access(
        &self,
        client: &str,
        choices: &[(String, crate::policy::Access)],
    ) -> Result<(), crate::db::DbError> {
        self.inner.store.set_access(client, choices)?;
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed(client, AgentChange::AccessChanged);
        Ok(())
    }

    /// Every OAuth agent client, newest first.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, crate::db::DbError> {
        self.inner.store.clients()
    }

    /// Ends every sign-in of an agent at once: its access tokens stop working now, its
    /// refresh tokens are deleted. Its registration and access choices stay.
    pub fn sign_out(&self, client_id: &str) -> Result<bool, crate::db::DbError> {
        self.inner.tokens.forget_client(client_id);
        let ended = self.inner.store.delete_client_tokens(client_id)?;
        self.changed(client_id, AgentChange::SignedOut);
        Ok(ended > 0)
    }

    /// Forgets an agent: registration, tokens and access choices.
    pub fn remove(&self, client_id: &str) -> Result<bool, crate::db::DbError> {
        self.inner.tokens.forget_client(client_id);
        let removed = self.inner.store.remove_client(client_id)?;
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed(client_id, AgentChange::SignedOut);
        Ok(removed)
    }

    fn changed(&self, client_id: &str, change: AgentChange) {
        self.inner.events.emit(crate::events::Event::AgentChanged {
            client: client_id.to_string(),
            change,
        });
    }
}

/// A random credential with a recognisable prefix: 256 bits, base64url.
fn new_secret(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A random identifier that is not a secret (request ids, client ids).
fn new_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Refuses a request whose `Host` is not one of our loopback names (DNS rebinding).
async fn check_host(
    State(hosts): State<Arc<Vec<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase());
    if !host.is_some_and(|h| hosts.contains(&h)) {
        return (StatusCode::FORBIDDEN, "forbidden host").into_response();
    }
    next.run(request).await
}
