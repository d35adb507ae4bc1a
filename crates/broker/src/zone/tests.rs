//! Unit tests of the zone client's classification and parsing.

use base64::Engine as _;

use super::wire::granted_scopes;
use super::*;

#[test]
fn issuer_comparison_ignores_one_trailing_slash() {
    assert!(same_issuer(
        "https://a.keycard.cloud",
        "https://a.keycard.cloud/"
    ));
    assert!(!same_issuer(
        "https://a.keycard.cloud",
        "https://b.keycard.cloud"
    ));
    assert!(!same_issuer(
        "https://a.keycard.cloud",
        "http://a.keycard.cloud"
    ));
}

#[test]
fn empty_or_blank_scope_means_none_named() {
    assert_eq!(granted_scopes(["", " "].into_iter()), None);
    assert_eq!(
        granted_scopes(["read", "", "write"].into_iter()),
        Some(vec!["read".to_string(), "write".to_string()])
    );
    let answer = br#"{"access_token":"a","token_type":"Bearer","scope":""}"#;
    assert_eq!(parse_token_response(answer).unwrap().scopes, None);
}

#[test]
fn setup_answers_are_permanent_with_a_fix() {
    for code in ["invalid_target", "invalid_scope", "unauthorized_client"] {
        let e = ZoneError::Rejected {
            code: code.into(),
            description: None,
        };
        assert!(!e.is_transient(), "{code}");
        assert!(!e.needs_user(), "{code}");
        let fix = e.setup_fix("http://localhost:1/mcp").unwrap();
        assert!(fix.contains("http://localhost:1/mcp"), "{fix}");
    }
    let other = ZoneError::Rejected {
        code: "invalid_grant".into(),
        description: None,
    };
    assert_eq!(other.setup_fix("x"), None);
}

#[test]
fn classification_follows_protocol() {
    let rejected = |code: &str| ZoneError::Rejected {
        code: code.into(),
        description: None,
    };
    assert!(rejected("insufficient_authorization").needs_user());
    assert!(rejected("invalid_grant").needs_user());
    assert!(!rejected("insufficient_authorization").is_transient());
    assert!(rejected("temporarily_unavailable").is_transient());
    assert!(
        ZoneError::Unavailable {
            status: 503,
            retry_after: None
        }
        .is_transient()
    );
    assert!(
        !ZoneError::Unavailable {
            status: 429,
            retry_after: Some(2)
        }
        .needs_user()
    );
}

#[test]
fn rejection_parses_oauth_errors_and_tolerates_garbage() {
    let e = rejection(
        br#"{"error":"insufficient_authorization","error_description":"no grant"}"#,
        400,
    );
    assert_eq!(e.code(), Some("insufficient_authorization"));
    let e = rejection(b"<html>oops</html>", 400);
    assert!(matches!(e, ZoneError::Malformed(_)));
}

#[test]
fn id_claims_decode_and_reject_garbage() {
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"u1","email":"a@b.c"}"#);
    let claims = decode_id_claims(&format!("x.{payload}.y")).unwrap();
    assert_eq!(claims.account().as_deref(), Some("a@b.c"));
    assert!(decode_id_claims("not-a-jwt").is_none());
    assert!(decode_id_claims("a.!!!.b").is_none());
}
