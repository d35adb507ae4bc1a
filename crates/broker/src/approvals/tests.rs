//! Unit tests of the approval queue: decisions, timeouts (on a paused clock), standing
//! allowances (`standing_tests`), cancellation, bounds (`limits_tests`) and the events the
//! window and tray follow.
//!
//! Most tests poll a waiting call by hand (`poll_once`) instead of spawning it, so nothing
//! runs unless the test says so and a paused clock never moves by itself.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::advance;

use super::*;

pub(super) fn setup() -> (Approvals, broadcast::Receiver<Event>) {
    let events = Events::default();
    let rx = events.subscribe();
    (Approvals::new(events, DEFAULT_TIMEOUT), rx)
}

pub(super) fn ask<'a>(client: &'a str, resource: &'a str, method: &'a str) -> Ask<'a> {
    Ask {
        client,
        client_name: "Claude Code",
        resource,
        method,
        url: "https://api.github.com/repos/o/r/issues?state=open&access_token=s3cret#x",
        body: br#"{"title":"hi","labels":["bug"]}"#,
        rule: "github: writes ask",
    }
}

/// Polls once: `Some` when the wait is already over.
pub(super) async fn poll_once<F: Future>(mut fut: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Whether this call waits for the user (rather than being answered at once). The call is
/// dropped again, which takes it out of the queue.
pub(super) async fn asks(approvals: &Approvals, ask: Ask<'_>) -> bool {
    let before = approvals.pending().len();
    let mut call = pin!(approvals.ask(ask));
    poll_once(call.as_mut()).await.is_none() && approvals.pending().len() == before + 1
}

/// The answer when the call needs no wait (a standing allowance, a refusal); `None`, and the
/// call dropped again, when it waits.
pub(super) async fn at_once(approvals: &Approvals, ask: Ask<'_>) -> Option<Answer> {
    poll_once(pin!(approvals.ask(ask))).await
}

/// Grants "allow for 1 hour" through a real decision.
pub(super) async fn allow_for_an_hour(approvals: &Approvals, ask: Ask<'_>, by: DecidedBy) {
    let mut call = pin!(approvals.ask(ask));
    assert!(poll_once(call.as_mut()).await.is_none());
    let id = approvals.pending().last().unwrap().id.clone();
    approvals.decide(&id, Verdict::AllowForAnHour, by).unwrap();
    assert!(matches!(
        call.await,
        Answer::Approved {
            standing: false,
            ..
        }
    ));
}

pub(super) fn drain(rx: &mut broadcast::Receiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        out.push(event);
    }
    out
}

/// The events as short words: "requested", or the outcome of a resolution.
pub(super) fn words(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::ApprovalRequested { .. } => "requested".to_string(),
            Event::ApprovalResolved { outcome, .. } => outcome.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn not_found(result: Result<PendingCall, ApprovalError>) -> bool {
    matches!(result, Err(ApprovalError::NotFound(_)))
}

#[tokio::test]
async fn allow_once_releases_exactly_one_waiting_call() {
    let (approvals, mut rx) = setup();
    let mut first = pin!(approvals.ask(ask("a", "gh", "POST")));
    let mut second = pin!(approvals.ask(ask("a", "gh", "POST")));
    assert!(poll_once(first.as_mut()).await.is_none());
    assert!(poll_once(second.as_mut()).await.is_none());
    let waiting = approvals.pending();
    assert_eq!(waiting.len(), 2);
    let decided = approvals
        .decide(&waiting[0].id, Verdict::AllowOnce, DecidedBy::Window)
        .unwrap();
    assert_eq!(decided, waiting[0]);
    assert!(matches!(
        first.await,
        Answer::Approved {
            by: DecidedBy::Window,
            standing: false,
            ..
        }
    ));
    assert!(poll_once(second.as_mut()).await.is_none(), "still waiting");
    assert_eq!(approvals.pending(), vec![waiting[1].clone()]);
    assert!(
        asks(&approvals, ask("a", "gh", "POST")).await,
        "once is once"
    );
    assert_eq!(
        words(&drain(&mut rx)),
        [
            "requested",
            "requested",
            "approved",
            "requested",
            "cancelled"
        ]
    );
}

#[tokio::test]
async fn deny_answers_denied_and_by_whom() {
    let (approvals, mut rx) = setup();
    let mut call = pin!(approvals.ask(ask("a", "gh", "DELETE")));
    assert!(poll_once(call.as_mut()).await.is_none());
    let id = approvals.pending()[0].id.clone();
    approvals
        .decide(&id, Verdict::Deny, DecidedBy::Cli)
        .unwrap();
    assert!(matches!(
        call.await,
        Answer::Denied {
            by: DecidedBy::Cli,
            ..
        }
    ));
    assert!(approvals.pending().is_empty());
    assert_eq!(words(&drain(&mut rx)), ["requested", "denied"]);
}

#[tokio::test(start_paused = true)]
async fn timeout_answers_timed_out_and_leaves_the_queue() {
    let (approvals, mut rx) = setup();
    let mut call = pin!(approvals.ask(ask("a", "gh", "POST")));
    assert!(poll_once(call.as_mut()).await.is_none());
    let id = approvals.pending()[0].id.clone();
    advance(DEFAULT_TIMEOUT - Duration::from_secs(1)).await;
    assert!(poll_once(call.as_mut()).await.is_none());
    assert_eq!(approvals.pending().len(), 1);
    advance(Duration::from_secs(1)).await;
    // Past its deadline a call is no longer shown or decidable, even before its wait ends.
    assert!(approvals.pending().is_empty());
    assert!(not_found(approvals.decide(
        &id,
        Verdict::AllowOnce,
        DecidedBy::Window
    )));
    assert_eq!(
        call.await,
        Answer::TimedOut {
            waited: DEFAULT_TIMEOUT
        }
    );
    assert_eq!(words(&drain(&mut rx)), ["requested", "timed_out"]);
}

#[tokio::test]
async fn unknown_and_already_decided_ids_are_not_found() {
    let (approvals, _rx) = setup();
    assert!(not_found(approvals.decide(
        "nope",
        Verdict::Deny,
        DecidedBy::Cli
    )));
    let mut call = pin!(approvals.ask(ask("a", "gh", "POST")));
    assert!(poll_once(call.as_mut()).await.is_none());
    let id = approvals.pending()[0].id.clone();
    approvals
        .decide(&id, Verdict::Deny, DecidedBy::Window)
        .unwrap();
    assert!(not_found(approvals.decide(
        &id,
        Verdict::AllowOnce,
        DecidedBy::Tray
    )));
    assert!(
        matches!(call.await, Answer::Denied { .. }),
        "first one wins"
    );
}

#[tokio::test]
async fn a_dropped_wait_leaves_the_queue_and_says_so() {
    let (approvals, mut rx) = setup();
    let id = {
        let mut call = pin!(approvals.ask(ask("a", "gh", "POST")));
        assert!(poll_once(call.as_mut()).await.is_none());
        approvals.pending()[0].id.clone()
    };
    assert!(approvals.pending().is_empty());
    assert!(not_found(approvals.decide(
        &id,
        Verdict::AllowOnce,
        DecidedBy::Window
    )));
    let events = drain(&mut rx);
    assert_eq!(words(&events), ["requested", "cancelled"]);
    assert!(matches!(&events[1], Event::ApprovalResolved { id: i, .. } if *i == id));

    // The same through a task that is aborted, as when the agent's connection closes.
    let task = tokio::spawn({
        let approvals = approvals.clone();
        async move { approvals.ask(ask("a", "gh", "POST")).await }
    });
    let Ok(Event::ApprovalRequested { call }) = rx.recv().await else {
        panic!("no request event");
    };
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(approvals.pending().is_empty());
    let resolved = rx.recv().await.unwrap();
    assert_eq!(
        resolved,
        Event::ApprovalResolved {
            id: call.id,
            outcome: "cancelled".into()
        }
    );
}

#[tokio::test]
async fn cancel_all_cancels_every_wait_and_keeps_allowances() {
    let (approvals, mut rx) = setup();
    allow_for_an_hour(&approvals, ask("a", "gh", "POST"), DecidedBy::Cli).await;
    drain(&mut rx);
    let mut one = pin!(approvals.ask(ask("a", "slack", "POST")));
    let mut two = pin!(approvals.ask(ask("b", "gh", "POST")));
    assert!(poll_once(one.as_mut()).await.is_none());
    assert!(poll_once(two.as_mut()).await.is_none());
    approvals.cancel_all();
    assert!(approvals.pending().is_empty());
    assert!(matches!(one.await, Answer::Cancelled { .. }));
    assert!(matches!(two.await, Answer::Cancelled { .. }));
    assert_eq!(
        words(&drain(&mut rx)),
        ["requested", "requested", "cancelled", "cancelled"]
    );
    let answer = at_once(&approvals, ask("a", "gh", "POST")).await;
    assert!(matches!(
        answer,
        Some(Answer::Approved { standing: true, .. })
    ));
}

#[tokio::test]
async fn events_carry_the_call_then_its_outcome() {
    let (approvals, mut rx) = setup();
    let mut call = pin!(approvals.ask(ask("a", "gh", "post")));
    assert!(poll_once(call.as_mut()).await.is_none());
    let Ok(Event::ApprovalRequested { call: shown }) = rx.try_recv() else {
        panic!("no request event");
    };
    assert_eq!(approvals.pending(), vec![shown.clone()]);
    assert_eq!(shown.client, "a");
    assert_eq!(shown.client_name, "Claude Code");
    assert_eq!(shown.resource, "gh");
    assert_eq!(shown.method, "POST");
    assert_eq!(
        shown.url,
        "https://api.github.com/repos/o/r/issues?state=…&access_token=…"
    );
    assert_eq!(
        shown.body_preview.as_deref(),
        Some("{\n  \"title\": \"hi\",\n  \"labels\": [\n    \"bug\"\n  ]\n}")
    );
    assert_eq!(shown.rule, "github: writes ask");
    assert_eq!(
        (shown.expires_at - shown.asked_at).to_std().unwrap(),
        DEFAULT_TIMEOUT
    );
    assert_eq!(shown.id.len(), 16, "96 bits");
    assert!(
        shown
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    approvals
        .decide(&shown.id, Verdict::AllowOnce, DecidedBy::Tray)
        .unwrap();
    call.await;
    let resolved = rx.try_recv().unwrap();
    let json = serde_json::to_value(&resolved).unwrap();
    assert_eq!(json["type"], "approval_resolved");
    assert_eq!(json["id"], shown.id.as_str());
    assert_eq!(json["outcome"], "approved");
    let requested = serde_json::to_value(Event::ApprovalRequested { call: shown }).unwrap();
    assert_eq!(requested["type"], "approval_requested");
    assert_eq!(requested["call"]["method"], "POST");
    assert!(rx.try_recv().is_err(), "nothing more");
}

#[test]
fn approvals_are_shared_across_threads_and_the_wait_is_send() {
    fn shared<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let approvals = Approvals::new(Events::default(), DEFAULT_TIMEOUT);
    shared(&approvals);
    send(&approvals.ask(ask("a", "gh", "POST")));
}

#[test]
fn verdicts_and_deciders_are_snake_case_words() {
    let words = |v: serde_json::Value| v.as_str().unwrap().to_string();
    assert_eq!(
        words(serde_json::to_value(Verdict::AllowForAnHour).unwrap()),
        "allow_for_an_hour"
    );
    assert_eq!(
        words(serde_json::to_value(Verdict::AllowOnce).unwrap()),
        "allow_once"
    );
    assert_eq!(words(serde_json::to_value(DecidedBy::Cli).unwrap()), "cli");
    let back: Verdict = serde_json::from_str("\"deny\"").unwrap();
    assert_eq!(back, Verdict::Deny);
}
