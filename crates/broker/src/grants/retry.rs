//! Transient zone failures: a few immediate retries (honouring `Retry-After`, capped), then
//! backoff per slot so callers fail fast until the zone has had time to recover.

use std::time::{Duration, Instant};

use crate::BrokerError;
use crate::zone::ZoneError;

use super::cache::SlotState;

/// Attempts per acquisition on transient zone failures, and the cap on one wait.
pub(super) const ATTEMPTS: u32 = 3;
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub(super) fn check_backoff(state: &SlotState, what: &str) -> Result<(), BrokerError> {
    if let Some(until) = state.not_before {
        let now = Instant::now();
        if now < until {
            return Err(BrokerError::Backoff {
                what: what.to_string(),
                retry_in: (until - now).as_secs().max(1),
                last_error: state.last_error.clone().unwrap_or_default(),
            });
        }
    }
    Ok(())
}

pub(super) fn note_failure(state: &mut SlotState, e: &ZoneError) {
    state.failures = state.failures.saturating_add(1);
    let backoff = Duration::from_secs(1u64 << state.failures.min(6)).min(MAX_BACKOFF);
    let wait = e
        .retry_after()
        .map_or(backoff, |r| r.max(backoff).min(MAX_BACKOFF));
    state.not_before = Some(Instant::now() + wait);
    state.last_error = Some(e.to_string());
}

/// Retries transient zone failures a few times, honouring `Retry-After` (capped). A macro,
/// not a generic over closures, so the futures stay `Send` for any caller. Full paths, so it
/// expands the same in every file of `grants`.
macro_rules! retrying {
    ($call:expr) => {
        $crate::grants::retry::retrying!($call, |_: &$crate::zone::ZoneError| true)
    };
    ($call:expr, $may_retry:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match $call.await {
                Err(e) if e.is_transient() && attempt < $crate::grants::retry::ATTEMPTS && ($may_retry)(&e) => {
                    let wait = $crate::grants::retry::retry_wait(&e, attempt);
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "zone call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        }
    }};
}
pub(super) use retrying;

/// A refresh is retried at once only if the zone cannot have acted on it: after a lost answer
/// the zone may have rotated the token, and sending it again would be a replay (PROTOCOL.md:
/// "never run two refreshes of one token at once"). The next acquisition tries again.
pub(super) fn refresh_retry(e: &ZoneError) -> bool {
    !e.answer_lost()
}

pub(super) fn retry_wait(e: &ZoneError, attempt: u32) -> Duration {
    e.retry_after()
        .unwrap_or(Duration::from_millis(250u64 << attempt.min(8)))
        .min(MAX_RETRY_WAIT)
}
