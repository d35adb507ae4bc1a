//! Resources the user added beside the seed catalog.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Db, DbError, parse_time};

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

impl Db {
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
