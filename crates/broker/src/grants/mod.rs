//! Grant registry and lifecycle (DESIGN.md): the zone session, each provider connection, the
//! in-memory token cache and single-flight acquisition.
//!
//! Single flight: every token (the session's, and each (resource, scopes) upstream token) has
//! one async slot. Callers queue on the slot's lock; the first one to find it empty or
//! expiring does the one zone round trip, the rest find the fresh token when they get the lock.
//! Rotated refresh tokens reach the keychain before the new access token is handed out.
//!
//! One file per concern: `rounds` (login and connect authorize rounds), `identity` (the zone
//! client and who the broker is to it), `cache` (slots: the cached tokens, single flight),
//! `tokens` (the session's and a provider's token: cache hit or one zone round trip),
//! `rotation` (rotated refresh tokens, held in memory while the keychain refuses them),
//! `retry` (retries and backoff on transient zone failures), `state` (grant rows: every
//! transition saved and announced), `revoke` (revoke a connection, sign out).

mod cache;
mod identity;
mod retry;
mod revoke;
mod rotation;
mod rounds;
mod state;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::audit::Audit;
use crate::callback::Callbacks;
use crate::config::Config;
use crate::db::Db;
use crate::events::Events;
pub use crate::status::GrantStatus;
use crate::vault::{SecretKey, Vault};
use crate::zone::Zone;
use cache::Slot;
pub use rounds::{Round, RoundKind};
pub use tokens::UpstreamToken;

/// The grant registry. One per broker.
pub struct Grants {
    config: Config,
    db: Arc<Db>,
    vault: Vault,
    events: Events,
    callbacks: Callbacks,
    audit: Audit,
    zone: OnceCell<Zone>,
    slots: Mutex<HashMap<String, Slot>>,
    last_used: Mutex<HashMap<String, Instant>>,
    /// Rotated refresh tokens the keychain refused to store (locked mid-run). The zone has
    /// already retired the previous one, so this copy is the grant: it is used for the next
    /// refresh and written to the keychain as soon as the keychain takes it.
    unsaved: Mutex<HashMap<SecretKey, SecretString>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grants")
    }
}

impl Grants {
    pub fn new(
        config: Config,
        db: Arc<Db>,
        vault: Vault,
        events: Events,
        callbacks: Callbacks,
        audit: Audit,
    ) -> Grants {
        Grants {
            config,
            db,
            vault,
            events,
            callbacks,
            audit,
            zone: OnceCell::new(),
            slots: Mutex::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
            unsaved: Mutex::new(HashMap::new()),
        }
    }
}
