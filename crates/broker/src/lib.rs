//! Keycard Broker engine. `Broker` is the only API the shells (CLI, tray app) use; it owns the
//! loopback listener, the keychain entries and the token cache. No Tauri, no UI here.

pub mod activity;
pub mod agents;
pub mod api;
pub mod approvals;
pub mod audit;
pub mod authz;
pub mod call;
pub mod callback;
pub mod catalog;
pub mod client_setup;
pub mod clients;
pub mod config;
pub mod consent;
pub mod control;
pub mod db;
mod error;
pub mod events;
pub mod grants;
pub mod logging;
pub mod mcp;
pub mod net;
mod overview;
pub mod pending_call;
pub mod policy;
pub mod remote;
pub mod service;
pub mod status;
pub mod upstream;
pub mod vault;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use tokio::sync::{Mutex, broadcast, oneshot};

pub use call::ApiError;
pub use catalog::Provider;
pub use config::Config;
pub use consent::AgentRound;
pub use error::{BrokerError, ErrorCode};
pub use events::Event;
pub use grants::{Round, RoundKind, UpstreamToken};
pub use overview::{
    ConnectionInfo, ConnectionStatus, Overall, OverallState, Session, Status, TokenInfo,
};
pub use pending_call::PendingCall;
pub use status::GrantStatus;

use audit::{Audit, AuditFilter, AuditRecord};
use callback::{CallbackError, Callbacks};
use catalog::CatalogError;
use clients::Clients;
use db::{Db, ResourceRecord, SessionStatus};
use events::Events;
use grants::Grants;
use vault::{SecretKey, Vault};

struct Listener {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The engine.
pub struct Broker {
    config: Config,
    db: Arc<Db>,
    vault: Vault,
    events: Events,
    callbacks: Callbacks,
    grants: Arc<Grants>,
    clients: Clients,
    authz: authz::Authz,
    approvals: approvals::Approvals,
    policy: agents::PolicyCache,
    audit: Audit,
    /// Connected providers, derived from the database and cached per `Db::generation`.
    connected: std::sync::Mutex<Option<(u64, Arc<Vec<Provider>>)>>,
    http: net::Clients,
    paused: Arc<std::sync::atomic::AtomicBool>,
    listener: Mutex<Option<Listener>>,
    agent_rounds: consent::AgentRounds,
    /// Serialises agent-started rounds so two requests for one provider share one round.
    agent_round_start: Mutex<()>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("vault", &self.vault)
            .finish()
    }
}

impl Broker {
    /// Opens the database and the OS keychain (with a real write probe). Fails, never falls
    /// back to plaintext, when no keychain is usable.
    pub async fn open(config: Config) -> Result<Broker, BrokerError> {
        let vault = Vault::open_native(&config.profile()).await?;
        Broker::with_vault(config, vault)
    }

    /// Opens with a given vault (unit tests pass the mock store).
    pub fn with_vault(config: Config, vault: Vault) -> Result<Broker, BrokerError> {
        let db = Arc::new(Db::open(&config.paths.db_file)?);
        let events = Events::default();
        let callbacks = Callbacks::default();
        let audit = Audit::new(db.clone(), events.clone());
        let grants = Arc::new(Grants::new(
            config.clone(),
            db.clone(),
            vault.clone(),
            events.clone(),
            callbacks.clone(),
            audit.clone(),
        ));
        let approval_timeout = Duration::from_secs(config.settings.broker.approval_timeout_secs);
        Ok(Broker {
            config,
            clients: Clients::new(db.clone()),
            authz: authz::Authz::new(db.clone(), events.clone()),
            approvals: approvals::Approvals::new(events.clone(), approval_timeout),
            policy: agents::PolicyCache::default(),
            audit,
            connected: std::sync::Mutex::new(None),
            http: upstream::http_clients().map_err(|e| BrokerError::Internal(e.to_string()))?,
            db,
            vault,
            events,
            callbacks,
            grants,
            paused: Arc::default(),
            listener: Mutex::new(None),
            agent_rounds: consent::AgentRounds::default(),
            agent_round_start: Mutex::new(()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The routes the broker serves on its loopback port.
    pub fn router(&self) -> axum::Router {
        self.callbacks.router().merge(self.agent_rounds.router())
    }

    /// Binds `127.0.0.1:<port>` and serves the callback route. Idempotent.
    pub async fn start(&self) -> Result<SocketAddr, BrokerError> {
        self.start_with(|_| axum::Router::new()).await
    }

    /// Like [`Broker::start`], with more routes on the same listener (the MCP endpoint),
    /// made for the port actually bound (port 0 in the config means any free port).
    pub async fn start_with(
        &self,
        extra: impl FnOnce(u16) -> axum::Router,
    ) -> Result<SocketAddr, BrokerError> {
        let mut slot = self.listener.lock().await;
        if let Some(listener) = slot.as_ref() {
            return Ok(listener.addr);
        }
        let port = self.config.port();
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => BrokerError::PortInUse(port),
                _ => BrokerError::Listen {
                    port,
                    reason: e.to_string(),
                },
            })?;
        let addr = tcp.local_addr().map_err(|e| BrokerError::Listen {
            port,
            reason: e.to_string(),
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = self.router().merge(extra(addr.port()));
        // Small JSON-RPC answers go out in several writes (SSE priming, then the result);
        // without TCP_NODELAY, Nagle holds the last one for the client's delayed ACK (~40 ms).
        let tcp = axum::serve::ListenerExt::tap_io(tcp, |stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
        });
        let task = tokio::spawn(async move {
            let serve = axum::serve(tcp, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "loopback listener stopped");
            }
        });
        tracing::info!(%addr, "listening");
        *slot = Some(Listener { addr, stop, task });
        Ok(addr)
    }

    /// Stops the listener and waits for it; pending audit records are written.
    pub async fn shutdown(&self) {
        let waiting = self.grants.save_unsaved().await;
        if waiting > 0 {
            tracing::error!(
                waiting,
                "the keychain is still refusing renewed refresh tokens; those grants need a new sign-in or reconnect after exit"
            );
        }
        self.audit.flush();
        if let Some(listener) = self.listener.lock().await.take() {
            let _ = listener.stop.send(());
            let _ = listener.task.await;
        }
    }

    /// Every provider: the seed catalog and the user's custom resources.
    pub fn providers(&self) -> Result<Vec<Provider>, BrokerError> {
        Ok(catalog::providers(&self.db.resources()?))
    }

    /// A provider by resource identifier or slug.
    pub fn provider(&self, key: &str) -> Result<Provider, BrokerError> {
        let providers = self.providers()?;
        Ok(catalog::find(&providers, key)?.clone())
    }

    /// Starts the login round (authorize for the broker's own resource). The listener must run.
    pub async fn begin_login(&self) -> Result<Round, BrokerError> {
        self.start().await?;
        self.grants.begin(RoundKind::Login).await
    }

    /// Starts a provider's consent round through the zone (connect and reconnect alike).
    pub async fn begin_connect(&self, key: &str) -> Result<Round, BrokerError> {
        let provider = self.provider(key)?;
        self.start().await?;
        self.grants.begin(RoundKind::Connect(provider)).await
    }

    /// Waits for the round's browser redirect and stores what the zone granted.
    pub async fn complete(&self, round: Round, timeout: Duration) -> Result<(), BrokerError> {
        let login = matches!(round.kind, RoundKind::Login);
        match self.grants.complete(round, timeout).await {
            Err(BrokerError::Callback(CallbackError::Denied { code, .. }))
                if login && code == "invalid_target" =>
            {
                Err(BrokerError::ResourceNotRegistered(
                    self.config.resource_id(),
                ))
            }
            other => other,
        }
    }

    /// A provider token for `key` (cache, or exactly one zone round trip for all callers).
    pub async fn upstream_token(&self, key: &str) -> Result<UpstreamToken, BrokerError> {
        let provider = self.provider(key)?;
        self.grants.upstream_token(&provider).await
    }

    /// Proves a connection works end to end by getting a token, and reports its facts.
    pub async fn check(&self, key: &str) -> Result<TokenInfo, BrokerError> {
        let provider = self.provider(key)?;
        let token = self.grants.upstream_token(&provider).await?;
        Ok(TokenInfo {
            resource: provider.resource,
            name: provider.name,
            scopes: token.scopes,
            expires_in_secs: token.expires_in.as_secs(),
        })
    }

    pub async fn revoke(&self, key: &str) -> Result<(), BrokerError> {
        let provider = self.provider(key)?;
        self.grants.revoke(&provider).await
    }

    pub async fn logout(&self) -> Result<(), BrokerError> {
        let providers = self.providers()?;
        self.grants.logout(&providers).await
    }

    pub fn status(&self) -> Result<Status, BrokerError> {
        let session = self.db.session()?;
        let providers = self.providers()?;
        let connections = self
            .db
            .grants()?
            .into_iter()
            .map(|g| ConnectionStatus {
                name: catalog::find(&providers, &g.resource)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|_| g.resource.clone()),
                resource: g.resource,
                status: g.status,
                scopes: g.scopes,
                connected_at: g.connected_at,
                last_used_at: g.last_used_at,
                last_error: g.last_error,
            })
            .collect();
        Ok(Status {
            zone: self.config.settings.zone.as_ref().map(|z| z.issuer.clone()),
            account: session.as_ref().and_then(|s| s.account.clone()),
            resource: session.as_ref().and_then(|s| s.resource.clone()),
            session: match session.map(|s| s.status) {
                Some(SessionStatus::SignedIn) => Session::SignedIn,
                Some(SessionStatus::NeedsLogin) => Session::NeedsLogin,
                None => Session::SignedOut,
            },
            paused: self.paused(),
            keychain_pending: self.grants.unsaved_count(),
            connections,
            overall: Overall::default(),
        }
        .with_overall())
    }

    /// Adds a custom OAuth resource; its API base defaults to the identifier.
    pub fn add_resource(
        &self,
        resource: &str,
        name: Option<&str>,
        api_bases: &[String],
        scopes: &[String],
    ) -> Result<Provider, BrokerError> {
        let resource = catalog::validate_url(resource)?;
        let api_bases = api_bases
            .iter()
            .map(|b| catalog::validate_url(b))
            .collect::<Result<Vec<_>, _>>()?;
        let name = name
            .map(str::to_string)
            .or_else(|| {
                url::Url::parse(&resource)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
            })
            .unwrap_or_else(|| resource.clone());
        self.db.put_resource(&ResourceRecord {
            resource: resource.clone(),
            name,
            api_bases,
            scopes: scopes.to_vec(),
            docs_url: None,
            added_at: Utc::now(),
        })?;
        self.events.emit(Event::ResourcesChanged);
        self.provider(&resource)
    }

    /// Removes a custom resource (its connection, if any, is revoked first).
    pub async fn remove_resource(&self, key: &str) -> Result<(), BrokerError> {
        let provider = self.provider(key)?;
        if !provider.custom {
            return Err(CatalogError::BuiltIn(provider.name).into());
        }
        if self.db.grant(&provider.resource)?.is_some() {
            self.grants.revoke(&provider).await?;
        }
        self.db.delete_resource(&provider.resource)?;
        self.events.emit(Event::ResourcesChanged);
        Ok(())
    }

    /// The connections agents may use: everything connected, needing reconnect or in error.
    pub fn connections(&self) -> Result<Vec<ConnectionInfo>, BrokerError> {
        let providers = self.providers()?;
        Ok(self
            .db
            .grants()?
            .into_iter()
            .filter(|g| g.status != GrantStatus::Revoked)
            .filter_map(|g| {
                let p = catalog::find(&providers, &g.resource).ok()?;
                Some(ConnectionInfo {
                    resource: g.resource.clone(),
                    name: p.name.clone(),
                    status: g.status.as_str().to_string(),
                    scopes: g.scopes.clone(),
                    api_bases: p.api_bases.clone(),
                    last_used_at: g.last_used_at.map(|t| t.to_rfc3339()),
                    last_error: g.last_error.clone(),
                })
            })
            .collect())
    }

    /// Appends to the audit log; a failing log write is reported, never fatal to the call.
    pub fn record(&self, record: AuditRecord) {
        if let Err(e) = self.audit.record(record) {
            tracing::error!(error = %e, "audit record lost");
        }
    }

    /// How each agent last reached the broker (loopback or the agent socket).
    pub fn last_via(
        &self,
    ) -> Result<std::collections::HashMap<String, crate::activity::Via>, BrokerError> {
        Ok(self.audit.last_via()?)
    }

    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, BrokerError> {
        Ok(self.audit.query(filter)?)
    }

    /// The MCP endpoint URL agents use on this broker's port.
    pub fn mcp_url(&self) -> String {
        mcp::mcp_url(self.config.port())
    }

    /// The config entry for an agent client just issued `token`. Clients that reach the broker
    /// through the stdio bridge (Claude Desktop) get the token in the keychain, where the bridge
    /// reads it, never in their file. One function for the CLI and the tray app alike.
    pub async fn client_snippet(
        &self,
        kind: client_setup::Kind,
        name: &str,
        token: &SecretString,
        exe: &str,
    ) -> Result<client_setup::Snippet, BrokerError> {
        if kind.uses_bridge() {
            self.vault
                .put(SecretKey::ClientToken(name.to_string()), token.clone())
                .await?;
        }
        Ok(client_setup::Snippet::new(
            kind,
            name,
            &self.mcp_url(),
            Some(secrecy::ExposeSecret::expose_secret(token)),
            exe,
        ))
    }

    /// Pauses or resumes every agent's access at once (grants and clients stay as they are).
    pub fn set_paused(&self, paused: bool) {
        let was = self
            .paused
            .swap(paused, std::sync::atomic::Ordering::Relaxed);
        if paused {
            // Everything stops at once, waiting writes included.
            self.approvals.cancel_all();
        }
        if was != paused {
            tracing::info!(paused, "agent access changed");
            self.events.emit(Event::PauseChanged { paused });
        }
    }

    pub fn paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The switch the endpoint guard reads on every request.
    pub fn pause_switch(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.paused.clone()
    }

    /// Hands an OAuth redirect that arrived as a deep link (`cloud.keycard.broker:/callback?…`,
    /// opened by the OS and passed to the app) to the waiting round. Anything else is refused.
    /// Returns the sentence to show the user.
    pub fn deliver_deep_link(&self, link: &str) -> Result<String, String> {
        let Some(rest) = link.strip_prefix(config::DEEP_LINK_REDIRECT) else {
            return Err("not a Keycard Broker sign-in link".into());
        };
        let query = match rest.strip_prefix('?') {
            Some(q) => q.split('#').next().unwrap_or(""),
            None if rest.is_empty() => "",
            None => return Err("not a Keycard Broker sign-in link".into()),
        };
        let (status, _, message) = self.callbacks.resolve(query);
        if status.is_success() {
            Ok(message)
        } else {
            Err(message)
        }
    }

    /// Keeps the confidential application's secret in the keychain (never in the config).
    pub async fn store_client_secret(&self, secret: SecretString) -> Result<(), BrokerError> {
        Ok(self.vault.put(SecretKey::ClientSecret, secret).await?)
    }
}
