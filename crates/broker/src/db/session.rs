//! The session's public facts (who is signed in, where) and the zone client registration.
//! The refresh token itself is in the keychain.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Db, DbError, parse_time};
use crate::status::SessionStatus;

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

impl Db {
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
}
