//! Calls waiting for the user (DESIGN.md, trust boundary 1): a call the agent's policy marks
//! "ask" waits here until the user decides in the broker's own window, tray or CLI — never in
//! the agent's UI — or until the wait times out.
//!
//! One file per concern: `queue` (the waiting calls, their bounds and ids), `standing` (the
//! user's "allow for 1 hour" answers), `preview` (what the user is shown: the URL without query
//! values, the start of the body). The record itself, [`PendingCall`], lives in `pending_call`
//! so the event stream can carry it without depending on this module.
//!
//! One `std::sync::Mutex` guards the queue and the allowances; it is never held across an
//! `.await`, and events are sent while it is held so a call's "requested" always comes before
//! its "resolved". Deadlines are `tokio::time::Instant`s, so tests can pause the clock.

#[cfg(test)]
mod limits_tests;
mod preview;
#[cfg(test)]
mod preview_tests;
mod queue;
mod standing;
#[cfg(test)]
mod standing_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::events::{Event, Events};
pub use crate::pending_call::PendingCall;
pub use preview::redact_query;
use queue::{Queue, Resolution, Waiting};
use standing::{MethodClass, Standings};

/// How long a call waits for the user unless the settings say otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait a setting may ask for; longer values are cut to it (a deadline must stay
/// a representable instant).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// Bytes of the body the user is shown.
pub const PREVIEW_LIMIT: usize = 2048;
/// How long "allow for 1 hour" lasts.
pub const STANDING_FOR: Duration = Duration::from_secs(60 * 60);
/// Calls one agent may have waiting at once: an agent in a loop must not bury the user's
/// window. More are refused at once.
pub const MAX_WAITING_PER_CLIENT: usize = 32;
/// Calls all agents together may have waiting at once.
pub const MAX_WAITING: usize = 256;

/// The user's decision on a waiting call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    AllowOnce,
    /// This call, and for [`STANDING_FOR`] every call of the same agent to the same provider
    /// in the same method class (reads: GET, HEAD, OPTIONS; writes: everything else).
    AllowForAnHour,
    Deny,
}

/// Where the user decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    Window,
    Tray,
    Cli,
}

/// How a wait ended (for the tool result and the audit log).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `standing` is true when an earlier "allow for 1 hour" covered the call rather than a
    /// decision on it; `by` is then where that allowance was given, and `waited` is zero when
    /// the allowance already stood as the call arrived.
    Approved {
        by: DecidedBy,
        waited: Duration,
        standing: bool,
    },
    Denied {
        by: DecidedBy,
        waited: Duration,
    },
    TimedOut {
        waited: Duration,
    },
    /// Paused, shut down, or the agent went away.
    Cancelled {
        waited: Duration,
    },
    /// Never shown to the user: too many calls are waiting already.
    Refused {
        reason: String,
    },
}

/// What an agent's call asks the user to allow.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub client: &'a str,
    pub client_name: &'a str,
    pub resource: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    pub body: &'a [u8],
    pub rule: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Unknown, expired, or decided already.
    #[error("no call is waiting for approval with id {0}")]
    NotFound(String),
}

struct State {
    timeout: Duration,
    queue: Queue,
    standing: Standings,
}

struct Inner {
    events: Events,
    state: Mutex<State>,
}

/// The queue of calls waiting for the user, and the user's standing allowances. One per
/// broker; cheap to clone.
#[derive(Clone)]
pub struct Approvals {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No lock here: formatting must never wait on, or deadlock with, the queue.
        f.write_str("Approvals")
    }
}

impl Approvals {
    pub fn new(events: Events, timeout: Duration) -> Approvals {
        Approvals {
            inner: Arc::new(Inner {
                events,
                state: Mutex::new(State {
                    timeout: timeout.min(MAX_TIMEOUT),
                    queue: Queue::default(),
                    standing: Standings::default(),
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing here leaves the state half-changed on a panic, so a poisoned lock is usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the user's decision (or a standing allowance, or the timeout). Emits events.
    /// If the future is dropped (agent disconnected), the pending entry is removed and an
    /// event says so.
    pub async fn ask(&self, ask: Ask<'_>) -> Answer {
        let started = Instant::now();
        let class = MethodClass::of(ask.method);
        let url = redact_query(ask.url);
        let body_preview = preview::body_preview(ask.body);
        let (id, mut reply, deadline) = {
            let mut state = self.lock();
            if let Some(by) = state
                .standing
                .covers(ask.client, ask.resource, class, started)
            {
                return Answer::Approved {
                    by,
                    waited: Duration::ZERO,
                    standing: true,
                };
            }
            if let Some(reason) = state.queue.refusal(ask.client) {
                return Answer::Refused { reason };
            }
            let timeout = state.timeout;
            let id = state.queue.fresh_id();
            let asked_at = Utc::now();
            let call = PendingCall {
                id: id.clone(),
                client: ask.client.to_string(),
                client_name: ask.client_name.to_string(),
                resource: ask.resource.to_string(),
                method: ask.method.to_ascii_uppercase(),
                url,
                body_preview,
                rule: ask.rule.to_string(),
                asked_at,
                expires_at: later(asked_at, timeout),
            };
            let (tx, rx) = oneshot::channel();
            let deadline = started + timeout;
            state.queue.push(Waiting {
                call: call.clone(),
                class,
                deadline,
                reply: tx,
            });
            self.inner.events.emit(Event::ApprovalRequested { call });
            (id, rx, deadline)
        };
        // Declared after `reply`, so dropped before it: the entry leaves the queue while a
        // decision could still be delivered.
        let _gone = Gone {
            approvals: self,
            id: &id,
        };
        let resolution = match tokio::time::timeout_at(deadline, &mut reply).await {
            Ok(Ok(resolution)) => resolution,
            // The sender went without a word: nobody will decide any more.
            Ok(Err(_)) => Resolution::Cancelled,
            Err(_) => {
                if self.remove(&id, "timed_out") {
                    Resolution::TimedOut
                } else {
                    // Decided (or cancelled) just as time ran out: the message is waiting.
                    reply.try_recv().unwrap_or(Resolution::Cancelled)
                }
            }
        };
        resolution.answer(started.elapsed())
    }

    /// The calls waiting for the user, oldest first.
    pub fn pending(&self) -> Vec<PendingCall> {
        self.lock().queue.live(Instant::now()).cloned().collect()
    }

    /// Delivers the user's decision. "Allow for 1 hour" also releases the other waiting calls
    /// it covers, as the user would expect of it.
    pub fn decide(
        &self,
        id: &str,
        verdict: Verdict,
        by: DecidedBy,
    ) -> Result<PendingCall, ApprovalError> {
        let now = Instant::now();
        let not_found = || ApprovalError::NotFound(id.to_string());
        let mut state = self.lock();
        let waiting = state.queue.take_live(id, now).ok_or_else(not_found)?;
        let (call, class) = (waiting.call.clone(), waiting.class);
        let decided = Resolution::Decided {
            verdict,
            by,
            standing: false,
        };
        if !self.resolve(waiting, decided) {
            return Err(not_found());
        }
        if verdict == Verdict::AllowForAnHour {
            let (client, resource) = (call.client.as_str(), call.resource.as_str());
            state
                .standing
                .grant(client, resource, class, now + STANDING_FOR, by);
            for other in state.queue.take_covered(client, resource, class, now) {
                let covered = Resolution::Decided {
                    verdict: Verdict::AllowOnce,
                    by,
                    standing: true,
                };
                self.resolve(other, covered);
            }
        }
        Ok(call)
    }

    /// Denies nothing, cancels every waiting call (pause / shutdown) with
    /// [`Answer::Cancelled`]. Standing allowances stay.
    pub fn cancel_all(&self) {
        let mut state = self.lock();
        for waiting in state.queue.drain() {
            self.resolve(waiting, Resolution::Cancelled);
        }
    }

    /// Forgets standing allowances for a client (agent signed out / access edited) — or all
    /// when `None`.
    pub fn forget(&self, client: Option<&str>) {
        self.lock().standing.forget(client);
    }

    /// The wait for calls asked from now on (those waiting keep the deadline they were shown).
    pub fn set_timeout(&self, timeout: Duration) {
        self.lock().timeout = timeout.min(MAX_TIMEOUT);
    }

    /// Hands a resolution to the waiting call and announces it; false when the call's future
    /// is gone (then the event says "cancelled", which is what happened to the call).
    fn resolve(&self, waiting: Waiting, resolution: Resolution) -> bool {
        let outcome = resolution.outcome();
        let id = waiting.call.id;
        let delivered = waiting.reply.send(resolution).is_ok();
        let outcome = if delivered { outcome } else { "cancelled" };
        self.emit_resolved(id, outcome);
        delivered
    }

    /// Takes a call out of the queue without a decision; false when it had left already.
    fn remove(&self, id: &str, outcome: &str) -> bool {
        let mut state = self.lock();
        let Some(waiting) = state.queue.take(id) else {
            return false;
        };
        self.emit_resolved(waiting.call.id, outcome);
        true
    }

    fn emit_resolved(&self, id: String, outcome: &str) {
        let outcome = outcome.to_string();
        self.inner
            .events
            .emit(Event::ApprovalResolved { id, outcome });
    }
}

/// Removes its call from the queue when the waiting future is dropped (the agent went away);
/// a no-op once the call has left the queue by any other way.
struct Gone<'a> {
    approvals: &'a Approvals,
    id: &'a str,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.approvals.remove(self.id, "cancelled");
    }
}

/// `at + wait`, or the far future when that is not a date.
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
