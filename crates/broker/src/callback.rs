//! The loopback route that receives OAuth redirects. One listener for the broker's life; each
//! authorize round registers its `state` and waits. A state is single-use, expires with its
//! round, and a redirect whose `iss` is not our zone is refused (RFC 9207 mix-up defence).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use tokio::sync::oneshot;

use crate::zone::same_issuer;

pub const CALLBACK_PATH: &str = "/callback";
/// A browser query string is small; anything bigger is not a redirect from a zone.
const MAX_QUERY: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallbackError {
    #[error("the zone declined: {code}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        code: String,
        description: Option<String>,
    },
    #[error(
        "the redirect came from issuer {found:?}, not from the configured zone {expected:?}; refusing it"
    )]
    WrongIssuer { expected: String, found: String },
    #[error(
        "the redirect carried no iss parameter although the zone promises one (RFC 9207); refusing it"
    )]
    MissingIssuer,
    #[error("the redirect carried no authorization code")]
    MissingCode,
    #[error("no answer from the browser within {0} s")]
    Timeout(u64),
    #[error("the sign-in was cancelled")]
    Cancelled,
}

struct Pending {
    issuer: String,
    /// The zone advertises `authorization_response_iss_parameter_supported`: `iss` is required.
    require_iss: bool,
    tx: oneshot::Sender<Result<SecretString, CallbackError>>,
}

/// Rounds waiting for their redirect, by `state`.
#[derive(Clone, Default)]
pub struct Callbacks {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Callbacks")
    }
}

/// The waiting end of one round. Dropping it forgets the state, so a late redirect is refused.
pub struct Waiter {
    state: String,
    rx: oneshot::Receiver<Result<SecretString, CallbackError>>,
    callbacks: Callbacks,
}

impl Waiter {
    /// Waits for the redirect; returns the authorization code.
    pub async fn wait(mut self, timeout: Duration) -> Result<SecretString, CallbackError> {
        match tokio::time::timeout(timeout, &mut self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallbackError::Cancelled),
            Err(_) => Err(CallbackError::Timeout(timeout.as_secs())),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.callbacks.pending.lock() {
            pending.remove(&self.state);
        }
    }
}

impl Callbacks {
    /// Registers a round's `state`; the redirect must come back with it and from `issuer`
    /// (and name it in `iss` when `require_iss`).
    pub fn register(&self, state: &str, issuer: &str, require_iss: bool) -> Waiter {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(
                state.to_string(),
                Pending {
                    issuer: issuer.to_string(),
                    require_iss,
                    tx,
                },
            );
        }
        Waiter {
            state: state.to_string(),
            rx,
            callbacks: self.clone(),
        }
    }

    /// Number of rounds waiting (for status displays and tests).
    pub fn waiting(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The axum route serving [`CALLBACK_PATH`].
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route(CALLBACK_PATH, get(handle))
            .with_state(self.clone())
    }

    /// Resolves one redirect. Returns the HTTP status and the sentence shown to the user.
    pub fn resolve(&self, query: &str) -> (StatusCode, &'static str, String) {
        if query.len() > MAX_QUERY {
            return (
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "This link is too long to be a sign-in redirect.".into(),
            );
        }
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let Some(state) = params.get("state") else {
            return (
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "This link has no state parameter, so it cannot belong to a sign-in started by Keycard Broker.".into(),
            );
        };
        let pending = self.pending.lock().ok().and_then(|mut p| p.remove(state));
        let Some(pending) = pending else {
            tracing::warn!("callback with an unknown or already used state refused");
            return (
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "This sign-in link is unknown, expired or already used. Start again from Keycard Broker.".into(),
            );
        };
        let outcome = if pending.require_iss && !params.contains_key("iss") {
            Err(CallbackError::MissingIssuer)
        } else if let Some(found) = params
            .get("iss")
            .filter(|iss| !same_issuer(iss, &pending.issuer))
        {
            Err(CallbackError::WrongIssuer {
                expected: pending.issuer.clone(),
                found: found.clone(),
            })
        } else if let Some(code) = params.get("error") {
            Err(CallbackError::Denied {
                code: code.clone(),
                description: params
                    .get("error_description")
                    .map(|d| d.chars().take(300).collect()),
            })
        } else if let Some(code) = params.get("code").filter(|c| !c.is_empty()) {
            Ok(SecretString::from(code.clone()))
        } else {
            Err(CallbackError::MissingCode)
        };
        let page = match &outcome {
            Ok(_) => (
                StatusCode::OK,
                "You're all set",
                "Keycard Broker received the authorization. You can close this tab.".to_string(),
            ),
            Err(e) => (
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                format!("{e}. Return to Keycard Broker to try again."),
            ),
        };
        // The waiter may have given up (timeout); then the page still tells the user.
        let _ = pending.tx.send(outcome);
        page
    }
}

async fn handle(State(callbacks): State<Callbacks>, RawQuery(query): RawQuery) -> Response {
    let (status, title, message) = callbacks.resolve(query.as_deref().unwrap_or(""));
    page(status, title, &message)
}

/// A small self-contained page: no scripts, no external loads, no referrer, not cached.
pub(crate) fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — Keycard Broker</title>\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem}}</style></head>\
         <body><h1>{t}</h1><p>{m}</p></body></html>",
        t = escape(title),
        m = escape(message)
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const ISS: &str = "https://z.keycard.cloud";

    #[tokio::test]
    async fn delivers_code_once() {
        let cb = Callbacks::default();
        let waiter = cb.register("s1", ISS, false);
        let (status, _, _) = cb.resolve("code=abc&state=s1&iss=https%3A%2F%2Fz.keycard.cloud");
        assert_eq!(status, StatusCode::OK);
        let code = waiter.wait(Duration::from_secs(1)).await.unwrap();
        assert_eq!(code.expose_secret(), "abc");
        let (replay, _, _) = cb.resolve("code=abc&state=s1");
        assert_eq!(replay, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn refuses_wrong_issuer_unknown_state_and_garbage() {
        let cb = Callbacks::default();
        let waiter = cb.register("s2", ISS, false);
        assert_eq!(
            cb.resolve("code=abc&state=other").0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(cb.resolve("").0, StatusCode::BAD_REQUEST);
        assert_eq!(cb.resolve("%%%&&&==").0, StatusCode::BAD_REQUEST);
        assert_eq!(
            cb.resolve(&"a".repeat(MAX_QUERY + 1)).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            cb.resolve("code=abc&state=s2&iss=https%3A%2F%2Fevil.example")
                .0,
            StatusCode::BAD_REQUEST
        );
        assert!(matches!(
            waiter.wait(Duration::from_secs(1)).await,
            Err(CallbackError::WrongIssuer { .. })
        ));
    }

    #[tokio::test]
    async fn requires_iss_when_the_zone_promises_it() {
        let cb = Callbacks::default();
        let waiter = cb.register("s5", ISS, true);
        assert_eq!(cb.resolve("code=abc&state=s5").0, StatusCode::BAD_REQUEST);
        assert!(matches!(
            waiter.wait(Duration::from_secs(1)).await,
            Err(CallbackError::MissingIssuer)
        ));
        let waiter = cb.register("s6", ISS, true);
        let (status, _, _) = cb.resolve("code=abc&state=s6&iss=https%3A%2F%2Fz.keycard.cloud");
        assert_eq!(status, StatusCode::OK);
        assert!(waiter.wait(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test]
    async fn reports_denial_and_timeout() {
        let cb = Callbacks::default();
        let waiter = cb.register("s3", ISS, false);
        cb.resolve("error=access_denied&error_description=nope&state=s3");
        assert!(matches!(
            waiter.wait(Duration::from_secs(1)).await,
            Err(CallbackError::Denied { .. })
        ));
        let waiter = cb.register("s4", ISS, false);
        assert!(matches!(
            waiter.wait(Duration::from_millis(10)).await,
            Err(CallbackError::Timeout(0))
        ));
        assert_eq!(cb.waiting(), 0, "a finished waiter forgets its state");
    }

    #[test]
    fn page_escapes_text() {
        assert_eq!(escape("<b>&\""), "&lt;b&gt;&amp;&quot;");
    }
}
