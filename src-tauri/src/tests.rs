//! Tauri commands over the mock runtime, against a Broker on the keyring mock store.

use std::sync::Arc;

use broker::{Broker, Config};
use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets,
};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, WebviewWindow, WebviewWindowBuilder};

use crate::Shell;
use crate::tray::{TrayState, summarize};

struct Harness {
    _home: tempfile::TempDir,
    broker: Arc<Broker>,
    app: App<MockRuntime>,
    webview: WebviewWindow<MockRuntime>,
}

fn harness() -> Harness {
    let home = tempfile::tempdir().unwrap();
    let config = Config::load(Some(home.path())).unwrap();
    let store = keyring_core::mock::Store::new().unwrap();
    let vault = broker::vault::Vault::with_store(store, "p");
    let broker = Arc::new(Broker::with_vault(config, vault).unwrap());
    let app = mock_builder()
        .manage(Shell::with_broker(broker.clone()))
        .invoke_handler(crate::handler())
        .build(mock_context(noop_assets()))
        .unwrap();
    let webview = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    Harness {
        _home: home,
        broker,
        app,
        webview,
    }
}

fn invoke(h: &Harness, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        &h.webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.into(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

/// One engine operation through the window's `api` command: the reply's value, or the failure.
fn api(h: &Harness, request: Value) -> Result<Value, Value> {
    invoke(h, "api", json!({ "request": request })).map(|reply| reply["value"].clone())
}

fn code(failure: &Value) -> &str {
    failure["code"].as_str().unwrap_or_default()
}

#[test]
fn status_before_any_zone_is_signed_out() {
    let h = harness();
    let status = api(&h, json!({"op": "status"})).unwrap();
    assert_eq!(status["session"], "signed_out");
    assert_eq!(status["zone"], Value::Null);
    assert_eq!(status["connections"], json!([]));
    assert_eq!(status["overall"]["state"], "signed_out");
    let info = invoke(&h, "app_info", json!({})).unwrap();
    assert_eq!(info["running"], true);
    let about = &info["about"];
    assert_eq!(
        about["keychain"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );
    assert!(about["mcp_url"].as_str().unwrap().ends_with("/mcp"));
    assert_eq!(info["demo_zone"], crate::DEMO_ZONE);
}

#[test]
fn a_zone_switch_from_the_tray_does_discovery_and_keeps_settings() {
    let h = harness();
    let (a, b) = tauri::async_runtime::block_on(async {
        (
            testkit::ZoneEmulator::start().await,
            testkit::ZoneEmulator::start().await,
        )
    });
    // Not a zone: discovery fails, with a code the window can act on, and nothing is saved.
    let err = invoke(
        &h,
        "configure_zone",
        json!({"change": {"zone": "http://127.0.0.1:9"}}),
    )
    .unwrap_err();
    assert_eq!(code(&err), "zone_unreachable", "{err}");
    let err = invoke(
        &h,
        "configure_zone",
        json!({"change": {"zone": "http://example.com"}}),
    )
    .unwrap_err();
    assert_eq!(code(&err), "invalid_input", "{err}");
    assert_eq!(
        api(&h, json!({"op": "about"})).unwrap()["zone"],
        Value::Null
    );

    let status = invoke(
        &h,
        "configure_zone",
        json!({"change": {"zone": a.issuer, "strategy": "refresh_with_resource"}}),
    )
    .unwrap();
    assert_eq!(status["zone"], a.issuer.as_str());
    let broker = tauri::async_runtime::block_on(h.app.state::<Shell>().broker()).unwrap();
    let zone = broker.config().settings.zone.clone().unwrap();
    assert_eq!(
        zone.upstream_strategy,
        broker::config::UpstreamStrategy::RefreshWithResource
    );

    // Switching keeps what the user chose, and the engine now runs on the new zone.
    let status = invoke(&h, "configure_zone", json!({"change": {"zone": b.issuer}})).unwrap();
    assert_eq!(status["zone"], b.issuer.as_str());
    let broker = tauri::async_runtime::block_on(h.app.state::<Shell>().broker()).unwrap();
    let zone = broker.config().settings.zone.clone().unwrap();
    assert_eq!(zone.issuer, b.issuer);
    assert_eq!(
        zone.upstream_strategy,
        broker::config::UpstreamStrategy::RefreshWithResource
    );
    let saved = Config::load(Some(h._home.path())).unwrap();
    assert_eq!(
        saved.settings.zone.unwrap().issuer,
        b.issuer,
        "saved to the config file"
    );
    assert_eq!(
        api(&h, json!({"op": "about"})).unwrap()["zone"],
        b.issuer.as_str()
    );
}

#[test]
fn resources_add_list_remove() {
    let h = harness();
    let list = api(&h, json!({"op": "resources_list"})).unwrap();
    let seeds = list.as_array().unwrap().len();
    assert!(seeds >= 10, "the seed catalog is listed: {list}");
    let added = api(
        &h,
        json!({"op": "resources_add", "resource": " http://127.0.0.1:9000/api ", "name": "My API", "api_bases": [], "scopes": ["read", "write"]}),
    )
    .unwrap();
    assert_eq!(added["name"], "My API");
    assert_eq!(added["custom"], true);
    assert_eq!(added["scopes"], json!(["read", "write"]));
    let list = api(&h, json!({"op": "resources_list"})).unwrap();
    assert_eq!(list.as_array().unwrap().len(), seeds + 1);
    let bad = api(
        &h,
        json!({"op": "resources_add", "resource": "not a url", "name": null}),
    )
    .unwrap_err();
    assert_eq!(code(&bad), "invalid_input", "{bad}");
    api(
        &h,
        json!({"op": "resources_remove", "resource": "http://127.0.0.1:9000/api"}),
    )
    .unwrap();
    let list = api(&h, json!({"op": "resources_list"})).unwrap();
    assert_eq!(list.as_array().unwrap().len(), seeds);
    let builtin = api(&h, json!({"op": "resources_remove", "resource": "github"})).unwrap_err();
    assert!(
        builtin["message"].as_str().unwrap().contains("GitHub"),
        "{builtin}"
    );
    let garbage = invoke(&h, "api", json!({"request": {"op": "rm -rf"}})).unwrap_err();
    assert!(!garbage.to_string().is_empty());
}

fn setup(name: &str, kind: &str, replace: bool) -> Value {
    json!({"op": "client_setup", "name": name, "kind": kind, "stdio_command": "ignored", "replace": replace,
           "static_token": true})
}

#[test]
fn an_oauth_capable_client_gets_an_entry_without_a_token() {
    let h = harness();
    let mut request = setup("cursor-oauth", "cursor", false);
    request["static_token"] = json!(false);
    let added = api(&h, request).unwrap();
    assert_eq!(added["oauth"], true, "{added}");
    assert_eq!(added["token"], Value::Null, "{added}");
    let snippet = added["snippet"].as_str().unwrap();
    assert!(
        snippet.contains("/mcp") && !snippet.contains("Authorization"),
        "{snippet}"
    );
    assert!(added["note"].as_str().unwrap().contains("consent page"));
    // Nothing was registered: the client registers itself when it signs in.
    assert_eq!(api(&h, json!({"op": "clients_list"})).unwrap(), json!([]));
}

#[test]
fn clients_add_shows_token_once_then_list_and_remove() {
    let h = harness();
    assert_eq!(api(&h, json!({"op": "clients_list"})).unwrap(), json!([]));
    let added = api(&h, setup("cursor-laptop", "cursor", false)).unwrap();
    let token = added["token"].as_str().unwrap();
    assert!(token.len() >= 32);
    let snippet = added["snippet"].as_str().unwrap();
    assert!(
        snippet.contains(token) && snippet.contains("/mcp"),
        "{snippet}"
    );
    assert_eq!(added["written"], Value::Null);
    let list = api(&h, json!({"op": "clients_list"})).unwrap();
    assert_eq!(list[0]["name"], "cursor-laptop");
    assert!(
        !list.to_string().contains(token),
        "the list never holds the token"
    );
    let dup = api(&h, setup("cursor-laptop", "cursor", false)).unwrap_err();
    assert_eq!(code(&dup), "already_exists", "{dup}");
    let kind = api(&h, setup("x", "emacs", false)).unwrap_err();
    assert_eq!(code(&kind), "invalid_input");
    assert!(kind["message"].as_str().unwrap().contains("emacs"));
    let rotated = api(&h, setup("cursor-laptop", "codex", true)).unwrap();
    let new_token = rotated["token"].as_str().unwrap();
    assert_ne!(new_token, token, "a new token");
    assert!(rotated["note"].as_str().unwrap().contains(new_token));
    api(&h, json!({"op": "clients_remove", "name": "cursor-laptop"})).unwrap();
    assert_eq!(api(&h, json!({"op": "clients_list"})).unwrap(), json!([]));
    // The window's picker lists what the engine knows, not a copy of its own.
    let kinds = api(&h, json!({"op": "client_kinds"})).unwrap();
    let names: Vec<&str> = kinds
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    let engine: Vec<&str> = broker::client_setup::Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, engine);
    assert!(
        kinds
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["stdio"] == true && k["label"] == "Claude Desktop")
    );
}

#[test]
fn claude_desktop_from_the_tray_gets_its_token_in_the_keychain() {
    // The stdio bridge reads the client token from the keychain; the tray puts it there
    // through the same engine operation as the CLI (Request::ClientSetup).
    let h = harness();
    let added = api(&h, setup("desktop", "claude-desktop", false)).unwrap();
    let token = added["token"].as_str().unwrap().to_string();
    let snippet = added["snippet"].as_str().unwrap();
    assert!(!snippet.contains(&token), "the file never holds the token");
    assert!(snippet.contains("stdio"), "{snippet}");
    assert!(
        !snippet.contains("ignored"),
        "the tray names its own CLI: {snippet}"
    );
    let stored = tauri::async_runtime::block_on(
        h.broker
            .vault()
            .get(broker::vault::SecretKey::ClientToken("desktop".into())),
    )
    .unwrap()
    .expect("the bridge's token is in the keychain");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&stored), token);
    // Other kinds carry the token in their own config and leave the keychain alone.
    api(&h, setup("cursor", "cursor", false)).unwrap();
    let none = tauri::async_runtime::block_on(
        h.broker
            .vault()
            .get(broker::vault::SecretKey::ClientToken("cursor".into())),
    )
    .unwrap();
    assert!(none.is_none());
}

#[test]
fn a_failed_write_keeps_the_new_token() {
    let h = harness();
    let blocker = h._home.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let added = api(
        &h,
        json!({"op": "client_setup", "name": "w", "kind": "cursor", "stdio_command": "", "replace": true,
               "static_token": true, "write": {"to": "file", "path": blocker.join("mcp.json")}}),
    )
    .unwrap();
    assert!(added["token"].as_str().unwrap().len() >= 32, "{added}");
    assert_eq!(added["written"], Value::Null);
    assert_eq!(added["write_error"]["code"], "config_file", "{added}");
}

#[test]
fn pause_shows_the_same_state_in_icon_and_window() {
    let h = harness();
    let status = api(&h, json!({"op": "pause"})).unwrap();
    assert_eq!(status["paused"], true);
    let status: broker::Status = serde_json::from_value(status).unwrap();
    assert!(h.broker.paused(), "the engine itself is paused");
    // Signed out outranks paused; signed in, the state is `paused` for the window's banner
    // (it reads `overall`) and for the tray icon (derived from the same field).
    assert_eq!(status.overall.state, broker::OverallState::SignedOut);
    let signed_in = broker::Status {
        session: broker::Session::SignedIn,
        zone: Some("http://127.0.0.1:1".into()),
        ..status
    }
    .with_overall();
    assert_eq!(signed_in.overall.state, broker::OverallState::Paused);
    assert_eq!(
        serde_json::to_value(&signed_in).unwrap()["overall"]["state"],
        "paused"
    );
    let (icon, tip) = summarize(Ok(&signed_in));
    assert_eq!(icon, TrayState::Paused);
    assert!(tip.contains(&signed_in.overall.text), "{tip}");
    let resumed = api(&h, json!({"op": "resume"})).unwrap();
    assert_eq!(resumed["paused"], false);
    assert!(!h.broker.paused());
}

#[test]
fn audit_and_admin_errors_are_typed() {
    let h = harness();
    assert_eq!(
        api(
            &h,
            json!({"op": "audit", "client": null, "resource": null, "since": null, "limit": 10})
        )
        .unwrap(),
        json!([])
    );
    let err = api(&h, json!({"op": "revoke", "resource": "nope"})).unwrap_err();
    assert_eq!(code(&err), "not_found", "{err}");
    let err = invoke(&h, "autostart", json!({})).unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("not available"),
        "{err}"
    );
    // An unknown format never reaches the engine: the typed request refuses it.
    let err = api(
        &h,
        json!({"op": "export_activity", "format": "exe", "to": "", "client": null,
               "resource": null, "since": null}),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("expected `csv` or `json`"),
        "{err}"
    );
    let err = api(&h, json!({"op": "login", "timeout_secs": 1})).unwrap_err();
    assert_eq!(code(&err), "not_configured", "{err}");
    assert!(
        !err["message"].as_str().unwrap().contains("keycard-broker "),
        "no CLI advice in the window: {err}"
    );
}

#[test]
fn export_from_the_tray_is_the_engine_export_into_downloads() {
    let h = harness();
    let mut mine =
        broker::api::AuditRecord::new(broker::api::ActivityKind::CallApi, Some("cursor"));
    mine.path = Some("=cmd|' /C calc'!A0".into());
    h.broker.record(mine);
    let mut other =
        broker::api::AuditRecord::new(broker::api::ActivityKind::CallApi, Some("codex"));
    other.outcome = broker::api::Outcome::Refused;
    h.broker.record(other);
    // Whatever folder the window names, the shell writes to Downloads.
    let exported = api(
        &h,
        json!({"op": "export_activity", "format": "csv", "to": "/etc", "client": "cursor",
               "resource": null, "outcome": "ok", "since": null}),
    )
    .unwrap();
    let path = std::path::PathBuf::from(exported["path"].as_str().unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!path.starts_with("/etc"), "{path:?}");
    assert_eq!(exported["records"], 1);
    assert!(
        text.contains(",cursor,") && !text.contains("codex"),
        "{text}"
    );
    assert!(text.contains(",'=cmd|"), "a formula stays text: {text}");
}

#[test]
fn tray_summary_words() {
    let status = |session: &str, grants: &[broker::GrantStatus]| {
        broker::Status {
            paused: false,
            keychain_pending: 0,
            zone: Some("http://127.0.0.1:1".into()),
            account: None,
            session: match session {
                "signed_in" => broker::Session::SignedIn,
                _ => broker::Session::SignedOut,
            },
            resource: None,
            connections: grants
                .iter()
                .enumerate()
                .map(|(i, g)| broker::ConnectionStatus {
                    resource: format!("r{i}"),
                    name: format!("P{i}"),
                    status: *g,
                    scopes: vec![],
                    connected_at: None,
                    last_used_at: None,
                    last_error: None,
                })
                .collect(),
            overall: Default::default(),
        }
        .with_overall()
    };
    use broker::GrantStatus::*;
    assert_eq!(
        summarize(Ok(&status("signed_out", &[]))).0,
        TrayState::SignedOut
    );
    assert_eq!(
        summarize(Ok(&status("signed_in", &[Connected]))).0,
        TrayState::Ok
    );
    let (state, tip) = summarize(Ok(&status("signed_in", &[Connected, NeedsReconnect])));
    assert_eq!(state, TrayState::Attention);
    assert!(tip.contains("P1"), "{tip}");
    let failure = broker::api::Failure::new(broker::ErrorCode::PortInUse, "port in use");
    assert_eq!(summarize(Err(&failure)).0, TrayState::Attention);
    let mut paused = status("signed_in", &[Connected]);
    paused.paused = true;
    let (state, tip) = summarize(Ok(&paused.with_overall()));
    assert_eq!(state, TrayState::Paused);
    assert!(tip.contains("paused"), "{tip}");
    let mut locked = status("signed_in", &[Connected]);
    locked.keychain_pending = 1;
    let (state, tip) = summarize(Ok(&locked.with_overall()));
    assert_eq!(state, TrayState::Attention);
    assert!(tip.contains("unlock the keychain"), "{tip}");
}

#[test]
fn one_notification_per_transition_into_needs_reconnect() {
    let shell = Shell::new(false);
    assert!(shell.first_needs_reconnect("r", true), "first time: notify");
    assert!(
        !shell.first_needs_reconnect("r", true),
        "still needs it: quiet"
    );
    assert!(shell.first_needs_reconnect("other", true));
    assert!(
        !shell.first_needs_reconnect("r", false),
        "back to connected"
    );
    assert!(
        shell.first_needs_reconnect("r", true),
        "a new occurrence: notify again"
    );
}

#[test]
fn grant_events_reach_the_window_and_trigger_the_notification_logic() {
    use tauri::Listener;
    let h = harness();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    h.app.listen(crate::EVENT_BROKER, move |e| {
        sink.lock().unwrap().push(e.payload().to_string());
    });
    let event = broker::Event::GrantChanged {
        resource: "http://127.0.0.1:9/api".into(),
        status: broker::GrantStatus::NeedsReconnect,
        reason: Some("the API answered 403 insufficient_scope".into()),
    };
    crate::on_event(h.app.handle(), &event);
    let payloads = seen.lock().unwrap().clone();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let value: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(value["type"], "grant_changed");
    assert_eq!(value["status"], "needs_reconnect");
    let shell = h.app.state::<Shell>();
    assert!(
        !shell.first_needs_reconnect("http://127.0.0.1:9/api", true),
        "the event already counted as this occurrence"
    );
}

/// The window's TypeScript types, generated from the Rust types (ts-rs) into one file.
fn bindings() -> String {
    use broker::api;
    use ts_rs::TS;
    // Every integer here (ports, counts, seconds, milliseconds) is far below 2^53.
    let cfg = ts_rs::Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the Rust types by src-tauri/src/tests.rs (ts-rs); do not edit.\n\
         // After changing a type: UPDATE_BINDINGS=1 cargo test -p keycard-broker-app bindings\n",
    );
    macro_rules! declare {
        ($($t:ty),* $(,)?) => {$(
            out.push_str("\nexport ");
            out.push_str(&<$t as TS>::decl(&cfg));
            out.push('\n');
        )*};
    }
    declare!(
        api::Request,
        api::Reply,
        api::Failure,
        api::ErrorCode,
        api::Issued,
        api::WriteTo,
        api::ClientKind,
        api::ClientSetup,
        api::RemoteTarget,
        api::RemoteSetup,
        api::ZoneChange,
        api::ZoneConfigured,
        api::About,
        api::UpstreamStrategy,
        broker::Status,
        broker::ConnectionStatus,
        broker::Session,
        broker::Overall,
        broker::OverallState,
        broker::TokenInfo,
        broker::ConnectionInfo,
        broker::GrantStatus,
        broker::Provider,
        broker::Event,
        broker::PendingCall,
        api::ClientRecord,
        api::AuditRecord,
        api::ActivityKind,
        api::Outcome,
        api::Via,
        api::ExportFormat,
        api::Exported,
        broker::policy::Access,
        broker::policy::AgentAccess,
        broker::policy::RuleView,
        broker::policy::RuleEffect,
        broker::approvals::Verdict,
        broker::approvals::DecidedBy,
        broker::authz::AgentRecord,
        broker::authz::Registration,
        broker::authz::AgentChange,
        api::AgentView,
        api::PolicyReport,
        crate::commands::AppInfo,
    );
    out
}

#[test]
fn bindings_are_fresh() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/bindings.ts");
    let fresh = bindings();
    if std::env::var_os("UPDATE_BINDINGS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "ui/src/lib/bindings.ts is stale: run `UPDATE_BINDINGS=1 cargo test -p keycard-broker-app bindings` and commit it"
    );
}

/// The window as tauri.conf.json describes it, in a mock app over a bare broker.
fn app_with_configured_window() -> (tempfile::TempDir, App<MockRuntime>) {
    let home = tempfile::tempdir().unwrap();
    let config = Config::load(Some(home.path())).unwrap();
    let store = keyring_core::mock::Store::new().unwrap();
    let broker =
        Arc::new(Broker::with_vault(config, broker::vault::Vault::with_store(store, "p")).unwrap());
    let conf: tauri::utils::config::Config =
        serde_json::from_str(include_str!("../tauri.conf.json")).unwrap();
    let mut context = mock_context(noop_assets());
    context.config_mut().app.windows = conf.app.windows;
    let app = mock_builder()
        .manage(Shell::with_broker(broker))
        .invoke_handler(crate::handler())
        .build(context)
        .unwrap();
    (home, app)
}

/// The mock runtime does not take a destroyed window out of the app, so the close itself is
/// checked end to end (ui/e2e/e2e.py); here: no window at start, events with none, and the build.
#[test]
fn events_without_a_window_go_nowhere_and_show_main_builds_it() {
    let (_home, app) = app_with_configured_window();
    let shell = app.state::<Shell>();
    // Not created at start-up by Tauri: the app builds it (and times it) itself.
    assert!(app.get_webview_window(crate::MAIN_WINDOW).is_none());
    // Engine events with no window: nothing to deliver to, nothing fails or piles up.
    for _ in 0..100 {
        crate::on_event(app.handle(), &broker::Event::PauseChanged { paused: true });
    }
    crate::show_main(app.handle());
    assert!(app.get_webview_window(crate::MAIN_WINDOW).is_some());
    assert!(shell.take_open_elapsed_ms().is_some());
    assert!(shell.take_open_elapsed_ms().is_none(), "once per opening");
    // Showing an open window builds nothing new and times nothing.
    crate::show_main(app.handle());
    assert!(shell.take_open_elapsed_ms().is_none());
}
