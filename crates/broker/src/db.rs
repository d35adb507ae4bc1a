//! SQLite: grant metadata, the session's public facts, custom resources, settings.
//! No secret value is ever written here; tests grep the file for every token the zone issued.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::status::GrantStatus;
pub use crate::status::SessionStatus;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE session (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    issuer       TEXT NOT NULL,
    account      TEXT,
    subject      TEXT,
    signed_in_at TEXT NOT NULL,
    status       TEXT NOT NULL,
    last_error   TEXT
);
CREATE TABLE resources (
    resource  TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    api_bases TEXT NOT NULL,
    scopes    TEXT NOT NULL,
    docs_url  TEXT,
    added_at  TEXT NOT NULL
);
CREATE TABLE grants (
    resource     TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    connected_at TEXT,
    last_used_at TEXT,
    last_error   TEXT,
    updated_at   TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE clients (
    name         TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT
);
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    client     TEXT,
    kind       TEXT NOT NULL,
    resource   TEXT,
    method     TEXT,
    host       TEXT,
    path       TEXT,
    status     INTEGER,
    latency_ms INTEGER NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_at ON audit (at);
"#,
    // The resource identifier the session was signed in for: every refresh presents it, so a
    // port change (which changes the default identifier) never costs the sign-in.
    r#"
ALTER TABLE session ADD COLUMN resource TEXT;
"#,
];

#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the broker database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("broker database error: {0}")]
    Sqlite(String),
    #[error("the broker database holds an unreadable value in {0}")]
    Corrupt(String),
    #[error(
        "the disk holding the broker database is full; free some space and retry (grants are safe in the keychain)"
    )]
    Full,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => DbError::Full,
            _ => DbError::Sqlite(e.to_string()),
        }
    }
}

/// Who is signed in (public facts only; the refresh token is in the keychain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub issuer: String,
    pub account: Option<String>,
    pub subject: Option<String>,
    pub signed_in_at: DateTime<Utc>,
    pub status: SessionStatus,
    pub last_error: Option<String>,
    /// The broker's resource identifier at sign-in (None for sessions from older versions).
    #[serde(default)]
    pub resource: Option<String>,
}

/// The zone client registration in use (the client id is public).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub has_secret: bool,
}

/// One connection's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub resource: String,
    pub status: GrantStatus,
    pub scopes: Vec<String>,
    pub connected_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A resource the user added beside the seed catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub resource: String,
    pub name: String,
    pub api_bases: Vec<String>,
    pub scopes: Vec<String>,
    pub docs_url: Option<String>,
    pub added_at: DateTime<Utc>,
}

/// How long a cached grant row is trusted without a change made through this `Db`. Every
/// in-process write invalidates at once; the bound only matters for another process writing
/// the same file (the CLI acting on the store while no broker runs, then one starting).
const GRANT_CACHE_TTL: Duration = Duration::from_secs(2);

/// Grant rows read on the hot path (every `call_api`), so an agent's call never waits on the
/// SQLite mutex behind the audit writer. Valid while `generation` is unchanged.
#[derive(Default)]
struct GrantCache {
    generation: u64,
    rows: HashMap<String, (Instant, Option<GrantRecord>)>,
}

/// The database. Operations are short; one connection behind a mutex is enough.
pub struct Db {
    conn: Mutex<Connection>,
    /// Bumped on every change to grants or resources, so callers can cache what they derive.
    generation: std::sync::atomic::AtomicU64,
    grant_cache: Mutex<GrantCache>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let open_err = |reason: String| DbError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
            restrict(dir, 0o700);
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        restrict(path, 0o600);
        Db::init(conn).map_err(|e| open_err(e.to_string()))
    }

    pub fn open_in_memory() -> Result<Db, DbError> {
        Db::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Db, DbError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // With WAL, NORMAL keeps the database consistent across crashes and skips an fsync per
        // commit (a power cut may lose the last audit lines, never grant state consistency).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let applied = usize::try_from(version).unwrap_or(usize::MAX);
        if applied > MIGRATIONS.len() {
            return Err(DbError::Sqlite(format!(
                "database schema version {version} is newer than this broker understands"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Db {
            conn: Mutex::new(conn),
            generation: std::sync::atomic::AtomicU64::new(0),
            grant_cache: Mutex::default(),
        })
    }

    /// Runs `f` on the connection (other modules own their own tables' SQL).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| DbError::Sqlite("database lock poisoned".into()))?;
        f(&conn)
    }

    /// Changes whenever grants or resources change.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn setting<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, DbError> {
        self.with(|c| {
            let text: Option<String> = c
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?;
            text.map(|t| serde_json::from_str(&t).map_err(|_| DbError::Corrupt(key.into())))
                .transpose()
        })
    }

    pub fn set_setting<T: Serialize>(&self, key: &str, value: &T) -> Result<(), DbError> {
        let text = serde_json::to_string(value).map_err(|e| DbError::Sqlite(e.to_string()))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, text],
            )?;
            Ok(())
        })
    }

    pub fn delete_setting(&self, key: &str) -> Result<(), DbError> {
        self.with(|c| {
            c.execute("DELETE FROM settings WHERE key = ?1", [key])?;
            Ok(())
        })
    }

    pub fn session(&self) -> Result<Option<SessionRecord>, DbError> {
        self.with(|c| {
            c.query_row(
                "SELECT issuer, account, subject, signed_in_at, status, last_error, resource FROM session WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                },
            )
            .optional()?
            .map(|(issuer, account, subject, at, status, last_error, resource)| {
                Ok(SessionRecord {
                    issuer,
                    account,
                    subject,
                    signed_in_at: parse_time(&at, "session")?,
                    status: match status.as_str() {
                        "signed_in" => SessionStatus::SignedIn,
                        "needs_login" => SessionStatus::NeedsLogin,
                        _ => return Err(DbError::Corrupt("session.status".into())),
                    },
                    last_error,
                    resource,
                })
            })
            .transpose()
        })
    }

    pub fn put_session(&self, s: &SessionRecord) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO session (id, issuer, account, subject, signed_in_at, status, last_error, resource)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET issuer = excluded.issuer, account = excluded.account,
                   subject = excluded.subject, signed_in_at = excluded.signed_in_at,
                   status = excluded.status, last_error = excluded.last_error,
                   resource = excluded.resource",
                params![
                    s.issuer,
                    s.account,
                    s.subject,
                    s.signed_in_at.to_rfc3339(),
                    s.status.as_str(),
                    s.last_error,
                    s.resource
                ],
            )?;
            Ok(())
        })
    }

    pub fn delete_session(&self) -> Result<(), DbError> {
        self.with(|c| {
            c.execute("DELETE FROM session", [])?;
            Ok(())
        })
    }

    pub fn grants(&self) -> Result<Vec<GrantRecord>, DbError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT resource, status, scopes, connected_at, last_used_at, last_error, updated_at
                 FROM grants ORDER BY resource",
            )?;
            let rows = stmt.query_map([], grant_row)?;
            rows.map(|r| r.map_err(DbError::from).and_then(|raw| raw.into_record()))
                .collect()
        })
    }

    /// One grant, from memory when nothing changed since it was read.
    pub fn grant(&self, resource: &str) -> Result<Option<GrantRecord>, DbError> {
        // Read the generation before the row: a write racing with the read bumps it after
        // writing, so a stale row is never kept under the new generation.
        let generation = self.generation();
        {
            let cache = self.grant_cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.generation == generation
                && let Some((at, row)) = cache.rows.get(resource)
                && at.elapsed() < GRANT_CACHE_TTL
            {
                return Ok(row.clone());
            }
        }
        let row = self.read_grant(resource)?;
        let mut cache = self.grant_cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation != generation {
            cache.generation = generation;
            cache.rows.clear();
        }
        cache
            .rows
            .insert(resource.to_string(), (Instant::now(), row.clone()));
        Ok(row)
    }

    fn read_grant(&self, resource: &str) -> Result<Option<GrantRecord>, DbError> {
        self.with(|c| {
            c.query_row(
                "SELECT resource, status, scopes, connected_at, last_used_at, last_error, updated_at
                 FROM grants WHERE resource = ?1",
                [resource],
                grant_row,
            )
            .optional()?
            .map(RawGrant::into_record)
            .transpose()
        })
    }

    pub fn put_grant(&self, g: &GrantRecord) -> Result<(), DbError> {
        self.write_grant(g, None).map(|_| ())
    }

    /// Writes `g` only if the stored row still has `expected` as its `updated_at`, so a
    /// token fetch that raced with a revoke or reconnect cannot write back stale state.
    /// Returns whether it wrote.
    pub fn put_grant_if_unchanged(
        &self,
        g: &GrantRecord,
        expected: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        self.write_grant(g, Some(expected))
    }

    /// Upsert; with `expected`, an existing row is only replaced if its `updated_at` matches.
    fn write_grant(
        &self,
        g: &GrantRecord,
        expected: Option<DateTime<Utc>>,
    ) -> Result<bool, DbError> {
        let scopes =
            serde_json::to_string(&g.scopes).map_err(|e| DbError::Sqlite(e.to_string()))?;
        let written = self.with(|c| {
            Ok(c.execute(
                "INSERT INTO grants (resource, status, scopes, connected_at, last_used_at, last_error, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(resource) DO UPDATE SET status = excluded.status, scopes = excluded.scopes,
                   connected_at = excluded.connected_at, last_used_at = excluded.last_used_at,
                   last_error = excluded.last_error, updated_at = excluded.updated_at
                 WHERE ?8 IS NULL OR grants.updated_at = ?8",
                params![
                    g.resource,
                    g.status.as_str(),
                    scopes,
                    g.connected_at.map(|t| t.to_rfc3339()),
                    g.last_used_at.map(|t| t.to_rfc3339()),
                    g.last_error,
                    g.updated_at.to_rfc3339(),
                    expected.map(|t| t.to_rfc3339())
                ],
            )?)
        })?;
        self.bump();
        Ok(written > 0)
    }

    /// Records that a grant was used, touching nothing else in the row.
    pub fn touch_grant(&self, resource: &str, at: DateTime<Utc>) -> Result<(), DbError> {
        self.with(|c| {
            c.execute(
                "UPDATE grants SET last_used_at = ?2 WHERE resource = ?1",
                params![resource, at.to_rfc3339()],
            )?;
            Ok(())
        })?;
        self.bump();
        Ok(())
    }

    pub fn resources(&self) -> Result<Vec<ResourceRecord>, DbError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT resource, name, api_bases, scopes, docs_url, added_at FROM resources ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (resource, name, bases, scopes, docs_url, added) = row?;
                Ok(ResourceRecord {
                    api_bases: serde_json::from_str(&bases)
                        .map_err(|_| DbError::Corrupt(format!("resources.api_bases of {resource}")))?,
                    scopes: serde_json::from_str(&scopes)
                        .map_err(|_| DbError::Corrupt(format!("resources.scopes of {resource}")))?,
                    added_at: parse_time(&added, "resources.added_at")?,
                    resource,
                    name,
                    docs_url,
                })
            })
            .collect()
        })
    }

    pub fn put_resource(&self, r: &ResourceRecord) -> Result<(), DbError> {
        let bases =
            serde_json::to_string(&r.api_bases).map_err(|e| DbError::Sqlite(e.to_string()))?;
        let scopes =
            serde_json::to_string(&r.scopes).map_err(|e| DbError::Sqlite(e.to_string()))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO resources (resource, name, api_bases, scopes, docs_url, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(resource) DO UPDATE SET name = excluded.name, api_bases = excluded.api_bases,
                   scopes = excluded.scopes, docs_url = excluded.docs_url",
                params![r.resource, r.name, bases, scopes, r.docs_url, r.added_at.to_rfc3339()],
            )?;
            Ok(())
        })?;
        self.bump();
        Ok(())
    }

    pub fn delete_resource(&self, resource: &str) -> Result<bool, DbError> {
        let removed = self.with(|c| {
            Ok(c.execute("DELETE FROM resources WHERE resource = ?1", [resource])? > 0)
        })?;
        self.bump();
        Ok(removed)
    }
}

struct RawGrant {
    resource: String,
    status: String,
    scopes: String,
    connected_at: Option<String>,
    last_used_at: Option<String>,
    last_error: Option<String>,
    updated_at: String,
}

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawGrant> {
    Ok(RawGrant {
        resource: r.get(0)?,
        status: r.get(1)?,
        scopes: r.get(2)?,
        connected_at: r.get(3)?,
        last_used_at: r.get(4)?,
        last_error: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

impl RawGrant {
    fn into_record(self) -> Result<GrantRecord, DbError> {
        let field = |name: &str| format!("grants.{name} of {}", self.resource);
        Ok(GrantRecord {
            status: GrantStatus::parse(&self.status)
                .ok_or_else(|| DbError::Corrupt(field("status")))?,
            scopes: serde_json::from_str(&self.scopes)
                .map_err(|_| DbError::Corrupt(field("scopes")))?,
            connected_at: self
                .connected_at
                .as_deref()
                .map(|t| parse_time(t, "grants.connected_at"))
                .transpose()?,
            last_used_at: self
                .last_used_at
                .as_deref()
                .map(|t| parse_time(t, "grants.last_used_at"))
                .transpose()?,
            updated_at: parse_time(&self.updated_at, "grants.updated_at")?,
            last_error: self.last_error,
            resource: self.resource,
        })
    }
}

pub(crate) fn parse_time(text: &str, what: &str) -> Result<DateTime<Utc>, DbError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| DbError::Corrupt(what.into()))
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: a failure here leaves the OS default, which is still the user's own dir.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_round_trip() {
        let db = Db::open_in_memory().unwrap();
        let now = Utc::now();
        let g = GrantRecord {
            resource: "https://api.github.com".into(),
            status: GrantStatus::Connected,
            scopes: vec!["repo".into()],
            connected_at: Some(now),
            last_used_at: None,
            last_error: None,
            updated_at: now,
        };
        db.put_grant(&g).unwrap();
        let mut back = db.grant(&g.resource).unwrap().unwrap();
        assert_eq!(back.scopes, g.scopes);
        back.status = GrantStatus::NeedsReconnect;
        db.put_grant(&back).unwrap();
        assert_eq!(db.grants().unwrap()[0].status, GrantStatus::NeedsReconnect);
        // A writer holding an older copy loses to the newer row.
        let stale = GrantRecord {
            status: GrantStatus::Connected,
            updated_at: back.updated_at + chrono::Duration::seconds(1),
            ..back.clone()
        };
        assert!(
            !db.put_grant_if_unchanged(&stale, g.updated_at - chrono::Duration::seconds(1))
                .unwrap()
        );
        assert_eq!(
            db.grant(&g.resource).unwrap().unwrap().status,
            GrantStatus::NeedsReconnect,
            "cached read sees the unchanged row"
        );
        assert!(db.put_grant_if_unchanged(&stale, back.updated_at).unwrap());
        assert_eq!(
            db.grant(&g.resource).unwrap().unwrap().status,
            GrantStatus::Connected,
            "a write is visible through the cache at once"
        );
        assert!(db.grant("https://nope").unwrap().is_none());
    }

    #[test]
    fn migrations_are_idempotent_and_reject_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        Db::open(&path).unwrap().set_setting("k", &1).unwrap();
        let db = Db::open(&path).unwrap();
        assert_eq!(db.setting::<i32>("k").unwrap(), Some(1));
        drop(db);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(Db::open(&path).is_err());
    }

    #[test]
    fn garbage_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        std::fs::write(&path, b"this is not sqlite at all, not even close......").unwrap();
        assert!(matches!(Db::open(&path), Err(DbError::Open { .. })));
    }
}
