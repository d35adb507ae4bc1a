//! Unit tests of the grant registry: cache lifetimes, scopes, retries, backoff, `Send`.

use std::time::{Duration, Instant};

use secrecy::SecretString;

use super::cache::{Cached, DEFAULT_LIFETIME, MAX_LIFETIME, SlotState, lifetime};
use super::retry::{ATTEMPTS, MAX_RETRY_WAIT, check_backoff, note_failure, retry_wait, retrying};
use super::state::missing_scopes;
use super::*;
use crate::catalog::Provider;
use crate::zone::{ClientIdentity, Zone, ZoneError};

#[test]
fn absurd_lifetimes_are_capped_never_a_clock_overflow() {
    let forever = Some(Duration::from_secs(u64::MAX));
    let cached = Cached::new(SecretString::from("t"), vec![], forever);
    assert!(cached.fresh());
    assert_eq!(lifetime(forever), MAX_LIFETIME);
    assert_eq!(lifetime(None), DEFAULT_LIFETIME);
    let answer = br#"{"access_token":"a","token_type":"Bearer","expires_in":18446744073709551615}"#;
    let tokens = crate::zone::parse_token_response(answer).unwrap();
    assert!(Cached::new(tokens.access_token, vec![], tokens.expires_in).fresh());
}

#[test]
fn missing_scopes_lists_what_is_absent() {
    let req = vec!["read".to_string(), "write".to_string()];
    assert_eq!(
        missing_scopes(&req, &["read".into()]),
        vec!["write".to_string()]
    );
    assert!(missing_scopes(&req, &req).is_empty());
    assert!(missing_scopes(&[], &[]).is_empty());
}

async fn failing(calls: &std::sync::atomic::AtomicU32, e: ZoneError) -> Result<(), ZoneError> {
    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Err(e)
}

#[tokio::test]
async fn retries_transient_then_gives_up() {
    let calls = std::sync::atomic::AtomicU32::new(0);
    let unavailable = ZoneError::Unavailable {
        status: 503,
        retry_after: Some(0),
    };
    let result = retrying!(failing(&calls, unavailable.clone()));
    assert!(result.is_err());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), ATTEMPTS);
    let calls = std::sync::atomic::AtomicU32::new(0);
    let denied = ZoneError::Rejected {
        code: "insufficient_authorization".into(),
        description: None,
    };
    let _ = retrying!(failing(&calls, denied.clone()));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "permanent errors are not retried"
    );
    assert_eq!(
        retry_wait(
            &ZoneError::Unavailable {
                status: 429,
                retry_after: Some(999)
            },
            1
        ),
        MAX_RETRY_WAIT
    );
}

#[test]
fn backoff_grows_and_honours_retry_after() {
    let mut state = SlotState::default();
    note_failure(
        &mut state,
        &ZoneError::Unavailable {
            status: 429,
            retry_after: Some(30),
        },
    );
    let wait = state.not_before.unwrap() - Instant::now();
    assert!(wait > Duration::from_secs(20));
    assert!(check_backoff(&state, "x").is_err());
}

/// Compile-time guard: engine futures must stay `Send` (axum handlers and spawned tasks).
#[allow(dead_code)]
fn _send_check(g: &'static Grants, p: &'static Provider) {
    fn is_send<T: Send>(_: T) {}
    is_send(g.zone());
    is_send(g.identity());
    is_send(g.session_token());
    is_send(g.fetch_upstream(p));
}
#[allow(dead_code)]
fn _send_check2(z: &'static Zone, c: &'static ClientIdentity, t: &'static SecretString) {
    fn is_send<T: Send>(_: T) {}
    is_send(z.refresh(c, t, None));
    is_send(z.exchange(c, t, "x", &[]));
    is_send(z.exchange_code(c, "x", "x", t, "x"));
    is_send(z.revoke(c, t));
}
