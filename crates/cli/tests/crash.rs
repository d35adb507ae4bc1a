//! kill -9 of the broker at random points of a refresh rotation, 100 trials for each kind of
//! rotation (the session's refresh token; a connection's under `refresh-with-resource`): after
//! every kill the next start still works, without a new sign-in or connect.
//!
//! The zone is the emulator with a refresh-token reuse interval, as production authorization
//! servers offer: a kill after the zone rotated the token but before the keychain holds the new
//! one leaves the broker with the previous token, and only the zone can accept it again (with
//! strict rotation that is a replay, PROTOCOL.md). Each rotation's answer is held back 40 ms
//! after the zone did the work, so a good share of the kills land in exactly that window; the
//! test counts them and requires some.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Home;
use serde_json::json;
use testkit::ZoneEmulator;

const FIXTURE: &str = "http://127.0.0.1:9/api";
const TRIALS: usize = 100;

/// xorshift64: random kill points without another dependency; the seed is printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

async fn rotations(zone: &ZoneEmulator) -> u64 {
    zone.token_calls("refresh_token").await
}

async fn trials(strategy: &str) {
    let zone = ZoneEmulator::start().await;
    let home = Home::new();
    home.ok(&[
        "init",
        "--zone",
        &zone.issuer,
        "--port",
        &home.port.to_string(),
        "--strategy",
        strategy,
    ])
    .await;
    assert_eq!(home.round(&["login", "--no-browser"]).await.code, 0);
    home.ok(&["resources", "add", FIXTURE, "--name", "Fixture API"])
        .await;
    assert_eq!(
        home.round(&["connect", FIXTURE, "--no-browser"]).await.code,
        0
    );
    zone.control("rotation", json!({"reuse_secs": 600})).await;

    // How long one cold `check` takes (process start to exit): kills are spread over it.
    let started = Instant::now();
    home.ok(&["check", FIXTURE]).await;
    let span = started.elapsed().as_millis() as u64 + 40;

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let (mut in_window, mut finished, mut before_rotation) = (0, 0, 0);
    for trial in 0..TRIALS {
        zone.control("delay", json!({"ms": 40, "count": 1, "after": true}))
            .await;
        let before = rotations(&zone).await;
        let mut child = home
            .command(&["check", FIXTURE])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.below(span))).await;
        let done_early = child.try_wait().unwrap().is_some();
        child.start_kill().ok();
        child.wait().await.unwrap();
        let rotated = rotations(&zone).await > before;
        match (done_early, rotated) {
            (true, _) => finished += 1,
            (false, true) => in_window += 1,
            (false, false) => before_rotation += 1,
        }
        // Let a held-back answer go out before the next trial changes the delay.
        tokio::time::sleep(Duration::from_millis(45)).await;
        // The grant must still work from a fresh start: no new sign-in, no reconnect.
        let run = home.run(&["check", FIXTURE, "--json"]).await;
        assert_eq!(
            run.code,
            0,
            "trial {trial} (seed {seed}): the grant was lost after a kill: {}",
            common::one_line_error(&run)
        );
    }
    eprintln!(
        "{strategy}: {TRIALS} kills over {span} ms (seed {seed}): {before_rotation} before the \
         zone rotated, {in_window} after it rotated and before the broker finished, \
         {finished} after the broker finished; 0 grants lost"
    );
    assert!(
        in_window >= 5,
        "only {in_window} kills landed after the zone rotated: the test did not probe the window"
    );
    let status = home.status().await;
    assert_eq!(status["session"], "signed_in");
    assert_eq!(Home::connection(&status, FIXTURE)["status"], "connected");
    let issued = zone.issued().await;
    let transcript = home.transcript.lock().unwrap().clone();
    testkit::assert_no_leak(&issued, home.dir.path(), &[&transcript]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_session_rotation_loses_no_grant() {
    trials("exchange").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_connection_rotation_loses_no_grant() {
    trials("refresh-with-resource").await;
}
