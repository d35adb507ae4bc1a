//! A call waiting for the user's decision: the plain record that the approval queue
//! (`approvals`) keeps and the event stream (`events`) carries to the window and the tray.
//! Its own module so neither of those depends on the other for it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A call waiting for the user. No secrets: the URL has no query values (`?a=…&b=…` keeps
/// names only), the preview is the agent's own body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct PendingCall {
    /// Short, random and URL-safe (96 bits), unique among the waiting calls.
    pub id: String,
    /// The agent client's key (opaque).
    pub client: String,
    /// The agent's name as the user sees it.
    pub client_name: String,
    /// The provider's resource identifier.
    pub resource: String,
    pub method: String,
    /// Without query values, fragment or user info.
    pub url: String,
    /// The start of the body as the user should read it; `None` for an empty body.
    pub body_preview: Option<String>,
    /// The policy rule that asked.
    pub rule: String,
    pub asked_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}
