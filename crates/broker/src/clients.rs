//! Registered agent clients (Claude Code, Cursor, …). Each gets a random 256-bit bearer
//! token, shown once; SQLite keeps only its SHA-256, so a stolen database grants nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use rusqlite::params;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{Db, DbError, parse_time};

/// Prefix that makes a leaked client token recognisable (secret scanners, logs review).
const TOKEN_PREFIX: &str = "kcb_";
const LAST_SEEN_RESOLUTION: Duration = Duration::from_secs(60);
/// How long the in-memory table of token hashes is trusted. Changes made through this
/// `Clients` (add, issue, remove; the CLI reaches them through the control socket) clear it
/// at once; the bound only covers another process editing the file directly.
const TABLE_TTL: Duration = Duration::from_secs(2);

/// Token hash → client name, so authenticating a request needs no SQLite round trip and a
/// flood of wrong tokens never reaches the database.
#[derive(Debug)]
struct Table {
    loaded_at: Instant,
    by_hash: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid client name {0:?}: use 1-64 letters, digits, '.', '_' or '-'")]
    BadName(String),
    #[error("a client named {0:?} already exists; remove it first or pick another name")]
    Exists(String),
    #[error("no client named {0:?}")]
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct ClientRecord {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A freshly issued client and its token (the only time the token exists in clear).
#[derive(Debug)]
pub struct IssuedClient {
    pub name: String,
    pub token: SecretString,
}

#[derive(Debug, Clone)]
pub struct Clients {
    db: Arc<Db>,
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    table: Arc<Mutex<Option<Table>>>,
}

pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn validate_name(name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ClientError::BadName(name.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Clients {
    pub fn new(db: Arc<Db>) -> Clients {
        Clients {
            db,
            seen: Arc::default(),
            table: Arc::default(),
        }
    }

    fn forget_table(&self) {
        *self.table.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn load_table(&self) -> Result<Table, DbError> {
        let by_hash = self.db.with(|c| {
            let mut stmt = c.prepare("SELECT token_hash, name FROM clients")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            Ok(rows.collect::<Result<HashMap<_, _>, _>>()?)
        })?;
        Ok(Table {
            loaded_at: Instant::now(),
            by_hash,
        })
    }

    /// Registers a client and returns its token (once).
    pub fn add(&self, name: &str) -> Result<IssuedClient, ClientsError> {
        validate_name(name)?;
        let token = new_token();
        let hash = hash_token(token.expose_secret());
        let inserted = self.db.with(|c| {
            Ok(c.execute(
                "INSERT INTO clients (name, token_hash, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO NOTHING",
                params![name, hash, Utc::now().to_rfc3339()],
            )?)
        })?;
        if inserted == 0 {
            return Err(ClientError::Exists(name.to_string()).into());
        }
        self.forget_table();
        Ok(IssuedClient {
            name: name.to_string(),
            token,
        })
    }

    /// Issues a new token for an existing client (the old one stops working at once), or
    /// registers it. Used when writing a client's config, since tokens are not recoverable.
    pub fn issue(&self, name: &str) -> Result<IssuedClient, ClientsError> {
        validate_name(name)?;
        let token = new_token();
        let hash = hash_token(token.expose_secret());
        self.db.with(|c| {
            c.execute(
                "INSERT INTO clients (name, token_hash, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash",
                params![name, hash, Utc::now().to_rfc3339()],
            )?;
            Ok(())
        })?;
        self.forget_table();
        Ok(IssuedClient {
            name: name.to_string(),
            token,
        })
    }

    pub fn list(&self) -> Result<Vec<ClientRecord>, ClientsError> {
        Ok(self.db.with(|c| {
            let mut stmt =
                c.prepare("SELECT name, created_at, last_seen_at FROM clients ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (name, created, seen) = row?;
                Ok(ClientRecord {
                    name,
                    created_at: parse_time(&created, "clients.created_at")?,
                    last_seen_at: seen
                        .as_deref()
                        .map(|s| parse_time(s, "clients.last_seen_at"))
                        .transpose()?,
                })
            })
            .collect()
        })?)
    }

    /// Removes a client; its token stops working on the next request.
    pub fn remove(&self, name: &str) -> Result<(), ClientsError> {
        let removed = self
            .db
            .with(|c| Ok(c.execute("DELETE FROM clients WHERE name = ?1", [name])?))?;
        self.forget_table();
        if removed == 0 {
            return Err(ClientError::Unknown(name.to_string()).into());
        }
        Ok(())
    }

    /// The client a bearer token belongs to, if any. Looked up by hash on every request
    /// (in memory; a removal or reissue clears the table, so it takes effect at once).
    pub fn authenticate(&self, token: &str) -> Result<Option<String>, ClientsError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(token);
        let name = {
            let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            if table
                .as_ref()
                .is_none_or(|t| t.loaded_at.elapsed() >= TABLE_TTL)
            {
                *table = Some(self.load_table()?);
            }
            table.as_ref().and_then(|t| t.by_hash.get(&hash).cloned())
        };
        if let Some(name) = &name
            && let Err(e) = self.touch(name)
        {
            // Bookkeeping only: a full disk must not lock agents out.
            tracing::warn!(error = %e, client = %name, "could not record client use");
        }
        Ok(name)
    }

    fn touch(&self, name: &str) -> Result<(), ClientsError> {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(name)
                .is_some_and(|t| t.elapsed() < LAST_SEEN_RESOLUTION)
            {
                return Ok(());
            }
            seen.insert(name.to_string(), Instant::now());
        }
        self.db.with(|c| {
            c.execute(
                "UPDATE clients SET last_seen_at = ?1 WHERE name = ?2",
                params![Utc::now().to_rfc3339(), name],
            )?;
            Ok(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_hashed_and_revocable() {
        let clients = Clients::new(Arc::new(Db::open_in_memory().unwrap()));
        let issued = clients.add("claude-code").unwrap();
        let token = issued.token.expose_secret().to_string();
        assert!(token.len() >= TOKEN_PREFIX.len() + 43, "32 random bytes");
        assert_eq!(
            clients.authenticate(&token).unwrap().as_deref(),
            Some("claude-code")
        );
        assert_eq!(clients.authenticate("kcb_wrong").unwrap(), None);
        assert_eq!(clients.authenticate("ghp_not_ours").unwrap(), None);
        assert!(matches!(
            clients.add("claude-code"),
            Err(ClientsError::Client(ClientError::Exists(_)))
        ));
        let stored: String = clients
            .db
            .with(|c| Ok(c.query_row("SELECT token_hash FROM clients", [], |r| r.get(0))?))
            .unwrap();
        assert_ne!(stored, token);
        assert!(!stored.contains(&token[4..]));
        let rotated = clients.issue("claude-code").unwrap();
        assert_eq!(
            clients.authenticate(&token).unwrap(),
            None,
            "old token dead after rotation"
        );
        assert!(
            clients
                .authenticate(rotated.token.expose_secret())
                .unwrap()
                .is_some()
        );
        clients.remove("claude-code").unwrap();
        assert_eq!(
            clients.authenticate(rotated.token.expose_secret()).unwrap(),
            None
        );
        assert!(clients.remove("claude-code").is_err());
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("cursor-1.work_x").is_ok());
        for bad in ["", "a b", "x/y", "é", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
