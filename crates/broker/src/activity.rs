//! One line of the activity log (a tool call or a token acquisition): a plain record that the
//! log (`audit`) stores and the event stream (`events`) carries to live views.
//! Never headers, bodies or tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    pub client: Option<String>,
    /// `call_api`, `list_connections`, `connect`, `token`.
    pub kind: String,
    pub resource: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// `ok`, `denied`, `needs_reconnect`, `error`, `refused`.
    pub outcome: String,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn new(kind: &str, client: Option<&str>) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            client: client.map(str::to_string),
            kind: kind.to_string(),
            resource: None,
            method: None,
            host: None,
            path: None,
            status: None,
            latency_ms: 0,
            outcome: "ok".into(),
            detail: None,
        }
    }
}
