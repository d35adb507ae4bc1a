//! Consent rounds started by agents (the `connect` tool). An agent may ask as often as it likes;
//! the user is not flooded: one pending round per provider (asking again reuses it), a bound on
//! rounds pending at once, and a bound on how often the broker opens the browser.
//!
//! The agent never sees the authorize URL: it gets a link to the broker itself,
//! `/connect/<opaque id>`, which redirects the user's browser to the zone. So `state` and the
//! PKCE challenge never pass through the agent (or its logs), and it cannot cancel or race a
//! round by replaying them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use url::Url;

use crate::{Broker, BrokerError, RoundKind};

/// Path prefix of the links agents hand to the user.
pub const CONNECT_PATH: &str = "/connect";
/// Rounds agents may have pending at once (each is one provider).
pub const MAX_PENDING: usize = 4;
/// Browser windows the broker opens for agents within [`OPEN_WINDOW`].
pub const MAX_OPENS: usize = 3;
pub const OPEN_WINDOW: Duration = Duration::from_secs(60);

struct Entry {
    resource: String,
    authorize: Url,
    opened: bool,
    task: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Entry>,
    opens: VecDeque<Instant>,
}

/// The registry of agent-started rounds. Cheap to clone.
#[derive(Clone, Default)]
pub struct AgentRounds {
    inner: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for AgentRounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentRounds")
    }
}

/// What a caller learns about the round for a provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// A round for this resource is already pending: here is its id.
    Pending(String),
    /// No round pending, and room for one.
    Free,
    /// [`MAX_PENDING`] rounds are pending already.
    Full,
}

impl AgentRounds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `resource` has a pending round, or there is room for a new one.
    pub fn slot(&self, resource: &str) -> Slot {
        let state = self.lock();
        if let Some((id, _)) = state.by_id.iter().find(|(_, e)| e.resource == resource) {
            return Slot::Pending(id.clone());
        }
        if state.by_id.len() >= MAX_PENDING {
            Slot::Full
        } else {
            Slot::Free
        }
    }

    /// Records a new pending round; returns its opaque id.
    pub fn insert(&self, resource: &str, authorize: Url) -> String {
        let id = opaque_id();
        self.lock().by_id.insert(
            id.clone(),
            Entry {
                resource: resource.to_string(),
                authorize,
                opened: false,
                task: None,
            },
        );
        id
    }

    /// Attaches the task that completes the round, so cancelling can stop it.
    pub fn attach(&self, id: &str, task: tokio::task::AbortHandle) {
        match self.lock().by_id.get_mut(id) {
            Some(entry) => entry.task = Some(task),
            // Finished before it was attached.
            None => task.abort(),
        }
    }

    /// Forgets a finished round.
    pub fn finish(&self, id: &str) {
        self.lock().by_id.remove(id);
    }

    /// Cancels a pending round (the user declined in the agent's UI): its link stops working.
    pub fn cancel(&self, id: &str) -> bool {
        let entry = self.lock().by_id.remove(id);
        if let Some(task) = entry.as_ref().and_then(|e| e.task.as_ref()) {
            task.abort();
        }
        entry.is_some()
    }

    /// How many rounds are pending.
    pub fn pending(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Claims a browser open for round `id`: once per round, and at most [`MAX_OPENS`] per
    /// [`OPEN_WINDOW`] overall. False means "do not open; give the user the link".
    pub fn claim_open(&self, id: &str) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        while state
            .opens
            .front()
            .is_some_and(|t| now.duration_since(*t) > OPEN_WINDOW)
        {
            state.opens.pop_front();
        }
        if state.opens.len() >= MAX_OPENS {
            return false;
        }
        match state.by_id.get_mut(id) {
            Some(entry) if !entry.opened => entry.opened = true,
            _ => return false,
        }
        state.opens.push_back(now);
        true
    }

    fn authorize_url(&self, id: &str) -> Option<Url> {
        self.lock().by_id.get(id).map(|e| e.authorize.clone())
    }

    /// The route serving `/connect/<id>`: a redirect to the zone while the round is pending.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route(&format!("{CONNECT_PATH}/{{id}}"), get(follow))
            .with_state(self.clone())
    }
}

/// A consent round an agent started: the link to give the user (a broker page that redirects
/// to the zone; no `state` or PKCE value in it).
#[derive(Debug, Clone)]
pub struct AgentRound {
    pub id: String,
    pub link: String,
    pub name: String,
    pub resource: String,
    /// True when this reuses a round already pending for the provider.
    pub reused: bool,
}

impl Broker {
    /// Starts (or reuses) a provider's consent round for an agent; the round completes in the
    /// background within `timeout`. Bounded: one per provider, [`MAX_PENDING`] overall.
    pub async fn begin_agent_connect(
        self: &Arc<Self>,
        key: &str,
        timeout: Duration,
    ) -> Result<AgentRound, BrokerError> {
        let _serial = self.agent_round_start.lock().await;
        let provider = self.provider(key)?;
        let port = self.start().await?.port();
        let link = |id: &str| format!("http://127.0.0.1:{port}{}/{id}", CONNECT_PATH);
        let id = match self.agent_rounds.slot(&provider.resource) {
            Slot::Pending(id) => {
                return Ok(AgentRound {
                    link: link(&id),
                    id,
                    name: provider.name,
                    resource: provider.resource,
                    reused: true,
                });
            }
            Slot::Full => return Err(BrokerError::TooManyRounds(MAX_PENDING)),
            Slot::Free => {
                let round = self
                    .grants
                    .begin(RoundKind::Connect(provider.clone()))
                    .await?;
                let id = self
                    .agent_rounds
                    .insert(&provider.resource, round.url.clone());
                let broker = self.clone();
                let finished = id.clone();
                let task = tokio::spawn(async move {
                    let name = match &round.kind {
                        RoundKind::Connect(p) => p.name.clone(),
                        RoundKind::Login => String::new(),
                    };
                    match broker.complete(round, timeout).await {
                        Ok(()) => {
                            tracing::info!(provider = %name, "connected from an agent's request")
                        }
                        Err(e) => {
                            tracing::warn!(provider = %name, error = %e, "agent-started consent did not complete")
                        }
                    }
                    broker.agent_rounds.finish(&finished);
                });
                self.agent_rounds.attach(&id, task.abort_handle());
                id
            }
        };
        Ok(AgentRound {
            link: link(&id),
            id,
            name: provider.name,
            resource: provider.resource,
            reused: false,
        })
    }

    /// Cancels an agent-started round (declined in the agent's UI); its link stops working.
    pub fn cancel_agent_connect(&self, id: &str) -> bool {
        self.agent_rounds.cancel(id)
    }

    /// Opens the round's link in the system browser, at most once per round and a few times
    /// a minute overall; false means the user has to be given the link instead.
    pub fn open_agent_connect(&self, round: &AgentRound) -> bool {
        self.agent_rounds.claim_open(&round.id) && open_browser(&round.link)
    }
}

async fn follow(State(rounds): State<AgentRounds>, Path(id): Path<String>) -> Response {
    let mut response = match rounds.authorize_url(&id) {
        Some(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response(),
        None => crate::callback::page(
            StatusCode::NOT_FOUND,
            "Link expired",
            "This connect link is unknown, finished or expired. Ask the agent to start again, or connect from Keycard Broker.",
        ),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

fn opaque_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens the system browser unless `KEYCARD_BROKER_NO_BROWSER` is set (tests, headless use).
pub fn open_browser(url: &str) -> bool {
    if std::env::var_os("KEYCARD_BROKER_NO_BROWSER").is_some() {
        return false;
    }
    webbrowser::open(url).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("https://zone.example/authorize?state=s").unwrap()
    }

    #[test]
    fn one_round_per_resource_and_a_bound_overall() {
        let rounds = AgentRounds::default();
        assert_eq!(rounds.slot("a"), Slot::Free);
        let a = rounds.insert("a", url());
        assert_eq!(rounds.slot("a"), Slot::Pending(a.clone()));
        for r in ["b", "c", "d"] {
            assert_eq!(rounds.slot(r), Slot::Free);
            rounds.insert(r, url());
        }
        assert_eq!(rounds.slot("e"), Slot::Full);
        assert!(rounds.cancel(&a));
        assert!(!rounds.cancel(&a));
        assert_eq!(rounds.slot("e"), Slot::Free);
        assert_eq!(rounds.pending(), 3);
    }

    #[test]
    fn browser_opens_once_per_round_and_are_rate_limited() {
        let rounds = AgentRounds::default();
        let ids: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|r| rounds.insert(r, url()))
            .collect();
        assert!(rounds.claim_open(&ids[0]));
        assert!(!rounds.claim_open(&ids[0]), "once per round");
        assert!(rounds.claim_open(&ids[1]));
        assert!(rounds.claim_open(&ids[2]));
        assert!(!rounds.claim_open(&ids[3]), "rate limit");
        assert!(!rounds.claim_open("unknown"));
    }
}
