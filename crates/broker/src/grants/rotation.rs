//! Rotated refresh tokens. The zone retires the old refresh token when it hands out a new one,
//! so a new one the keychain refuses (locked mid-run) is kept in memory — that copy is the
//! grant — used for the next refresh, and written to the keychain as soon as it takes it.

use secrecy::SecretString;

use crate::BrokerError;
use crate::events::Event;
use crate::vault::SecretKey;

use super::Grants;

impl Grants {
    /// The refresh token to use for `key`: a rotated one still waiting for the keychain
    /// (saved now if the keychain has come back), else the keychain's.
    pub(super) async fn refresh_secret(
        &self,
        key: SecretKey,
    ) -> Result<Option<SecretString>, BrokerError> {
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
    pub(super) async fn store_rotated(&self, key: SecretKey, token: SecretString) {
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

    pub(super) fn announce_unsaved(&self) {
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

    pub(super) fn forget_unsaved(&self, key: &SecretKey) {
        let removed = self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        if removed.is_some() {
            self.announce_unsaved();
        }
    }
}
