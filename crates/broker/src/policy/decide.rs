//! One call against the compiled rules: only the request and its context are made per call.

use cedar_policy::{AuthorizationError, Context, PolicyId, Request, RestrictedExpression};

use super::{CallFacts, Decision, MethodClass, Policy};

impl Policy {
    /// What to do with one call. Never fails open: a rule that cannot be evaluated denies.
    pub fn decide(&self, facts: &CallFacts) -> Decision {
        let class = MethodClass::of(facts.method);
        let (client, resource) = (|| shown(facts.client), || shown(facts.resource));
        let deny = |rule: Option<String>, why: String| Decision::Deny {
            rule,
            reason: format!("{}'s {class}s to {} {why}", client(), resource()),
        };
        let request = match self.request(facts, class) {
            Ok(request) => request,
            Err(e) => return deny(None, format!("cannot be checked ({e})")),
        };
        let set = self
            .per_pair
            .get(facts.client)
            .and_then(|by_resource| by_resource.get(facts.resource))
            .unwrap_or(&self.others);
        let response = self.authorizer.is_authorized(&request, set, &self.entities);
        let diagnostics = response.diagnostics();
        // Cedar's reasons are the satisfied forbids when it denies, the satisfied permits when
        // it allows.
        let satisfied = self.in_order(diagnostics.reason());
        if response.decision() == cedar_policy::Decision::Deny
            && let Some(&(_, forbid)) = satisfied.first()
        {
            let id = self.id(forbid);
            let why = format!("are forbidden by rule {id}");
            return deny(Some(id), why);
        }
        // Cedar skips a rule that fails; here a failing rule denies, whatever it was.
        let failed = diagnostics
            .errors()
            .map(|AuthorizationError::PolicyEvaluationError(e)| e)
            .min_by_key(|e| self.place(e.policy_id()));
        if let Some(e) = failed {
            let id = self.id(e.policy_id());
            let why = format!("are denied: rule {id} failed ({})", e.inner());
            return deny(Some(id), why);
        }
        if response.decision() == cedar_policy::Decision::Allow {
            let asks =
                |&&(place, _): &&(usize, &PolicyId)| self.rules.get(place).is_some_and(|r| r.asks);
            if let Some(&(_, rule)) = satisfied.iter().find(asks) {
                return Decision::Ask {
                    rule: self.id(rule),
                };
            }
            if let Some(&(_, rule)) = satisfied.first() {
                return Decision::Allow {
                    rule: self.id(rule),
                };
            }
        }
        Decision::Deny {
            rule: None,
            reason: format!("{} has no access to {} for {class}s", client(), resource()),
        }
    }

    fn request(&self, facts: &CallFacts, class: MethodClass) -> Result<Request, String> {
        let text = RestrictedExpression::new_string;
        let context = Context::from_pairs([
            (
                "method".to_string(),
                text(facts.method.to_ascii_uppercase()),
            ),
            ("host".to_string(), text(facts.host.to_ascii_lowercase())),
            ("path".to_string(), text(facts.path.to_string())),
        ])
        .map_err(|e| e.to_string())?;
        Request::new(
            self.names.agent(facts.client),
            self.names.action(class),
            self.names.provider(facts.resource),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }

    /// These rules with their places, in the rules' order (consent first, then the file's).
    fn in_order<'a>(&self, ids: impl Iterator<Item = &'a PolicyId>) -> Vec<(usize, &'a PolicyId)> {
        let mut found: Vec<(usize, &PolicyId)> = ids.map(|id| (self.place(id), id)).collect();
        found.sort_unstable_by_key(|&(place, _)| place);
        found
    }

    /// A rule's place in the order; unknown ids (there are none) last.
    fn place(&self, id: &PolicyId) -> usize {
        self.index.get(id).copied().unwrap_or(usize::MAX)
    }

    fn id(&self, id: &PolicyId) -> String {
        let rule = self.index.get(id).and_then(|&i| self.rules.get(i));
        rule.map_or_else(|| id.to_string(), |r| r.id.clone())
    }
}

/// A name as it goes into a reason: as is, unless control characters would let it forge lines.
fn shown(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().any(char::is_control) {
        name.escape_debug().to_string().into()
    } else {
        name.into()
    }
}
