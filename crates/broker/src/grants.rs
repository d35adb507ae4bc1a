//! Grant registry and lifecycle (DESIGN.md): the zone session, each provider connection, the
//! in-memory token cache and single-flight acquisition.
//!
//! Single flight: every token (the session's, and each (resource, scopes) upstream token) has
//! one async slot. Callers queue on the slot's lock; the first one to find it empty or
//! expiring does the one zone round trip, the rest find the fresh token when they get the lock.
//! Rotated refresh tokens reach the keychain before the new access token is handed out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;
use tokio::sync::{Mutex as AsyncMutex, OnceCell};

use crate::BrokerError;
use crate::audit::{Audit, AuditRecord};
use crate::callback::{CALLBACK_PATH, Callbacks, Waiter};
use crate::catalog::{self, Provider};
use crate::config::{Config, DEEP_LINK_REDIRECT, RedirectMode, UpstreamStrategy};
use crate::db::{Db, GrantRecord, RegistrationRecord, SessionRecord, SessionStatus};
use crate::events::{Event, Events};
pub use crate::status::GrantStatus;
use crate::vault::{SecretKey, Vault};
use crate::zone::{ClientIdentity, TokenSet, Zone, ZoneError, same_issuer};

/// Refresh this long before expiry so a token never expires in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the zone gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest a token is cached whatever `expires_in` says (a zone may answer absurd values).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Attempts per acquisition on transient zone failures, and the cap on one wait.
const ATTEMPTS: u32 = 3;
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// `last_used_at` is written at most this often per grant (the hot path stays in memory).
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);
const REGISTRATION_KEY: &str = "registration";

/// A provider token for one call. The secret never leaves the broker process.
#[derive(Debug, Clone)]
pub struct UpstreamToken {
    pub resource: String,
    pub token: SecretString,
    pub scopes: Vec<String>,
    pub expires_in: Duration,
}

#[derive(Clone)]
struct Cached {
    token: SecretString,
    scopes: Vec<String>,
    expires_at: Instant,
}

impl Cached {
    fn new(token: SecretString, scopes: Vec<String>, expires_in: Option<Duration>) -> Cached {
        Cached {
            token,
            scopes,
            expires_at: Instant::now() + lifetime(expires_in),
        }
    }

    fn fresh(&self) -> bool {
        Instant::now() + EXPIRY_MARGIN < self.expires_at
    }
}

/// The cache lifetime for a zone's `expires_in`: the default when absent, capped so that no
/// answer can overflow the clock.
fn lifetime(expires_in: Option<Duration>) -> Duration {
    expires_in.unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME)
}

#[derive(Default)]
struct SlotState {
    cached: Option<Cached>,
    /// After a failed acquisition, callers fail fast until then (backoff).
    not_before: Option<Instant>,
    failures: u32,
    last_error: Option<String>,
}

type Slot = Arc<AsyncMutex<SlotState>>;

/// What kind of authorize round is running.
#[derive(Debug, Clone)]
pub enum RoundKind {
    Login,
    Connect(Provider),
}

/// An authorize round: open `url` in the system browser, then [`Grants::complete`].
pub struct Round {
    pub url: url::Url,
    pub kind: RoundKind,
    resource: String,
    redirect_uri: String,
    verifier: SecretString,
    client: ClientIdentity,
    zone: Zone,
    waiter: Waiter,
}

impl std::fmt::Debug for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round")
            .field("kind", &self.kind)
            .field("resource", &self.resource)
            .finish()
    }
}

/// The grant registry. One per broker.
pub struct Grants {
    config: Config,
    db: Arc<Db>,
    vault: Vault,
    events: Events,
    callbacks: Callbacks,
    audit: Audit,
    zone: OnceCell<Zone>,
    slots: Mutex<HashMap<String, Slot>>,
    last_used: Mutex<HashMap<String, Instant>>,
    /// Rotated refresh tokens the keychain refused to store (locked mid-run). The zone has
    /// already retired the previous one, so this copy is the grant: it is used for the next
    /// refresh and written to the keychain as soon as the keychain takes it.
    unsaved: Mutex<HashMap<SecretKey, SecretString>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grants")
    }
}

fn session_slot_key() -> String {
    "session".into()
}

fn upstream_slot_key(resource: &str, scopes: &[String]) -> String {
    format!("upstream {resource} {}", scopes.join(" "))
}

impl Grants {
    pub fn new(
        config: Config,
        db: Arc<Db>,
        vault: Vault,
        events: Events,
        callbacks: Callbacks,
        audit: Audit,
    ) -> Grants {
        Grants {
            config,
            db,
            vault,
            events,
            callbacks,
            audit,
            zone: OnceCell::new(),
            slots: Mutex::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
        }
    }

    /// The refresh token to use for `key`: a rotated one still waiting for the keychain
    /// (saved now if the keychain has come back), else the keychain's.
    async fn refresh_secret(&self, key: SecretKey) -> Result<Option<SecretString>, BrokerError> {
        let waiting = self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let Some(token) = waiting else {
            return Ok(self.vault.get(key).await?);
        };
        self.store_rotated(key, token.clone()).await;
        Ok(Some(token))
    }

    /// Persists a rotated refresh token. If the keychain refuses (locked, gone), the token is
    /// kept in memory rather than lost; the access token that came with it is still good.
    async fn store_rotated(&self, key: SecretKey, token: SecretString) {
        match self.vault.put(key.clone(), token.clone()).await {
            Ok(()) => {
                let earlier = self
                    .unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                if earlier.is_some() {
                    tracing::info!(entry = %self.vault.entry_user(&key), "keychain is back; saved the renewed refresh token");
                    self.announce_unsaved();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entry = %self.vault.entry_user(&key), "keychain refused the renewed refresh token; keeping it in memory until the keychain takes it");
                let fresh = self
                    .unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, token)
                    .is_none();
                if fresh {
                    self.announce_unsaved();
                }
            }
        }
    }

    /// How many renewed refresh tokens wait for the keychain.
    pub fn unsaved_count(&self) -> usize {
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn announce_unsaved(&self) {
        self.events.emit(Event::KeychainPending {
            count: self.unsaved_count(),
        });
    }

    /// Retries every rotated token the keychain refused; returns how many are still waiting.
    pub async fn save_unsaved(&self) -> usize {
        let waiting: Vec<(SecretKey, SecretString)> = self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, token) in waiting {
            self.store_rotated(key, token).await;
        }
        self.unsaved_count()
    }

    fn forget_unsaved(&self, key: &SecretKey) {
        let removed = self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        if removed.is_some() {
            self.announce_unsaved();
        }
    }

    /// The zone client, discovered once per broker run (the SDK keeps metadata an hour;
    /// a broker restart re-discovers).
    pub async fn zone(&self) -> Result<Zone, BrokerError> {
        let settings = self.config.zone()?;
        let (issuer, timeout) = (settings.issuer.clone(), settings.timeout());
        let zone = self
            .zone
            .get_or_try_init(|| Zone::discover(&issuer, timeout))
            .await?;
        Ok(zone.clone())
    }

    fn redirect_uri(&self) -> String {
        match self.config.settings.broker.redirect {
            RedirectMode::Loopback => {
                format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.config.port())
            }
            RedirectMode::DeepLink => DEEP_LINK_REDIRECT.to_string(),
        }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.to_string()).or_default().clone()
    }

    fn drop_slots(&self, matching: impl Fn(&str) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|k, _| !matching(k));
    }

    /// Client identity for token calls: the configured client, else the stored registration.
    async fn identity(&self) -> Result<Option<ClientIdentity>, BrokerError> {
        let zone_settings = self.config.zone()?;
        if let Some(client_id) = &zone_settings.client_id {
            let client_secret = if zone_settings.confidential {
                match &self.config.env_client_secret {
                    Some(s) => Some(s.clone()),
                    None => Some(
                        self.vault
                            .get(SecretKey::ClientSecret)
                            .await?
                            .ok_or(BrokerError::MissingClientSecret)?,
                    ),
                }
            } else {
                None
            };
            return Ok(Some(ClientIdentity {
                client_id: client_id.clone(),
                client_secret,
            }));
        }
        let Some(reg) = self.db.setting::<RegistrationRecord>(REGISTRATION_KEY)? else {
            return Ok(None);
        };
        if !same_issuer(&reg.issuer, &zone_settings.issuer) {
            return Ok(None);
        }
        let client_secret = if reg.has_secret {
            self.vault.get(SecretKey::RegistrationSecret).await?
        } else {
            None
        };
        Ok(Some(ClientIdentity {
            client_id: reg.client_id,
            client_secret,
        }))
    }

    /// Identity for an authorize round: re-registers when the redirect URI changed or no
    /// registration exists (RFC 7591, native public client).
    async fn identity_for_round(&self, zone: &Zone) -> Result<ClientIdentity, BrokerError> {
        let redirect_uri = self.redirect_uri();
        if self.config.zone()?.client_id.is_none() {
            let current = self.db.setting::<RegistrationRecord>(REGISTRATION_KEY)?;
            let reusable = current.as_ref().is_some_and(|r| {
                r.redirect_uri == redirect_uri && same_issuer(&r.issuer, zone.issuer())
            });
            if !reusable {
                let reg = zone.register(&redirect_uri).await?;
                let has_secret = reg.client_secret.is_some();
                match reg.client_secret {
                    Some(secret) => {
                        self.vault
                            .put(SecretKey::RegistrationSecret, secret)
                            .await?
                    }
                    None => self.vault.delete(SecretKey::RegistrationSecret).await?,
                }
                self.db.set_setting(
                    REGISTRATION_KEY,
                    &RegistrationRecord {
                        issuer: zone.issuer().to_string(),
                        client_id: reg.client_id,
                        redirect_uri: redirect_uri.clone(),
                        has_secret,
                    },
                )?;
                tracing::info!("registered with the zone as a native public client");
            }
        }
        self.identity().await?.ok_or(BrokerError::NotSignedIn)
    }

    /// Starts an authorize round (login, or a provider's consent through the zone).
    pub async fn begin(&self, kind: RoundKind) -> Result<Round, BrokerError> {
        if let RoundKind::Connect(_) = &kind {
            self.require_session()?;
        }
        let zone = self.zone().await?;
        let client = self.identity_for_round(&zone).await?;
        let (resource, scopes) = match &kind {
            RoundKind::Login => (
                self.config.resource_id(),
                self.config.zone()?.scopes.clone(),
            ),
            RoundKind::Connect(p) => {
                let mut scopes = vec!["openid".to_string(), "offline_access".to_string()];
                scopes.extend(p.scopes.iter().cloned());
                (p.resource.clone(), scopes)
            }
        };
        let redirect_uri = self.redirect_uri();
        let request = zone.authorize(&client, &redirect_uri, &resource, &scopes)?;
        let waiter = self.callbacks.register(
            &request.state,
            zone.issuer(),
            zone.metadata()
                .authorization_response_iss_parameter_supported,
        );
        Ok(Round {
            url: request.url,
            kind,
            resource,
            redirect_uri,
            verifier: request.verifier,
            client,
            zone,
            waiter,
        })
    }

    /// Waits for the round's redirect, redeems the code and stores the result.
    pub async fn complete(&self, round: Round, timeout: Duration) -> Result<(), BrokerError> {
        let Round {
            kind,
            resource,
            redirect_uri,
            verifier,
            client,
            zone,
            waiter,
            ..
        } = round;
        let code = waiter.wait(timeout).await?;
        let code_text = secrecy::ExposeSecret::expose_secret(&code).to_string();
        let tokens = zone
            .exchange_code(&client, &redirect_uri, &code_text, &verifier, &resource)
            .await?;
        let refresh = tokens
            .refresh_token
            .clone()
            .ok_or(BrokerError::NoRefreshToken)?;
        match kind {
            RoundKind::Login => {
                if let Some(old) = self.vault.get(SecretKey::Session).await? {
                    revoke_quietly(&zone, &client, &old, "previous session").await;
                }
                self.vault.put(SecretKey::Session, refresh).await?;
                self.forget_unsaved(&SecretKey::Session);
                let claims = tokens.id_claims.clone().unwrap_or_default();
                let record = SessionRecord {
                    issuer: zone.issuer().to_string(),
                    account: claims.account(),
                    subject: claims.sub.clone(),
                    signed_in_at: Utc::now(),
                    status: SessionStatus::SignedIn,
                    last_error: None,
                    resource: Some(resource.clone()),
                };
                self.db.put_session(&record)?;
                let slot = self.slot(&session_slot_key());
                let mut state = slot.lock().await;
                *state = SlotState {
                    cached: Some(Cached::new(
                        tokens.access_token,
                        tokens.scopes.unwrap_or_default(),
                        tokens.expires_in,
                    )),
                    ..SlotState::default()
                };
                tracing::info!(account = ?record.account, "signed in to the Keycard zone");
                self.events.emit(Event::SessionChanged {
                    signed_in: true,
                    account: record.account,
                });
            }
            RoundKind::Connect(provider) => {
                let previous = self
                    .vault
                    .get(SecretKey::Connection(resource.clone()))
                    .await?;
                self.vault
                    .put(SecretKey::Connection(resource.clone()), refresh)
                    .await?;
                self.forget_unsaved(&SecretKey::Connection(resource.clone()));
                if let Some(old) = previous {
                    revoke_quietly(&zone, &client, &old, "replaced connection").await;
                }
                let granted = tokens
                    .scopes
                    .clone()
                    .unwrap_or_else(|| provider.scopes.clone());
                self.drop_slots(|k| k.starts_with(&upstream_slot_key(&resource, &[])));
                let now = Utc::now();
                let missing = missing_scopes(&provider.scopes, &granted);
                let (status, last_error) = if missing.is_empty() {
                    (GrantStatus::Connected, None)
                } else {
                    (GrantStatus::NeedsReconnect, Some(scope_reason(&missing)))
                };
                // A reconnect keeps the connection's history (when it was last used).
                let last_used_at = self.db.grant(&resource)?.and_then(|g| g.last_used_at);
                self.save_grant(GrantRecord {
                    resource: resource.clone(),
                    status,
                    scopes: granted,
                    connected_at: Some(now),
                    last_used_at,
                    last_error: last_error.clone(),
                    updated_at: now,
                })?;
                tracing::info!(%resource, status = status.as_str(), "connection stored");
                if let Some(reason) = last_error {
                    return Err(BrokerError::NeedsReconnect {
                        name: provider.name,
                        resource,
                        reason,
                    });
                }
            }
        }
        Ok(())
    }

    fn require_session(&self) -> Result<SessionRecord, BrokerError> {
        let session = self.db.session()?.ok_or(BrokerError::NotSignedIn)?;
        if session.status == SessionStatus::NeedsLogin {
            return Err(BrokerError::SessionExpired(
                session
                    .last_error
                    .unwrap_or_else(|| "the zone ended it".into()),
            ));
        }
        Ok(session)
    }

    fn save_grant(&self, record: GrantRecord) -> Result<(), BrokerError> {
        let previous = self.db.grant(&record.resource)?;
        self.db.put_grant(&record)?;
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.status != record.status || p.last_error != record.last_error);
        if changed {
            self.events.emit(Event::GrantChanged {
                resource: record.resource.clone(),
                status: record.status,
                reason: record.last_error.clone(),
            });
        }
        Ok(())
    }

    /// The session's access token (the `subject_token` of every exchange).
    pub async fn session_token(&self) -> Result<SecretString, BrokerError> {
        let slot = self.slot(&session_slot_key());
        let mut state = slot.lock().await;
        if let Some(cached) = state.cached.as_ref().filter(|c| c.fresh()) {
            return Ok(cached.token.clone());
        }
        let session = self.require_session()?;
        check_backoff(&state, "the Keycard session")?;
        let refresh = self
            .refresh_secret(SecretKey::Session)
            .await?
            .ok_or(BrokerError::NotSignedIn)?;
        let zone = self.zone().await?;
        let client = self.identity().await?.ok_or(BrokerError::NotSignedIn)?;
        // The identifier the session was signed in for, whatever the port is now.
        let resource = session
            .resource
            .clone()
            .unwrap_or_else(|| self.config.resource_id());
        let result = retrying!(
            zone.refresh(&client, &refresh, Some(&resource)),
            refresh_retry
        );
        match result {
            Ok(tokens) => {
                if let Some(rotated) = tokens.refresh_token.clone() {
                    self.store_rotated(SecretKey::Session, rotated).await;
                }
                let cached = Cached::new(
                    tokens.access_token,
                    tokens.scopes.unwrap_or_default(),
                    tokens.expires_in,
                );
                let token = cached.token.clone();
                *state = SlotState {
                    cached: Some(cached),
                    ..SlotState::default()
                };
                Ok(token)
            }
            Err(e) if !e.is_transient() => {
                state.cached = None;
                if let Some(fix) = e.setup_fix(&resource) {
                    // A set-up problem, not a dead session: keep the sign-in, say what to change.
                    return Err(BrokerError::ZoneSetup {
                        code: e.code().unwrap_or_default().to_string(),
                        fix,
                    });
                }
                if matches!(
                    e.code(),
                    Some("invalid_grant" | "invalid_client" | "access_denied")
                ) {
                    if e.code() == Some("invalid_client") {
                        // The registration is gone at the zone: the next login registers anew.
                        self.db.delete_setting(REGISTRATION_KEY)?;
                    }
                    let mut session = self.require_session()?;
                    session.status = SessionStatus::NeedsLogin;
                    session.last_error = Some(e.to_string());
                    self.db.put_session(&session)?;
                    self.events.emit(Event::SessionChanged {
                        signed_in: false,
                        account: session.account,
                    });
                    return Err(BrokerError::SessionExpired(e.to_string()));
                }
                Err(e.into())
            }
            Err(e) => {
                note_failure(&mut state, &e);
                Err(e.into())
            }
        }
    }

    /// A provider token for `provider`, from the cache or one zone round trip.
    pub async fn upstream_token(&self, provider: &Provider) -> Result<UpstreamToken, BrokerError> {
        let resource = provider.resource.clone();
        let grant = self
            .db
            .grant(&resource)?
            .ok_or_else(|| BrokerError::NotConnected(provider.name.clone()))?;
        match grant.status {
            GrantStatus::Revoked => return Err(BrokerError::NotConnected(provider.name.clone())),
            GrantStatus::NeedsReconnect => {
                return Err(BrokerError::NeedsReconnect {
                    name: provider.name.clone(),
                    resource,
                    reason: grant
                        .last_error
                        .unwrap_or_else(|| "the zone asked for new consent".into()),
                });
            }
            GrantStatus::Connected | GrantStatus::Error => {}
        }
        let slot = self.slot(&upstream_slot_key(&resource, &provider.scopes));
        let mut state = slot.lock().await;
        if let Some(cached) = state.cached.as_ref().filter(|c| c.fresh()) {
            let token = UpstreamToken {
                resource: resource.clone(),
                token: cached.token.clone(),
                scopes: cached.scopes.clone(),
                expires_in: cached.expires_at.saturating_duration_since(Instant::now()),
            };
            drop(state);
            // Bookkeeping only: a full disk must not fail a call whose token is in hand.
            if let Err(e) = self.touch(&grant) {
                tracing::warn!(error = %e, resource = %grant.resource, "could not record grant use");
            }
            return Ok(token);
        }
        check_backoff(&state, &provider.name)?;
        let started = Instant::now();
        let result = self.fetch_upstream(provider).await;
        let mut record = AuditRecord::new("token", None);
        record.resource = Some(resource.clone());
        record.latency_ms = started.elapsed().as_millis() as u64;
        if let Err(e) = &result {
            record.outcome = "error".into();
            record.detail = Some(e.to_string().chars().take(300).collect());
        }
        if let Err(e) = self.audit.record(record) {
            tracing::error!(error = %e, "audit record lost");
        }
        match result {
            Ok(tokens) => {
                let granted = tokens
                    .scopes
                    .clone()
                    .unwrap_or_else(|| grant.scopes.clone());
                let missing = missing_scopes(&provider.scopes, &granted);
                if !missing.is_empty() {
                    state.cached = None;
                    let reason = scope_reason(&missing);
                    self.mark(&grant, GrantStatus::NeedsReconnect, Some(reason.clone()))?;
                    return Err(BrokerError::NeedsReconnect {
                        name: provider.name.clone(),
                        resource,
                        reason,
                    });
                }
                let cached = Cached::new(tokens.access_token, granted.clone(), tokens.expires_in);
                let token = UpstreamToken {
                    resource: resource.clone(),
                    token: cached.token.clone(),
                    scopes: granted.clone(),
                    expires_in: lifetime(tokens.expires_in),
                };
                *state = SlotState {
                    cached: Some(cached),
                    ..SlotState::default()
                };
                drop(state);
                let now = Utc::now();
                let saved = self
                    .save_if_unchanged(
                        &grant,
                        GrantRecord {
                            status: GrantStatus::Connected,
                            scopes: granted,
                            last_used_at: Some(now),
                            last_error: None,
                            updated_at: now,
                            ..grant.clone()
                        },
                    )
                    .unwrap_or_else(|e| {
                        // Bookkeeping: the token is in hand and the grant unchanged on disk.
                        tracing::error!(error = %e, %resource, "could not record the renewed grant");
                        true
                    });
                if !saved {
                    // Revoked or marked while the zone answered: the user's action wins.
                    match self.db.grant(&resource)?.map(|g| (g.status, g.last_error)) {
                        Some((GrantStatus::Connected | GrantStatus::Error, _)) => {}
                        Some((GrantStatus::NeedsReconnect, reason)) => {
                            self.invalidate(&resource);
                            return Err(BrokerError::NeedsReconnect {
                                name: provider.name.clone(),
                                resource,
                                reason: reason
                                    .unwrap_or_else(|| "the zone asked for new consent".into()),
                            });
                        }
                        Some((GrantStatus::Revoked, _)) | None => {
                            self.invalidate(&resource);
                            return Err(BrokerError::NotConnected(provider.name.clone()));
                        }
                    }
                }
                self.remember_use(&resource);
                self.events.emit(Event::TokenIssued { resource });
                Ok(token)
            }
            Err(BrokerError::Zone(e)) if e.needs_user() => {
                state.cached = None;
                let reason = match e.code() {
                    Some("insufficient_authorization") => {
                        "the zone has no current consent for it (scopes or policy changed)"
                            .to_string()
                    }
                    _ => e.to_string(),
                };
                self.mark(&grant, GrantStatus::NeedsReconnect, Some(reason.clone()))?;
                Err(BrokerError::NeedsReconnect {
                    name: provider.name.clone(),
                    resource,
                    reason,
                })
            }
            Err(BrokerError::Zone(e)) if e.setup_fix(&resource).is_some() => {
                // Permanent until the set-up changes: no backoff, no retry; the grant says why.
                state.cached = None;
                let fix = e.setup_fix(&resource).unwrap_or_default();
                self.mark(&grant, GrantStatus::Error, Some(fix.clone()))?;
                Err(BrokerError::ZoneSetup {
                    code: e.code().unwrap_or_default().to_string(),
                    fix,
                })
            }
            Err(BrokerError::Zone(e)) => {
                state.cached = None;
                note_failure(&mut state, &e);
                self.mark(&grant, GrantStatus::Error, Some(e.to_string()))?;
                Err(e.into())
            }
            Err(other) => Err(other),
        }
    }

    async fn fetch_upstream(&self, provider: &Provider) -> Result<TokenSet, BrokerError> {
        let zone = self.zone().await?;
        let client = self.identity().await?.ok_or(BrokerError::NotSignedIn)?;
        let strategy = self.config.zone()?.upstream_strategy;
        match strategy {
            UpstreamStrategy::Exchange => {
                let subject = self.session_token().await?;
                let first = retrying!(zone.exchange(
                    &client,
                    &subject,
                    &provider.resource,
                    &provider.scopes
                ));
                match first {
                    // The cached session token may have been revoked at the zone: renew once.
                    Err(e) if e.code() == Some("invalid_grant") => {
                        self.drop_slots(|k| k == session_slot_key());
                        let subject = self.session_token().await?;
                        Ok(retrying!(zone.exchange(
                            &client,
                            &subject,
                            &provider.resource,
                            &provider.scopes
                        ))?)
                    }
                    other => Ok(other?),
                }
            }
            UpstreamStrategy::RefreshWithResource => {
                let key = SecretKey::Connection(provider.resource.clone());
                let refresh = self
                    .refresh_secret(key.clone())
                    .await?
                    .ok_or_else(|| BrokerError::NotConnected(provider.name.clone()))?;
                let tokens = retrying!(
                    zone.refresh(&client, &refresh, Some(&provider.resource)),
                    refresh_retry
                )?;
                if let Some(rotated) = tokens.refresh_token.clone() {
                    self.store_rotated(key, rotated).await;
                }
                Ok(tokens)
            }
        }
    }

    /// Moves `grant` (as read earlier) to `status`, unless it changed since it was read.
    fn mark(
        &self,
        grant: &GrantRecord,
        status: GrantStatus,
        reason: Option<String>,
    ) -> Result<(), BrokerError> {
        tracing::warn!(resource = %grant.resource, status = status.as_str(), reason = ?reason, "grant changed state");
        let saved = self.save_if_unchanged(
            grant,
            GrantRecord {
                status,
                last_error: reason,
                updated_at: Utc::now(),
                ..grant.clone()
            },
        );
        match saved {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(resource = %grant.resource, "grant changed meanwhile; kept the newer state")
            }
            // The caller reports the state change itself; a full disk must not hide it.
            Err(e) => {
                tracing::error!(error = %e, resource = %grant.resource, "could not record the grant's new state")
            }
        }
        Ok(())
    }

    /// [`Grants::save_grant`] guarded by the row's `updated_at` as `before` saw it.
    fn save_if_unchanged(
        &self,
        before: &GrantRecord,
        record: GrantRecord,
    ) -> Result<bool, BrokerError> {
        if !self.db.put_grant_if_unchanged(&record, before.updated_at)? {
            return Ok(false);
        }
        if before.status != record.status || before.last_error != record.last_error {
            self.events.emit(Event::GrantChanged {
                resource: record.resource.clone(),
                status: record.status,
                reason: record.last_error.clone(),
            });
        }
        Ok(true)
    }

    fn remember_use(&self, resource: &str) {
        let mut used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        used.insert(resource.to_string(), Instant::now());
    }

    /// Records use on a cache hit, at most once per [`LAST_USED_RESOLUTION`].
    fn touch(&self, grant: &GrantRecord) -> Result<(), BrokerError> {
        {
            let used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
            if used
                .get(&grant.resource)
                .is_some_and(|t| t.elapsed() < LAST_USED_RESOLUTION)
            {
                return Ok(());
            }
        }
        self.remember_use(&grant.resource);
        self.db.touch_grant(&grant.resource, Utc::now())?;
        Ok(())
    }

    /// Forgets the cached upstream token (the upstream said 401): the next call gets a new one.
    pub fn invalidate(&self, resource: &str) {
        self.drop_slots(|k| k.starts_with(&upstream_slot_key(resource, &[])));
    }

    /// The upstream said the token lacks scope: the user must reconnect (DESIGN.md lifecycle).
    pub fn require_reconnect(&self, resource: &str, reason: &str) -> Result<(), BrokerError> {
        self.invalidate(resource);
        if let Some(grant) = self.db.grant(resource)? {
            self.mark(
                &grant,
                GrantStatus::NeedsReconnect,
                Some(reason.to_string()),
            )?;
        }
        Ok(())
    }

    /// Revokes a connection: RFC 7009 at the zone (best effort), keychain wipe, cache drop.
    /// Final for the broker until the user connects again.
    pub async fn revoke(&self, provider: &Provider) -> Result<(), BrokerError> {
        let resource = provider.resource.clone();
        let grant = self
            .db
            .grant(&resource)?
            .ok_or_else(|| BrokerError::NotConnected(provider.name.clone()))?;
        let key = SecretKey::Connection(resource.clone());
        if let Some(refresh) = self.refresh_secret(key.clone()).await? {
            match (self.zone().await, self.identity().await) {
                (Ok(zone), Ok(Some(client))) => {
                    revoke_quietly(&zone, &client, &refresh, "connection").await
                }
                _ => tracing::warn!(%resource, "zone unreachable; revoking locally only"),
            }
        }
        self.vault.delete(key.clone()).await?;
        self.forget_unsaved(&key);
        self.drop_slots(|k| k.starts_with(&upstream_slot_key(&resource, &[])));
        let now = Utc::now();
        self.save_grant(GrantRecord {
            status: GrantStatus::Revoked,
            last_error: None,
            updated_at: now,
            ..grant
        })?;
        tracing::info!(%resource, "connection revoked");
        Ok(())
    }

    /// Signs out: revokes and wipes the session and every connection.
    pub async fn logout(&self, providers: &[Provider]) -> Result<(), BrokerError> {
        for grant in self.db.grants()? {
            if grant.status == GrantStatus::Revoked {
                continue;
            }
            match catalog::find(providers, &grant.resource) {
                Ok(p) => self.revoke(p).await?,
                Err(_) => {
                    self.vault
                        .delete(SecretKey::Connection(grant.resource.clone()))
                        .await?;
                    self.mark(&grant, GrantStatus::Revoked, None)?;
                }
            }
        }
        if let Some(refresh) = self.refresh_secret(SecretKey::Session).await? {
            match (self.zone().await, self.identity().await) {
                (Ok(zone), Ok(Some(client))) => {
                    revoke_quietly(&zone, &client, &refresh, "session").await
                }
                _ => tracing::warn!("zone unreachable; signing out locally only"),
            }
        }
        self.vault.delete(SecretKey::Session).await?;
        let had = std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()));
        if !had.is_empty() {
            self.announce_unsaved();
        }
        self.db.delete_session()?;
        self.drop_slots(|_| true);
        self.events.emit(Event::SessionChanged {
            signed_in: false,
            account: None,
        });
        tracing::info!("signed out");
        Ok(())
    }
}

async fn revoke_quietly(zone: &Zone, client: &ClientIdentity, token: &SecretString, what: &str) {
    if let Err(e) = zone.revoke(client, token).await {
        tracing::warn!(error = %e, "revoking the {what} at the zone failed; local state is wiped anyway");
    }
}

fn check_backoff(state: &SlotState, what: &str) -> Result<(), BrokerError> {
    if let Some(until) = state.not_before {
        let now = Instant::now();
        if now < until {
            return Err(BrokerError::Backoff {
                what: what.to_string(),
                retry_in: (until - now).as_secs().max(1),
                last_error: state.last_error.clone().unwrap_or_default(),
            });
        }
    }
    Ok(())
}

fn note_failure(state: &mut SlotState, e: &ZoneError) {
    state.failures = state.failures.saturating_add(1);
    let backoff = Duration::from_secs(1u64 << state.failures.min(6)).min(MAX_BACKOFF);
    let wait = e
        .retry_after()
        .map_or(backoff, |r| r.max(backoff).min(MAX_BACKOFF));
    state.not_before = Some(Instant::now() + wait);
    state.last_error = Some(e.to_string());
}

/// Retries transient zone failures a few times, honouring `Retry-After` (capped). A macro,
/// not a generic over closures, so the futures stay `Send` for any caller.
macro_rules! retrying {
    ($call:expr) => {
        retrying!($call, |_: &ZoneError| true)
    };
    ($call:expr, $may_retry:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match $call.await {
                Err(e) if e.is_transient() && attempt < ATTEMPTS && ($may_retry)(&e) => {
                    let wait = retry_wait(&e, attempt);
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "zone call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        }
    }};
}
use retrying;

/// A refresh is retried at once only if the zone cannot have acted on it: after a lost answer
/// the zone may have rotated the token, and sending it again would be a replay (PROTOCOL.md:
/// "never run two refreshes of one token at once"). The next acquisition tries again.
fn refresh_retry(e: &ZoneError) -> bool {
    !e.answer_lost()
}

fn retry_wait(e: &ZoneError, attempt: u32) -> Duration {
    e.retry_after()
        .unwrap_or(Duration::from_millis(250u64 << attempt.min(8)))
        .min(MAX_RETRY_WAIT)
}

fn missing_scopes(required: &[String], granted: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|r| !granted.contains(r))
        .cloned()
        .collect()
}

fn scope_reason(missing: &[String]) -> String {
    format!("the zone no longer grants {}", missing.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_lifetimes_are_capped_never_a_clock_overflow() {
        let forever = Some(Duration::from_secs(u64::MAX));
        let cached = Cached::new(SecretString::from("t"), vec![], forever);
        assert!(cached.fresh());
        assert_eq!(lifetime(forever), MAX_LIFETIME);
        assert_eq!(lifetime(None), DEFAULT_LIFETIME);
        let answer =
            br#"{"access_token":"a","token_type":"Bearer","expires_in":18446744073709551615}"#;
        let tokens = crate::zone::parse_token_response(answer).unwrap();
        assert!(Cached::new(tokens.access_token, vec![], tokens.expires_in).fresh());
    }

    #[test]
    fn missing_scopes_lists_what_is_absent() {
        let req = vec!["read".to_string(), "write".to_string()];
        assert_eq!(
            missing_scopes(&req, &["read".into()]),
            vec!["write".to_string()]
        );
        assert!(missing_scopes(&req, &req).is_empty());
        assert!(missing_scopes(&[], &[]).is_empty());
    }

    async fn failing(calls: &std::sync::atomic::AtomicU32, e: ZoneError) -> Result<(), ZoneError> {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(e)
    }

    #[tokio::test]
    async fn retries_transient_then_gives_up() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let unavailable = ZoneError::Unavailable {
            status: 503,
            retry_after: Some(0),
        };
        let result = retrying!(failing(&calls, unavailable.clone()));
        assert!(result.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), ATTEMPTS);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let denied = ZoneError::Rejected {
            code: "insufficient_authorization".into(),
            description: None,
        };
        let _ = retrying!(failing(&calls, denied.clone()));
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "permanent errors are not retried"
        );
        assert_eq!(
            retry_wait(
                &ZoneError::Unavailable {
                    status: 429,
                    retry_after: Some(999)
                },
                1
            ),
            MAX_RETRY_WAIT
        );
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let mut state = SlotState::default();
        note_failure(
            &mut state,
            &ZoneError::Unavailable {
                status: 429,
                retry_after: Some(30),
            },
        );
        let wait = state.not_before.unwrap() - Instant::now();
        assert!(wait > Duration::from_secs(20));
        assert!(check_backoff(&state, "x").is_err());
    }

    /// Compile-time guard: engine futures must stay `Send` (axum handlers and spawned tasks).
    #[allow(dead_code)]
    fn _send_check(g: &'static Grants, p: &'static Provider) {
        fn is_send<T: Send>(_: T) {}
        is_send(g.zone());
        is_send(g.identity());
        is_send(g.session_token());
        is_send(g.fetch_upstream(p));
    }
    #[allow(dead_code)]
    fn _send_check2(z: &'static Zone, c: &'static ClientIdentity, t: &'static SecretString) {
        fn is_send<T: Send>(_: T) {}
        is_send(z.refresh(c, t, None));
        is_send(z.exchange(c, t, "x", &[]));
        is_send(z.exchange_code(c, "x", "x", t, "x"));
        is_send(z.revoke(c, t));
    }
}
