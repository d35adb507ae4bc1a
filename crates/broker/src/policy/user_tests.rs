//! The user's `policy.cedar`: precedence over consent, `@id`/`@itl`, and errors with places.

use super::tests::{GH, GMAIL, allow, ask, call, denied_by, grant};
use super::*;

fn file() -> &'static Path {
    Path::new("/home/me/.keycard-broker/policy.cedar")
}

fn build(grants: &[AgentAccess], text: &str) -> Result<Policy, PolicyError> {
    Policy::build(grants, Some((file(), text)))
}

/// The error's place and message, for one assertion.
fn error(text: &str) -> (u32, u32, String) {
    let e = build(&[], text).unwrap_err();
    assert_eq!(e.file, file().display().to_string());
    (e.line, e.column, e.message)
}

fn write_everything() -> Vec<AgentAccess> {
    vec![grant("cursor", GH, Access::Write)]
}

#[test]
fn a_user_forbid_beats_a_consent_write_and_sees_the_context() {
    let text = r#"// No deletes through the API, whoever asks.
forbid(principal, action == Action::"write", resource)
when { context.path like "/repos/*/delete*" };
"#;
    let policy = build(&write_everything(), text).unwrap();
    let facts = CallFacts {
        path: "/repos/me/delete-branch",
        ..call("cursor", GH, "POST")
    };
    assert_eq!(
        policy.decide(&facts),
        Decision::Deny {
            rule: Some("policy.cedar:2".to_string()),
            reason: format!("cursor's writes to {GH} are forbidden by rule policy.cedar:2"),
        }
    );
    assert_eq!(
        policy.decide(&call("cursor", GH, "POST")),
        allow("consent/1")
    );
    // A read of the same path is not a write.
    let read = CallFacts {
        method: "GET",
        ..facts
    };
    assert_eq!(policy.decide(&read), allow("consent/0"));
}

#[test]
fn context_is_the_call_as_sent() {
    let text = r#"@id("no-deletes") forbid(principal, action, resource) when { context.method == "DELETE" };
@id("github-only") forbid(principal, action, resource) unless { context.host == "api.github.com" };
"#;
    let policy = build(&write_everything(), text).unwrap();
    // The upstream call upper-cases the method, so the rule sees it that way too.
    let lower = policy.decide(&call("cursor", GH, "delete"));
    assert_eq!(denied_by(&lower), Some("no-deletes"));
    let shouting = CallFacts {
        host: "API.GitHub.com",
        ..call("cursor", GH, "GET")
    };
    assert_eq!(policy.decide(&shouting), allow("consent/0"));
    let elsewhere = CallFacts {
        host: "uploads.github.com",
        ..call("cursor", GH, "GET")
    };
    assert_eq!(denied_by(&policy.decide(&elsewhere)), Some("github-only"));
}

#[test]
fn a_user_itl_permit_makes_an_allowed_write_ask() {
    let text = r#"
@id("ask-before-deleting")
@itl("prompt")
permit(principal, action == Action::"write", resource == Provider::"https://api.github.com")
when { context.method == "DELETE" };
"#;
    let policy = build(&write_everything(), text).unwrap();
    let rule = "ask-before-deleting";
    assert_eq!(policy.decide(&call("cursor", GH, "DELETE")), ask(rule));
    assert_eq!(
        policy.decide(&call("cursor", GH, "PATCH")),
        allow("consent/1")
    );
    // On its own it still grants, with a human in the loop.
    assert_eq!(policy.decide(&call("nobody", GH, "DELETE")), ask(rule));
    assert_eq!(
        denied_by(&policy.decide(&call("nobody", GMAIL, "DELETE"))),
        None
    );
    let view = &policy.rules(Some("cursor"))[2];
    assert!(view.asks && view.id == rule, "{view:?}");
}

#[test]
fn a_rule_that_fails_to_evaluate_denies_and_is_named() {
    // Validates (it is well typed) but overflows on every call.
    let text = r#"@id("broken")
permit(principal, action, resource) when { 9223372036854775807 + 1 == 0 };
"#;
    let policy = build(&write_everything(), text).unwrap();
    let decision = policy.decide(&call("cursor", GH, "GET"));
    let Decision::Deny { rule, reason } = decision else {
        panic!("a failing rule must deny, got {decision:?}")
    };
    assert_eq!(rule.as_deref(), Some("broken"));
    assert!(
        reason.starts_with(&format!(
            "cursor's reads to {GH} are denied: rule broken failed"
        )),
        "{reason}"
    );
}

#[test]
fn rules_are_named_by_id_or_by_place() {
    let text = concat!(
        "permit(principal == Agent::\"a\", action, resource);\n",
        "\n",
        "  permit(principal == Agent::\"b\", action, resource); ",
        "permit(principal == Agent::\"c\", action, resource);\n",
        "@id(\"for d\") permit(principal == Agent::\"d\", action, resource);\n",
    );
    let policy = build(&[], text).unwrap();
    let ids: Vec<String> = policy.rules(None).into_iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "policy.cedar:1",
            "policy.cedar:3",
            "policy.cedar:3:54",
            "for d"
        ]
    );
    assert_eq!(
        policy.decide(&call("c", GMAIL, "PUT")),
        allow("policy.cedar:3:54")
    );
    assert_eq!(policy.decide(&call("d", GMAIL, "GET")), allow("for d"));
}

#[test]
fn a_syntax_error_reports_its_line_and_column() {
    let text = "permit(principal, action, resource);\n// fine so far\npermit(principal, action resource);\n";
    let (line, column, message) = error(text);
    assert_eq!((line, column), (3, 26), "{message}");
    let e = build(&[], text).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/home/me/.keycard-broker/policy.cedar:3:26: "),
        "{e}"
    );
    // Cut short at the end of the file.
    let (line, _, message) = error("permit(principal, action, resource);\n\npermit(principal,");
    assert_eq!(line, 3, "{message}");
}

#[test]
fn validation_errors_report_where_the_unknown_name_is() {
    let cases = [
        (
            "permit(principal, action, resource);\nforbid(principal == User::\"x\", action, resource);\n",
            (2, 21),
            "User",
        ),
        (
            "\n\npermit(principal, action == Action::\"delete\", resource);",
            (3, 29),
            "delete",
        ),
        (
            "permit(principal, action, resource)\n  when { context.body == \"x\" };\n",
            (2, 10),
            "body",
        ),
    ];
    for (text, place, name) in cases {
        let (line, column, message) = error(text);
        assert_eq!((line, column), place, "{text}: {message}");
        assert!(message.contains(name), "{message}");
        assert!(
            !message.contains("for policy"),
            "the place names the rule: {message}"
        );
    }
}

#[test]
fn annotations_that_make_no_sense_are_refused() {
    let itl_forbid = "permit(principal, action, resource);\n  @itl(\"prompt\") forbid(principal, action, resource);\n";
    let (line, column, message) = error(itl_forbid);
    assert_eq!((line, column), (2, 3), "{message}");
    assert!(message.contains("@itl"), "{message}");

    let twice = "@id(\"x\") permit(principal, action, resource);\n@id(\"x\") forbid(principal, action, resource);";
    let (line, _, message) = error(twice);
    assert_eq!(line, 2);
    assert!(message.contains("line 1"), "{message}");

    let (_, _, message) = error("@id(\"consent/0\") forbid(principal, action, resource);");
    assert!(message.contains("consent/"), "{message}");
    let (_, _, message) = error("@id(\" \") forbid(principal, action, resource);");
    assert!(message.contains("empty"), "{message}");

    let template =
        "permit(principal, action, resource);\npermit(principal == ?principal, action, resource);";
    let (line, _, message) = error(template);
    assert_eq!(line, 2, "{message}");
}

#[test]
fn an_absent_file_means_no_user_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(POLICY_FILE);
    let grants = [grant("cursor", GH, Access::Read)];
    let policy = Policy::load(&path, &grants).unwrap();
    assert_eq!(policy.rules(None).len(), 1);
    assert_eq!(
        policy.decide(&call("cursor", GH, "GET")),
        allow("consent/0")
    );

    std::fs::write(&path, "forbid(principal, action, resource);").unwrap();
    let policy = Policy::load(&path, &grants).unwrap();
    assert_eq!(
        denied_by(&policy.decide(&call("cursor", GH, "GET"))),
        Some("policy.cedar:1")
    );

    // Unreadable: the file as a whole is named.
    let e = Policy::load(dir.path(), &grants).unwrap_err();
    assert_eq!((e.line, e.column), (0, 0));
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot be read", dir.path().display())),
        "{e}"
    );
    std::fs::write(&path, b"permit(principal, action, resource); // \xff\n").unwrap();
    let e = Policy::load(&path, &grants).unwrap_err();
    assert!(e.message.contains("UTF-8"), "{e}");
}

#[test]
fn user_rules_apply_to_every_agent_and_provider() {
    // cursor has consent rules on GitHub only; the user's rules still reach its other calls.
    let text = r#"permit(principal == Agent::"cursor", action == Action::"read", resource);
@id("no-writes-anywhere") forbid(principal, action == Action::"write", resource);
"#;
    let policy = build(&write_everything(), text).unwrap();
    assert_eq!(
        policy.decide(&call("cursor", GMAIL, "GET")),
        allow("policy.cedar:1")
    );
    assert_eq!(
        policy.decide(&call("cursor", GH, "GET")),
        allow("consent/0")
    );
    for (client, resource) in [("cursor", GH), ("cursor", GMAIL), ("nobody", GH)] {
        let decision = policy.decide(&call(client, resource, "POST"));
        assert_eq!(
            denied_by(&decision),
            Some("no-writes-anywhere"),
            "{client} {resource}"
        );
    }
    assert_eq!(
        denied_by(&policy.decide(&call("nobody", GMAIL, "GET"))),
        None
    );
}
