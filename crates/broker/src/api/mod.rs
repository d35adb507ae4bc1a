//! The engine's one API for every shell. The CLI (in-process or over the control socket), the
//! tray app's window and the control socket itself all send a [`Request`] to [`handle`] and get
//! a typed [`Reply`] or a [`Failure`] with a stable [`ErrorCode`]: an operation both shells
//! offer exists once, here. Shells parse input, render output and add their own advice by code.

mod agents;
mod export;
mod failure;
mod remote;
mod setup;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agents::DEFAULT_STATIC_ACCESS;
pub use crate::approvals::{DecidedBy, PendingCall, Verdict};
use crate::audit::AuditFilter;
pub use crate::policy::{Access, RuleView};
use crate::{Broker, Provider, RoundKind, Status, TokenInfo};

pub use crate::activity::{ActivityKind, AuditRecord, Outcome, Via};
pub use crate::authz::Registration;
pub use crate::clients::ClientRecord;
pub use crate::config::{Config, UpstreamStrategy};
pub use crate::consent::open_browser;
pub use crate::error::ErrorCode;
/// The per-user background service (systemd / launchd): not a broker operation, a machine one.
pub use crate::service;
pub use crate::vault::Vault;
pub use crate::zone::split_scopes;
pub use agents::{AgentView, PolicyReport};
pub use export::{ExportFormat, Exported};
pub use failure::Failure;
pub use remote::{RemoteSetup, RemoteTarget};
pub use setup::{
    About, ClientKind, ClientSetup, Issued, ShownOnce, WriteTo, ZoneChange, ZoneConfigured,
};
pub use setup::{about, client_kinds, configure_zone, stored_client_token};

/// One operation a person can ask for.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Pause,
    Resume,
    Login {
        timeout_secs: u64,
    },
    /// Connect and reconnect alike: a consent round for a provider (identifier or slug).
    Connect {
        resource: String,
        timeout_secs: u64,
    },
    Check {
        resource: String,
    },
    Revoke {
        resource: String,
    },
    Logout,
    ResourcesAdd {
        resource: String,
        name: Option<String>,
        #[serde(default)]
        api_bases: Vec<String>,
        #[serde(default)]
        scopes: Vec<String>,
    },
    ResourcesList,
    ResourcesRemove {
        resource: String,
    },
    /// A static client, with `access` to every provider (read and ask before writes unless
    /// given).
    ClientsAdd {
        name: String,
        #[serde(default)]
        access: Option<Access>,
    },
    ClientsIssue {
        name: String,
    },
    ClientsList,
    ClientsRemove {
        name: String,
    },
    /// Issues a (new) token for a client and renders its config entry for one kind of agent
    /// client; with `write`, merges it into that client's config file. Stdio-only clients get
    /// the token in the keychain for the bridge instead of in their file.
    ClientSetup {
        name: String,
        kind: String,
        /// The command stdio-only clients start (`keycard-broker` next to the shell).
        stdio_command: String,
        #[serde(default)]
        write: Option<WriteTo>,
        /// False: a new client (the name must be free). True: a new token for this name,
        /// whether or not it exists (the old token stops working at once).
        #[serde(default)]
        replace: bool,
        /// A new client's access to every provider (read and ask before writes unless given).
        #[serde(default)]
        access: Option<Access>,
        /// A static token even for a client that can sign in with OAuth.
        #[serde(default)]
        static_token: bool,
    },
    ClientKinds,
    /// An agent on another machine (SSH host, dev container): its own static client, the
    /// forwarding config for this side (merged into the file with `write`) and the MCP config
    /// for the remote end. An existing client keeps its token unless `new_token`.
    RemoteSetup {
        target: RemoteTarget,
        /// The client's name (`ssh-<host>`, `devcontainer-<folder>` unless given).
        #[serde(default)]
        client: Option<String>,
        #[serde(default)]
        write: Option<WriteTo>,
        #[serde(default)]
        new_token: bool,
        /// A new client's access to every provider (ask unless given).
        #[serde(default)]
        access: Option<Access>,
    },
    /// What an agent (a static client's name or an OAuth client id) may do per provider
    /// (`*`: every provider); replaces its choices.
    SetAccess {
        client: String,
        choices: Vec<(String, Access)>,
    },
    /// Every agent, OAuth and static, with what each may use.
    Agents,
    /// Ends an OAuth agent's sign-in at once (or removes a static client).
    AgentSignOut {
        client: String,
    },
    /// Calls waiting for the user, oldest first.
    Approvals,
    /// The user's decision on a waiting call, and where it was made.
    Decide {
        id: String,
        verdict: Verdict,
        by: DecidedBy,
    },
    /// Parses and validates the policy in force (consent choices and policy.cedar).
    PolicyCheck,
    /// The effective rules, for one agent or all.
    PolicyShow {
        client: Option<String>,
    },
    /// Activity, newest first (at most `limit`, 1000 unless given).
    Audit {
        client: Option<String>,
        resource: Option<String>,
        #[serde(default)]
        outcome: Option<Outcome>,
        since: Option<DateTime<Utc>>,
        limit: Option<u32>,
    },
    /// Every record the filter selects, written as a file (see [`Exported`]).
    ExportActivity {
        client: Option<String>,
        resource: Option<String>,
        #[serde(default)]
        outcome: Option<Outcome>,
        since: Option<DateTime<Utc>>,
        format: ExportFormat,
        /// A folder (the file gets a dated name in it) or a new file's path. The tray app
        /// sets its own (the Downloads folder).
        to: String,
    },
    About,
}

/// The answer to one request; `kind` says which.
#[derive(Debug, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Reply {
    Status(Status),
    Provider(Provider),
    Providers(Vec<Provider>),
    Token(TokenInfo),
    Issued(Issued),
    Clients(Vec<ClientRecord>),
    ClientSetup(ClientSetup),
    ClientKinds(Vec<ClientKind>),
    /// Boxed: the largest reply by far.
    RemoteSetup(Box<RemoteSetup>),
    Activity(Vec<AuditRecord>),
    Exported(Exported),
    Agents(Vec<AgentView>),
    Approvals(Vec<PendingCall>),
    Decided(PendingCall),
    Policy(PolicyReport),
    Rules(Vec<RuleView>),
    About(About),
    Done,
}

/// Carries out one request. `on_url` receives the authorize URL of a browser round (the
/// caller opens the browser, prints it or forwards it).
pub async fn handle(
    broker: &Arc<Broker>,
    request: Request,
    mut on_url: impl FnMut(&str),
) -> Result<Reply, Failure> {
    Ok(match request {
        Request::Status => Reply::Status(broker.status()?),
        Request::Pause | Request::Resume => {
            broker.set_paused(matches!(request, Request::Pause));
            Reply::Status(broker.status()?)
        }
        Request::Login { timeout_secs } => {
            let round = broker.begin_login().await?;
            on_url(round.url.as_str());
            broker
                .complete(round, Duration::from_secs(timeout_secs))
                .await?;
            Reply::Status(broker.status()?)
        }
        Request::Connect {
            resource,
            timeout_secs,
        } => {
            let round = broker.begin_connect(&resource).await?;
            let provider = match &round.kind {
                RoundKind::Connect(p) => p.clone(),
                RoundKind::Login => broker.provider(&resource)?,
            };
            on_url(round.url.as_str());
            broker
                .complete(round, Duration::from_secs(timeout_secs))
                .await?;
            Reply::Provider(provider)
        }
        Request::Check { resource } => Reply::Token(broker.check(&resource).await?),
        Request::Revoke { resource } => {
            broker.revoke(&resource).await?;
            Reply::Provider(broker.provider(&resource)?)
        }
        Request::Logout => {
            broker.logout().await?;
            Reply::Status(broker.status()?)
        }
        Request::ResourcesAdd {
            resource,
            name,
            api_bases,
            scopes,
        } => Reply::Provider(broker.add_resource(
            resource.trim(),
            name.as_deref().map(str::trim).filter(|n| !n.is_empty()),
            &api_bases,
            &scopes,
        )?),
        Request::ResourcesList => Reply::Providers(broker.providers()?),
        Request::ResourcesRemove { resource } => {
            broker.remove_resource(&resource).await?;
            Reply::Done
        }
        Request::ClientsAdd { name, access } => Reply::Issued(
            broker
                .add_client(&name, access.unwrap_or(DEFAULT_STATIC_ACCESS))?
                .into(),
        ),
        Request::ClientsIssue { name } => Reply::Issued(broker.issue_client(&name)?.into()),
        Request::ClientsList => Reply::Clients(broker.list_clients()?),
        Request::ClientsRemove { name } => {
            broker.remove_client(&name)?;
            Reply::Done
        }
        Request::ClientSetup {
            name,
            kind,
            stdio_command,
            write,
            replace,
            access,
            static_token,
        } => Reply::ClientSetup(
            setup::client_setup(
                broker,
                &name,
                &kind,
                &stdio_command,
                write,
                replace,
                access,
                static_token,
            )
            .await?,
        ),
        Request::ClientKinds => Reply::ClientKinds(client_kinds()),
        Request::RemoteSetup {
            target,
            client,
            write,
            new_token,
            access,
        } => Reply::RemoteSetup(Box::new(remote::remote_setup(
            broker, target, client, write, new_token, access,
        )?)),
        Request::Agents => Reply::Agents(agents::agents(broker)?),
        Request::AgentSignOut { client } => {
            agents::sign_out(broker, &client)?;
            Reply::Done
        }
        Request::Approvals => Reply::Approvals(broker.approvals().pending()),
        Request::Decide { id, verdict, by } => {
            Reply::Decided(agents::decide(broker, &id, verdict, by)?)
        }
        Request::PolicyCheck => Reply::Policy(agents::check_policy(broker)?),
        Request::PolicyShow { client } => Reply::Rules(agents::rules(broker, client.as_deref())?),
        Request::SetAccess { client, choices } => {
            let choices = choices
                .into_iter()
                .map(|(resource, access)| {
                    if resource == crate::agents::ALL_PROVIDERS {
                        Ok((resource, access))
                    } else {
                        broker.provider(&resource).map(|p| (p.resource, access))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            broker.set_access(&client, &choices)?;
            Reply::Done
        }
        Request::Audit {
            client,
            resource,
            outcome,
            since,
            limit,
        } => Reply::Activity(broker.audit(&AuditFilter {
            client,
            resource,
            outcome,
            since,
            limit,
        })?),
        Request::ExportActivity {
            client,
            resource,
            outcome,
            since,
            format,
            to,
        } => {
            let records = broker.audit(&AuditFilter {
                client,
                resource,
                outcome,
                since,
                limit: Some(u32::MAX),
            })?;
            Reply::Exported(export::write(&records, format, std::path::Path::new(&to))?)
        }
        Request::About => Reply::About(about(broker.config(), Some(broker.vault()))),
    })
}
