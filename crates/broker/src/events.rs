//! Broadcast of state changes, so shells (tray badge, window, notifications) update live
//! instead of polling. Slow subscribers lose old events, never block the engine.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::activity::AuditRecord;
use crate::pending_call::PendingCall;
use crate::status::GrantStatus;

#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    SessionChanged {
        signed_in: bool,
        account: Option<String>,
    },
    GrantChanged {
        resource: String,
        status: GrantStatus,
        reason: Option<String>,
    },
    /// An upstream token was obtained from the zone (not a cache hit).
    TokenIssued {
        resource: String,
    },
    ResourcesChanged,
    /// An agent client was added, rotated or removed.
    ClientsChanged,
    /// The user paused or resumed agent access.
    PauseChanged {
        paused: bool,
    },
    /// Renewed refresh tokens are waiting in memory because the keychain refuses them
    /// (locked); 0 when the keychain has taken them all. Quitting before then loses them.
    KeychainPending {
        count: usize,
    },
    /// An agent registered, signed in or out, or its access changed.
    AgentChanged {
        client: String,
        change: AgentChange,
    },
    /// An agent opened the consent page: the user is deciding what it may do.
    AgentAsks {
        client: String,
        name: String,
    },
    /// A new audit record (agent call or token acquisition) for the live activity view.
    Activity {
        record: AuditRecord,
    },
    /// An agent's call waits for the user's decision (the Requests view, a tray notification).
    ApprovalRequested {
        call: PendingCall,
    },
    /// A waiting call left the queue; `outcome` is "approved", "denied", "timed_out" or
    /// "cancelled" (paused, shut down, or the agent went away), so every view drops it.
    ApprovalResolved {
        id: String,
        outcome: String,
    },
}

/// Something happened to an agent's registration, sign-in or access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum AgentChange {
    Registered,
    SignedIn,
    SignedOut,
    AccessChanged,
}

#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(256);
        Events { tx }
    }
}

impl Events {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Whether a shell listens (the CLI's `serve` has none), so callers can skip building
    /// events nobody reads.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn emit(&self, event: Event) {
        // No subscriber is fine: the CLI runs without any.
        let _ = self.tx.send(event);
    }
}
