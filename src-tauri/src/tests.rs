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

#[test]
fn status_before_any_zone_is_signed_out() {
    let h = harness();
    let status = invoke(&h, "status", json!({})).unwrap();
    assert_eq!(status["session"], "signed_out");
    assert_eq!(status["zone"], Value::Null);
    assert_eq!(status["connections"], json!([]));
    let info = invoke(&h, "app_info", json!({})).unwrap();
    assert_eq!(info["running"], true);
    assert_eq!(info["keychain"].as_str().map(|s| !s.is_empty()), Some(true));
    assert!(info["mcp_url"].as_str().unwrap().ends_with("/mcp"));
    assert_eq!(info["demo_zone"], crate::DEMO_ZONE);
}

#[test]
fn set_zone_saves_it_and_rejects_garbage() {
    let h = harness();
    let err = invoke(&h, "set_zone", json!({"zone": "http://example.com"})).unwrap_err();
    assert!(err.as_str().unwrap().contains("example.com"), "{err}");
    let status = invoke(&h, "set_zone", json!({"zone": "http://127.0.0.1:8940"})).unwrap();
    assert_eq!(status["zone"], "http://127.0.0.1:8940");
    let info = invoke(&h, "app_info", json!({})).unwrap();
    assert_eq!(info["zone"], "http://127.0.0.1:8940");
}

#[test]
fn resources_add_list_remove() {
    let h = harness();
    let list = invoke(&h, "resources_list", json!({})).unwrap();
    let seeds = list.as_array().unwrap().len();
    assert!(seeds >= 10, "the seed catalog is listed: {list}");
    let added = invoke(
        &h,
        "resources_add",
        json!({"resource": " http://127.0.0.1:9000/api ", "name": "My API", "apiBase": "", "scopes": "read  write"}),
    )
    .unwrap();
    assert_eq!(added["name"], "My API");
    assert_eq!(added["custom"], true);
    assert_eq!(added["scopes"], json!(["read", "write"]));
    let list = invoke(&h, "resources_list", json!({})).unwrap();
    assert_eq!(list.as_array().unwrap().len(), seeds + 1);
    let bad = invoke(&h, "resources_add", json!({"resource": "not a url"})).unwrap_err();
    assert!(!bad.as_str().unwrap().is_empty());
    invoke(
        &h,
        "resources_remove",
        json!({"resource": "http://127.0.0.1:9000/api"}),
    )
    .unwrap();
    let list = invoke(&h, "resources_list", json!({})).unwrap();
    assert_eq!(list.as_array().unwrap().len(), seeds);
    let builtin = invoke(&h, "resources_remove", json!({"resource": "github"})).unwrap_err();
    assert!(builtin.as_str().unwrap().contains("GitHub"), "{builtin}");
}

#[test]
fn clients_add_shows_token_once_then_list_and_remove() {
    let h = harness();
    assert_eq!(invoke(&h, "clients_list", json!({})).unwrap(), json!([]));
    let added = invoke(
        &h,
        "clients_add",
        json!({"name": "cursor-laptop", "kind": "cursor", "write": false}),
    )
    .unwrap();
    let token = added["token"].as_str().unwrap();
    assert!(token.len() >= 32);
    let snippet = added["snippet"].as_str().unwrap();
    assert!(
        snippet.contains(token) && snippet.contains("/mcp"),
        "{snippet}"
    );
    assert_eq!(added["written"], Value::Null);
    let list = invoke(&h, "clients_list", json!({})).unwrap();
    assert_eq!(list[0]["name"], "cursor-laptop");
    assert!(
        !list.to_string().contains(token),
        "the list never holds the token"
    );
    let dup = invoke(
        &h,
        "clients_add",
        json!({"name": "cursor-laptop", "kind": "cursor", "write": false}),
    )
    .unwrap_err();
    assert!(dup.as_str().unwrap().contains("already exists"), "{dup}");
    let kind = invoke(
        &h,
        "clients_add",
        json!({"name": "x", "kind": "emacs", "write": false}),
    )
    .unwrap_err();
    assert!(kind.as_str().unwrap().contains("emacs"));
    let rotated = invoke(
        &h,
        "clients_issue",
        json!({"name": "cursor-laptop", "kind": "codex", "write": false}),
    )
    .unwrap();
    let new_token = rotated["token"].as_str().unwrap();
    assert_ne!(new_token, token, "a new token");
    assert!(rotated["note"].as_str().unwrap().contains(new_token));
    invoke(&h, "clients_remove", json!({"name": "cursor-laptop"})).unwrap();
    assert_eq!(invoke(&h, "clients_list", json!({})).unwrap(), json!([]));
    let kinds = invoke(&h, "client_kinds", json!({})).unwrap();
    assert_eq!(kinds.as_array().unwrap().len(), 6);
}

#[test]
fn claude_desktop_from_the_tray_gets_its_token_in_the_keychain() {
    // The stdio bridge reads the client token from the keychain; the tray must put it there
    // as the CLI does (they share Broker::client_snippet).
    let h = harness();
    let added = invoke(
        &h,
        "clients_add",
        json!({"name": "desktop", "kind": "claude-desktop", "write": false}),
    )
    .unwrap();
    let token = added["token"].as_str().unwrap().to_string();
    let snippet = added["snippet"].as_str().unwrap();
    assert!(!snippet.contains(&token), "the file never holds the token");
    assert!(snippet.contains("stdio"), "{snippet}");
    let stored = tauri::async_runtime::block_on(
        h.broker
            .vault()
            .get(broker::vault::SecretKey::ClientToken("desktop".into())),
    )
    .unwrap()
    .expect("the bridge's token is in the keychain");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&stored), token);
    // Other kinds carry the token in their own config and leave the keychain alone.
    invoke(
        &h,
        "clients_add",
        json!({"name": "cursor", "kind": "cursor", "write": false}),
    )
    .unwrap();
    let none = tauri::async_runtime::block_on(
        h.broker
            .vault()
            .get(broker::vault::SecretKey::ClientToken("cursor".into())),
    )
    .unwrap();
    assert!(none.is_none());
}

#[test]
fn audit_and_admin_errors_are_messages() {
    let h = harness();
    assert_eq!(invoke(&h, "audit", json!({})).unwrap(), json!([]));
    let err = invoke(&h, "revoke", json!({"resource": "nope"})).unwrap_err();
    assert!(err.is_string(), "{err}");
    let err = invoke(&h, "autostart", json!({})).unwrap_err();
    assert!(err.as_str().unwrap().contains("not available"), "{err}");
    let err = invoke(&h, "save_export", json!({"format": "exe", "content": ""})).unwrap_err();
    assert!(err.as_str().unwrap().contains("exe"), "{err}");
    let err = invoke(&h, "login", json!({})).unwrap_err();
    assert!(err.as_str().unwrap().contains("zone"), "{err}");
}

#[test]
fn tray_summary_words() {
    let status = |session: &str, grants: &[broker::GrantStatus]| broker::Status {
        paused: false,
        keychain_pending: 0,
        zone: Some("http://127.0.0.1:1".into()),
        account: None,
        session: session.into(),
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
    assert_eq!(summarize(Err("port in use")).0, TrayState::Attention);
    let mut paused = status("signed_in", &[Connected]);
    paused.paused = true;
    let (state, tip) = summarize(Ok(&paused));
    assert_eq!(state, TrayState::Attention);
    assert!(tip.contains("paused"), "{tip}");
    let mut locked = status("signed_in", &[Connected]);
    locked.keychain_pending = 1;
    let (state, tip) = summarize(Ok(&locked));
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
