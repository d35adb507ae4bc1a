//! The rows behind agent sign-in: registered agent clients, refresh tokens (SHA-256 only:
//! a copied database signs nobody in) and the user's access choices per agent and provider.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError, parse_time};
use crate::policy::{Access, AgentAccess};

/// How an agent told the broker who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Dynamic Client Registration: the name is whatever the agent said (unverified).
    Dcr,
    /// A Client ID Metadata Document fetched from the agent's https URL (verified origin).
    Cimd,
}

impl Registration {
    fn as_str(self) -> &'static str {
        match self {
            Registration::Dcr => "dcr",
            Registration::Cimd => "cimd",
        }
    }
}

/// An agent that signs in with OAuth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct AgentRecord {
    pub client_id: String,
    pub name: String,
    pub registration: Registration,
    pub redirect_uris: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A refresh token's row.
#[derive(Debug, Clone)]
pub struct RefreshRow {
    pub client_id: String,
    pub grant_id: String,
    pub expires_at: DateTime<Utc>,
    /// Set when the token was exchanged; a second use is a replay.
    pub used: bool,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Arc<Db>,
}

impl Store {
    pub fn new(db: Arc<Db>) -> Store {
        Store { db }
    }

    /// Inserts or refreshes a client (a CIMD document may have changed its name or URIs).
    pub fn save_client(&self, client: &AgentRecord) -> Result<(), DbError> {
        let uris = serde_json::to_string(&client.redirect_uris)
            .map_err(|e| DbError::Sqlite(e.to_string()))?;
        self.db.with(|c| {
            c.execute(
                "INSERT INTO agent_clients (client_id, name, registration, redirect_uris, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(client_id) DO UPDATE SET name = excluded.name,
                     redirect_uris = excluded.redirect_uris",
                params![
                    client.client_id,
                    client.name,
                    client.registration.as_str(),
                    uris,
                    client.created_at.to_rfc3339()
                ],
            )?;
            Ok(())
        })
    }

    pub fn client(&self, client_id: &str) -> Result<Option<AgentRecord>, DbError> {
        Ok(self
            .query("WHERE client_id = ?1", params![client_id])?
            .into_iter()
            .next())
    }

    pub fn clients(&self) -> Result<Vec<AgentRecord>, DbError> {
        self.query("", params![])
    }

    fn query(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<AgentRecord>, DbError> {
        self.db.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT client_id, name, registration, redirect_uris, created_at, last_seen_at
                 FROM agent_clients {filter} ORDER BY created_at DESC"
            ))?;
            let rows = stmt.query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (client_id, name, registration, uris, created, seen) = row?;
                let what = format!("agent_clients row {client_id}");
                Ok(AgentRecord {
                    registration: match registration.as_str() {
                        "dcr" => Registration::Dcr,
                        "cimd" => Registration::Cimd,
                        _ => return Err(DbError::Corrupt(what)),
                    },
                    redirect_uris: serde_json::from_str(&uris)
                        .map_err(|_| DbError::Corrupt(what.clone()))?,
                    created_at: parse_time(&created, &what)?,
                    last_seen_at: seen.map(|s| parse_time(&s, &what)).transpose()?,
                    client_id,
                    name,
                })
            })
            .collect()
        })
    }

    pub fn touch(&self, client_id: &str) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute(
                "UPDATE agent_clients SET last_seen_at = ?2 WHERE client_id = ?1",
                params![client_id, Utc::now().to_rfc3339()],
            )?;
            Ok(())
        })
    }

    /// Deletes the client, its tokens and its access choices.
    pub fn remove_client(&self, client_id: &str) -> Result<bool, DbError> {
        self.db.with(|c| {
            c.execute(
                "DELETE FROM agent_tokens WHERE client_id = ?1",
                params![client_id],
            )?;
            c.execute(
                "DELETE FROM agent_access WHERE client = ?1",
                params![client_id],
            )?;
            Ok(c.execute(
                "DELETE FROM agent_clients WHERE client_id = ?1",
                params![client_id],
            )? > 0)
        })
    }

    pub fn insert_refresh(
        &self,
        hash: &str,
        client_id: &str,
        grant_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        self.db.with(|c| {
            c.execute(
                "INSERT INTO agent_tokens (hash, client_id, grant_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, client_id, grant_id, expires_at.to_rfc3339()],
            )?;
            Ok(())
        })
    }

    pub fn refresh(&self, hash: &str) -> Result<Option<RefreshRow>, DbError> {
        self.db.with(|c| {
            let row = c
                .query_row(
                    "SELECT client_id, grant_id, expires_at, used_at IS NOT NULL FROM agent_tokens WHERE hash = ?1",
                    params![hash],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, bool>(3)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(client_id, grant_id, expires, used)| {
                Ok(RefreshRow {
                    expires_at: parse_time(&expires, "agent_tokens.expires_at")?,
                    client_id,
                    grant_id,
                    used,
                })
            })
            .transpose()
        })
    }

    /// Marks a refresh token used; false when it already was (a concurrent or replayed use).
    pub fn use_refresh(&self, hash: &str) -> Result<bool, DbError> {
        self.db.with(|c| {
            Ok(c.execute(
                "UPDATE agent_tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL",
                params![hash, Utc::now().to_rfc3339()],
            )? == 1)
        })
    }

    /// Ends one sign-in: every refresh token of the grant.
    pub fn delete_grant(&self, grant_id: &str) -> Result<usize, DbError> {
        self.db.with(|c| {
            Ok(c.execute(
                "DELETE FROM agent_tokens WHERE grant_id = ?1",
                params![grant_id],
            )?)
        })
    }

    pub fn delete_client_tokens(&self, client_id: &str) -> Result<usize, DbError> {
        self.db.with(|c| {
            Ok(c.execute(
                "DELETE FROM agent_tokens WHERE client_id = ?1",
                params![client_id],
            )?)
        })
    }

    /// Every access choice (the policy is built from all of them).
    pub fn access(&self) -> Result<Vec<AgentAccess>, DbError> {
        self.db.with(|c| {
            let mut stmt = c.prepare(
                "SELECT client, resource, access FROM agent_access ORDER BY client, resource",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(AgentAccess {
                    client: r.get(0)?,
                    resource: r.get(1)?,
                    access: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Replaces a client's choices with `choices` (`none` rows are not stored).
    pub fn set_access(&self, client: &str, choices: &[(String, Access)]) -> Result<(), DbError> {
        self.db.with(|c| {
            let tx = c.unchecked_transaction()?;
            tx.execute(
                "DELETE FROM agent_access WHERE client = ?1",
                params![client],
            )?;
            for (resource, access) in choices {
                if *access != Access::None {
                    tx.execute(
                        "INSERT INTO agent_access (client, resource, access) VALUES (?1, ?2, ?3)",
                        params![client, resource, access],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}
