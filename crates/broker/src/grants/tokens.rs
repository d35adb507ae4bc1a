//! Getting a token: the session's (the `subject_token` of every exchange) and a provider's,
//! from the cache or exactly one zone round trip for all callers. Rotated refresh tokens reach
//! the keychain before the new access token is handed out.

use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;

use crate::BrokerError;
use crate::audit::{ActivityKind, AuditRecord, Outcome, audited};
use crate::catalog::Provider;
use crate::config::UpstreamStrategy;
use crate::db::GrantRecord;
use crate::events::Event;
use crate::status::{GrantStatus, SessionStatus};
use crate::vault::SecretKey;
use crate::zone::TokenSet;

use super::Grants;
use super::cache::{Cached, SlotState, lifetime, session_slot_key, upstream_slot_key};
use super::identity::REGISTRATION_KEY;
use super::retry::{check_backoff, note_failure, refresh_retry, retrying};
use super::state::{missing_scopes, scope_reason};

/// A provider token for one call. The secret never leaves the broker process.
#[derive(Debug, Clone)]
pub struct UpstreamToken {
    pub resource: String,
    pub token: SecretString,
    pub scopes: Vec<String>,
    pub expires_in: Duration,
}

impl Grants {
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
            .ok_or_else(|| BrokerError::not_connected(provider))?;
        match grant.status {
            GrantStatus::Revoked => return Err(BrokerError::not_connected(provider)),
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
        let sink = |record| {
            if let Err(e) = self.audit.record(record) {
                tracing::error!(error = %e, "audit record lost");
            }
        };
        let result = audited(
            ActivityKind::Token,
            None,
            sink,
            async |record: &mut AuditRecord| {
                record.resource = Some(resource.clone());
                let result = self.fetch_upstream(provider).await;
                if let Err(e) = &result {
                    record.failed(Outcome::Error, e);
                }
                result
            },
        )
        .await;
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
                            return Err(BrokerError::not_connected(provider));
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

    pub(super) async fn fetch_upstream(
        &self,
        provider: &Provider,
    ) -> Result<TokenSet, BrokerError> {
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
                    .ok_or_else(|| BrokerError::not_connected(provider))?;
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
}
