//! One line of the activity log (a tool call or a token acquisition): a plain record that the
//! log (`audit`) stores and the event stream (`events`) carries to live views.
//! Never headers, bodies or tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    /// An agent's `call_api`.
    CallApi,
    /// An agent's `list_connections`.
    ListConnections,
    /// An agent's `connect` (a consent round it asked for).
    Connect,
    /// The broker obtained a provider token from the zone.
    Token,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// The provider answered 4xx/5xx (passed on to the agent).
    UpstreamError,
    /// The connection needs a new consent.
    NeedsReconnect,
    /// The broker refused the request (outside every API base, a path or header rule, …).
    Refused,
    /// The user declined or cancelled.
    Declined,
    /// Something failed (zone, network, keychain, storage).
    Error,
}

/// How an agent reached the broker: the loopback port, or the agent socket (a forwarded
/// socket from a remote host, a devcontainer, WSL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    #[default]
    Loopback,
    Socket,
}

/// `as_str`/`parse`/`Display` and SQLite storage as the same words, for a plain enum.
macro_rules! words {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                Self::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(format!("unknown {text:?}").into())
                })
            }
        }
    };
}
pub(crate) use words;

words!(ActivityKind {
    CallApi = "call_api",
    ListConnections = "list_connections",
    Connect = "connect",
    Token = "token",
});

words!(Via {
    Loopback = "loopback",
    Socket = "socket",
});

words!(Outcome {
    Ok = "ok",
    UpstreamError = "upstream_error",
    NeedsReconnect = "needs_reconnect",
    Refused = "refused",
    Declined = "declined",
    Error = "error",
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    pub client: Option<String>,
    /// How the agent reached the broker (none for the broker's own token records).
    #[serde(default)]
    pub via: Option<Via>,
    pub kind: ActivityKind,
    pub resource: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    /// How long the action took, measured by [`audited`].
    pub latency_ms: u64,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn new(kind: ActivityKind, client: Option<&str>) -> AuditRecord {
        AuditRecord {
            at: Utc::now(),
            client: client.map(str::to_string),
            via: None,
            kind,
            resource: None,
            method: None,
            host: None,
            path: None,
            status: None,
            latency_ms: 0,
            outcome: Outcome::Ok,
            detail: None,
        }
    }

    /// Marks the record failed, with a short reason (never a token: reasons are engine
    /// messages, which hold none).
    pub fn failed(&mut self, outcome: Outcome, reason: &impl std::fmt::Display) {
        self.outcome = outcome;
        self.detail = Some(reason.to_string().chars().take(300).collect());
    }
}

/// Runs one audited action: the one place a record is started, timed and handed to `sink`.
/// `work` fills in what it learns (resource, outcome, …) on the record it is given.
pub async fn audited<T>(
    kind: ActivityKind,
    client: Option<&str>,
    sink: impl FnOnce(AuditRecord),
    work: impl AsyncFnOnce(&mut AuditRecord) -> T,
) -> T {
    let started = std::time::Instant::now();
    let mut record = AuditRecord::new(kind, client);
    let result = work(&mut record).await;
    record.latency_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    sink(record);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_is_refused() {
        for k in [
            ActivityKind::CallApi,
            ActivityKind::ListConnections,
            ActivityKind::Connect,
            ActivityKind::Token,
        ] {
            assert_eq!(ActivityKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for o in [
            Outcome::Ok,
            Outcome::UpstreamError,
            Outcome::NeedsReconnect,
            Outcome::Refused,
            Outcome::Declined,
            Outcome::Error,
        ] {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        assert_eq!(Outcome::parse("denied"), None);
    }

    #[tokio::test]
    async fn audited_records_once_with_its_latency() {
        let mut seen = Vec::new();
        let answer = audited(
            ActivityKind::Token,
            Some("c"),
            |r| seen.push(r),
            async |r: &mut AuditRecord| {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                r.failed(Outcome::Error, &"zone down");
                7
            },
        )
        .await;
        assert_eq!(answer, 7);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].latency_ms >= 20, "{:?}", seen[0]);
        assert_eq!(seen[0].outcome, Outcome::Error);
        assert_eq!(seen[0].client.as_deref(), Some("c"));
    }
}
