//! Consent choices: every level against every method class, precedence, hostile names.

use std::str::FromStr;

use super::*;

pub(super) const GH: &str = "https://api.github.com";
pub(super) const GMAIL: &str = "https://gmail.googleapis.com";

pub(super) fn grant(client: &str, resource: &str, access: Access) -> AgentAccess {
    AgentAccess {
        client: client.to_string(),
        resource: resource.to_string(),
        access,
    }
}

pub(super) fn call<'a>(client: &'a str, resource: &'a str, method: &'a str) -> CallFacts<'a> {
    CallFacts {
        client,
        resource,
        method,
        host: "api.github.com",
        path: "/user/repos",
    }
}

pub(super) fn allow(rule: &str) -> Decision {
    Decision::Allow {
        rule: rule.to_string(),
    }
}

pub(super) fn ask(rule: &str) -> Decision {
    Decision::Ask {
        rule: rule.to_string(),
    }
}

pub(super) fn denied_by(decision: &Decision) -> Option<&str> {
    match decision {
        Decision::Deny { rule, .. } => rule.as_deref(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

const READS: [&str; 4] = ["GET", "HEAD", "OPTIONS", "get"];
const WRITES: [&str; 6] = ["POST", "PUT", "PATCH", "DELETE", "delete", "PROPFIND"];

#[test]
fn words_round_trip_and_methods_have_a_class() {
    for a in [Access::None, Access::Read, Access::Ask, Access::Write] {
        assert_eq!(Access::parse(a.as_str()), Some(a));
        assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        let back: Access = serde_json::from_value(serde_json::json!(a.as_str())).unwrap();
        assert_eq!(back, a);
    }
    assert_eq!(Access::parse("admin"), None);
    for m in READS {
        assert_eq!(MethodClass::of(m), MethodClass::Read, "{m}");
    }
    for m in WRITES.iter().chain(&["", "GETX", "TRACE"]) {
        assert_eq!(MethodClass::of(m), MethodClass::Write, "{m}");
    }
    assert_eq!(MethodClass::Write.as_str(), "write");
}

#[test]
fn access_is_stored_as_its_word() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    let back: Access = db
        .query_row("SELECT ?1", [Access::Ask], |row| row.get(0))
        .unwrap();
    assert_eq!(back, Access::Ask);
    let text: String = db
        .query_row("SELECT ?1", [Access::Write], |row| row.get(0))
        .unwrap();
    assert_eq!(text, "write");
    let bad = db.query_row("SELECT 'all'", [], |row| row.get::<_, Access>(0));
    assert!(bad.is_err());
}

#[test]
fn every_access_level_against_every_method_class() {
    let no = |class: &str| Decision::Deny {
        rule: None,
        reason: format!("cursor has no access to {GH} for {class}s"),
    };
    let cases = [
        (Access::None, no("read"), no("write")),
        (Access::Read, allow("consent/0"), no("write")),
        (Access::Ask, allow("consent/0"), ask("consent/1")),
        (Access::Write, allow("consent/0"), allow("consent/1")),
    ];
    for (access, on_read, on_write) in cases {
        let policy = Policy::build(&[grant("cursor", GH, access)], None).unwrap();
        for m in READS {
            assert_eq!(
                policy.decide(&call("cursor", GH, m)),
                on_read,
                "{access} {m}"
            );
        }
        for m in WRITES {
            assert_eq!(
                policy.decide(&call("cursor", GH, m)),
                on_write,
                "{access} {m}"
            );
        }
    }
}

#[test]
fn an_explicit_ask_is_never_overridden_by_a_broader_allow() {
    // The same pair granted twice (write, then ask): writes still ask.
    let grants = [
        grant("cursor", GH, Access::Write),
        grant("cursor", GH, Access::Ask),
    ];
    let policy = Policy::build(&grants, None).unwrap();
    assert_eq!(policy.decide(&call("cursor", GH, "POST")), ask("consent/3"));
    assert_eq!(
        policy.decide(&call("cursor", GH, "GET")),
        allow("consent/0")
    );
    // A user rule that permits everything does not silence the ask either.
    let text = "permit(principal, action, resource);\n";
    let policy = Policy::build(
        &[grant("cursor", GH, Access::Ask)],
        Some((Path::new("/home/me/policy.cedar"), text)),
    )
    .unwrap();
    assert_eq!(
        policy.decide(&call("cursor", GH, "DELETE")),
        ask("consent/1")
    );
    assert_eq!(
        policy.decide(&call("other", GH, "DELETE")),
        allow("policy.cedar:1")
    );
}

#[test]
fn grants_are_per_client_and_per_provider() {
    let grants = [
        grant("cursor", GH, Access::Write),
        grant("claude-code", GMAIL, Access::Read),
    ];
    let policy = Policy::build(&grants, None).unwrap();
    assert_eq!(
        policy.decide(&call("cursor", GH, "PUT")),
        allow("consent/1")
    );
    assert_eq!(
        policy.decide(&call("claude-code", GMAIL, "GET")),
        allow("consent/2")
    );
    for (client, resource) in [("cursor", GMAIL), ("claude-code", GH), ("nobody", GH)] {
        let decision = policy.decide(&call(client, resource, "GET"));
        assert_eq!(denied_by(&decision), None, "{client} {resource}");
    }
    assert_eq!(
        policy.decide(&call("nobody", GMAIL, "POST")),
        Decision::Deny {
            rule: None,
            reason: format!("nobody has no access to {GMAIL} for writes"),
        }
    );
    // A provider URL is matched exactly, not as a prefix.
    let longer = format!("{GH}/evil");
    assert_eq!(
        denied_by(&policy.decide(&call("cursor", &longer, "GET"))),
        None
    );
}

#[test]
fn hostile_client_keys_and_resources_stay_data() {
    let hostile = [
        r#"a"b\c"#,
        "line\nbreak",
        r#"x", action, resource) when { true }; permit(principal == Agent::"y"#,
        r#"Agent::"y""#,
        "",
        "\\",
        "ünï\u{0}cødé\t",
    ];
    let resource = r#"https://evil.example/"); permit(principal, action, resource"#;
    let mut grants: Vec<AgentAccess> = hostile.iter().map(|c| grant(c, GH, Access::Read)).collect();
    grants.push(grant("q\"uote", resource, Access::Write));
    let policy = Policy::build(&grants, None).unwrap();
    for (n, client) in hostile.iter().enumerate() {
        let rule = format!("consent/{n}");
        assert_eq!(
            policy.decide(&call(client, GH, "GET")),
            allow(&rule),
            "{client:?}"
        );
        assert_eq!(denied_by(&policy.decide(&call(client, GH, "POST"))), None);
    }
    // A reason shows a name with control characters escaped, so it cannot forge a line.
    let Decision::Deny { reason, .. } = policy.decide(&call("line\nbreak", GH, "PUT")) else {
        panic!("a read grant does not allow writes")
    };
    assert_eq!(
        reason,
        format!("line\\nbreak has no access to {GH} for writes")
    );
    for bystander in ["y", "x", "a", "Agent", "q"] {
        let decision = policy.decide(&call(bystander, GH, "GET"));
        assert_eq!(denied_by(&decision), None, "{bystander}");
    }
    assert!(matches!(
        policy.decide(&call("q\"uote", resource, "DELETE")),
        Decision::Allow { .. }
    ));
    assert_eq!(denied_by(&policy.decide(&call("q\"uote", GH, "GET"))), None);
    // The shown text is Cedar that means the same rule again.
    for view in policy.rules(None) {
        let reparsed = cedar_policy::Policy::from_str(&view.source)
            .unwrap_or_else(|e| panic!("{:?} does not parse: {e}", view.source));
        let client = view.client.as_deref().unwrap();
        let principal = reparsed.principal_constraint();
        let expected = cedar_policy::EntityUid::from_type_name_and_id(
            "Agent".parse().unwrap(),
            cedar_policy::EntityId::new(client),
        );
        assert_eq!(principal, cedar_policy::PrincipalConstraint::Eq(expected));
    }
}

#[test]
fn rules_lists_consent_rules_first_and_only_the_clients_own() {
    let grants = [
        grant("cursor", GH, Access::Ask),
        grant("claude-code", GH, Access::Write),
        grant("cursor", GMAIL, Access::None),
    ];
    let text = "@id(\"no-deletes\")\nforbid(principal, action, resource) when { context.method == \"DELETE\" };\n";
    let policy = Policy::build(&grants, Some((Path::new("policy.cedar"), text))).unwrap();
    let ids = |client| -> Vec<String> { policy.rules(client).into_iter().map(|r| r.id).collect() };
    assert_eq!(
        ids(Some("cursor")),
        ["consent/0", "consent/1", "no-deletes"]
    );
    assert_eq!(
        ids(Some("claude-code")),
        ["consent/2", "consent/3", "no-deletes"]
    );
    assert_eq!(ids(Some("nobody")), ["no-deletes"]);
    assert_eq!(ids(None).len(), 5);

    let cursor = policy.rules(Some("cursor"));
    assert_eq!(cursor[1].effect, RuleEffect::Permit);
    assert!(cursor[1].asks && !cursor[0].asks);
    assert_eq!(cursor[1].client.as_deref(), Some("cursor"));
    assert_eq!(cursor[1].resource.as_deref(), Some(GH));
    assert!(
        cursor[1].source.contains("@itl(\"prompt\")"),
        "{}",
        cursor[1].source
    );
    assert!(
        cursor[1].source.contains("Action::\"write\""),
        "{}",
        cursor[1].source
    );
    assert_eq!(cursor[2].effect, RuleEffect::Forbid);
    assert_eq!(
        (cursor[2].client.as_ref(), cursor[2].resource.as_ref()),
        (None, None)
    );
    assert_eq!(cursor[2].source, text.trim_end());
    let json = serde_json::to_value(&cursor[2]).unwrap();
    assert_eq!(json["effect"], "forbid");
}

#[test]
fn consent_rules_are_valid_against_the_schema() {
    let grants = [
        grant("a\"b", GH, Access::Ask),
        grant("c", GMAIL, Access::Write),
    ];
    let mut set = cedar_policy::PolicySet::new();
    for (policy, _) in compile::consent(&grants).unwrap() {
        set.add(policy).unwrap();
    }
    let validator = cedar_policy::Validator::new(schema::schema().unwrap());
    let result = validator.validate(&set, cedar_policy::ValidationMode::Strict);
    assert!(result.validation_passed(), "{result}");
}

#[test]
fn policy_is_shared_across_threads() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Policy>();
    let policy = std::sync::Arc::new(Policy::build(&[grant("c", GH, Access::Read)], None).unwrap());
    let other = std::sync::Arc::clone(&policy);
    let decision = std::thread::spawn(move || other.decide(&call("c", GH, "GET")))
        .join()
        .unwrap();
    assert_eq!(decision, allow("consent/0"));
}
