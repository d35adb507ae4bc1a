//! What each agent client may do with each connected provider, as Cedar policies
//! (`cedar-policy`), compiled once and evaluated on every call. Never fails open.
//!
//! Two sources make one policy set:
//! - the user's consent choices ([`AgentAccess`]) become permits named `consent/<n>`:
//!   `read` permits reads; `write` permits reads and writes; `ask` permits reads, and writes
//!   under `@itl("prompt")`; `none` permits nothing;
//! - the user's own rules in [`POLICY_FILE`] in the broker's home, validated strictly against
//!   [`SCHEMA`]. A rule's `@id("…")` names it, else its place does (`policy.cedar:<line>`,
//!   with `:<column>` for a second rule on one line). Templates are refused.
//!   `@itl` (Keycard's annotation: ask a human before allowing) works as in Keycard's own
//!   agent policy, and only on a permit.
//!
//! A call is `Agent::"<client key>"` doing `Action::"read"` (GET, HEAD, OPTIONS) or
//! `Action::"write"` (any other method) on `Provider::"<resource URL>"`, with context
//! `{ method, host, path }` as the call is sent (method upper-cased, host lower-cased).
//!
//! The [`Decision`]: a satisfied forbid denies, and so does a rule that fails to evaluate
//! (Cedar would skip it, but a skipped forbid or `@itl` permit would let a call through that
//! the user meant to stop or to see). Otherwise a satisfied permit marked `@itl` asks (an explicit ask is never overridden by a
//! broader allow); otherwise a satisfied permit allows; with none, the call is denied.

mod compile;
mod decide;
mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod user_tests;

use std::collections::HashMap;
use std::path::Path;

use cedar_policy::{Authorizer, Entities, PolicyId, PolicySet};
use serde::{Deserialize, Serialize};

use crate::activity::words;
pub use schema::SCHEMA;

/// The user's own rules, in the broker's home.
pub const POLICY_FILE: &str = "policy.cedar";

/// What the user granted an agent on one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Nothing.
    None,
    /// GET, HEAD and OPTIONS.
    Read,
    /// Reads; every write waits for the user's approval.
    Ask,
    /// Reads and writes.
    Write,
}

words!(Access {
    None = "none",
    Read = "read",
    Ask = "ask",
    Write = "write",
});

/// The two kinds of call a consent choice speaks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodClass {
    Read,
    Write,
}

impl MethodClass {
    /// GET, HEAD and OPTIONS read; every other method, unknown ones too, writes (the stricter
    /// class). Case-insensitive, like the upstream call, which upper-cases the method.
    pub fn of(method: &str) -> MethodClass {
        let read = ["GET", "HEAD", "OPTIONS"];
        if read.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            MethodClass::Read
        } else {
            MethodClass::Write
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MethodClass::Read => "read",
            MethodClass::Write => "write",
        }
    }
}

impl std::fmt::Display for MethodClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One consent choice: `client` (the agent's key) may do `access` on `resource` (a provider's
/// resource identifier URL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct AgentAccess {
    pub client: String,
    pub resource: String,
    pub access: Access,
}

/// The facts of one call that the rules may look at.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub client: &'a str,
    pub resource: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

/// What to do with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `rule` (a satisfied permit) allows it.
    Allow { rule: String },
    /// `rule` (a satisfied permit marked `@itl`) allows it once a human approves.
    Ask { rule: String },
    /// A satisfied (or failing) forbid `rule`, or no permit at all (`None`); `reason` says
    /// who may not do what where, in plain words.
    Deny {
        rule: Option<String>,
        reason: String,
    },
}

/// Whether a rule permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum RuleEffect {
    Permit,
    Forbid,
}

/// One effective rule, for `policy show` and the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct RuleView {
    /// `consent/<n>`, the rule's `@id`, or `policy.cedar:<line>`.
    pub id: String,
    pub effect: RuleEffect,
    /// Carries `@itl`: a human approves each call it allows.
    pub asks: bool,
    /// The rule as Cedar text.
    pub source: String,
    /// The agent a consent rule is about (`None` for the user's rules).
    pub client: Option<String>,
    /// The provider a consent rule is about (`None` for the user's rules).
    pub resource: Option<String>,
}

/// The user's rules cannot be used; `line` and `column` are 1-based (0 when the whole file
/// is meant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", place(.file, *.line, *.column))]
pub struct PolicyError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

fn place(file: &str, line: u32, column: u32) -> String {
    if line == 0 {
        file.to_string()
    } else {
        format!("{file}:{line}:{column}")
    }
}

/// The compiled rules: consent choices first, then the user's. Cheap to evaluate, shared
/// across calls.
pub struct Policy {
    /// Every rule, in order (consent first); a rule's place here breaks ties in decisions.
    rules: Vec<RuleView>,
    /// Policy id (the rule's id) → its place in `rules`.
    index: HashMap<PolicyId, usize>,
    /// Per client and provider, the consent rules about that pair plus the user's: a call
    /// evaluates only those (the others name another agent or provider, so never apply).
    per_pair: HashMap<String, HashMap<String, PolicySet>>,
    /// The user's rules alone, for pairs without consent rules.
    others: PolicySet,
    authorizer: Authorizer,
    entities: Entities,
    names: schema::Names,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Consent choices plus the user's rules (file path for messages, its text).
    pub fn build(
        grants: &[AgentAccess],
        user: Option<(&Path, &str)>,
    ) -> Result<Policy, PolicyError> {
        let schema = schema::schema()?;
        let consent = compile::consent(grants)?;
        let user = match user {
            Some((path, text)) => compile::user(path, text, &schema)?,
            None => Vec::new(),
        };
        let mut others = PolicySet::new();
        for (policy, _) in &user {
            compile::add(&mut others, policy)?;
        }
        let mut per_pair: HashMap<String, HashMap<String, PolicySet>> = HashMap::new();
        for (policy, view) in &consent {
            if let (Some(client), Some(resource)) = (&view.client, &view.resource) {
                let set = per_pair
                    .entry(client.clone())
                    .or_default()
                    .entry(resource.clone())
                    .or_insert_with(|| others.clone());
                compile::add(set, policy)?;
            }
        }
        let rules: Vec<RuleView> = consent.into_iter().chain(user).map(|(_, v)| v).collect();
        let index = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (PolicyId::new(&r.id), i))
            .collect();
        Ok(Policy {
            rules,
            index,
            per_pair,
            others,
            authorizer: Authorizer::new(),
            entities: Entities::empty(),
            names: schema::Names::new()?,
        })
    }

    /// Reads `path` if it exists (absent = no user rules) and builds.
    pub fn load(path: &Path, grants: &[AgentAccess]) -> Result<Policy, PolicyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Policy::build(grants, Some((path, &text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Policy::build(grants, None),
            Err(e) => Err(PolicyError {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                message: match e.kind() {
                    std::io::ErrorKind::InvalidData => "is not UTF-8 text".to_string(),
                    _ => format!("cannot be read: {e}"),
                },
            }),
        }
    }

    /// The effective rules for one client (or all when `None`): its consent rules, then the
    /// user's rules.
    pub fn rules(&self, client: Option<&str>) -> Vec<RuleView> {
        self.rules
            .iter()
            .filter(|r| match (&r.client, client) {
                (Some(own), Some(wanted)) => own == wanted,
                _ => true,
            })
            .cloned()
            .collect()
    }
}
