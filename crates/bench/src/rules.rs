//! The ten-rule `policy.cedar` the OAuth cells run under, and `keycard-bench policy`: the
//! broker's own `Policy::decide` timed in-process (a figure, not a test).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use broker::policy::{Access, AgentAccess, CallFacts, Decision, Policy};

/// Ten rules a careful user might write: seven forbids on other paths, methods and hosts,
/// three permits (one asks first). None forbids `GET /api/items`; `no-api-admin` refuses
/// `GET <fixture>/admin…`, which is how the bench sees that the broker has the file in force.
pub const TEN_RULES: &str = r#"// keycard-bench: ten rules (tests/bench/README.md)
@id("no-admin")
forbid(principal, action, resource) when { context.path like "/admin*" };
@id("no-api-admin")
forbid(principal, action, resource) when { context.path like "/api/admin*" };
@id("no-secrets")
forbid(principal, action, resource) when { context.path like "*/secrets*" };
@id("no-billing")
forbid(principal, action, resource) when { context.path like "/api/billing*" };
@id("no-deletes")
forbid(principal, action == Action::"write", resource) when { context.method == "DELETE" };
@id("no-user-writes")
forbid(principal, action == Action::"write", resource) when { context.path like "/api/users*" };
@id("no-metadata-host")
forbid(principal, action, resource) when { context.host == "169.254.169.254" || context.host like "*.internal" };
@id("read-health")
permit(principal, action == Action::"read", resource) when { context.path == "/api/health" };
@id("read-status")
permit(principal, action == Action::"read", resource) when { context.path like "/api/status*" };
@id("ask-before-bulk")
@itl("prompt")
permit(principal, action == Action::"write", resource) when { context.path like "/api/bulk*" };
"#;

/// The rule the probe call runs into, and the path under the fixture that it forbids.
pub const PROBE_RULE: &str = "no-api-admin";
pub const PROBE_PATH: &str = "/admin/keycard-bench-probe";

/// Number of rules in [`TEN_RULES`] (checked by building it).
pub const RULES: usize = 10;

/// `decide` timings, nanoseconds per call.
#[derive(Debug, Clone, Copy)]
pub struct Micro {
    pub calls: u64,
    /// Consent choices only (the static client's path without policy.cedar).
    pub consent_only_ns: f64,
    /// The same with [`TEN_RULES`] added.
    pub ten_rules_ns: f64,
}

/// The consent choices of a realistic broker: this agent may write the fixture, a few others
/// have their own levels (they do not apply to this call but are in the built policy).
fn grants(client: &str, resource: &str) -> Vec<AgentAccess> {
    let mut grants = vec![AgentAccess {
        client: client.to_string(),
        resource: resource.to_string(),
        access: Access::Write,
    }];
    for (i, access) in [Access::Read, Access::Ask, Access::Write]
        .iter()
        .enumerate()
    {
        grants.push(AgentAccess {
            client: format!("other-agent-{i}"),
            resource: resource.to_string(),
            access: *access,
        });
    }
    grants
}

/// Builds the policy (consent choices, plus the ten rules when `with_rules`), checking it.
pub fn build(client: &str, resource: &str, with_rules: bool) -> Result<Policy> {
    let file = Path::new("policy.cedar");
    let user = with_rules.then_some((file, TEN_RULES));
    let policy =
        Policy::build(&grants(client, resource), user).map_err(|e| anyhow!("policy: {e}"))?;
    let own = policy.rules(Some(client));
    let user_rules = own.iter().filter(|r| r.client.is_none()).count();
    if user_rules != if with_rules { RULES } else { 0 } {
        bail!("the policy has {user_rules} user rules, expected {RULES}");
    }
    Ok(policy)
}

/// Times `decide` for `GET /api/items` by `client` on `resource`, `calls` times without and
/// `calls` times with the ten rules (each in two interleaved halves). Every decision must allow.
pub fn micro(calls: u64) -> Result<Micro> {
    let half = (calls / 2).max(1);
    let (client, resource) = ("dcr:keycard-bench", "http://127.0.0.1:8080/api");
    let facts = CallFacts {
        client,
        resource,
        method: "GET",
        host: "127.0.0.1",
        path: "/api/items",
    };
    let time = |policy: &Policy| -> Result<f64> {
        // Warm-up, and a check that the call is allowed (by the consent rule).
        for _ in 0..half / 10 + 1 {
            if !matches!(policy.decide(black_box(&facts)), Decision::Allow { .. }) {
                bail!(
                    "the benchmarked call is not allowed: {:?}",
                    policy.decide(&facts)
                );
            }
        }
        let t0 = Instant::now();
        for _ in 0..half {
            black_box(policy.decide(black_box(&facts)));
        }
        Ok(t0.elapsed().as_nanos() as f64 / half as f64)
    };
    let consent = build(client, resource, false)?;
    let ten = build(client, resource, true)?;
    // Refused where the file says so (the rules really are evaluated).
    let probe = CallFacts {
        path: "/api/admin/x",
        ..facts
    };
    match ten.decide(&probe) {
        Decision::Deny { rule: Some(r), .. } if r == PROBE_RULE => {}
        other => bail!("{PROBE_RULE} did not refuse the probe: {other:?}"),
    }
    // Interleaved twice, so a change in background load hits both.
    let (a1, b1) = (time(&consent)?, time(&ten)?);
    let (b2, a2) = (time(&ten)?, time(&consent)?);
    Ok(Micro {
        calls: half * 2,
        consent_only_ns: (a1 + a2) / 2.0,
        ten_rules_ns: (b1 + b2) / 2.0,
    })
}

/// `keycard-bench policy [CALLS]`.
pub fn print_micro(calls: u64) -> Result<()> {
    let m = micro(calls)?;
    println!(
        "Policy::decide, GET /api/items allowed by a consent rule, {} calls per variant:",
        m.calls
    );
    println!(
        "  consent choices only       {:>8.0} ns/call",
        m.consent_only_ns
    );
    println!(
        "  + ten rules (policy.cedar) {:>8.0} ns/call",
        m.ten_rules_ns
    );
    println!(
        "  ten rules add              {:>8.0} ns/call",
        m.ten_rules_ns - m.consent_only_ns
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ten_rules_are_valid_and_allow_the_benchmarked_call() {
        let m = micro(50).unwrap();
        assert!(m.ten_rules_ns > 0.0 && m.consent_only_ns > 0.0);
        let policy = build("c", "http://127.0.0.1:1/api", true).unwrap();
        let facts = CallFacts {
            client: "c",
            resource: "http://127.0.0.1:1/api",
            method: "DELETE",
            host: "127.0.0.1",
            path: "/api/items/1",
        };
        assert!(matches!(
            policy.decide(&facts),
            Decision::Deny { rule: Some(r), .. } if r == "no-deletes"
        ));
    }
}
