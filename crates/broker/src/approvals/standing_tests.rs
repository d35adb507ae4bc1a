//! Unit tests of "allow for 1 hour": what a standing allowance covers, for how long, and how
//! it is forgotten.

use std::pin::pin;
use std::time::Duration;

use tokio::time::advance;

use super::tests::{allow_for_an_hour, ask, asks, at_once, drain, poll_once, setup, words};
use super::*;

#[tokio::test(start_paused = true)]
async fn allow_for_an_hour_covers_the_same_agent_provider_and_class_for_an_hour() {
    let (approvals, mut rx) = setup();
    allow_for_an_hour(&approvals, ask("a", "gh", "POST"), DecidedBy::Tray).await;
    drain(&mut rx);
    let covered = Some(Answer::Approved {
        by: DecidedBy::Tray,
        waited: Duration::ZERO,
        standing: true,
    });
    for method in ["PUT", "delete", "POST"] {
        assert_eq!(at_once(&approvals, ask("a", "gh", method)).await, covered);
    }
    assert!(drain(&mut rx).is_empty(), "no pending entry, no event");
    assert!(
        asks(&approvals, ask("b", "gh", "POST")).await,
        "another agent"
    );
    assert!(
        asks(&approvals, ask("a", "slack", "POST")).await,
        "another provider"
    );
    assert!(asks(&approvals, ask("a", "gh", "GET")).await, "a read");
    advance(STANDING_FOR - Duration::from_secs(1)).await;
    assert_eq!(at_once(&approvals, ask("a", "gh", "PATCH")).await, covered);
    advance(Duration::from_secs(1)).await;
    assert!(
        asks(&approvals, ask("a", "gh", "POST")).await,
        "an hour is over"
    );
}

#[tokio::test]
async fn a_read_allowance_does_not_cover_writes() {
    let (approvals, _rx) = setup();
    allow_for_an_hour(&approvals, ask("a", "gh", "GET"), DecidedBy::Window).await;
    for method in ["HEAD", "options", "GET"] {
        let answer = at_once(&approvals, ask("a", "gh", method)).await;
        assert!(matches!(
            answer,
            Some(Answer::Approved { standing: true, .. })
        ));
    }
    assert!(asks(&approvals, ask("a", "gh", "POST")).await);
}

#[tokio::test]
async fn allow_for_an_hour_releases_the_waiting_calls_it_covers() {
    let (approvals, mut rx) = setup();
    let mut post = pin!(approvals.ask(ask("a", "gh", "POST")));
    let mut put = pin!(approvals.ask(ask("a", "gh", "PUT")));
    let mut read = pin!(approvals.ask(ask("a", "gh", "GET")));
    let mut other = pin!(approvals.ask(ask("b", "gh", "POST")));
    for call in [post.as_mut(), put.as_mut()] {
        assert!(poll_once(call).await.is_none());
    }
    assert!(poll_once(read.as_mut()).await.is_none());
    assert!(poll_once(other.as_mut()).await.is_none());
    let id = approvals.pending()[0].id.clone();
    approvals
        .decide(&id, Verdict::AllowForAnHour, DecidedBy::Window)
        .unwrap();
    assert!(matches!(
        post.await,
        Answer::Approved {
            standing: false,
            ..
        }
    ));
    assert!(matches!(
        put.await,
        Answer::Approved {
            by: DecidedBy::Window,
            standing: true,
            ..
        }
    ));
    assert!(poll_once(read.as_mut()).await.is_none());
    assert!(poll_once(other.as_mut()).await.is_none());
    assert_eq!(approvals.pending().len(), 2);
    let events = words(&drain(&mut rx));
    assert_eq!(events[4..], ["approved", "approved"]);
}

#[tokio::test]
async fn forget_drops_one_agents_allowances_or_all() {
    let (approvals, _rx) = setup();
    allow_for_an_hour(&approvals, ask("a", "gh", "POST"), DecidedBy::Window).await;
    allow_for_an_hour(&approvals, ask("b", "gh", "POST"), DecidedBy::Window).await;
    approvals.forget(Some("a"));
    assert!(asks(&approvals, ask("a", "gh", "POST")).await);
    let answer = at_once(&approvals, ask("b", "gh", "POST")).await;
    assert!(matches!(
        answer,
        Some(Answer::Approved { standing: true, .. })
    ));
    approvals.forget(None);
    assert!(asks(&approvals, ask("b", "gh", "POST")).await);
}
