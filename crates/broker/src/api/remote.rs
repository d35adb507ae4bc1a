//! Set-up for an agent on another machine: its own static client (its name in the audit log
//! and the policy), the forwarding config for the laptop's side, and the MCP config for the
//! remote end (see `crate::remote`).

use std::path::PathBuf;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::Failure;
use super::setup::{ShownOnce, WriteTo, setup_failure};
use crate::client_setup::{SetupError, Written};
use crate::error::BrokerError;
use crate::policy::Access;
use crate::remote::{self, devcontainer, ssh};
use crate::{Broker, clients};

/// Where the agent runs.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum RemoteTarget {
    /// An SSH host, as typed on the ssh command line. `remote_user`: the login on it (what
    /// `ssh -G` says unless given); `remote_home`: its home folder (`/home/<user>` unless given).
    Ssh {
        host: String,
        #[serde(default)]
        remote_user: Option<String>,
        #[serde(default)]
        remote_home: Option<String>,
    },
    /// A dev container of the project in `folder` (absolute).
    Devcontainer {
        #[ts(type = "string")]
        folder: PathBuf,
    },
}

/// What [`remote_setup`] made and wrote.
#[derive(Debug, Serialize, Deserialize, ts_rs::TS)]
pub struct RemoteSetup {
    /// The agent client for that machine.
    pub client: String,
    /// Its token, shown this once; `None` when an existing client was kept.
    #[ts(type = "string | null")]
    pub token: Option<ShownOnce>,
    /// The client existed and keeps its token.
    pub reused: bool,
    /// `ssh` or `devcontainer`.
    pub via: String,
    /// The `Host` block for ~/.ssh/config, or the devcontainer.json entries.
    pub snippet: String,
    /// This broker's agent socket.
    pub local_socket: String,
    /// The socket's path on the remote end.
    pub remote_socket: String,
    /// The remote agent's MCP entry (stdio clients).
    pub mcp_config: String,
    /// For HTTP-only clients: run this there…
    pub bridge_command: String,
    /// …and use this entry.
    pub bridge_config: String,
    /// What else the user has to do.
    pub notes: Vec<String>,
    pub written: Option<String>,
    pub backup: Option<String>,
    /// Writing failed; the token and snippet above are still valid.
    pub write_error: Option<Failure>,
}

/// Validates everything, then makes (or, unless `new_token`, keeps) the client, renders the
/// configs and writes the laptop-side one where asked. A bad host creates no client.
pub(super) fn remote_setup(
    broker: &Broker,
    target: RemoteTarget,
    client: Option<String>,
    write: Option<WriteTo>,
    new_token: bool,
    access: Option<Access>,
) -> Result<RemoteSetup, Failure> {
    let local = remote::agent_socket(&broker.config().paths.data_dir);
    let invalid = |e: remote::RemoteError| Failure::invalid(e.to_string());
    let name = match (client, &target) {
        (Some(name), _) => name,
        (None, RemoteTarget::Ssh { host, .. }) => remote::client_name("ssh", host),
        (None, RemoteTarget::Devcontainer { folder }) => {
            let folder_name = folder.file_name().unwrap_or_default().to_string_lossy();
            remote::client_name("devcontainer", &folder_name)
        }
    };
    let plan = match target {
        RemoteTarget::Ssh {
            host,
            remote_user,
            remote_home,
        } => {
            remote::validate_host(&host).map_err(invalid)?;
            // The ssh config the block goes into is the one that says who logs in there.
            let config = match &write {
                Some(WriteTo::File(path)) => Some(path.as_path()),
                _ => None,
            };
            let user = remote_user
                .or_else(|| ssh::remote_user(&host, config))
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "root".into());
            Plan::Ssh(
                ssh::Forward::new(&host, &user, remote_home.as_deref(), &local).map_err(invalid)?,
            )
        }
        RemoteTarget::Devcontainer { folder } => {
            let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
            let mount =
                devcontainer::Mount::new(&local, home.as_deref(), &name).map_err(invalid)?;
            Plan::Devcontainer(mount, folder)
        }
    };
    clients::validate_name(&name).map_err(|e| BrokerError::Clients(e.into()))?;

    let exists = broker.list_clients()?.iter().any(|c| c.name == name);
    let issued = match (exists, new_token) {
        (true, false) => None,
        (true, true) => Some(broker.issue_client(&name)?),
        (false, _) => Some(broker.add_client(
            &name,
            access.unwrap_or(crate::agents::DEFAULT_STATIC_ACCESS),
        )?),
    };
    if let (true, Some(access)) = (exists && new_token, access) {
        broker.set_access(&name, &[(crate::agents::ALL_PROVIDERS.to_string(), access)])?;
    }
    let token = issued.map(|i| ShownOnce(i.token));
    let placeholder =
        format!("<the token of {name}, shown when it was created; --new-token issues another>");
    let shown = token.as_ref().map(|t| t.expose_secret().to_string());

    let (via, snippet, remote_socket, mcp, mut notes) = match &plan {
        Plan::Ssh(f) => (
            "ssh",
            f.block(),
            f.remote_socket.clone(),
            remote::remote_mcp(
                &f.remote_socket,
                Some(shown.as_deref().unwrap_or(&placeholder)),
            ),
            f.notes(),
        ),
        Plan::Devcontainer(m, _) => (
            "devcontainer",
            m.snippet(),
            devcontainer::CONTAINER_SOCKET.to_string(),
            remote::remote_mcp(devcontainer::CONTAINER_SOCKET, None),
            m.notes(shown.as_deref()),
        ),
    };
    if token.is_none() {
        notes.insert(
            0,
            format!("The client {name} already exists and keeps its token (shown when it was created); --new-token issues a new one."),
        );
    }
    let mut reply = RemoteSetup {
        client: name,
        reused: token.is_none(),
        token,
        via: via.into(),
        snippet,
        local_socket: local.display().to_string(),
        remote_socket,
        mcp_config: mcp.stdio,
        bridge_command: mcp.bridge_command,
        bridge_config: mcp.bridge,
        notes,
        written: None,
        backup: None,
        write_error: None,
    };
    if let Some(write) = write {
        match plan.write(write) {
            Ok((path, written)) => {
                reply.written = Some(path.display().to_string());
                reply.backup = written.backup.map(|b| b.display().to_string());
            }
            Err(e) => reply.write_error = Some(setup_failure(e)),
        }
    }
    Ok(reply)
}

enum Plan {
    Ssh(ssh::Forward),
    Devcontainer(devcontainer::Mount, PathBuf),
}

impl Plan {
    fn write(&self, to: WriteTo) -> Result<(PathBuf, Written), SetupError> {
        let path = match (self, to) {
            (_, WriteTo::File(path)) => path,
            (Plan::Ssh(_), WriteTo::Default) => ssh::default_path()?,
            (Plan::Devcontainer(_, folder), WriteTo::Default) => devcontainer::default_path(folder),
        };
        let written = match self {
            Plan::Ssh(forward) => ssh::write(forward, &path)?,
            Plan::Devcontainer(mount, _) => devcontainer::write(mount, &path)?,
        };
        Ok((path, written))
    }
}
