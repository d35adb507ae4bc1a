//! The token cache: one async slot per token (the session's, each (resource, scopes) upstream
//! token). Callers queue on the slot's lock; the first to find it empty or expiring fetches,
//! the rest find the fresh token when they get the lock (single flight).

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::sync::Mutex as AsyncMutex;

use super::Grants;

/// Refresh this long before expiry so a token never expires in flight.
pub(super) const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the zone gives none.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest a token is cached whatever `expires_in` says (a zone may answer absurd values).
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub(super) struct Cached {
    pub(super) token: SecretString,
    pub(super) scopes: Vec<String>,
    pub(super) expires_at: Instant,
}

impl Cached {
    pub(super) fn new(
        token: SecretString,
        scopes: Vec<String>,
        expires_in: Option<Duration>,
    ) -> Cached {
        Cached {
            token,
            scopes,
            expires_at: Instant::now() + lifetime(expires_in),
        }
    }

    pub(super) fn fresh(&self) -> bool {
        Instant::now() + EXPIRY_MARGIN < self.expires_at
    }
}

/// The cache lifetime for a zone's `expires_in`: the default when absent, capped so that no
/// answer can overflow the clock.
pub(super) fn lifetime(expires_in: Option<Duration>) -> Duration {
    expires_in.unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME)
}

#[derive(Default)]
pub(super) struct SlotState {
    pub(super) cached: Option<Cached>,
    /// After a failed acquisition, callers fail fast until then (backoff).
    pub(super) not_before: Option<Instant>,
    pub(super) failures: u32,
    pub(super) last_error: Option<String>,
}

pub(super) type Slot = Arc<AsyncMutex<SlotState>>;

pub(super) fn session_slot_key() -> String {
    "session".into()
}

pub(super) fn upstream_slot_key(resource: &str, scopes: &[String]) -> String {
    format!("upstream {resource} {}", scopes.join(" "))
}

impl Grants {
    pub(super) fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.to_string()).or_default().clone()
    }

    pub(super) fn drop_slots(&self, matching: impl Fn(&str) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|k, _| !matching(k));
    }

    /// Forgets the cached upstream token (the upstream said 401): the next call gets a new one.
    pub fn invalidate(&self, resource: &str) {
        self.drop_slots(|k| k.starts_with(&upstream_slot_key(resource, &[])));
    }
}
