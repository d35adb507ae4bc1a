//! Request rules: base matching, paths, headers, schemes.
use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn provider(resource: &str, bases: &[&str]) -> Provider {
    Provider {
        slug: resource.into(),
        name: resource.into(),
        resource: resource.into(),
        api_bases: bases.iter().map(|b| b.to_string()).collect(),
        scopes: vec![],
        docs_url: None,
        custom: true,
    }
}

#[test]
fn prefix_matching_respects_segments_hosts_and_encodings() {
    let base = url("http://127.0.0.1:9000/api");
    assert!(is_under(&base, &url("http://127.0.0.1:9000/api")));
    assert!(is_under(&base, &url("http://127.0.0.1:9000/api/x?y=1")));
    assert!(!is_under(&base, &url("http://127.0.0.1:9000/apix")));
    assert!(!is_under(&base, &url("http://127.0.0.1:9000/api/../admin")));
    assert!(!is_under(
        &base,
        &url("http://127.0.0.1:9000/api/%2e%2e/admin")
    ));
    assert!(!is_under(&base, &url("http://127.0.0.1:9001/api/x")));
    assert!(!is_under(&base, &url("https://127.0.0.1:9000/api/x")));
    assert!(!is_under(&base, &url("http://localhost:9000/api/x")));
    assert!(!is_under(&base, &url("http://evil@127.0.0.1:9000/api/x")));
    // Alternative IP spellings normalise to the same host and so still match only it.
    assert!(is_under(&base, &url("http://0x7f.0.0.1:9000/api/x")));
    assert!(!is_under(
        &url("https://api.github.com"),
        &url("https://api.github.com.evil.io/")
    ));
    assert!(is_under(
        &url("https://api.github.com"),
        &url("https://API.GITHUB.COM:443/user")
    ));
}

#[test]
fn longest_prefix_wins() {
    let ps = vec![
        provider("a", &["https://api.atlassian.com"]),
        provider("jira", &["https://api.atlassian.com/ex/jira"]),
    ];
    let p = pick(&ps, &url("https://api.atlassian.com/ex/jira/1/rest")).unwrap();
    assert_eq!(p.resource, "jira");
    assert_eq!(
        pick(&ps, &url("https://api.atlassian.com/me"))
            .unwrap()
            .resource,
        "a"
    );
    assert!(pick(&ps, &url("https://example.com/")).is_none());
}

#[test]
fn caller_credentials_and_crlf_are_refused() {
    let mut req = ApiRequest {
        method: "GET".into(),
        url: "https://x".into(),
        headers: Some(BTreeMap::from([(
            "Authorization".into(),
            "Bearer x".into(),
        )])),
        body: None,
        resource: None,
    };
    assert!(matches!(
        prepare(&req),
        Err(CallError::ForbiddenHeader { .. })
    ));
    req.headers = Some(BTreeMap::from([("cookie".into(), "a=b".into())]));
    assert!(matches!(
        prepare(&req),
        Err(CallError::ForbiddenHeader { .. })
    ));
    req.headers = Some(BTreeMap::from([("X-A".into(), "a\r\nInjected: 1".into())]));
    assert!(matches!(prepare(&req), Err(CallError::InvalidHeader(_))));
    req.headers = Some(BTreeMap::from([("Bad Name".into(), "v".into())]));
    assert!(matches!(prepare(&req), Err(CallError::InvalidHeader(_))));
    req.headers = None;
    req.method = "TRACE".into();
    assert!(matches!(prepare(&req), Err(CallError::InvalidMethod(_))));
    req.method = "post".into();
    req.body = Some(serde_json::json!({"a": 1}));
    let p = prepare(&req).unwrap();
    assert_eq!(p.headers["content-type"], "application/json");
}

#[test]
fn routing_encoding_and_range_headers_are_refused_with_the_rule() {
    for name in [
        "X-Original-URL",
        "X-Rewrite-URL",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "x-forwarded-prefix",
        "Forwarded",
        "X-HTTP-Method-Override",
        "Accept-Encoding",
        "Accept-Charset",
        "Range",
        "If-Range",
        "Proxy-Connection",
    ] {
        let req = ApiRequest {
            method: "GET".into(),
            url: "https://x".into(),
            headers: Some(BTreeMap::from([(name.to_string(), "v".to_string())])),
            body: None,
            resource: None,
        };
        match prepare(&req) {
            Err(e @ CallError::ForbiddenHeader { .. }) => {
                let text = e.to_string();
                assert!(text.contains(name) && text.contains(':'), "{text}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn target_urls_are_validated() {
    assert!(parse_target("file:///etc/passwd").is_err());
    assert!(parse_target("http://u:p@h/").is_err());
    assert!(parse_target("not a url").is_err());
    assert!(parse_target("https://api.github.com/user").is_ok());
    for escaping in [
        "https://api.github.com/repos/..;/admin",
        "https://api.github.com/repos;jsessionid=1/x",
        "https://api.github.com/repos/..%2fadmin",
        "https://api.github.com/repos/..%2Fadmin",
        "https://api.github.com/repos/..%5cadmin",
        "https://api.github.com/repos/..%5Cadmin",
    ] {
        let e = parse_target(escaping).unwrap_err().to_string();
        assert!(e.contains("refused"), "{escaping}: {e}");
    }
    // The query may hold anything; only the path is checked, and errors never echo it.
    assert!(parse_target("https://api.github.com/x?a=%2f;b").is_ok());
    let e = parse_target("file:///x?token=secret")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("secret"), "{e}");
}

#[test]
fn plain_http_only_to_loopback() {
    assert!(is_secure_base(&url("https://api.example.com/")));
    assert!(is_secure_base(&url("http://127.0.0.1:9/api")));
    assert!(is_secure_base(&url("http://localhost:9/api")));
    assert!(!is_secure_base(&url("http://api.example.com/")));
    assert!(!is_secure_base(&url("http://10.0.0.1/")));
}

#[test]
fn insufficient_scope_names_the_scopes() {
    let raw = |status: u16, challenge: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            "www-authenticate",
            HeaderValue::from_str(challenge).unwrap(),
        );
        Raw {
            status,
            headers,
            body: vec![],
            complete: true,
        }
    };
    assert_eq!(
        raw(
            403,
            r#"Bearer error="insufficient_scope", scope="write admin""#
        )
        .insufficient_scope(),
        Some(vec!["write".to_string(), "admin".to_string()])
    );
    assert_eq!(
        raw(403, r#"Bearer error="insufficient_scope""#).insufficient_scope(),
        Some(vec![])
    );
    assert_eq!(
        raw(403, r#"Bearer error="invalid_token""#).insufficient_scope(),
        None
    );
    assert_eq!(
        raw(401, r#"Bearer error="insufficient_scope""#).insufficient_scope(),
        None
    );
}
