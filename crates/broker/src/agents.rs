//! The agents a broker serves: static clients (a bearer token in a config file) and OAuth
//! agents (signed in through `authz`), and what the consent page offers them.

use crate::authz::{Authz, Offer};
use crate::clients::{ClientRecord, Clients, IssuedClient};
use crate::{Broker, BrokerError, Event, GrantStatus};

impl Broker {
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    pub fn add_client(&self, name: &str) -> Result<IssuedClient, BrokerError> {
        let issued = self.clients.add(name)?;
        self.events.emit(Event::ClientsChanged);
        Ok(issued)
    }

    /// A new token for `name` (registering it if needed); the old token dies at once.
    pub fn issue_client(&self, name: &str) -> Result<IssuedClient, BrokerError> {
        let issued = self.clients.issue(name)?;
        self.events.emit(Event::ClientsChanged);
        Ok(issued)
    }

    pub fn list_clients(&self) -> Result<Vec<ClientRecord>, BrokerError> {
        Ok(self.clients.list()?)
    }

    pub fn remove_client(&self, name: &str) -> Result<(), BrokerError> {
        self.clients.remove(name)?;
        self.events.emit(Event::ClientsChanged);
        Ok(())
    }

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
