//! The states a grant and the zone session can be in (DESIGN.md, grant lifecycle). Plain
//! types with no dependencies, so storage, events and the grant registry can all name them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Connected,
    NeedsReconnect,
    Revoked,
    Error,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Connected => "connected",
            GrantStatus::NeedsReconnect => "needs_reconnect",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<GrantStatus> {
        Some(match s {
            "connected" => GrantStatus::Connected,
            "needs_reconnect" => GrantStatus::NeedsReconnect,
            "revoked" => GrantStatus::Revoked,
            "error" => GrantStatus::Error,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    SignedIn,
    /// The zone refused the session's refresh token: sign in again.
    NeedsLogin,
}

impl SessionStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionStatus::SignedIn => "signed_in",
            SessionStatus::NeedsLogin => "needs_login",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        for s in [
            GrantStatus::Connected,
            GrantStatus::NeedsReconnect,
            GrantStatus::Revoked,
            GrantStatus::Error,
        ] {
            assert_eq!(GrantStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(GrantStatus::parse("bogus"), None);
    }
}
