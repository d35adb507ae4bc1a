//! SQLite: grant metadata, the session's public facts, custom resources, settings.
//! No secret value is ever written here; tests grep the file for every token the zone issued.
//!
//! `Db` (here: open, settings) has one file per table group: `schema` (migrations),
//! `session` (the session row, the zone registration), `connections` (grant rows and their
//! cache), `resources` (custom resources). The audit and clients tables belong to those modules.

mod connections;
mod resources;
mod schema;
mod session;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use crate::status::SessionStatus;
use connections::GrantCache;
pub use connections::GrantRecord;
pub use resources::ResourceRecord;
pub use session::{RegistrationRecord, SessionRecord};

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
        schema::migrate(&mut conn)?;
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
