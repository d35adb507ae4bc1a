//! `Guard::decide`, one row per branch: each probe is a request head (headers and the request
//! target's query) against a guard in a given state, and the exact decision it must get — the
//! client name, or the refusal's status, message and challenge. The guard never sees the
//! method or the path (the router sends only `/mcp` through it), so a probe names neither.
//! The same families run against a live `serve` in crates/cli/tests/attacks.rs.

use super::*;
use crate::db::Db;
use axum::http::HeaderName;
use secrecy::ExposeSecret;

const PORT: u16 = 8937;
/// Replaced by the registered client's token in header values and queries.
const TOKEN: &str = "$TOKEN";
const HOST: (&str, &str) = ("host", "127.0.0.1:8937");
const BEARER: (&str, &str) = ("authorization", "Bearer $TOKEN");
/// Two bytes of UTF-8, i.e. obs-text on the wire: a legal header value that is not readable.
const OBS_TEXT: &str = "é";

/// What the guard behind the request is doing.
#[derive(Clone, Copy, Debug)]
enum State {
    Serving,
    /// The user paused agent access.
    Paused,
    /// The client registry cannot be read.
    RegistryDown,
}

#[derive(Debug)]
enum Expect {
    /// Let through as this client.
    Client(&'static str),
    Refused(StatusCode, &'static str, Option<&'static str>),
}

use Expect::{Client, Refused};

impl Expect {
    /// The `decide` result this expectation stands for.
    fn decision(&self) -> Result<AgentClient, Refusal> {
        match *self {
            Client(name) => Ok(AgentClient::static_client(name)),
            Refused(status, message, challenge) => Err(Refusal {
                status,
                message,
                challenge: challenge.map(str::to_string),
            }),
        }
    }
}

const FORBIDDEN_HOST: Expect = Refused(StatusCode::FORBIDDEN, "forbidden host", None);
const FORBIDDEN_ORIGIN: Expect = Refused(StatusCode::FORBIDDEN, "forbidden origin", None);
const QUERY_CREDENTIAL: Expect = Refused(
    StatusCode::BAD_REQUEST,
    "credentials in the query string are refused; send Authorization: Bearer",
    None,
);
const TOO_LARGE: Expect = Refused(
    StatusCode::PAYLOAD_TOO_LARGE,
    "request body too large",
    None,
);
const NO_BEARER: Expect = Refused(
    StatusCode::UNAUTHORIZED,
    "missing bearer token",
    Some(
        "Bearer realm=\"keycard-broker\", resource_metadata=\"http://127.0.0.1:8937/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\"",
    ),
);
const UNREADABLE_BEARER: Expect = Refused(
    StatusCode::UNAUTHORIZED,
    "missing bearer token",
    Some(
        "Bearer realm=\"keycard-broker\", error=\"invalid_token\", resource_metadata=\"http://127.0.0.1:8937/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\"",
    ),
);
const MALFORMED: Expect = Refused(
    StatusCode::UNAUTHORIZED,
    "malformed Authorization header",
    Some(
        "Bearer realm=\"keycard-broker\", error=\"invalid_token\", resource_metadata=\"http://127.0.0.1:8937/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\"",
    ),
);
const UNKNOWN_TOKEN: Expect = Refused(
    StatusCode::UNAUTHORIZED,
    "unknown, expired or removed client token",
    Some(
        "Bearer realm=\"keycard-broker\", error=\"invalid_token\", resource_metadata=\"http://127.0.0.1:8937/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\"",
    ),
);
const PAUSED: Expect = Refused(
    StatusCode::SERVICE_UNAVAILABLE,
    "agent access is paused in Keycard Broker; the user can resume it from the tray",
    None,
);
const REGISTRY_DOWN: Expect = Refused(
    StatusCode::SERVICE_UNAVAILABLE,
    "client registry unavailable",
    None,
);

struct Probe {
    name: &'static str,
    state: State,
    /// Header lines in order; a name may repeat.
    headers: &'static [(&'static str, &'static str)],
    /// The request target's query, without `?`.
    query: Option<&'static str>,
    expect: Expect,
}

/// A probe against a serving guard with no query.
const fn probe(
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Probe {
    Probe {
        name,
        state: State::Serving,
        headers,
        query: None,
        expect,
    }
}

const fn with_query(
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    query: &'static str,
    expect: Expect,
) -> Probe {
    Probe {
        name,
        state: State::Serving,
        headers,
        query: Some(query),
        expect,
    }
}

const fn in_state(
    name: &'static str,
    state: State,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Probe {
    Probe {
        name,
        state,
        headers,
        query: None,
        expect,
    }
}

#[rustfmt::skip]
const PROBES: &[Probe] = &[
    // Host: a loopback name with our port, exactly once, readable; checked first.
    probe("ipv4 loopback", &[HOST, BEARER], Client("agent")),
    probe("localhost", &[("host", "localhost:8937"), BEARER], Client("agent")),
    probe("ipv6 loopback", &[("host", "[::1]:8937"), BEARER], Client("agent")),
    probe("host casing", &[("host", "LOCALHOST:8937"), BEARER], Client("agent")),
    probe("host padded", &[("host", " 127.0.0.1:8937\t"), BEARER], Client("agent")),
    probe("no host", &[BEARER], FORBIDDEN_HOST),
    probe("empty host", &[("host", ""), BEARER], FORBIDDEN_HOST),
    probe("two hosts", &[HOST, HOST, BEARER], FORBIDDEN_HOST),
    probe("unreadable host", &[("host", OBS_TEXT), BEARER], FORBIDDEN_HOST),
    probe("rebinding name", &[("host", "evil.example:8937"), BEARER], FORBIDDEN_HOST),
    probe("rebinding name, caps", &[("host", "EVIL.EXAMPLE:8937"), BEARER], FORBIDDEN_HOST),
    probe("loopback-looking name", &[("host", "127.0.0.1.nip.io:8937"), BEARER], FORBIDDEN_HOST),
    probe("localhost suffix", &[("host", "localhost.evil.example:8937"), BEARER], FORBIDDEN_HOST),
    probe("name under a loopback name",
        &[("host", "attacker.127.0.0.1.nip.io:8937"), BEARER], FORBIDDEN_HOST),
    probe("host without port", &[("host", "127.0.0.1"), BEARER], FORBIDDEN_HOST),
    probe("host other port", &[("host", "127.0.0.1:9999"), BEARER], FORBIDDEN_HOST),
    probe("host empty port", &[("host", "127.0.0.1:"), BEARER], FORBIDDEN_HOST),
    probe("host hex ip", &[("host", "0x7f000001:8937"), BEARER], FORBIDDEN_HOST),
    probe("host decimal ip", &[("host", "2130706433:8937"), BEARER], FORBIDDEN_HOST),
    probe("other loopback ip", &[("host", "127.0.0.2:8937"), BEARER], FORBIDDEN_HOST),
    probe("ipv6 unbracketed", &[("host", "::1:8937"), BEARER], FORBIDDEN_HOST),
    probe("ipv6 other port", &[("host", "[::1]:1"), BEARER], FORBIDDEN_HOST),
    probe("any address", &[("host", "0.0.0.0:8937"), BEARER], FORBIDDEN_HOST),
    probe("host with userinfo", &[("host", "x@127.0.0.1:8937"), BEARER], FORBIDDEN_HOST),
    probe("bad host before no token", &[("host", "evil.example:8937")], FORBIDDEN_HOST),
    // Origin: absent, or one of ours, exactly once.
    probe("own origin", &[HOST, ("origin", "http://127.0.0.1:8937"), BEARER], Client("agent")),
    probe("own origin, localhost", &[HOST, ("origin", "http://localhost:8937"), BEARER], Client("agent")),
    probe("own origin, ipv6", &[HOST, ("origin", "http://[::1]:8937"), BEARER], Client("agent")),
    probe("origin casing", &[HOST, ("origin", "http://LOCALHOST:8937"), BEARER], Client("agent")),
    probe("foreign origin", &[HOST, ("origin", "http://evil.example"), BEARER], FORBIDDEN_ORIGIN),
    probe("null origin", &[HOST, ("origin", "null"), BEARER], FORBIDDEN_ORIGIN),
    probe("empty origin", &[HOST, ("origin", ""), BEARER], FORBIDDEN_ORIGIN),
    probe("origin other port", &[HOST, ("origin", "http://127.0.0.1:9999"), BEARER], FORBIDDEN_ORIGIN),
    probe("origin without port", &[HOST, ("origin", "http://127.0.0.1"), BEARER], FORBIDDEN_ORIGIN),
    probe("origin https", &[HOST, ("origin", "https://127.0.0.1:8937"), BEARER], FORBIDDEN_ORIGIN),
    probe("origin suffix",
        &[HOST, ("origin", "http://localhost:8937.evil.example"), BEARER], FORBIDDEN_ORIGIN),
    probe("origin with path", &[HOST, ("origin", "http://127.0.0.1:8937/"), BEARER], FORBIDDEN_ORIGIN),
    probe("two origins, both ours",
        &[HOST, ("origin", "http://127.0.0.1:8937"), ("origin", "http://127.0.0.1:8937"), BEARER],
        FORBIDDEN_ORIGIN),
    probe("unreadable origin", &[HOST, ("origin", OBS_TEXT), BEARER], FORBIDDEN_ORIGIN),
    probe("bad origin before no token", &[HOST, ("origin", "http://evil.example")], FORBIDDEN_ORIGIN),
    // Query: no parameter that would carry a credential, whatever its case or encoding.
    with_query("harmless query", &[HOST, BEARER], "page=2&q=token", Client("agent")),
    with_query("empty query", &[HOST, BEARER], "", Client("agent")),
    with_query("credential-like value, harmless name", &[HOST, BEARER], "q=access_token", Client("agent")),
    with_query("name containing a credential name", &[HOST, BEARER], "tokens=1&monkey=2", Client("agent")),
    with_query("access_token", &[HOST, BEARER], "access_token=x", QUERY_CREDENTIAL),
    with_query("token", &[HOST, BEARER], "token=x", QUERY_CREDENTIAL),
    with_query("Token", &[HOST, BEARER], "Token=x", QUERY_CREDENTIAL),
    with_query("bearer", &[HOST, BEARER], "bearer=x", QUERY_CREDENTIAL),
    with_query("Authorization", &[HOST, BEARER], "Authorization=x", QUERY_CREDENTIAL),
    with_query("api_key", &[HOST, BEARER], "api_key=x", QUERY_CREDENTIAL),
    with_query("APIKEY", &[HOST, BEARER], "APIKEY=x", QUERY_CREDENTIAL),
    with_query("key", &[HOST, BEARER], "key=x", QUERY_CREDENTIAL),
    with_query("client_token", &[HOST, BEARER], "client_token=x", QUERY_CREDENTIAL),
    with_query("without a value", &[HOST, BEARER], "token", QUERY_CREDENTIAL),
    with_query("after other parameters", &[HOST, BEARER], "page=2&access_token=x", QUERY_CREDENTIAL),
    with_query("percent-encoded name", &[HOST, BEARER], "access%5Ftoken=x", QUERY_CREDENTIAL),
    with_query("the client token, no header", &[HOST], "access_token=$TOKEN", QUERY_CREDENTIAL),
    // Content-Length: at most MAX_REQUEST_BYTES (5 MiB) when given once; bodies without one
    // are capped by `check` as they stream.
    probe("at the limit", &[HOST, BEARER, ("content-length", "5242880")], Client("agent")),
    probe("one byte over", &[HOST, BEARER, ("content-length", "5242881")], TOO_LARGE),
    probe("far over", &[HOST, BEARER, ("content-length", "99999999")], TOO_LARGE),
    probe("past usize", &[HOST, BEARER, ("content-length", "99999999999999999999999")], TOO_LARGE),
    probe("not a number", &[HOST, BEARER, ("content-length", "ten")], TOO_LARGE),
    probe("negative", &[HOST, BEARER, ("content-length", "-1")], TOO_LARGE),
    probe("oversize before no token", &[HOST, ("content-length", "99999999")], TOO_LARGE),
    // Hyper refuses a request with two Content-Lengths before the guard sees it; the guard
    // only reads a single one and the streaming cap still applies.
    probe("two lengths are left to hyper and the body cap",
        &[HOST, BEARER, ("content-length", "99999999"), ("content-length", "1")], Client("agent")),
    // Authorization: one readable `Bearer` header with a registered client's token.
    probe("no authorization", &[HOST], NO_BEARER),
    probe("two authorizations", &[HOST, BEARER, BEARER], UNREADABLE_BEARER),
    probe("unreadable authorization", &[HOST, ("authorization", "Bearer é")], UNREADABLE_BEARER),
    probe("lowercase scheme", &[HOST, ("authorization", "bearer $TOKEN")], Client("agent")),
    probe("padded token", &[HOST, ("authorization", "  Bearer    $TOKEN  ")], Client("agent")),
    // The value is trimmed before the scheme is matched, so `Bearer ` followed by nothing
    // (or by blanks) fails on the scheme and never reaches the empty-token check.
    probe("empty bearer", &[HOST, ("authorization", "Bearer ")], MALFORMED),
    probe("blank bearer", &[HOST, ("authorization", "Bearer \t ")], MALFORMED),
    probe("empty authorization", &[HOST, ("authorization", "")], MALFORMED),
    probe("scheme only", &[HOST, ("authorization", "Bearer")], MALFORMED),
    probe("uppercase scheme", &[HOST, ("authorization", "BEARER $TOKEN")], MALFORMED),
    probe("no space", &[HOST, ("authorization", "Bearer$TOKEN")], MALFORMED),
    probe("bare token", &[HOST, ("authorization", "$TOKEN")], MALFORMED),
    probe("basic auth", &[HOST, ("authorization", "Basic a2NiOnNlY3JldA==")], MALFORMED),
    probe("forged token",
        &[HOST, ("authorization", "Bearer kcb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")], UNKNOWN_TOKEN),
    probe("foreign token", &[HOST, ("authorization", "Bearer ghp_notours")], UNKNOWN_TOKEN),
    probe("token with a suffix", &[HOST, ("authorization", "Bearer $TOKENx")], UNKNOWN_TOKEN),
    probe("two tokens", &[HOST, ("authorization", "Bearer $TOKEN $TOKEN")], UNKNOWN_TOKEN),
    // Pause: refuses registered clients only, after every other check.
    in_state("paused", State::Paused, &[HOST, BEARER], PAUSED),
    in_state("paused, no token", State::Paused, &[HOST], NO_BEARER),
    in_state("paused, unknown token", State::Paused,
        &[HOST, ("authorization", "Bearer kcb_nope")], UNKNOWN_TOKEN),
    in_state("paused, bad host", State::Paused, &[("host", "evil.example:8937"), BEARER], FORBIDDEN_HOST),
    // The registry cannot be read: refused, never let through.
    in_state("registry down", State::RegistryDown, &[HOST, BEARER], REGISTRY_DOWN),
    in_state("registry down, token not ours", State::RegistryDown,
        &[HOST, ("authorization", "Bearer ghp_notours")], UNKNOWN_TOKEN),
];

/// A guard on `PORT` with one registered client, `agent`, and that client's token.
fn guard(state: State) -> (Guard, String) {
    let db = Arc::new(Db::open_in_memory().unwrap());
    let clients = Clients::new(db.clone());
    let token = clients
        .add("agent")
        .unwrap()
        .token
        .expose_secret()
        .to_string();
    let paused = Arc::new(std::sync::atomic::AtomicBool::new(matches!(
        state,
        State::Paused
    )));
    if let State::RegistryDown = state {
        db.with(|c| Ok(c.execute_batch("DROP TABLE clients")?))
            .unwrap();
    }
    let authz = crate::authz::Authz::new(db.clone(), crate::events::Events::default());
    (Guard::new(clients, authz, PORT, paused), token)
}

fn head(pairs: &[(&str, &str)], token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.replace(TOKEN, token).as_bytes()).unwrap(),
        );
    }
    headers
}

#[test]
fn every_branch_of_decide() {
    let mut failures = Vec::new();
    for p in PROBES {
        let (guard, token) = guard(p.state);
        let query = p.query.map(|q| q.replace(TOKEN, &token));
        let got = guard.decide(&head(p.headers, &token), query.as_deref());
        let ok = got == p.expect.decision();
        if !ok {
            failures.push(format!(
                "{} ({:?}): want {:?}, got {:?}",
                p.name, p.state, p.expect, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes decided wrong:\n{}",
        failures.len(),
        PROBES.len(),
        failures.join("\n")
    );
}

#[test]
fn probe_names_are_unique() {
    let mut names: Vec<&str> = PROBES.iter().map(|p| p.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "two probes share a name");
}

#[test]
fn a_refusal_is_the_response_it_describes() {
    let (guard, _) = guard(State::Serving);
    let response = guard
        .decide(
            &head(&[HOST, ("authorization", "Bearer kcb_nope")], ""),
            None,
        )
        .unwrap_err()
        .into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        crate::authz::challenge(PORT, true).as_str()
    );
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    let plain = guard
        .decide(&head(&[("host", "evil.example:8937")], ""), None)
        .unwrap_err()
        .into_response();
    assert_eq!(plain.status(), StatusCode::FORBIDDEN);
    assert!(!plain.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[test]
fn a_removed_client_is_refused_at_once() {
    let (guard, token) = guard(State::Serving);
    let request = head(&[HOST, BEARER], &token);
    assert_eq!(
        guard.decide(&request, None),
        Ok(AgentClient::static_client("agent"))
    );
    guard.clients.remove("agent").unwrap();
    assert_eq!(guard.decide(&request, None), UNKNOWN_TOKEN.decision());
}

#[test]
fn pause_takes_effect_on_the_next_request() {
    let (guard, token) = guard(State::Serving);
    let request = head(&[HOST, BEARER], &token);
    guard
        .paused
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        guard.decide(&request, None).map_err(|r| r.status),
        Err(StatusCode::SERVICE_UNAVAILABLE)
    );
    guard
        .paused
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        guard.decide(&request, None),
        Ok(AgentClient::static_client("agent"))
    );
}

/// The agent socket's guard: `Host: localhost` (what the bridges send) and no Origin at all;
/// the loopback port's own Host and Origin are foreign there. What it lets through is marked
/// as having come by the socket, and the same token checks apply.
#[test]
fn the_socket_guard_takes_only_the_bridges_host_and_no_origin() {
    let (loopback, token) = guard(State::Serving);
    let socket = Guard::for_socket(
        loopback.clients.clone(),
        loopback.authz.clone(),
        PORT,
        loopback.paused.clone(),
    );
    let through = |headers: &[(&str, &str)]| socket.decide(&head(headers, &token), None);
    assert_eq!(
        through(&[("host", "localhost"), BEARER]),
        Ok(AgentClient {
            via: crate::activity::Via::Socket,
            ..AgentClient::static_client("agent")
        })
    );
    assert_eq!(
        loopback.decide(&head(&[HOST, BEARER], &token), None),
        Ok(AgentClient::static_client("agent")),
        "the loopback guard marks its clients loopback"
    );
    for foreign in [HOST.1, "localhost:8937", "evil.example"] {
        assert_eq!(
            through(&[("host", foreign), BEARER]),
            FORBIDDEN_HOST.decision(),
            "{foreign}"
        );
    }
    for origin in ["http://127.0.0.1:8937", "http://localhost", "null"] {
        assert_eq!(
            through(&[("host", "localhost"), ("origin", origin), BEARER]),
            FORBIDDEN_ORIGIN.decision(),
            "{origin}"
        );
    }
    assert_eq!(
        through(&[("host", "localhost"), ("authorization", "Bearer kcb_nope")]),
        UNKNOWN_TOKEN.decision()
    );
    assert_eq!(
        through(&[("host", "localhost"), ("content-length", "6000000"), BEARER]),
        TOO_LARGE.decision()
    );
}

/// A refused request's body is never read; the answer says the connection closes, so a client
/// does not send its next request (an agent's discovery after the 401) into a dropped one.
#[tokio::test]
async fn a_refusal_of_a_request_with_a_body_closes_the_connection() {
    let (guard, _) = guard(State::Serving);
    let app = axum::Router::new()
        .route("/mcp", axum::routing::any(|| async { "through" }))
        .layer(axum::middleware::from_fn_with_state(Arc::new(guard), check));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let with_body = http
        .post(&url)
        .header("host", HOST.1)
        .body("{\"jsonrpc\":\"2.0\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(with_body.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_body.headers()[header::CONNECTION], "close");
    let without = http.get(&url).header("host", HOST.1).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert!(!without.headers().contains_key(header::CONNECTION));
}
