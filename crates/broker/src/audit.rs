//! Append-only activity log: every tool call and every token acquisition, with who, what,
//! where (host + path, never the query), outcome and latency. Never headers, bodies or tokens.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::params;

pub use crate::activity::{ActivityKind, AuditRecord, Outcome, Via, audited};
use crate::db::{Db, DbError, parse_time};
use crate::events::{Event, Events};

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub client: Option<String>,
    pub resource: Option<String>,
    pub outcome: Option<Outcome>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

enum Job {
    Record(Box<AuditRecord>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The activity log. Records are written by one background thread in batches (one
/// transaction each), so an agent's call never waits on SQLite; queries flush first.
#[derive(Debug, Clone)]
pub struct Audit {
    db: Arc<Db>,
    events: Events,
    writer: Option<std::sync::mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

const BATCH: usize = 4096;
/// How long the writer lets records gather after the first one of a burst.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);
/// Records kept in memory while the database refuses writes (disk full); beyond this the
/// oldest are dropped, and counted in the log.
const MAX_BACKLOG: usize = 100_000;
/// How often a refused backlog is retried when no new record arrives.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer thread: batches what is queued into one transaction; if the database refuses
/// (disk full, I/O error), keeps the records and retries, so a full disk loses no activity
/// once space is back.
fn write_loop(db: &Db, rx: &std::sync::mpsc::Receiver<Job>) {
    let mut backlog: std::collections::VecDeque<AuditRecord> = std::collections::VecDeque::new();
    let mut dropped: u64 = 0;
    loop {
        let first = if backlog.is_empty() {
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(RETRY_EVERY) {
                Ok(job) => Some(job),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Shutting down: one last try.
                    let all: Vec<&AuditRecord> = backlog.iter().collect();
                    if let Err(e) = insert(db, &all) {
                        tracing::error!(error = %e, lost = all.len(), "audit records lost at exit");
                    }
                    return;
                }
            }
        };
        let mut flushes = Vec::new();
        let mut take = |job: Job, backlog: &mut std::collections::VecDeque<AuditRecord>| match job {
            Job::Record(r) => backlog.push_back(*r),
            Job::Flush(done) => flushes.push(done),
        };
        if let Some(job) = first {
            if matches!(job, Job::Record(_)) {
                // Let a burst gather: one transaction (and one wake-up of this thread) per
                // window instead of per call. A crash loses at most this window of activity.
                std::thread::sleep(BATCH_WINDOW);
            }
            take(job, &mut backlog);
        }
        for _ in 0..BATCH {
            match rx.try_recv() {
                Ok(job) => take(job, &mut backlog),
                Err(_) => break,
            }
        }
        while backlog.len() > MAX_BACKLOG {
            backlog.pop_front();
            dropped += 1;
        }
        let pending: Vec<&AuditRecord> = backlog.iter().collect();
        match insert(db, &pending) {
            Ok(()) => {
                if dropped > 0 {
                    tracing::error!(
                        dropped,
                        "audit records were dropped while the database refused writes"
                    );
                    dropped = 0;
                }
                backlog.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, waiting = backlog.len(), "audit records kept in memory; the database refused them");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

impl Audit {
    pub fn new(db: Arc<Db>, events: Events) -> Audit {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let writer_db = db.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(&writer_db, &rx));
        let writer = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::warn!(error = %e, "no audit writer thread; writing synchronously");
                None
            }
        };
        Audit { db, events, writer }
    }

    /// Appends a record (asynchronously) and announces it to live views, if any listen.
    pub fn record(&self, r: AuditRecord) -> Result<(), DbError> {
        if self.events.has_subscribers() {
            self.events.emit(Event::Activity { record: r.clone() });
        }
        let job = match &self.writer {
            Some(writer) => writer.send(Job::Record(Box::new(r))).err().map(|e| e.0),
            None => Some(Job::Record(Box::new(r))),
        };
        match job {
            Some(Job::Record(r)) => insert(&self.db, &[&r]),
            _ => Ok(()),
        }
    }

    /// Waits until every record handed over so far is in the database.
    pub fn flush(&self) {
        if let Some(writer) = &self.writer {
            let (done, wait) = std::sync::mpsc::channel();
            if writer.send(Job::Flush(done)).is_ok() {
                let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
            }
        }
    }

    /// Newest first (after a flush, so a caller sees its own records).
    pub fn query(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, DbError> {
        self.flush();
        self.db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT at, client, kind, resource, method, host, path, status, latency_ms, outcome, detail, via
                 FROM audit
                 WHERE (?1 IS NULL OR client = ?1) AND (?2 IS NULL OR resource = ?2) AND (?3 IS NULL OR at >= ?3)
                   AND (?5 IS NULL OR outcome = ?5)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![
                    f.client,
                    f.resource,
                    f.since.map(|t| t.to_rfc3339()),
                    f.limit.unwrap_or(1000),
                    f.outcome
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
                            via: r.get(11)?,
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

impl Audit {
    /// How each client last reached the broker (loopback or socket), from its newest record
    /// that says: the window shows remote agents as such.
    pub fn last_via(&self) -> Result<std::collections::HashMap<String, Via>, DbError> {
        self.flush();
        self.db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT client, via FROM audit WHERE id IN
                   (SELECT MAX(id) FROM audit WHERE via IS NOT NULL AND client IS NOT NULL GROUP BY client)",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Via>(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

/// Inserts records in one transaction.
fn insert(db: &Db, records: &[&AuditRecord]) -> Result<(), DbError> {
    if records.is_empty() {
        return Ok(());
    }
    db.with(|c| {
        let tx = c.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit (at, client, kind, resource, method, host, path, status, latency_ms, outcome, detail, via)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for r in records {
                stmt.execute(params![
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
                    r.detail,
                    r.via
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_via_is_each_clients_newest_word_and_round_trips() {
        let audit = Audit::new(Arc::new(Db::open_in_memory().unwrap()), Events::default());
        let with = |client: &str, via: Option<Via>| {
            let mut r = AuditRecord::new(ActivityKind::CallApi, Some(client));
            r.via = via;
            audit.record(r).unwrap();
        };
        with("laptop", Some(Via::Loopback));
        with("remote", Some(Via::Loopback));
        with("remote", Some(Via::Socket));
        with("remote", None);
        with("quiet", None);
        let last = audit.last_via().unwrap();
        assert_eq!(last.get("laptop"), Some(&Via::Loopback));
        assert_eq!(last.get("remote"), Some(&Via::Socket));
        assert_eq!(last.get("quiet"), None);
        let stored = audit.query(&AuditFilter::default()).unwrap();
        assert_eq!(stored[2].via, Some(Via::Socket), "newest first: {stored:?}");
    }

    #[test]
    fn records_and_filters() {
        let events = Events::default();
        let mut live = events.subscribe();
        let audit = Audit::new(Arc::new(Db::open_in_memory().unwrap()), events);
        let mut a = AuditRecord::new(ActivityKind::CallApi, Some("cursor"));
        a.resource = Some("https://api.github.com".into());
        a.status = Some(200);
        audit.record(a.clone()).unwrap();
        assert!(
            matches!(live.try_recv(), Ok(Event::Activity { .. })),
            "live update"
        );
        let b = AuditRecord::new(ActivityKind::ListConnections, Some("claude"));
        audit.record(b.clone()).unwrap();
        let all = audit.query(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, ActivityKind::ListConnections, "newest first");
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
        let failed = audit
            .query(&AuditFilter {
                outcome: Some(Outcome::UpstreamError),
                ..Default::default()
            })
            .unwrap();
        assert!(failed.is_empty(), "both records are ok");
        let ok = audit
            .query(&AuditFilter {
                outcome: Some(Outcome::Ok),
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ok.len(), 1);
    }
}
