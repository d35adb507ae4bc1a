//! Rules into Cedar: consent choices through Cedar's JSON form (so client keys and resource
//! URLs are data, never spliced into policy text), the user's file parsed, named and validated.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use serde_json::json;

use super::schema::{AGENT, PROVIDER, internal};
use super::{Access, AgentAccess, MethodClass, PolicyError, RuleEffect, RuleView};

/// Each rule as Cedar evaluates it and as people see it.
pub(super) type Compiled = Vec<(cedar_policy::Policy, RuleView)>;

/// Consent rules are named `consent/<n>`; the user's `@id`s may not take that prefix.
const CONSENT: &str = "consent/";
/// The annotation that asks a human first, and the value consent rules give it.
const ITL: &str = "itl";
const ITL_PROMPT: &str = "prompt";

pub(super) fn consent(grants: &[AgentAccess]) -> Result<Compiled, PolicyError> {
    let mut out = Compiled::new();
    for grant in grants {
        let actions: &[(MethodClass, bool)] = match grant.access {
            Access::None => &[],
            Access::Read => &[(MethodClass::Read, false)],
            Access::Ask => &[(MethodClass::Read, false), (MethodClass::Write, true)],
            Access::Write => &[(MethodClass::Read, false), (MethodClass::Write, false)],
        };
        for &(class, asks) in actions {
            let id = format!("{CONSENT}{}", out.len());
            let annotations = if asks {
                json!({ ITL: ITL_PROMPT })
            } else {
                json!({})
            };
            let est = json!({
                "effect": "permit",
                "principal": { "op": "==", "entity": { "type": AGENT, "id": grant.client } },
                "action": { "op": "==", "entity": { "type": "Action", "id": class.as_str() } },
                "resource": { "op": "==", "entity": { "type": PROVIDER, "id": grant.resource } },
                "conditions": [],
                "annotations": annotations,
            });
            let policy = cedar_policy::Policy::from_json(Some(PolicyId::new(&id)), est)
                .map_err(|e| internal("a consent rule does not compile", e))?;
            let view = RuleView {
                id,
                effect: RuleEffect::Permit,
                asks,
                source: policy.to_cedar().unwrap_or_else(|| policy.to_string()),
                client: Some(grant.client.clone()),
                resource: Some(grant.resource.clone()),
            };
            out.push((policy, view));
        }
    }
    Ok(out)
}

/// The user's rules in `text` (read from `path`), each under its `@id` or its place.
pub(super) fn user(path: &Path, text: &str, schema: &Schema) -> Result<Compiled, PolicyError> {
    let file = path.display().to_string();
    let short = path
        .file_name()
        .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
    let at = |offset: usize, message: String| error_at(&file, text, offset, message);
    let parsed = PolicySet::from_str(text).map_err(|errors| match first(errors.iter()) {
        Some((offset, e)) => at(offset, describe(e)),
        None => at(0, errors.to_string()),
    })?;
    let mut out = Compiled::new();
    // Rule id → the line it is on, to name the first holder of a duplicate.
    let mut taken: HashMap<String, u32> = HashMap::new();
    let mut cursor = 0;
    // The parser names policies and templates `policy0`, `policy1`, … in the file's order.
    for n in 0..parsed.num_of_policies() + parsed.num_of_templates() {
        let generated = PolicyId::new(format!("policy{n}"));
        if let Some(template) = parsed.template(&generated) {
            let offset = locate(text, cursor, &template.to_cedar());
            let what = "templates (`?principal`, `?resource`) are not supported; \
                        name the agent and the provider, or leave them open";
            return Err(at(offset, what.to_string()));
        }
        let policy = parsed
            .policy(&generated)
            .ok_or_else(|| internal("a parsed rule is missing", &generated))?;
        let source = policy.to_cedar().unwrap_or_else(|| policy.to_string());
        let offset = locate(text, cursor, &source);
        cursor = offset + source.len();
        let (line, column) = line_column(text, offset);
        let asks = policy.annotation(ITL).is_some();
        let effect = match policy.effect() {
            Effect::Permit => RuleEffect::Permit,
            Effect::Forbid => RuleEffect::Forbid,
        };
        if asks && effect == RuleEffect::Forbid {
            let what = "`@itl` asks a human before allowing, so on a forbid it means nothing; \
                        put it on a permit";
            return Err(at(offset, what.to_string()));
        }
        let id = match policy.annotation("id") {
            Some(id) if id.trim().is_empty() => {
                return Err(at(
                    offset,
                    "`@id` is empty; give the rule a name".to_string(),
                ));
            }
            Some(id) if id.starts_with(CONSENT) => {
                let what = format!(
                    "`@id(\"{id}\")`: names starting with `{CONSENT}` are the consent rules'"
                );
                return Err(at(offset, what));
            }
            Some(id) => id.to_string(),
            None if taken.contains_key(&format!("{short}:{line}")) => {
                format!("{short}:{line}:{column}")
            }
            None => format!("{short}:{line}"),
        };
        if let Some(first) = taken.insert(id.clone(), line) {
            let what = format!("rule id `{id}` is already used by the rule on line {first}");
            return Err(at(offset, what));
        }
        let view = RuleView {
            id: id.clone(),
            effect,
            asks,
            source,
            client: None,
            resource: None,
        };
        out.push((policy.new_id(PolicyId::new(id)), view));
    }
    validate(&out, schema, &at)?;
    Ok(out)
}

/// Strict validation: every entity type, action and context field must be the schema's.
fn validate(
    rules: &Compiled,
    schema: &Schema,
    at: &impl Fn(usize, String) -> PolicyError,
) -> Result<(), PolicyError> {
    let mut set = PolicySet::new();
    for (policy, _) in rules {
        add(&mut set, policy)?;
    }
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    match first(result.validation_errors()) {
        Some((offset, e)) => {
            // The place already names the rule.
            let message = describe(e);
            let named = format!("for policy `{}`, ", e.policy_id());
            let message = message.strip_prefix(&named).unwrap_or(&message);
            Err(at(offset, message.to_string()))
        }
        None => Ok(()),
    }
}

pub(super) fn add(set: &mut PolicySet, policy: &cedar_policy::Policy) -> Result<(), PolicyError> {
    set.add(policy.clone())
        .map_err(|e| internal("a rule cannot join the policy set", e))
}

/// Where Cedar points (a byte offset into the text), if it does.
fn offset_of(e: &dyn Diagnostic) -> Option<usize> {
    e.labels()?.map(|label| label.offset()).min()
}

/// The error Cedar places first in the file (unplaced ones last).
fn first<'a, E: Diagnostic + 'a>(errors: impl Iterator<Item = &'a E>) -> Option<(usize, &'a E)> {
    errors
        .map(|e| (offset_of(e), e))
        .min_by_key(|(offset, _)| offset.unwrap_or(usize::MAX))
        .map(|(offset, e)| (offset.unwrap_or(0), e))
}

/// Cedar's message, with its hint when it has one.
fn describe(e: &(impl Diagnostic + ?Sized)) -> String {
    match e.help() {
        Some(help) => format!("{e} ({help})"),
        None => e.to_string(),
    }
}

fn error_at(file: &str, text: &str, offset: usize, message: String) -> PolicyError {
    let (line, column) = line_column(text, offset);
    PolicyError {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(line), clamp(column))
}

/// Where a rule's text (a slice of `text` at or after `from`) starts: after blanks and
/// comments, or else wherever it next occurs.
fn locate(text: &str, from: usize, rule: &str) -> usize {
    let mut at = from;
    while let Some(rest) = text.get(at..) {
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if !trimmed.starts_with("//") {
            break;
        }
        at += trimmed.find('\n').unwrap_or(trimmed.len());
    }
    if text.get(at..).is_some_and(|rest| rest.starts_with(rule)) {
        return at;
    }
    text.get(from..)
        .and_then(|rest| rest.find(rule))
        .map_or(at, |i| from + i)
}
