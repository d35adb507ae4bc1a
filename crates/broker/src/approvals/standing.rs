//! The user's "allow for 1 hour" answers: for a while, calls of one agent to one provider in
//! one method class no longer ask. A read allowance never covers a write, nor a write one a
//! read: the user allowed what they saw, and a write is not "more of the same" as a read.

pub(super) use crate::policy::MethodClass;
use tokio::time::Instant;

use super::DecidedBy;

struct Standing {
    client: String,
    resource: String,
    class: MethodClass,
    until: Instant,
    by: DecidedBy,
}

impl Standing {
    fn is_for(&self, client: &str, resource: &str, class: MethodClass) -> bool {
        self.client == client && self.resource == resource && self.class == class
    }
}

/// At most one allowance per (client, resource, class): granting again extends it, so the
/// list stays as short as the user's clicks.
#[derive(Default)]
pub(super) struct Standings {
    all: Vec<Standing>,
}

impl Standings {
    /// Who granted the allowance covering this call, if one stands at `now`.
    pub(super) fn covers(
        &mut self,
        client: &str,
        resource: &str,
        class: MethodClass,
        now: Instant,
    ) -> Option<DecidedBy> {
        self.all.retain(|s| s.until > now);
        self.all
            .iter()
            .find(|s| s.is_for(client, resource, class))
            .map(|s| s.by)
    }

    pub(super) fn grant(
        &mut self,
        client: &str,
        resource: &str,
        class: MethodClass,
        until: Instant,
        by: DecidedBy,
    ) {
        self.all.retain(|s| !s.is_for(client, resource, class));
        self.all.push(Standing {
            client: client.to_string(),
            resource: resource.to_string(),
            class,
            until,
            by,
        });
    }

    /// Drops the allowances of `client`, or all of them.
    pub(super) fn forget(&mut self, client: Option<&str>) {
        match client {
            Some(client) => self.all.retain(|s| s.client != client),
            None => self.all.clear(),
        }
    }
}
