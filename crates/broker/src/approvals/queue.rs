//! The waiting calls, in arrival order, with the bounds that keep an agent from burying the
//! user's window. At most [`MAX_WAITING`] entries, so a scan is cheaper than an index.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::standing::MethodClass;
use super::{Answer, DecidedBy, MAX_WAITING, MAX_WAITING_PER_CLIENT, PendingCall, Verdict};

/// What the waiting future is told.
#[derive(Debug)]
pub(super) enum Resolution {
    Decided {
        verdict: Verdict,
        by: DecidedBy,
        standing: bool,
    },
    Cancelled,
    /// Only the waiting future itself concludes this, when its deadline passes.
    TimedOut,
}

impl Resolution {
    /// The word the `ApprovalResolved` event carries.
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Resolution::Decided {
                verdict: Verdict::Deny,
                ..
            } => "denied",
            Resolution::Decided { .. } => "approved",
            Resolution::Cancelled => "cancelled",
            Resolution::TimedOut => "timed_out",
        }
    }

    pub(super) fn answer(self, waited: Duration) -> Answer {
        match self {
            Resolution::Decided {
                verdict: Verdict::Deny,
                by,
                ..
            } => Answer::Denied { by, waited },
            Resolution::Decided { by, standing, .. } => Answer::Approved {
                by,
                waited,
                standing,
            },
            Resolution::Cancelled => Answer::Cancelled { waited },
            Resolution::TimedOut => Answer::TimedOut { waited },
        }
    }
}

/// One waiting call and the way to reach its future.
pub(super) struct Waiting {
    pub call: PendingCall,
    pub class: MethodClass,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Resolution>,
}

impl Waiting {
    /// Still decidable: the deadline has not passed (a call past it is the waiting future's
    /// to remove, as timed out).
    fn live(&self, now: Instant) -> bool {
        self.deadline > now
    }

    fn covered_by(&self, client: &str, resource: &str, class: MethodClass) -> bool {
        self.call.client == client && self.call.resource == resource && self.class == class
    }
}

#[derive(Default)]
pub(super) struct Queue {
    waiting: Vec<Waiting>,
}

impl Queue {
    /// Why a new call of `client` may not wait, if it may not.
    pub(super) fn refusal(&self, client: &str) -> Option<String> {
        let mine = self
            .waiting
            .iter()
            .filter(|w| w.call.client == client)
            .count();
        if mine >= MAX_WAITING_PER_CLIENT {
            Some(format!(
                "{mine} calls of this agent are already waiting for the user's approval"
            ))
        } else if self.waiting.len() >= MAX_WAITING {
            Some(format!(
                "{} calls are already waiting for the user's approval",
                self.waiting.len()
            ))
        } else {
            None
        }
    }

    /// A new id: 96 random bits, URL-safe, and not one in use.
    pub(super) fn fresh_id(&self) -> String {
        loop {
            let mut bytes = [0u8; 12];
            rand::rng().fill_bytes(&mut bytes);
            let id = URL_SAFE_NO_PAD.encode(bytes);
            if !self.waiting.iter().any(|w| w.call.id == id) {
                return id;
            }
        }
    }

    pub(super) fn push(&mut self, waiting: Waiting) {
        self.waiting.push(waiting);
    }

    /// The decidable calls, oldest first.
    pub(super) fn live(&self, now: Instant) -> impl Iterator<Item = &PendingCall> {
        self.waiting
            .iter()
            .filter(move |w| w.live(now))
            .map(|w| &w.call)
    }

    /// Takes out call `id`, live or not.
    pub(super) fn take(&mut self, id: &str) -> Option<Waiting> {
        let at = self.waiting.iter().position(|w| w.call.id == id)?;
        Some(self.waiting.remove(at))
    }

    /// Takes out call `id` if it is still decidable.
    pub(super) fn take_live(&mut self, id: &str, now: Instant) -> Option<Waiting> {
        let at = self
            .waiting
            .iter()
            .position(|w| w.call.id == id && w.live(now))?;
        Some(self.waiting.remove(at))
    }

    /// Takes out every decidable call a new standing allowance covers, oldest first.
    pub(super) fn take_covered(
        &mut self,
        client: &str,
        resource: &str,
        class: MethodClass,
        now: Instant,
    ) -> Vec<Waiting> {
        let (covered, rest) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.live(now) && w.covered_by(client, resource, class));
        self.waiting = rest;
        covered
    }

    /// Takes out every call, oldest first.
    pub(super) fn drain(&mut self) -> Vec<Waiting> {
        std::mem::take(&mut self.waiting)
    }
}
