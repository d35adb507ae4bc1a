//! Operations on agents: who they are, what each may do, the calls waiting for the user, and
//! the policy in force. The window's Agent clients and Requests views and the CLI's
//! `clients`, `approvals`, `approve`, `deny` and `policy` commands all come here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::activity::Via;
use crate::approvals::{DecidedBy, PendingCall, Verdict};
use crate::authz::Registration;
use crate::policy::{Access, RuleView};
use crate::{Broker, BrokerError};

/// One agent, static or OAuth, with what it may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AgentView {
    /// The policy's principal: a static client's name or an OAuth client id.
    pub key: String,
    pub name: String,
    /// `None` for a static client (a bearer token pasted into a config file).
    pub registration: Option<Registration>,
    /// Access per provider (`*`: every provider).
    pub access: Vec<(String, Access)>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// How it last reached the broker: `socket` for a remote agent (forwarded socket).
    pub last_via: Option<Via>,
}

/// The policy in force, for `policy check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PolicyReport {
    pub file: String,
    /// Whether `policy.cedar` exists (absent: only the consent choices apply).
    pub file_exists: bool,
    pub rules: u32,
}

pub(super) fn agents(broker: &Broker) -> Result<Vec<AgentView>, BrokerError> {
    let access = broker.authz().access()?;
    let of = |key: &str| -> Vec<(String, Access)> {
        access
            .iter()
            .filter(|a| a.client == key)
            .map(|a| (a.resource.clone(), a.access))
            .collect()
    };
    let via = broker.last_via()?;
    let mut out: Vec<AgentView> = broker
        .authz()
        .agents()?
        .into_iter()
        .map(|a| AgentView {
            last_via: via.get(&a.name).copied(),
            access: of(&a.client_id),
            key: a.client_id,
            name: a.name,
            registration: Some(a.registration),
            created_at: a.created_at,
            last_seen_at: a.last_seen_at,
        })
        .collect();
    out.extend(broker.list_clients()?.into_iter().map(|c| AgentView {
        last_via: via.get(&c.name).copied(),
        access: of(&c.name),
        key: c.name.clone(),
        name: c.name,
        registration: None,
        created_at: c.created_at,
        last_seen_at: c.last_seen_at,
    }));
    Ok(out)
}

/// Ends an OAuth agent's sign-in (its tokens stop working now) or, for a static client,
/// removes it.
pub(super) fn sign_out(broker: &Broker, client: &str) -> Result<(), BrokerError> {
    if broker
        .authz()
        .agents()?
        .iter()
        .any(|a| a.client_id == client)
    {
        broker.authz().sign_out(client)?;
        broker.approvals().forget(Some(client));
        return Ok(());
    }
    broker.remove_client(client)?;
    broker.approvals().forget(Some(client));
    Ok(())
}

pub(super) fn decide(
    broker: &Broker,
    id: &str,
    verdict: Verdict,
    by: DecidedBy,
) -> Result<PendingCall, BrokerError> {
    Ok(broker.approvals().decide(id, verdict, by)?)
}

pub(super) fn check_policy(broker: &Broker) -> Result<PolicyReport, BrokerError> {
    let policy = broker.policy()?;
    let file = broker.policy_file();
    Ok(PolicyReport {
        file_exists: file.exists(),
        file: file.display().to_string(),
        rules: u32::try_from(policy.rules(None).len()).unwrap_or(u32::MAX),
    })
}

pub(super) fn rules(broker: &Broker, client: Option<&str>) -> Result<Vec<RuleView>, BrokerError> {
    Ok(broker.policy()?.rules(client))
}
