//! Authorize rounds: login (the broker's own resource) and a provider's consent through the
//! zone. `begin` builds the URL for the system browser; `complete` waits for the redirect,
//! redeems the code and stores what the zone granted.

use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;

use crate::BrokerError;
use crate::callback::{CALLBACK_PATH, Waiter};
use crate::catalog::Provider;
use crate::config::{DEEP_LINK_REDIRECT, RedirectMode};
use crate::db::{GrantRecord, SessionRecord};
use crate::events::Event;
use crate::status::{GrantStatus, SessionStatus};
use crate::vault::SecretKey;
use crate::zone::{ClientIdentity, Zone};

use super::Grants;
use super::cache::{Cached, SlotState, session_slot_key, upstream_slot_key};
use super::revoke::revoke_quietly;
use super::state::{missing_scopes, scope_reason};

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

impl Grants {
    pub(super) fn redirect_uri(&self) -> String {
        match self.config.settings.broker.redirect {
            RedirectMode::Loopback => {
                format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.config.port())
            }
            RedirectMode::DeepLink => DEEP_LINK_REDIRECT.to_string(),
        }
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
}
