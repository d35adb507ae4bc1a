//! Faults the broker must survive without losing a grant: a slow zone, the keychain locked
//! mid-run (also in the middle of a refresh rotation), and a full disk under the database.
//! Real zone emulator, real gnome-keyring, real tmpfs. Run through `scripts/test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use broker::config::UpstreamStrategy;
use broker::db::DbError;
use broker::vault::VaultError;
use broker::{BrokerError, GrantStatus};
use common::{assert_clean, open, setup, setup_with, sign_in_and_connect};
use serde_json::json;
use testkit::{Upstream, ZoneEmulator, lock_keychain, unlock_keychain};

const FIXTURE: &str = "http://127.0.0.1:9/api";

/// Calls until the backoff after a failure has passed; any other error fails the test.
async fn until_ok(broker: &broker::Broker, key: &str) -> broker::UpstreamToken {
    for _ in 0..240 {
        match broker.upstream_token(key).await {
            Ok(token) => return token,
            Err(BrokerError::Backoff { .. }) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => panic!("unexpected error while recovering: {e}"),
        }
    }
    panic!("no recovery within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_zone_times_out_without_replaying_and_recovers() {
    let zone = ZoneEmulator::start().await;
    let s = setup_with(
        &zone,
        UpstreamStrategy::Exchange,
        tempfile::tempdir().unwrap(),
        |z| z.timeout_secs = 1,
    );
    let first = sign_in_and_connect(&s, FIXTURE).await;
    first.shutdown().await;
    drop(first);
    // A reuse interval, as production authorization servers offer: the refresh the broker
    // gave up on is carried out by the zone after the broker stopped waiting.
    zone.control("rotation", json!({"reuse_secs": 120})).await;

    let cold = open(&s).await;
    zone.reset_counters().await;
    // The zone rotates, then its answer is slower than the broker's 1 s timeout.
    zone.control("delay", json!({"ms": 2500, "count": 1, "after": true}))
        .await;
    let err = tokio::time::timeout(Duration::from_secs(20), cold.upstream_token(FIXTURE))
        .await
        .expect("a slow zone never hangs a call")
        .unwrap_err();
    assert!(
        matches!(&err, BrokerError::Zone(e) if e.to_string().contains("timed out")),
        "{err}"
    );
    let status = cold.status().unwrap();
    assert_eq!(status.session, "signed_in", "a timeout is not a sign-out");
    assert_eq!(status.connections[0].status, GrantStatus::Error);
    // The broker did not send the token again (a replay of a token the zone has rotated).
    assert_eq!(
        zone.token_calls("refresh_token").await,
        1,
        "no retry after a lost answer"
    );

    let token = until_ok(&cold, FIXTURE).await;
    assert!(!secrecy::ExposeSecret::expose_secret(&token.token).is_empty());
    assert_eq!(
        cold.status().unwrap().connections[0].status,
        GrantStatus::Connected
    );
    let counters = zone.counters().await;
    assert_eq!(counters["refresh_reused"], 1, "{counters}");

    // An exchange (no rotation at stake) that times out is retried within the same call.
    let fresh = open(&s).await;
    fresh.upstream_token(FIXTURE).await.unwrap();
    zone.reset_counters().await;
    let cold2 = {
        fresh.shutdown().await;
        drop(fresh);
        open(&s).await
    };
    cold2.upstream_token(FIXTURE).await.unwrap(); // session refresh + exchange, undelayed
    assert_eq!(zone.token_calls("token_exchange").await, 1);
    assert_clean(&zone, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keychain_locked_mid_run_loses_no_grant() {
    if !testkit::private_keyring("keychain_locked_mid_run_loses_no_grant") {
        return;
    }
    let zone = ZoneEmulator::start().await;
    // Tokens the broker treats as stale two seconds after issue (it renews 60 s early).
    zone.control("ttl", json!({"access_token": 62, "exchanged": 62}))
        .await;
    let s = setup(&zone, UpstreamStrategy::Exchange);
    let broker = sign_in_and_connect(&s, FIXTURE).await;
    broker.upstream_token(FIXTURE).await.unwrap();
    zone.reset_counters().await;

    lock_keychain().await;
    // Cached tokens need no keychain: agents keep working.
    broker.upstream_token(FIXTURE).await.unwrap();
    // A new broker cannot start on a locked keychain, and says so.
    let refused = broker::Broker::open(s.config.clone()).await.unwrap_err();
    assert!(
        matches!(refused, BrokerError::Vault(VaultError::Locked(_))),
        "{refused}"
    );
    // Renewal needs the keychain: a typed error, and the grant is untouched.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let err = broker.upstream_token(FIXTURE).await.unwrap_err();
    assert!(
        matches!(err, BrokerError::Vault(VaultError::Locked(_))),
        "{err}"
    );
    assert!(err.to_string().contains("locked"), "{err}");
    let status = broker.status().unwrap();
    assert_eq!(status.session, "signed_in");
    assert_eq!(status.connections[0].status, GrantStatus::Connected);
    assert_eq!(zone.token_calls("refresh_token").await, 0, "nothing sent");

    unlock_keychain().await;
    broker.upstream_token(FIXTURE).await.unwrap();

    // Locked in the middle of a rotation: the zone has rotated the session's refresh token
    // and is about to answer when the keychain locks. The new token must not be lost.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    zone.control("delay", json!({"ms": 1500, "count": 1, "after": true}))
        .await;
    let pending = {
        let b = std::sync::Arc::new(broker);
        let task = {
            let b = b.clone();
            tokio::spawn(async move { b.upstream_token(FIXTURE).await })
        };
        tokio::time::sleep(Duration::from_millis(600)).await;
        lock_keychain().await;
        (b, task)
    };
    let (broker, task) = pending;
    let mut events = broker.subscribe();
    task.await
        .unwrap()
        .expect("the token the zone issued is used although the keychain refused the rotation");
    assert_eq!(
        broker.status().unwrap().keychain_pending,
        1,
        "status tells the user a renewed token waits for the keychain"
    );
    unlock_keychain().await;

    // The next renewal uses the rotated token held in memory (the zone rotates strictly:
    // the keychain's older one would be a replay) and stores it.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    broker.upstream_token(FIXTURE).await.unwrap();
    let counters = zone.counters().await;
    assert_eq!(
        counters["refresh_reused"], 0,
        "no replay needed: {counters}"
    );
    assert_eq!(broker.status().unwrap().keychain_pending, 0);
    let mut announced = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let broker::Event::KeychainPending { count } = event {
            announced.push(count);
        }
    }
    assert_eq!(
        announced,
        vec![1, 0],
        "the window hears when a token starts waiting and when the keychain took it"
    );
    broker.shutdown().await;
    drop(broker);

    // A fresh start reads the keychain alone: the grant survived without a new sign-in.
    let restarted = open(&s).await;
    restarted.upstream_token(FIXTURE).await.unwrap();
    assert_eq!(restarted.status().unwrap().session, "signed_in");
    assert_clean(&zone, &s).await;
}

/// How many `call_api` records the activity log holds (a query flushes the writer first).
fn audited_calls(broker: &broker::Broker) -> usize {
    broker
        .audit(&broker::audit::AuditFilter::default())
        .unwrap()
        .iter()
        .filter(|r| r.kind == broker::audit::ActivityKind::CallApi)
        .count()
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system refuses; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for size in [64 * 1024, 4096, 512, 1] {
            let chunk = vec![0u8; size];
            while file.write_all(&chunk).is_ok() {}
        }
        let err = file.write_all(&[0]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC expected: {err}");
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disk_loses_no_grant_and_no_activity() {
    let zone = ZoneEmulator::start().await;
    let upstream = Upstream::start(&zone).await;
    let disk = SmallDisk::mount(16);
    let home = tempfile::TempDir::new_in(disk.path()).unwrap();
    let s = setup_with(&zone, UpstreamStrategy::Exchange, home, |_| {});
    let api = upstream.api();
    let broker = sign_in_and_connect(&s, &api).await;
    let call = || broker::upstream::ApiRequest {
        method: "GET".into(),
        url: format!("{api}/items"),
        headers: None,
        body: None,
        resource: None,
    };
    let agent = broker::authz::Agent::static_client("agent-1");
    broker
        .set_access(
            &agent.key,
            &[("*".to_string(), broker::policy::Access::Read)],
        )
        .unwrap();
    let first = broker.call_api(&agent, call(), None).await.unwrap();
    assert_eq!(first.status, 200);
    let calls_before = audited_calls(&broker);
    assert_eq!(calls_before, 1);

    let filler = disk.fill();
    const CALLS: usize = 300;
    for _ in 0..CALLS {
        let answer = broker.call_api(&agent, call(), None).await.unwrap();
        assert_eq!(answer.status, 200, "agents keep working on a full disk");
    }
    let stored = audited_calls(&broker);
    assert!(
        stored < 1 + CALLS,
        "the full disk refused the activity log ({stored} stored): the test filled nothing"
    );
    // Reconnecting needs a database write: a clear, typed refusal; the grant is untouched.
    let err = common::connect(&broker, s.port, &api).await.unwrap_err();
    assert!(matches!(err, BrokerError::Db(DbError::Full)), "{err}");
    assert!(err.to_string().contains("disk"), "{err}");
    assert_eq!(
        broker.status().unwrap().connections[0].status,
        GrantStatus::Connected
    );

    std::fs::remove_file(filler).unwrap();
    // The writer retries once a second; a query flushes after that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored = audited_calls(&broker);
    assert_eq!(stored, 1 + CALLS, "no activity lost");
    common::connect(&broker, s.port, &api).await.unwrap();
    broker.shutdown().await;
    drop(broker);

    let restarted = open(&s).await;
    let answer = restarted.call_api(&agent, call(), None).await.unwrap();
    assert_eq!(answer.status, 200, "the grant survived the full disk");
    restarted.shutdown().await;
    assert_clean(&zone, &s).await;
}
