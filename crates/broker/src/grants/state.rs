//! Grant rows as the state machine writes them: every transition is saved (unless the row
//! changed meanwhile) and announced; last use is recorded at most once a minute.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::BrokerError;
use crate::db::{GrantRecord, SessionRecord};
use crate::events::Event;
use crate::status::{GrantStatus, SessionStatus};

use super::Grants;

/// `last_used_at` is written at most this often per grant (the hot path stays in memory).
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

impl Grants {
    pub(super) fn require_session(&self) -> Result<SessionRecord, BrokerError> {
        let session = self.db.session()?.ok_or(BrokerError::NotSignedIn)?;
        if session.status == SessionStatus::NeedsLogin {
            return Err(BrokerError::SessionExpired(
                session
                    .last_error
                    .unwrap_or_else(|| "the zone ended it".into()),
            ));
        }
        Ok(session)
    }

    pub(super) fn save_grant(&self, record: GrantRecord) -> Result<(), BrokerError> {
        let previous = self.db.grant(&record.resource)?;
        self.db.put_grant(&record)?;
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.status != record.status || p.last_error != record.last_error);
        if changed {
            self.events.emit(Event::GrantChanged {
                resource: record.resource.clone(),
                status: record.status,
                reason: record.last_error.clone(),
            });
        }
        Ok(())
    }

    /// Moves `grant` (as read earlier) to `status`, unless it changed since it was read.
    pub(super) fn mark(
        &self,
        grant: &GrantRecord,
        status: GrantStatus,
        reason: Option<String>,
    ) -> Result<(), BrokerError> {
        tracing::warn!(resource = %grant.resource, status = status.as_str(), reason = ?reason, "grant changed state");
        let saved = self.save_if_unchanged(
            grant,
            GrantRecord {
                status,
                last_error: reason,
                updated_at: Utc::now(),
                ..grant.clone()
            },
        );
        match saved {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(resource = %grant.resource, "grant changed meanwhile; kept the newer state")
            }
            // The caller reports the state change itself; a full disk must not hide it.
            Err(e) => {
                tracing::error!(error = %e, resource = %grant.resource, "could not record the grant's new state")
            }
        }
        Ok(())
    }

    /// [`Grants::save_grant`] guarded by the row's `updated_at` as `before` saw it.
    pub(super) fn save_if_unchanged(
        &self,
        before: &GrantRecord,
        record: GrantRecord,
    ) -> Result<bool, BrokerError> {
        if !self.db.put_grant_if_unchanged(&record, before.updated_at)? {
            return Ok(false);
        }
        if before.status != record.status || before.last_error != record.last_error {
            self.events.emit(Event::GrantChanged {
                resource: record.resource.clone(),
                status: record.status,
                reason: record.last_error.clone(),
            });
        }
        Ok(true)
    }

    pub(super) fn remember_use(&self, resource: &str) {
        let mut used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
        used.insert(resource.to_string(), Instant::now());
    }

    /// Records use on a cache hit, at most once per [`LAST_USED_RESOLUTION`].
    pub(super) fn touch(&self, grant: &GrantRecord) -> Result<(), BrokerError> {
        {
            let used = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
            if used
                .get(&grant.resource)
                .is_some_and(|t| t.elapsed() < LAST_USED_RESOLUTION)
            {
                return Ok(());
            }
        }
        self.remember_use(&grant.resource);
        self.db.touch_grant(&grant.resource, Utc::now())?;
        Ok(())
    }

    /// The upstream said the token lacks scope: the user must reconnect (DESIGN.md lifecycle).
    pub fn require_reconnect(&self, resource: &str, reason: &str) -> Result<(), BrokerError> {
        self.invalidate(resource);
        if let Some(grant) = self.db.grant(resource)? {
            self.mark(
                &grant,
                GrantStatus::NeedsReconnect,
                Some(reason.to_string()),
            )?;
        }
        Ok(())
    }
}

pub(super) fn missing_scopes(required: &[String], granted: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|r| !granted.contains(r))
        .cloned()
        .collect()
}

pub(super) fn scope_reason(missing: &[String]) -> String {
    format!("the zone no longer grants {}", missing.join(" "))
}
