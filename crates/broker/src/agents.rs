//! The broker's side of agent authorization: the authorization server it owns (`authz`) and
//! what the consent page offers.

use crate::authz::{Authz, Offer};
use crate::{Broker, GrantStatus};

impl Broker {
    pub fn authz(&self) -> &Authz {
        &self.authz
    }

    /// The providers an agent can be given access to: every connection not revoked.
    pub fn consent_offers(&self) -> Vec<Offer> {
        match self.connections() {
            Ok(connections) => connections
                .into_iter()
                .filter(|c| c.status != GrantStatus::Revoked.as_str())
                .map(|c| Offer {
                    resource: c.resource,
                    name: c.name,
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list connections for the consent page");
                Vec::new()
            }
        }
    }
}
