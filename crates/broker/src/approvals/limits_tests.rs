//! Unit tests of the bounds: how many calls may wait, and for how long.

use std::collections::HashSet;
use std::pin::pin;
use std::time::Duration;

use tokio::time::advance;

use super::tests::{ask, asks, at_once, drain, poll_once, setup};
use super::*;

#[tokio::test]
async fn waiting_calls_are_bounded_per_agent_and_overall() {
    let (approvals, mut rx) = setup();
    let clients: Vec<String> = (0..MAX_WAITING).map(|i| format!("c{i}")).collect();
    let mut calls = Vec::new();
    for _ in 0..MAX_WAITING_PER_CLIENT {
        let mut call = Box::pin(approvals.ask(ask("a", "gh", "POST")));
        assert!(poll_once(call.as_mut()).await.is_none());
        calls.push(call);
    }
    let refused = at_once(&approvals, ask("a", "gh", "POST")).await;
    assert!(
        matches!(&refused, Some(Answer::Refused { reason }) if reason.contains("32 calls of this agent")),
        "{refused:?}"
    );
    for client in &clients[..MAX_WAITING - MAX_WAITING_PER_CLIENT] {
        let mut call = Box::pin(approvals.ask(ask(client, "gh", "POST")));
        assert!(poll_once(call.as_mut()).await.is_none());
        calls.push(call);
    }
    let waiting = approvals.pending();
    assert_eq!(waiting.len(), MAX_WAITING);
    let ids: HashSet<&str> = waiting.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), MAX_WAITING, "ids are unique");
    let refused = at_once(&approvals, ask("z", "gh", "POST")).await;
    assert!(
        matches!(refused, Some(Answer::Refused { .. })),
        "{refused:?}"
    );
    let requested = drain(&mut rx);
    assert_eq!(
        requested.len(),
        MAX_WAITING,
        "refusals show the user nothing"
    );
    calls.clear();
    assert!(approvals.pending().is_empty());
    assert!(asks(&approvals, ask("a", "gh", "POST")).await, "room again");
}

#[tokio::test(start_paused = true)]
async fn set_timeout_applies_to_new_calls_and_is_bounded() {
    let (approvals, _rx) = setup();
    approvals.set_timeout(Duration::from_secs(5));
    let mut call = pin!(approvals.ask(ask("a", "gh", "POST")));
    assert!(poll_once(call.as_mut()).await.is_none());
    let shown = approvals.pending()[0].clone();
    assert_eq!((shown.expires_at - shown.asked_at).num_seconds(), 5);
    advance(Duration::from_secs(5)).await;
    assert_eq!(
        call.await,
        Answer::TimedOut {
            waited: Duration::from_secs(5)
        }
    );
    approvals.set_timeout(Duration::MAX);
    let mut call = pin!(approvals.ask(ask("a", "gh", "POST")));
    assert!(poll_once(call.as_mut()).await.is_none());
    let shown = approvals.pending()[0].clone();
    assert_eq!(
        (shown.expires_at - shown.asked_at).to_std().unwrap(),
        MAX_TIMEOUT
    );
}
