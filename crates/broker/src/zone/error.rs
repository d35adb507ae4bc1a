//! Why a zone interaction failed, classified as PROTOCOL.md §1 says: "the user must act"
//! (permanent) or "try again later" (transient).

use std::time::Duration;

/// Reason given when no connection was made (so the zone cannot have seen the request).
pub(super) const CONNECT_FAILED: &str = "connection refused or unreachable";

/// Why a zone interaction failed, classified so callers can decide what the user must do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZoneError {
    #[error("cannot reach the Keycard zone ({url}): {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Keycard zone is unavailable (HTTP {status}){}", retry_hint(*retry_after))]
    Unavailable {
        status: u16,
        retry_after: Option<u64>,
    },
    #[error(
        "the zone's discovery document names issuer {found:?}, but the configured zone is {expected:?}; check the zone URL"
    )]
    IssuerMismatch { expected: String, found: String },
    #[error("the zone's discovery document at {url} is unusable: {reason}")]
    BadMetadata { url: String, reason: String },
    #[error("the Keycard zone refused the request: {code}{}", describe(description.as_deref()))]
    Rejected {
        code: String,
        description: Option<String>,
    },
    #[error("the Keycard zone sent a malformed answer: {0}")]
    Malformed(String),
    #[error(
        "the zone does not offer dynamic client registration; the broker needs a client id registered in the Keycard console"
    )]
    RegistrationUnsupported,
}

fn retry_hint(retry_after: Option<u64>) -> String {
    retry_after
        .map(|s| format!("; retry after {s} s"))
        .unwrap_or_default()
}

fn describe(description: Option<&str>) -> String {
    description.map(|d| format!(" ({d})")).unwrap_or_default()
}

impl ZoneError {
    /// Transient failures are retried with backoff and never turn a grant into
    /// `needs_reconnect` by themselves (DESIGN.md, grant lifecycle).
    pub fn is_transient(&self) -> bool {
        match self {
            ZoneError::Unreachable { .. }
            | ZoneError::Unavailable { .. }
            | ZoneError::Malformed(_) => true,
            ZoneError::Rejected { code, .. } => {
                matches!(code.as_str(), "temporarily_unavailable" | "slow_down")
            }
            _ => false,
        }
    }

    /// Whether the zone may have carried out the request although no usable answer came back
    /// (timed out after sending, connection dropped mid-answer, unreadable success). Sending a
    /// refresh token again then could replay one the zone has already rotated.
    pub fn answer_lost(&self) -> bool {
        match self {
            ZoneError::Unreachable { reason, .. } => reason != CONNECT_FAILED,
            ZoneError::Malformed(_) => true,
            _ => false,
        }
    }

    /// The OAuth error code, when the zone gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ZoneError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the user has to connect / reconnect (or sign in) again to fix this.
    pub fn needs_user(&self) -> bool {
        matches!(
            self.code(),
            Some("insufficient_authorization" | "invalid_grant" | "access_denied")
        )
    }

    /// For answers that say the zone's set-up does not allow the request (permanent, fixed
    /// in the Keycard console or the broker's settings, never by retrying): what to change.
    pub fn setup_fix(&self, resource: &str) -> Option<String> {
        Some(match self.code()? {
            "invalid_target" => format!(
                "the zone does not accept the resource {resource} for this application; register it in the Keycard console as a Resource and add it to the application"
            ),
            "invalid_scope" => format!(
                "the zone refused the scopes asked for {resource}; change the scopes configured for it in Keycard Broker, or allow them for the application in the Keycard console"
            ),
            "unauthorized_client" => format!(
                "the zone does not let this application use this grant for {resource}; allow it (authorization code, refresh token, token exchange) for the application in the Keycard console, or change the upstream strategy"
            ),
            _ => return None,
        })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ZoneError::Unavailable {
                retry_after: Some(s),
                ..
            } => Some(Duration::from_secs(*s)),
            _ => None,
        }
    }
}
