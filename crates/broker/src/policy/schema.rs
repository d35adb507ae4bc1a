//! The Cedar schema every rule is checked against, and the names a request is made of.

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Schema};

use super::{MethodClass, PolicyError};

/// Agents act on providers; the context is the call as it is sent.
pub const SCHEMA: &str = r#"entity Agent;
entity Provider;
action read, write appliesTo {
  principal: Agent,
  resource: Provider,
  context: { method: String, host: String, path: String }
};
"#;

pub(super) const AGENT: &str = "Agent";
pub(super) const PROVIDER: &str = "Provider";

/// A failure in what the broker itself generates (the schema, a consent rule): a bug, reported
/// rather than panicked on.
pub(super) fn internal(what: &str, error: impl std::fmt::Display) -> PolicyError {
    PolicyError {
        file: "built-in policy".to_string(),
        line: 0,
        column: 0,
        message: format!("{what}: {error}"),
    }
}

pub(super) fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| internal("the schema does not parse", e))
}

/// Parsed once per build, cloned per call (cheap: shared strings).
#[derive(Debug, Clone)]
pub(super) struct Names {
    agent: EntityTypeName,
    provider: EntityTypeName,
    read: EntityUid,
    write: EntityUid,
}

impl Names {
    pub(super) fn new() -> Result<Names, PolicyError> {
        let name = |n: &str| {
            n.parse::<EntityTypeName>()
                .map_err(|e| internal("an entity type name does not parse", e))
        };
        let action = name("Action")?;
        Ok(Names {
            agent: name(AGENT)?,
            provider: name(PROVIDER)?,
            read: EntityUid::from_type_name_and_id(action.clone(), EntityId::new("read")),
            write: EntityUid::from_type_name_and_id(action, EntityId::new("write")),
        })
    }

    pub(super) fn agent(&self, client: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.agent.clone(), EntityId::new(client))
    }

    pub(super) fn provider(&self, resource: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.provider.clone(), EntityId::new(resource))
    }

    pub(super) fn action(&self, class: MethodClass) -> EntityUid {
        match class {
            MethodClass::Read => self.read.clone(),
            MethodClass::Write => self.write.clone(),
        }
    }
}
