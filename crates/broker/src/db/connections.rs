//! Connection (grant) rows: status, scopes, timestamps, the last error, and the in-memory
//! cache that keeps the hot path off the SQLite mutex.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Db, DbError, parse_time};
use crate::status::GrantStatus;

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

/// How long a cached grant row is trusted without a change made through this `Db`. Every
/// in-process write invalidates at once; the bound only matters for another process writing
/// the same file (the CLI acting on the store while no broker runs, then one starting).
const GRANT_CACHE_TTL: Duration = Duration::from_secs(2);

/// Grant rows read on the hot path (every `call_api`), so an agent's call never waits on the
/// SQLite mutex behind the audit writer. Valid while `generation` is unchanged.
#[derive(Default)]
pub(super) struct GrantCache {
    generation: u64,
    rows: HashMap<String, (Instant, Option<GrantRecord>)>,
}

impl Db {
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
