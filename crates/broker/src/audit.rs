//! Append-only activity log: every tool call and every token acquisition, with who, what,
//! where (host + path, never the query), outcome and latency. Never headers, bodies or tokens.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError, parse_time};
use crate::events::{Event, Events};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub client: Option<String>,
    pub resource: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Audit {
    db: Arc<Db>,
    events: Events,
}

impl Audit {
    pub fn new(db: Arc<Db>, events: Events) -> Audit {
        Audit { db, events }
    }

    pub fn record(&self, r: &AuditRecord) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO audit (at, client, kind, resource, method, host, path, status, latency_ms, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.at.to_rfc3339(),
                    r.client,
                    r.kind,
                    r.resource,
                    r.method,
                    r.host,
                    r.path,
                    r.status,
                    i64::try_from(r.latency_ms).unwrap_or(i64::MAX),
                    r.outcome,
                    r.detail
                ],
            )?;
            Ok(())
        })?;
        self.events.emit(Event::Activity { record: r.clone() });
        Ok(())
    }

    /// Newest first.
    pub fn query(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, DbError> {
        self.db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT at, client, kind, resource, method, host, path, status, latency_ms, outcome, detail
                 FROM audit
                 WHERE (?1 IS NULL OR client = ?1) AND (?2 IS NULL OR resource = ?2) AND (?3 IS NULL OR at >= ?3)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![
                    f.client,
                    f.resource,
                    f.since.map(|t| t.to_rfc3339()),
                    f.limit.unwrap_or(1000)
                ],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        AuditRecord {
                            at: Utc::now(),
                            client: r.get(1)?,
                            kind: r.get(2)?,
                            resource: r.get(3)?,
                            method: r.get(4)?,
                            host: r.get(5)?,
                            path: r.get(6)?,
                            status: r.get::<_, Option<u16>>(7)?,
                            latency_ms: r.get::<_, i64>(8)?.max(0) as u64,
                            outcome: r.get(9)?,
                            detail: r.get(10)?,
                        },
                    ))
                },
            )?;
            rows.map(|row| {
                let (at, mut record) = row?;
                record.at = parse_time(&at, "audit.at")?;
                Ok(record)
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_filters() {
        let events = Events::default();
        let mut live = events.subscribe();
        let audit = Audit::new(Arc::new(Db::open_in_memory().unwrap()), events);
        let mut a = AuditRecord::new("call_api", Some("cursor"));
        a.resource = Some("https://api.github.com".into());
        a.status = Some(200);
        audit.record(&a).unwrap();
        assert!(
            matches!(live.try_recv(), Ok(Event::Activity { .. })),
            "live update"
        );
        let b = AuditRecord::new("list_connections", Some("claude"));
        audit.record(&b).unwrap();
        let all = audit.query(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, "list_connections", "newest first");
        let only = audit
            .query(&AuditFilter {
                client: Some("cursor".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            only,
            vec![AuditRecord {
                at: only[0].at,
                ..a
            }]
        );
        let later = audit
            .query(&AuditFilter {
                since: Some(Utc::now() + chrono::Duration::hours(1)),
                ..Default::default()
            })
            .unwrap();
        assert!(later.is_empty());
    }
}
