//! The engine against real components: the oidc-provider zone emulator and the session's real
//! Secret Service (gnome-keyring). Run through `scripts/test`, which provides the keyring.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

mod common;

use broker::config::UpstreamStrategy;
use broker::vault::SecretKey;
use broker::{Broker, BrokerError, GrantStatus};
use common::{Setup, assert_clean, connect, open, setup, sign_in_and_connect};
use secrecy::ExposeSecret;
use serde_json::json;
use testkit::{ZoneEmulator, callback_prefix};

const FIXTURE: &str = "http://127.0.0.1:9/api";

/// Signed in, fixture resource added (requires `read write`) and connected.
async fn connected(zone: &ZoneEmulator, strategy: UpstreamStrategy) -> (Setup, Broker) {
    let s = setup(zone, strategy);
    let broker = sign_in_and_connect(&s, FIXTURE).await;
    (s, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_cold_requests_cause_one_exchange_then_cache() {
    let zone = ZoneEmulator::start().await;
    let (s, first) = connected(&zone, UpstreamStrategy::Exchange).await;
    let profile = first.vault().profile().to_string();
    first.shutdown().await;
    drop(first);

    // A new broker on the same home: session and upstream tokens are both cold.
    let broker = Arc::new(open(&s).await);
    let session_before = broker
        .vault()
        .get(SecretKey::Session)
        .await
        .unwrap()
        .unwrap();
    zone.reset_counters().await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let b = broker.clone();
            tokio::spawn(async move { b.upstream_token(FIXTURE).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap().token.expose_secret().to_string());
    }
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "all callers share one token"
    );
    let c = zone.counters().await;
    println!("zone round trips for 100 concurrent cold requests: {c}");
    assert_eq!(c["token"]["token_exchange"], 1, "exactly one exchange");
    assert_eq!(
        c["token"]["refresh_token"], 1,
        "exactly one session refresh"
    );

    // Cached reuse: no further zone traffic.
    for _ in 0..50 {
        broker.upstream_token(FIXTURE).await.unwrap();
    }
    assert_eq!(zone.token_calls("token_exchange").await, 1);

    // Rotation: the session refresh token was replaced in the keychain before use...
    let session_after = broker
        .vault()
        .get(SecretKey::Session)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        session_before.expose_secret(),
        session_after.expose_secret()
    );
    // ...and the rotated one works for the next cold start.
    drop(broker);
    let again = open(&s).await;
    again.upstream_token(FIXTURE).await.unwrap();
    assert_eq!(zone.token_calls("refresh_token").await, 2);
    let status = again.status().unwrap();
    assert_eq!(status.connections[0].status, GrantStatus::Connected);
    assert!(status.connections[0].last_used_at.is_some());

    testkit::assert_signed_in_and_connected(&profile, FIXTURE);
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn refresh_with_resource_strategy_rotates_the_connection_token() {
    let zone = ZoneEmulator::start().await;
    let (s, broker) = connected(&zone, UpstreamStrategy::RefreshWithResource).await;
    let key = SecretKey::Connection(FIXTURE.into());
    let before = broker.vault().get(key.clone()).await.unwrap().unwrap();
    zone.reset_counters().await;
    let token = broker.upstream_token(FIXTURE).await.unwrap();
    assert_eq!(token.scopes, vec!["read".to_string(), "write".to_string()]);
    let c = zone.counters().await;
    assert_eq!(c["token"]["token_exchange"], 0);
    assert_eq!(c["token_by_resource"][FIXTURE]["refresh_token"], 1);
    let after = broker.vault().get(key).await.unwrap().unwrap();
    assert_ne!(
        before.expose_secret(),
        after.expose_secret(),
        "rotated token persisted"
    );
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn narrowed_scopes_need_reconnect_and_reconnect_fixes_it() {
    let zone = ZoneEmulator::start().await;
    let (s, broker) = connected(&zone, UpstreamStrategy::Exchange).await;
    broker.upstream_token(FIXTURE).await.unwrap();
    // A fresh broker: nothing cached, so the next acquisition meets the narrowed grant.
    broker.shutdown().await;
    drop(broker);
    let broker = open(&s).await;
    zone.control("narrow", json!({"resource": FIXTURE, "scopes": ["read"]}))
        .await;
    let err = broker.upstream_token(FIXTURE).await.unwrap_err();
    assert!(matches!(err, BrokerError::NeedsReconnect { .. }), "{err}");
    assert!(err.to_string().contains("reconnect"), "{err}");
    let status = broker.status().unwrap();
    assert_eq!(status.connections[0].status, GrantStatus::NeedsReconnect);
    // No silent retry while the user has not acted.
    zone.reset_counters().await;
    assert!(broker.upstream_token(FIXTURE).await.is_err());
    assert_eq!(zone.token_calls("token_exchange").await, 0);

    connect(&broker, s.port, FIXTURE).await.unwrap();
    assert_eq!(
        broker.status().unwrap().connections[0].status,
        GrantStatus::Connected
    );
    assert!(
        broker.status().unwrap().connections[0]
            .last_used_at
            .is_some(),
        "a reconnect keeps the history"
    );
    let token = broker.upstream_token(FIXTURE).await.unwrap();
    assert!(token.scopes.contains(&"write".to_string()));
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn unconnected_or_disconnected_resource_needs_reconnect() {
    let zone = ZoneEmulator::start().await;
    let (s, broker) = connected(&zone, UpstreamStrategy::Exchange).await;
    // Never connected in the broker: a typed refusal without zone traffic.
    broker
        .add_resource("http://127.0.0.1:9/other", None, &[], &[])
        .unwrap();
    let err = broker
        .upstream_token("http://127.0.0.1:9/other")
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::NotConnected { .. }), "{err}");
    // The typed failure names the identifier, so a shell can offer "connect <resource>".
    let failure = broker::api::Failure::from(&err);
    assert_eq!(failure.code, broker::ErrorCode::NotConnected);
    assert_eq!(
        failure.resource.as_deref(),
        Some("http://127.0.0.1:9/other")
    );
    // Disconnected at the zone: insufficient_authorization → needs_reconnect.
    zone.control("disconnect", json!({"resource": FIXTURE}))
        .await;
    let err = broker.upstream_token(FIXTURE).await.unwrap_err();
    assert!(matches!(err, BrokerError::NeedsReconnect { .. }), "{err}");
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn transient_zone_failures_retry_and_never_need_reconnect() {
    let zone = ZoneEmulator::start().await;
    let (s, broker) = connected(&zone, UpstreamStrategy::Exchange).await;

    // 503 once, then recovery inside the same acquisition.
    zone.reset_counters().await;
    zone.control("fail", json!({"count": 1, "status": 503}))
        .await;
    broker.upstream_token(FIXTURE).await.unwrap();
    assert_eq!(
        zone.token_calls("token_exchange").await,
        1,
        "the 503 was answered before counting"
    );
    assert_eq!(
        broker.status().unwrap().connections[0].status,
        GrantStatus::Connected
    );

    // 429 with Retry-After on a cold broker: honoured, then success.
    let cold = {
        broker.shutdown().await;
        drop(broker);
        open(&s).await
    };
    zone.control("fail", json!({"count": 1, "status": 429, "retry_after": 1}))
        .await;
    let started = std::time::Instant::now();
    cold.upstream_token(FIXTURE).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );

    // Zone keeps failing: the grant shows `error`, not `needs_reconnect`.
    let cold2 = open(&s).await;
    zone.control("fail", json!({"count": 10, "status": 503}))
        .await;
    let err = cold2.upstream_token(FIXTURE).await.unwrap_err();
    assert!(matches!(err, BrokerError::Zone(_)), "{err}");
    let status = cold2.status().unwrap();
    assert_eq!(status.connections[0].status, GrantStatus::Error);
    assert!(
        status.connections[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("503")
    );
    // Backoff: the next call fails fast without touching the zone.
    let err = cold2.upstream_token(FIXTURE).await.unwrap_err();
    assert!(matches!(err, BrokerError::Backoff { .. }), "{err}");
    zone.control("fail", json!({"count": 0, "status": 503}))
        .await;
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn zone_down_is_an_error_state_not_a_reconnect() {
    let zone = ZoneEmulator::start().await;
    let (s, broker) = connected(&zone, UpstreamStrategy::Exchange).await;
    let issued = zone.issued().await;
    broker.shutdown().await;
    drop(broker);
    zone.stop().await;
    let cold = open(&s).await;
    let err = cold.upstream_token(FIXTURE).await.unwrap_err();
    assert!(matches!(err, BrokerError::Zone(_)), "{err}");
    assert_ne!(
        cold.status().unwrap().connections[0].status,
        GrantStatus::NeedsReconnect
    );
    testkit::assert_no_leak(&issued, s.home.path(), &[]);
}

#[tokio::test]
async fn tampered_state_and_wrong_iss_are_refused() {
    let zone = ZoneEmulator::start().await;
    let s = setup(&zone, UpstreamStrategy::Exchange);
    let broker = open(&s).await;
    let round = broker.begin_login().await.unwrap();
    let url = round.url.to_string();
    let complete = broker.complete(round, Duration::from_secs(30));
    let attack = async {
        let callback = testkit::authorize_until_callback(&url, &callback_prefix(s.port)).await;
        let with = |key: &str, value: &str| {
            let mut u = callback.clone();
            let pairs: Vec<(String, String)> = callback
                .query_pairs()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        if k == key {
                            value.to_string()
                        } else {
                            v.to_string()
                        },
                    )
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
            u
        };
        let (status, page) = testkit::deliver(with("state", "forged").as_str()).await;
        assert_eq!(status, 400);
        assert!(page.contains("unknown, expired or already used"), "{page}");
        let (status, page) = testkit::deliver(with("iss", "https://evil.example").as_str()).await;
        assert_eq!(status, 400);
        assert!(page.contains("not from the configured zone"), "{page}");
        // The genuine redirect arrives too late: its state was consumed by the refusal.
        assert_eq!(testkit::deliver(callback.as_str()).await.0, 400);
    };
    let (result, ()) = tokio::join!(complete, attack);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("issuer"), "{err}");
    assert_eq!(broker.status().unwrap().session, "signed_out");
}

#[tokio::test]
async fn bad_issuer_document_is_refused() {
    let zone = ZoneEmulator::start().await;
    let s = setup(&zone, UpstreamStrategy::Exchange);
    zone.control("discovery", json!({"issuer": "http://elsewhere.example"}))
        .await;
    let broker = open(&s).await;
    let err = broker.begin_login().await.unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::Zone(broker::zone::ZoneError::IssuerMismatch { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn revoke_and_logout_wipe_the_keychain() {
    let zone = ZoneEmulator::start().await;
    let (s, broker) = connected(&zone, UpstreamStrategy::Exchange).await;
    let profile = broker.vault().profile().to_string();
    broker.upstream_token(FIXTURE).await.unwrap();
    zone.reset_counters().await;

    broker.revoke(FIXTURE).await.unwrap();
    assert_eq!(zone.counters().await["revocation"], 1);
    assert!(
        broker
            .vault()
            .get(SecretKey::Connection(FIXTURE.into()))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        broker.status().unwrap().connections[0].status,
        GrantStatus::Revoked
    );
    let err = broker.upstream_token(FIXTURE).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::NotConnected { .. }),
        "revoked is final: {err}"
    );
    assert!(
        !testkit::keychain_entries(&profile)
            .iter()
            .any(|e| e.contains("/connection/"))
    );

    broker.logout().await.unwrap();
    assert!(
        broker
            .vault()
            .get(SecretKey::Session)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(broker.status().unwrap().session, "signed_out");
    assert!(testkit::keychain_entries(&profile).is_empty());
    let err = broker.begin_connect(FIXTURE).await.unwrap_err();
    assert!(matches!(err, BrokerError::NotSignedIn), "{err}");
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn deep_link_redirects_complete_a_round() {
    let zone = ZoneEmulator::start().await;
    let mut s = setup(&zone, UpstreamStrategy::Exchange);
    s.config.settings.broker.redirect = broker::config::RedirectMode::DeepLink;
    s.config.save().unwrap();
    let broker = open(&s).await;
    let round = broker.begin_login().await.unwrap();
    assert!(
        round.url.as_str().contains("cloud.keycard.broker"),
        "{}",
        round.url
    );
    let url = round.url.to_string();
    let complete = broker.complete(round, Duration::from_secs(30));
    let browser = async {
        // The OS would hand this link to the app; the app hands it to the engine.
        let link =
            testkit::authorize_until_callback(&url, broker::config::DEEP_LINK_REDIRECT).await;
        assert!(
            broker
                .deliver_deep_link("https://evil.example/callback?code=x")
                .is_err()
        );
        let message = broker.deliver_deep_link(link.as_str()).unwrap();
        assert!(message.contains("close this tab"), "{message}");
        // Single use, like the loopback route.
        assert!(broker.deliver_deep_link(link.as_str()).is_err());
    };
    let (done, ()) = tokio::join!(complete, browser);
    done.unwrap();
    assert_eq!(broker.status().unwrap().session, "signed_in");
    assert_clean(&zone, &s).await;
}

#[tokio::test]
async fn the_session_is_pinned_to_its_resource_and_setup_refusals_keep_it() {
    let zone = ZoneEmulator::start().await;
    let api = "http://127.0.0.1:9/api";
    let (s, broker) = connected(&zone, UpstreamStrategy::Exchange).await;
    let pinned = format!("http://localhost:{}/mcp", s.port);
    assert_eq!(
        broker.status().unwrap().resource.as_deref(),
        Some(pinned.as_str())
    );
    broker.shutdown().await;
    drop(broker);

    // Another port (a setting): the next broker refreshes the session for the pinned identifier.
    let mut moved = s.config.clone();
    moved.settings.broker.port = testkit::free_port();
    let broker = Broker::open(moved.clone()).await.unwrap();
    broker
        .check(api)
        .await
        .expect("a port change keeps the sign-in");
    assert_eq!(broker.status().unwrap().session, "signed_in");
    broker.shutdown().await;
    drop(broker);

    // The zone refuses the identifier (a console change): invalid_target is a set-up problem
    // that says what to change, keeps the sign-in, and is not retried in a loop.
    let broker = Broker::open(moved.clone()).await.unwrap();
    zone.reset_counters().await;
    zone.control(
        "fail",
        json!({"endpoint": "token", "count": 3, "status": 400, "error": "invalid_target"}),
    )
    .await;
    for _ in 0..3 {
        match broker.check(api).await {
            Err(BrokerError::ZoneSetup { code, fix }) => {
                assert_eq!(code, "invalid_target");
                assert!(fix.contains(&pinned), "{fix}");
                assert!(fix.contains("Keycard console"), "{fix}");
            }
            other => panic!("expected a set-up refusal, got {other:?}"),
        }
    }
    let status = broker.status().unwrap();
    assert_eq!(status.session, "signed_in", "the sign-in is kept");
    assert_eq!(
        status.connections[0].status,
        GrantStatus::Connected,
        "a session set-up problem is not the connection's"
    );
    // No backoff hides the fix: the next request after the zone accepts again works at once.
    broker
        .check(api)
        .await
        .expect("fixed set-up: the same sign-in works");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_zone_that_names_no_scope_gives_no_blank_scope() {
    let zone = ZoneEmulator::start().await;
    let s = setup(&zone, UpstreamStrategy::Exchange);
    let broker = open(&s).await;
    common::login(&broker, s.port).await;
    broker
        .add_resource("http://127.0.0.1:9/plain", None, &[], &[])
        .unwrap();
    for mode in ["empty", "omit"] {
        zone.control("scope-field", serde_json::json!({"mode": mode}))
            .await;
        connect(&broker, s.port, "http://127.0.0.1:9/plain")
            .await
            .unwrap();
        let status = broker.status().unwrap();
        assert!(
            status.connections[0].scopes.is_empty(),
            "{mode}: {status:?}"
        );
        let info = broker.check("http://127.0.0.1:9/plain").await.unwrap();
        assert!(info.scopes.is_empty(), "{mode}: {info:?}");
    }
    broker.shutdown().await;
}
