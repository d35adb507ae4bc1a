//! Set-up operations: the zone, agent clients' config entries, and what the broker is.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Failure;
use crate::client_setup::{self, Kind, SetupError};
use crate::config::{Config, UpstreamStrategy, ZoneSettings, normalize_zone};
use crate::error::{BrokerError, ErrorCode};
use crate::vault::Vault;
use crate::{Broker, clients};

/// A client token, shown to the user this once. Held as a secret until it is serialised for
/// the shell that shows it.
#[derive(Debug, Serialize, Deserialize, ts_rs::TS)]
pub struct Issued {
    pub name: String,
    #[ts(type = "string")]
    pub token: ShownOnce,
}

impl From<clients::IssuedClient> for Issued {
    fn from(c: clients::IssuedClient) -> Issued {
        Issued {
            name: c.name,
            token: ShownOnce(c.token),
        }
    }
}

/// A secret that serialises in clear: only for the one reply that shows a new client token to
/// the user. Everywhere else it stays a `SecretString` (redacted in Debug, zeroed on drop).
#[derive(Debug)]
pub struct ShownOnce(pub SecretString);

impl ExposeSecret<str> for ShownOnce {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Serialize for ShownOnce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for ShownOnce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ShownOnce, D::Error> {
        String::deserialize(d).map(|s| ShownOnce(SecretString::from(s)))
    }
}

/// Where to write a client's config entry.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "to", content = "path", rename_all = "snake_case")]
pub enum WriteTo {
    /// The client's own config file at its usual place.
    Default,
    File(#[ts(type = "string")] PathBuf),
}

/// A kind of agent client the broker can write a config entry for.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct ClientKind {
    /// `claude-code`, `cursor`, …
    pub kind: String,
    pub label: String,
    /// Where its config file usually is, when the home directory is known.
    pub path: Option<String>,
    /// Reached through the stdio bridge (token in the keychain, not in the file).
    pub stdio: bool,
    /// Signs in with OAuth (its entry holds no token) unless a static token is asked for.
    pub oauth: bool,
}

/// A client's new token and its config entry, and what writing it did.
#[derive(Debug, Serialize, Deserialize, ts_rs::TS)]
pub struct ClientSetup {
    /// The client's name (a static client's, or the entry's for an OAuth one).
    pub name: String,
    /// The static token, shown this once; `None` when the client signs in with OAuth.
    #[ts(type = "string | null")]
    pub token: Option<ShownOnce>,
    /// The entry holds no credential: the client signs in through the consent page.
    pub oauth: bool,
    pub kind: String,
    /// The entry to paste into the client's config (holds the token unless `stdio`).
    pub snippet: String,
    pub note: Option<String>,
    pub written: Option<String>,
    pub backup: Option<String>,
    /// The file lies in a git work tree: a token in it could be committed.
    pub warning: Option<String>,
    /// Writing failed; the token and snippet above are still valid, so nothing is lost.
    pub write_error: Option<Failure>,
}

/// Every kind of agent client, for the window's picker and the CLI's help.
pub fn client_kinds() -> Vec<ClientKind> {
    Kind::ALL
        .iter()
        .map(|k| ClientKind {
            kind: k.as_str().to_string(),
            label: k.label().to_string(),
            path: client_setup::default_path(*k)
                .ok()
                .map(|p| p.display().to_string()),
            stdio: k.uses_bridge(),
            oauth: k.supports_oauth(),
        })
        .collect()
}

pub(super) fn setup_failure(e: SetupError) -> Failure {
    let code = match e {
        SetupError::NoHome => ErrorCode::NotConfigured,
        SetupError::Unparseable { .. } => ErrorCode::InvalidInput,
        SetupError::Io { .. } => ErrorCode::ConfigFile,
    };
    Failure::new(code, e.to_string())
}

/// Issues a token for `name` (a new client when `replace` is false; otherwise a new token for
/// an existing or new one), renders the entry for `kind` and, when asked, merges it into the
/// client's config file.
#[allow(clippy::too_many_arguments)] // the fields of Request::ClientSetup, as sent
pub(super) async fn client_setup(
    broker: &Broker,
    name: &str,
    kind: &str,
    stdio_command: &str,
    write: Option<WriteTo>,
    replace: bool,
    access: Option<crate::policy::Access>,
    static_token: bool,
) -> Result<ClientSetup, Failure> {
    let kind = Kind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        Failure::invalid(format!(
            "unknown client kind {kind:?}; use one of: {}",
            known.join(", ")
        ))
    })?;
    clients::validate_name(name).map_err(|e| BrokerError::Clients(e.into()))?;
    if kind.supports_oauth() && !static_token {
        // No token to issue: the client registers and signs in itself, and the user decides
        // on the consent page what it may use.
        let snippet =
            client_setup::Snippet::new(kind, name, &broker.mcp_url(), None, stdio_command);
        return Ok(finish(name.to_string(), None, &snippet, write));
    }
    let issued = if replace {
        let issued = broker.issue_client(name)?;
        if let Some(access) = access {
            broker.set_access(name, &[(crate::agents::ALL_PROVIDERS.to_string(), access)])?;
        }
        issued
    } else {
        broker.add_client(name, access.unwrap_or(crate::agents::DEFAULT_STATIC_ACCESS))?
    };
    let snippet = broker
        .client_snippet(kind, &issued.name, &issued.token, stdio_command)
        .await?;
    Ok(finish(
        issued.name,
        Some(ShownOnce(issued.token)),
        &snippet,
        write,
    ))
}

/// The reply for an entry, written where asked; a failure to write keeps the reply (and its
/// token, when there is one).
fn finish(
    name: String,
    token: Option<ShownOnce>,
    snippet: &client_setup::Snippet,
    write: Option<WriteTo>,
) -> ClientSetup {
    let mut reply = ClientSetup {
        name,
        oauth: token.is_none(),
        token,
        kind: snippet.kind.as_str().to_string(),
        snippet: snippet.render(),
        note: snippet.note(),
        written: None,
        backup: None,
        warning: None,
        write_error: None,
    };
    let path = match write {
        None => return reply,
        Some(WriteTo::File(path)) => Ok(path),
        Some(WriteTo::Default) => client_setup::default_path(snippet.kind),
    };
    match path.and_then(|path| client_setup::merge_into(snippet, &path).map(|w| (path, w))) {
        Ok((path, written)) => {
            reply.written = Some(path.display().to_string());
            reply.backup = written.backup.as_ref().map(|b| b.display().to_string());
            reply.warning = written.warning();
        }
        Err(e) => reply.write_error = Some(setup_failure(e)),
    }
    reply
}

/// What a person can set when configuring the zone; unset fields keep their current value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ts_rs::TS)]
pub struct ZoneChange {
    /// Issuer URL or bare zone id.
    pub zone: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub strategy: Option<UpstreamStrategy>,
    /// The confidential application's secret (CLI: read from stdin); kept in the keychain.
    #[serde(skip)]
    pub client_secret: Option<SecretString>,
}

/// What configuring the zone did. The shell restarts its engine with the saved config.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct ZoneConfigured {
    pub issuer: String,
    /// The previous zone's session was ended first (switching zones).
    pub signed_out_previous: bool,
    /// The session stays pinned to this identifier until the next sign-in, because the
    /// broker's resource identifier changed.
    pub signed_in_for_other_resource: Option<String>,
}

/// Configures the zone: discovery must work and name the same issuer; switching to another
/// zone ends the old zone's session first; settings the user chose (strategy, timeouts, and
/// for the same zone the client and resource) are kept. Saves the config and returns it.
pub async fn configure_zone(
    broker: &Broker,
    change: ZoneChange,
) -> Result<(Config, ZoneConfigured), Failure> {
    let mut config = broker.config().clone();
    let issuer = normalize_zone(&change.zone).map_err(BrokerError::from)?;
    let previous = config.settings.zone.clone();
    let same_zone = previous.as_ref().is_some_and(|p| p.issuer == issuer);
    let mut settings = match &previous {
        Some(p) if same_zone => p.clone(),
        Some(p) => ZoneSettings {
            upstream_strategy: p.upstream_strategy,
            timeout_secs: p.timeout_secs,
            ..ZoneSettings::new(issuer.clone())
        },
        None => ZoneSettings::new(issuer.clone()),
    };
    crate::zone::Zone::discover(&issuer, settings.timeout())
        .await
        .map_err(BrokerError::from)?;
    if let Some(id) = change.client_id {
        settings.client_id = Some(id).filter(|i| !i.trim().is_empty());
    }
    if let Some(resource) = change.resource {
        url::Url::parse(&resource).map_err(|e| {
            Failure::invalid(format!("invalid resource identifier {resource:?}: {e}"))
        })?;
        settings.resource = Some(resource);
    }
    if let Some(strategy) = change.strategy {
        settings.upstream_strategy = strategy;
    }
    if let Some(port) = change.port {
        config.settings.broker.port = port;
    }
    let secret = change
        .client_secret
        .or_else(|| config.env_client_secret.clone());
    if secret.is_some() {
        settings.confidential = settings.client_id.is_some();
    }
    let switching = previous.as_ref().is_some_and(|p| p.issuer != issuer);
    let signed_out_previous = switching && broker.status()?.session != crate::Session::SignedOut;
    if signed_out_previous {
        broker.logout().await?;
    }
    if let (Some(secret), true) = (secret, settings.confidential) {
        broker.store_client_secret(secret).await?;
    }
    config.settings.zone = Some(settings);
    config.save().map_err(BrokerError::from)?;
    let signed_in_for_other_resource = broker
        .status()?
        .resource
        .filter(|r| !switching && *r != config.resource_id());
    Ok((
        config,
        ZoneConfigured {
            issuer,
            signed_out_previous,
            signed_in_for_other_resource,
        },
    ))
}

/// What the broker is and where it keeps things (no secrets).
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct About {
    pub version: String,
    pub zone: Option<String>,
    pub port: u16,
    pub mcp_url: String,
    /// The agent socket remote agents reach through a forwarded socket (none when off).
    pub agent_socket: Option<String>,
    /// The broker's resource identifier at the zone.
    pub resource: String,
    pub keychain: Option<String>,
    pub logs_dir: String,
    pub data_dir: String,
    pub config_file: String,
}

pub fn about(config: &Config, vault: Option<&Vault>) -> About {
    About {
        version: env!("CARGO_PKG_VERSION").to_string(),
        zone: config.settings.zone.as_ref().map(|z| z.issuer.clone()),
        port: config.port(),
        mcp_url: crate::mcp::mcp_url(config.port()),
        agent_socket: (cfg!(unix) && config.settings.broker.agent_socket).then(|| {
            crate::mcp::agent_socket_path(&config.paths.data_dir)
                .display()
                .to_string()
        }),
        resource: config.resource_id(),
        keychain: vault.map(Vault::backend),
        logs_dir: config.paths.log_dir.display().to_string(),
        data_dir: config.paths.data_dir.display().to_string(),
        config_file: config.paths.config_file.display().to_string(),
    }
}

/// The token `keycard-broker clients config claude-desktop NAME` stored for the stdio bridge.
pub async fn stored_client_token(
    broker: &Broker,
    name: &str,
) -> Result<Option<SecretString>, Failure> {
    Ok(broker
        .vault()
        .get(crate::vault::SecretKey::ClientToken(name.to_string()))
        .await
        .map_err(BrokerError::from)?)
}
