//! What the user sees at a glance: the session, every connection, and one overall state that
//! the tray icon and the window both show, computed here so they cannot disagree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::GrantStatus;

/// The sign-in to the Keycard zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Session {
    SignedIn,
    /// The zone ended the session; a new sign-in is needed.
    NeedsLogin,
    #[default]
    SignedOut,
}

impl Session {
    pub fn as_str(self) -> &'static str {
        match self {
            Session::SignedIn => "signed_in",
            Session::NeedsLogin => "needs_login",
            Session::SignedOut => "signed_out",
        }
    }
}

impl PartialEq<&str> for Session {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status --json`: the session and every connection. No secrets.
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct Status {
    pub zone: Option<String>,
    pub account: Option<String>,
    pub session: Session,
    /// The broker's resource identifier the session was signed in for; every refresh presents
    /// it, whatever the port is now.
    #[serde(default)]
    pub resource: Option<String>,
    /// Agent access paused by the user (the MCP endpoint answers 503).
    #[serde(default)]
    pub paused: bool,
    /// Renewed refresh tokens the keychain refused (locked), held in memory until it accepts.
    #[serde(default)]
    pub keychain_pending: usize,
    pub connections: Vec<ConnectionStatus>,
    /// The state at a glance: the tray icon and the window's banner both show this.
    #[serde(default)]
    pub overall: Overall,
}

#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct ConnectionStatus {
    pub resource: String,
    pub name: String,
    pub status: GrantStatus,
    pub scopes: Vec<String>,
    pub connected_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What `check` reports about a working connection (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
pub struct TokenInfo {
    pub resource: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_in_secs: u64,
}

/// A connection as agents see it (`list_connections`). No secrets.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema, ts_rs::TS)]
pub struct ConnectionInfo {
    pub resource: String,
    pub name: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub api_bases: Vec<String>,
    pub last_used_at: Option<String>,
    pub last_error: Option<String>,
}

/// The broker's state at a glance, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum OverallState {
    #[default]
    Ok,
    /// The user paused every agent's access.
    Paused,
    /// Something needs the user: a reconnect, an unlock, a failing connection.
    Attention,
    /// Not signed in (or no zone yet).
    SignedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
pub struct Overall {
    pub state: OverallState,
    /// One line for the tray tooltip and the window's banner.
    pub text: String,
}

impl Status {
    /// This status with its overall state computed from the rest.
    pub fn with_overall(mut self) -> Status {
        self.overall = self.compute_overall();
        self
    }

    fn compute_overall(&self) -> Overall {
        let overall = |state, text: String| Overall { state, text };
        if self.session != Session::SignedIn {
            let why = if self.zone.is_none() {
                "no zone configured"
            } else if self.session == Session::NeedsLogin {
                "sign in again"
            } else {
                "signed out"
            };
            return overall(OverallState::SignedOut, why.to_string());
        }
        if self.keychain_pending > 0 {
            return overall(
                OverallState::Attention,
                "unlock the keychain: a renewed sign-in waits to be saved".to_string(),
            );
        }
        if self.paused {
            return overall(OverallState::Paused, "agent access paused".to_string());
        }
        let attention: Vec<&str> = self
            .connections
            .iter()
            .filter(|c| matches!(c.status, GrantStatus::NeedsReconnect | GrantStatus::Error))
            .map(|c| c.name.as_str())
            .collect();
        if attention.is_empty() {
            let live = self
                .connections
                .iter()
                .filter(|c| c.status == GrantStatus::Connected)
                .count();
            overall(OverallState::Ok, format!("all good ({live} connected)"))
        } else {
            overall(
                OverallState::Attention,
                format!("attention needed: {}", attention.join(", ")),
            )
        }
    }
}
