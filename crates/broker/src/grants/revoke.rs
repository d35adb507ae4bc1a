//! Ending grants: revoking a connection and signing out. The zone is told (RFC 7009, best
//! effort); the keychain, the cache and the unsaved-token buffer are wiped whatever it says.

use chrono::Utc;
use secrecy::SecretString;

use crate::BrokerError;
use crate::catalog::{self, Provider};
use crate::db::GrantRecord;
use crate::events::Event;
use crate::status::GrantStatus;
use crate::vault::SecretKey;
use crate::zone::{ClientIdentity, Zone};

use super::Grants;
use super::cache::upstream_slot_key;

impl Grants {
    /// Revokes a connection: RFC 7009 at the zone (best effort), keychain wipe, cache drop.
    /// Final for the broker until the user connects again.
    pub async fn revoke(&self, provider: &Provider) -> Result<(), BrokerError> {
        let resource = provider.resource.clone();
        let grant = self
            .db
            .grant(&resource)?
            .ok_or_else(|| BrokerError::not_connected(provider))?;
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

pub(super) async fn revoke_quietly(
    zone: &Zone,
    client: &ClientIdentity,
    token: &SecretString,
    what: &str,
) {
    if let Err(e) = zone.revoke(client, token).await {
        tracing::warn!(error = %e, "revoking the {what} at the zone failed; local state is wiped anyway");
    }
}
