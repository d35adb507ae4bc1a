//! The engine's one error type and the stable code every shell keys its advice on.
//!
//! Messages say what happened in plain words; they never name a CLI command or a button. The
//! CLI, the window and the MCP tools each add their own next step from [`ErrorCode`].

use serde::{Deserialize, Serialize};

use crate::approvals::ApprovalError;
use crate::callback::CallbackError;
use crate::catalog::CatalogError;
use crate::clients::{ClientError, ClientsError};
use crate::config::ConfigError;
use crate::db::DbError;
use crate::policy::PolicyError;
use crate::vault::VaultError;
use crate::zone::ZoneError;

/// Every failure a shell can see, each with a one-line reason a person understands.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("keychain unavailable: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(transparent)]
    Clients(#[from] ClientsError),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("the policy cannot be used: {0}")]
    Policy(#[from] PolicyError),
    #[error("not signed in to the Keycard zone")]
    NotSignedIn,
    #[error("the Keycard session ended ({0})")]
    SessionExpired(String),
    #[error("{name} is not connected")]
    NotConnected { name: String, resource: String },
    #[error("{name} needs to be reconnected in Keycard Broker: {reason}")]
    NeedsReconnect {
        name: String,
        resource: String,
        reason: String,
    },
    #[error(
        "{what} is unavailable after repeated zone failures (last: {last_error}); retrying in {retry_in} s"
    )]
    Backoff {
        what: String,
        retry_in: u64,
        last_error: String,
    },
    #[error(
        "the zone issued no refresh token; allow the `offline_access` scope / refresh tokens for this application"
    )]
    NoRefreshToken,
    #[error("the application client secret is missing from the keychain")]
    MissingClientSecret,
    #[error(
        "the zone does not know the broker's resource {0}; register it in the Keycard console as a Resource (credential provider \"Zone Provider\") and add it to the application"
    )]
    ResourceNotRegistered(String),
    #[error("port {0} on 127.0.0.1 is already in use (is another Keycard Broker running?)")]
    PortInUse(u16),
    #[error("cannot listen on 127.0.0.1:{port}: {reason}")]
    Listen { port: u16, reason: String },
    #[error(
        "{0} consent rounds started by agents are already waiting for the user; finish or cancel one first"
    )]
    TooManyRounds(usize),
    #[error("the Keycard zone refused the request ({code}): {fix}")]
    ZoneSetup { code: String, fix: String },
    #[error("cannot serve the admin socket {0}")]
    ControlSocket(String),
    #[error(
        "cannot serve the agent socket {0} (set [broker] agent_socket = false to go without it)"
    )]
    AgentSocket(String),
    #[error("another Keycard Broker is already running for this home ({0})")]
    AlreadyRunning(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure this is, stable across releases: shells choose their advice (the CLI's
/// command, the window's button, the MCP tool's hint) and exit code from it, never from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A value the user typed is not acceptable (zone URL, resource, client name, …).
    InvalidInput,
    /// The named provider, client or entry does not exist.
    NotFound,
    /// The name is taken.
    AlreadyExists,
    /// Set-up is incomplete (no zone, no client secret, no home directory).
    NotConfigured,
    /// The operation needs the serving broker (CLI `serve` or the tray app) and none runs.
    NotRunning,
    /// Another broker already serves this home (its control socket answers).
    AlreadyRunning,
    /// The broker refused an agent client's credentials (unknown, reissued or removed).
    Unauthorized,
    /// The config file cannot be read or written.
    ConfigFile,
    /// The user's policy file (`policy.cedar`) does not parse or does not validate.
    PolicyInvalid,
    NotSignedIn,
    NotConnected,
    NeedsReconnect,
    /// The zone cannot be reached or is failing (network, 5xx, backoff).
    ZoneUnreachable,
    /// The zone refused a request in a way only a change in the Keycard console fixes.
    ZoneSetup,
    /// The zone refused a request or sent something unusable.
    ZoneRefused,
    /// The user (or the zone) declined a consent round.
    ConsentDeclined,
    /// A browser round's redirect was not acceptable (wrong issuer, no code).
    BadRedirect,
    /// Nobody finished the browser round in time.
    Timeout,
    Cancelled,
    /// Too many rounds are already waiting for the user.
    Busy,
    KeychainLocked,
    KeychainUnavailable,
    DiskFull,
    /// The broker's database failed.
    Storage,
    PortInUse,
    /// The loopback listener could not start.
    PortUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::AlreadyRunning => "already_running",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ConfigFile => "config_file",
            ErrorCode::PolicyInvalid => "policy_invalid",
            ErrorCode::NotSignedIn => "not_signed_in",
            ErrorCode::NotConnected => "not_connected",
            ErrorCode::NeedsReconnect => "needs_reconnect",
            ErrorCode::ZoneUnreachable => "zone_unreachable",
            ErrorCode::ZoneSetup => "zone_setup",
            ErrorCode::ZoneRefused => "zone_refused",
            ErrorCode::ConsentDeclined => "consent_declined",
            ErrorCode::BadRedirect => "bad_redirect",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Busy => "busy",
            ErrorCode::KeychainLocked => "keychain_locked",
            ErrorCode::KeychainUnavailable => "keychain_unavailable",
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::Storage => "storage",
            ErrorCode::PortInUse => "port_in_use",
            ErrorCode::PortUnavailable => "port_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BrokerError {
    /// The stable code of this failure.
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            BrokerError::Config(e) => match e {
                ConfigError::Read { .. }
                | ConfigError::Write { .. }
                | ConfigError::Parse { .. } => C::ConfigFile,
                ConfigError::BadZone { .. } | ConfigError::BadValue { .. } => C::InvalidInput,
                ConfigError::NoZone | ConfigError::NoHome => C::NotConfigured,
            },
            BrokerError::Zone(e) => match e {
                ZoneError::Unreachable { .. } | ZoneError::Unavailable { .. } => C::ZoneUnreachable,
                ZoneError::IssuerMismatch { .. }
                | ZoneError::BadMetadata { .. }
                | ZoneError::RegistrationUnsupported => C::ZoneSetup,
                ZoneError::Rejected { .. } | ZoneError::Malformed(_) => C::ZoneRefused,
            },
            BrokerError::Vault(VaultError::Locked(_)) => C::KeychainLocked,
            BrokerError::Vault(_) => C::KeychainUnavailable,
            BrokerError::Db(e) | BrokerError::Clients(ClientsError::Db(e)) => match e {
                DbError::Full => C::DiskFull,
                _ => C::Storage,
            },
            BrokerError::Catalog(e) => match e {
                CatalogError::Unknown(_) => C::NotFound,
                CatalogError::Invalid { .. } | CatalogError::BuiltIn(_) => C::InvalidInput,
            },
            BrokerError::Callback(e) => match e {
                CallbackError::Denied { .. } => C::ConsentDeclined,
                CallbackError::WrongIssuer { .. }
                | CallbackError::MissingIssuer
                | CallbackError::MissingCode => C::BadRedirect,
                CallbackError::Timeout(_) => C::Timeout,
                CallbackError::Cancelled => C::Cancelled,
            },
            BrokerError::Clients(ClientsError::Client(e)) => match e {
                ClientError::BadName(_) => C::InvalidInput,
                ClientError::Exists(_) => C::AlreadyExists,
                ClientError::Unknown(_) => C::NotFound,
            },
            BrokerError::Approval(e) => match e {
                ApprovalError::NotFound(_) => C::NotFound,
            },
            BrokerError::Policy(_) => C::PolicyInvalid,
            BrokerError::NotSignedIn | BrokerError::SessionExpired(_) => C::NotSignedIn,
            BrokerError::NotConnected { .. } => C::NotConnected,
            BrokerError::NeedsReconnect { .. } => C::NeedsReconnect,
            BrokerError::Backoff { .. } => C::ZoneUnreachable,
            BrokerError::NoRefreshToken
            | BrokerError::ResourceNotRegistered(_)
            | BrokerError::ZoneSetup { .. } => C::ZoneSetup,
            BrokerError::MissingClientSecret => C::NotConfigured,
            BrokerError::PortInUse(_) => C::PortInUse,
            BrokerError::AlreadyRunning(_) => C::AlreadyRunning,
            BrokerError::Listen { .. }
            | BrokerError::ControlSocket(_)
            | BrokerError::AgentSocket(_) => C::PortUnavailable,
            BrokerError::TooManyRounds(_) => C::Busy,
            BrokerError::Internal(_) => C::Internal,
        }
    }

    pub fn not_connected(provider: &crate::Provider) -> BrokerError {
        BrokerError::NotConnected {
            name: provider.name.clone(),
            resource: provider.resource.clone(),
        }
    }

    /// The provider this failure is about, when there is one (the window highlights it).
    pub fn resource(&self) -> Option<&str> {
        match self {
            BrokerError::NotConnected { resource, .. } => Some(resource),
            BrokerError::NeedsReconnect { resource, .. } => Some(resource),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_approvals_are_not_found() {
        let error = BrokerError::from(ApprovalError::NotFound("Zm9vYmFyYmF6".into()));
        assert_eq!(error.code(), ErrorCode::NotFound);
        assert_eq!(error.resource(), None);
        assert!(error.to_string().contains("Zm9vYmFyYmF6"), "{error}");
    }

    #[test]
    fn an_unusable_policy_has_its_own_code_and_says_where() {
        let file = std::path::Path::new("/home/me/policy.cedar");
        let e = crate::policy::Policy::build(&[], Some((file, "permit("))).unwrap_err();
        let e = BrokerError::from(e);
        assert_eq!(e.code(), ErrorCode::PolicyInvalid);
        assert_eq!(e.code().as_str(), "policy_invalid");
        assert_eq!(serde_json::to_value(e.code()).unwrap(), "policy_invalid");
        assert!(
            e.to_string()
                .starts_with("the policy cannot be used: /home/me/policy.cedar:1:8: "),
            "{e}"
        );
    }
}
