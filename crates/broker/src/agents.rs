//! The agents a broker serves: static clients (a bearer token in a config file) and OAuth
//! agents (signed in through `authz`), and what the consent page offers them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::approvals::Approvals;
use crate::authz::{Authz, Offer};
use crate::clients::{ClientRecord, Clients, IssuedClient};
use crate::policy::{Access, AgentAccess, CallFacts, Decision, POLICY_FILE, Policy, PolicyError};
use crate::{Broker, BrokerError, Event, GrantStatus};

/// The resource of an access choice that covers every provider, present and future.
pub const ALL_PROVIDERS: &str = "*";
/// What a new static client may do unless told otherwise: read, and ask before writes.
pub const DEFAULT_STATIC_ACCESS: Access = Access::Ask;

impl Broker {
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Registers a static client with `access` to every provider (reads, and writes as the
    /// level says; the window and `clients access` narrow it per provider).
    pub fn add_client(&self, name: &str, access: Access) -> Result<IssuedClient, BrokerError> {
        let issued = self.clients.add(name)?;
        self.set_access(name, &[(ALL_PROVIDERS.to_string(), access)])?;
        self.events.emit(Event::ClientsChanged);
        Ok(issued)
    }

    /// A new token for `name` (registering it if needed); the old token dies at once.
    pub fn issue_client(&self, name: &str) -> Result<IssuedClient, BrokerError> {
        let issued = self.clients.issue(name)?;
        if !self.authz.access()?.iter().any(|a| a.client == name) {
            // A client registered by this call starts where `add_client` would start it.
            self.set_access(name, &[(ALL_PROVIDERS.to_string(), DEFAULT_STATIC_ACCESS)])?;
        }
        self.events.emit(Event::ClientsChanged);
        Ok(issued)
    }

    pub fn list_clients(&self) -> Result<Vec<ClientRecord>, BrokerError> {
        Ok(self.clients.list()?)
    }

    pub fn remove_client(&self, name: &str) -> Result<(), BrokerError> {
        self.clients.remove(name)?;
        self.set_access(name, &[])?;
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

/// How often the broker looks at `policy.cedar` for edits.
const POLICY_FILE_CHECK: Duration = Duration::from_secs(1);

/// The policy in force and what it was built from; rebuilt when an access choice, the
/// providers or `policy.cedar` change.
#[derive(Default)]
pub(crate) struct PolicyCache {
    built: Mutex<Option<Built>>,
}

struct Built {
    access_generation: u64,
    db_generation: u64,
    file: Option<FileStamp>,
    checked: Instant,
    policy: Result<Arc<Policy>, PolicyError>,
}

/// What changes when the user edits the file.
type FileStamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Broker {
    pub fn approvals(&self) -> &Approvals {
        &self.approvals
    }

    /// `policy.cedar`, beside the settings file.
    pub fn policy_file(&self) -> PathBuf {
        self.config.paths.config_file.with_file_name(POLICY_FILE)
    }

    /// The policy in force. An unusable `policy.cedar` is an error here (and stops `serve`);
    /// a call is then denied, never allowed.
    pub fn policy(&self) -> Result<Arc<Policy>, BrokerError> {
        let access_generation = self.authz.generation();
        let db_generation = self.db.generation();
        let mut built = self.policy.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = built.as_mut()
            && b.access_generation == access_generation
            && b.db_generation == db_generation
        {
            if b.checked.elapsed() < POLICY_FILE_CHECK {
                return b.policy.clone().map_err(BrokerError::from);
            }
            b.checked = Instant::now();
            if stamp(&self.policy_file()) == b.file {
                return b.policy.clone().map_err(BrokerError::from);
            }
        }
        let path = self.policy_file();
        let file = stamp(&path);
        let policy = self.access_rules().and_then(|grants| {
            Policy::load(&path, &grants)
                .map(Arc::new)
                .map_err(BrokerError::from)
        });
        let policy = match policy {
            Ok(policy) => Ok(policy),
            Err(BrokerError::Policy(e)) => {
                tracing::error!(error = %e, "the policy is unusable; agent calls are denied until it is fixed");
                Err(e)
            }
            Err(other) => return Err(other),
        };
        *built = Some(Built {
            access_generation,
            db_generation,
            file,
            checked: Instant::now(),
            policy: policy.clone(),
        });
        policy.map_err(BrokerError::from)
    }

    /// Every access choice, with "every provider" (`*`) spelled out over the catalog.
    fn access_rules(&self) -> Result<Vec<AgentAccess>, BrokerError> {
        let rows = self.authz.access()?;
        if !rows.iter().any(|r| r.resource == ALL_PROVIDERS) {
            return Ok(rows);
        }
        let providers = self.providers()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if row.resource == ALL_PROVIDERS {
                out.extend(providers.iter().map(|p| AgentAccess {
                    client: row.client.clone(),
                    resource: p.resource.clone(),
                    access: row.access,
                }));
            } else {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// The policy's answer for one call; an unusable policy denies.
    pub fn decide(&self, facts: &CallFacts) -> Decision {
        match self.policy() {
            Ok(policy) => policy.decide(facts),
            Err(e) => Decision::Deny {
                rule: None,
                reason: format!(
                    "Keycard Broker's policy is unusable, so every call is refused: {e}"
                ),
            },
        }
    }

    /// Whether an agent may use a provider at all (reads or writes, asked or not).
    pub fn may_use(&self, client: &str, resource: &str) -> bool {
        ["GET", "POST"].iter().any(|method| {
            !matches!(
                self.decide(&CallFacts {
                    client,
                    resource,
                    method,
                    host: "",
                    path: "/",
                }),
                Decision::Deny { .. }
            )
        })
    }

    /// What an agent may do per provider (`*`: every provider), for the window and the CLI.
    pub fn set_access(
        &self,
        client: &str,
        choices: &[(String, Access)],
    ) -> Result<(), BrokerError> {
        for (resource, _) in choices {
            if resource != ALL_PROVIDERS {
                self.provider(resource)?;
            }
        }
        self.authz.set_access(client, choices)?;
        self.approvals.forget(Some(client));
        Ok(())
    }
}
