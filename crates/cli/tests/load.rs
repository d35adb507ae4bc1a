//! Load: 5 agent clients × 200 concurrent `call_api` while upstream tokens expire mid-run.
//! Zero errors, and exactly one zone round trip per expiry: every token acquisition in the
//! audit log matches one exchange at the zone, and no two happen inside one token's fresh window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Mcp, stack};
use serde_json::{Value, json};

const CLIENTS: usize = 5;
const CONCURRENCY: usize = 200;
const ROUNDS: usize = 3;
/// Exchanged tokens live 61 s; the broker renews 60 s early, so each is fresh for ~1 s.
const TTL: u64 = 61;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_clients_two_hundred_concurrent_calls_with_expiring_tokens() {
    let s = stack(None).await;
    let api = s.upstream.api();
    s.zone.control("ttl", json!({"exchanged": TTL})).await;
    let mut sessions = Vec::new();
    for i in 0..CLIENTS {
        let added: Value = serde_json::from_str(
            &s.home
                .ok(&["clients", "add", &format!("load-{i}"), "--json"])
                .await,
        )
        .unwrap();
        sessions.push(std::sync::Arc::new(
            Mcp::connect(&s.serving.url, added["token"].as_str().unwrap()).await,
        ));
    }
    s.zone.reset_counters().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mcp in &sessions {
        for _ in 0..CONCURRENCY {
            let mcp = mcp.clone();
            let url = format!("{api}/items");
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..ROUNDS {
                    let args = json!({"method": "GET", "url": url});
                    match mcp.try_tool("call_api", args).await {
                        Ok(r)
                            if r.structured_content
                                .as_ref()
                                .is_some_and(|c| c["status"] == 200) => {}
                        Ok(r) => failures.push(format!("{r:?}").chars().take(300).collect()),
                        Err(e) => failures.push(e.to_string()),
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                failures
            }));
        }
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let calls = CLIENTS * CONCURRENCY * ROUNDS;
    let exchanges = s.zone.token_calls("token_exchange").await;
    println!(
        "load: {calls} calls in {:.1} s ({:.0} calls/s), {exchanges} zone exchanges, {} failures",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );

    // One round trip per expiry: each acquisition in the audit log is one zone exchange...
    let audit: Value =
        serde_json::from_str(&s.home.ok(&["audit", "--limit", "100000", "--json"]).await).unwrap();
    let mut acquisitions: Vec<chrono::DateTime<chrono::Utc>> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "token" && r["resource"] == api.as_str() && r["outcome"] == "ok")
        .filter_map(|r| {
            r["at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        })
        .map(|t| t.with_timezone(&chrono::Utc))
        .filter(|t| {
            *t >= chrono::Utc::now()
                - chrono::Duration::from_std(elapsed + Duration::from_secs(1)).unwrap()
        })
        .collect();
    acquisitions.sort();
    assert_eq!(
        acquisitions.len() as u64,
        exchanges,
        "every zone exchange is one audited acquisition"
    );
    assert!(
        exchanges >= 2,
        "tokens expired mid-run ({exchanges} exchanges)"
    );
    // ...and none happened while the previous token was still fresh (~1 s window).
    for pair in acquisitions.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(900),
            "two exchanges {gap} apart"
        );
    }
    let calls_per_client: Value = serde_json::from_str(
        &s.home
            .ok(&["audit", "--client", "load-0", "--limit", "100000", "--json"])
            .await,
    )
    .unwrap();
    assert_eq!(
        calls_per_client
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "call_api")
            .count(),
        CONCURRENCY * ROUNDS
    );
}
