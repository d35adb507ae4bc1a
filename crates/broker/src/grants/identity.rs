//! Who the broker is to the zone: the zone client (discovered once per run), and the client
//! identity for token calls — the configured client, else the stored RFC 7591 registration.

use crate::BrokerError;
use crate::db::RegistrationRecord;
use crate::vault::SecretKey;
use crate::zone::{ClientIdentity, Zone, same_issuer};

use super::Grants;

/// The settings key the zone registration is stored under.
pub(super) const REGISTRATION_KEY: &str = "registration";

impl Grants {
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

    /// Client identity for token calls: the configured client, else the stored registration.
    pub(super) async fn identity(&self) -> Result<Option<ClientIdentity>, BrokerError> {
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
    pub(super) async fn identity_for_round(
        &self,
        zone: &Zone,
    ) -> Result<ClientIdentity, BrokerError> {
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
}
