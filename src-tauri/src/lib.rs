//! Keycard Broker tray app: a thin shell over the `broker` engine, run in-process.
//!
//! Every admin action goes through `broker::api::handle`, the same code path as the CLI
//! and its control socket; engine events are forwarded to the window and drive the tray icon
//! and notifications. No OAuth, storage or MCP logic lives here.

mod commands;
mod tray;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use broker::api::{ErrorCode, Failure};
use broker::control::Serving;
use broker::{Broker, BrokerError, Config};
use serde_json::Value;
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime, WebviewWindowBuilder};
use tokio::sync::{RwLock, watch};

pub use commands::handler;

/// The demo zone `scripts/run` starts (tests/zone in interactive mode).
pub const DEMO_ZONE: &str = "http://127.0.0.1:8940";
/// How long a browser round (login, connect, reconnect) waits for the redirect.
pub const ROUND_TIMEOUT_SECS: u64 = 300;

/// The one window's label (tauri.conf.json; `create: false`, so it is built in code).
pub const MAIN_WINDOW: &str = "main";

/// Window events the front end listens to.
pub const EVENT_BROKER: &str = "broker-event";
pub const EVENT_AUTH_URL: &str = "auth-url";
pub const EVENT_ENGINE: &str = "engine-changed";

/// One running engine: the broker, what serves it and its event forwarder.
struct Engine {
    broker: Arc<Broker>,
    /// Loopback listener and control socket; none for a shell over a bare broker (tests).
    serving: Option<Serving>,
    forward: Option<tauri::async_runtime::JoinHandle<()>>,
}

/// App state shared by commands, tray and event forwarder.
pub struct Shell {
    engine: RwLock<Option<Engine>>,
    /// Why the engine is not running (no keychain, port in use, …), for the window.
    error: Mutex<Option<Failure>>,
    /// False until the first start-up attempt finished.
    ready: watch::Sender<bool>,
    open_browser: bool,
    /// Resources already notified as needing reconnect (one notification per transition).
    notified: Mutex<HashSet<String>>,
    /// The last authorize URL of a browser round (the window shows it as a fallback link).
    last_auth_url: Mutex<Option<String>>,
    /// When the window was last asked to open, until its page says it has rendered.
    open_requested: Mutex<Option<Instant>>,
}

impl Shell {
    pub fn new(open_browser: bool) -> Shell {
        Shell {
            engine: RwLock::new(None),
            error: Mutex::new(None),
            ready: watch::channel(false).0,
            open_browser,
            notified: Mutex::new(HashSet::new()),
            last_auth_url: Mutex::new(None),
            open_requested: Mutex::new(None),
        }
    }

    /// Notes the moment the window was asked to open (the tray click or its equivalent).
    fn note_open_requested(&self) {
        if let Ok(mut slot) = self.open_requested.lock() {
            *slot = Some(Instant::now());
        }
    }

    /// Milliseconds from the last open request to now, once per request.
    pub fn take_open_elapsed_ms(&self) -> Option<f64> {
        let started = self.open_requested.lock().ok()?.take()?;
        Some(started.elapsed().as_secs_f64() * 1e3)
    }

    /// A shell over an already opened broker, without listener or control socket (tests).
    pub fn with_broker(broker: Arc<Broker>) -> Shell {
        let shell = Shell::new(false);
        if let Ok(mut slot) = shell.engine.try_write() {
            *slot = Some(Engine {
                broker,
                serving: None,
                forward: None,
            });
        }
        shell.ready.send_replace(true);
        shell
    }

    /// The running broker, waiting for start-up if it is still under way.
    pub async fn broker(&self) -> Result<Arc<Broker>, Failure> {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
        if let Some(engine) = self.engine.read().await.as_ref() {
            return Ok(engine.broker.clone());
        }
        Err(self.error().unwrap_or_else(|| {
            Failure::new(ErrorCode::NotRunning, "Keycard Broker is not running")
        }))
    }

    pub fn error(&self) -> Option<Failure> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, error: Option<Failure>) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = error;
        }
    }

    pub fn last_auth_url(&self) -> Option<String> {
        self.last_auth_url.lock().ok().and_then(|u| u.clone())
    }

    /// Hands an authorize URL to the window (event) and, unless disabled, the system browser.
    fn announce_url<R: Runtime>(&self, app: &AppHandle<R>, url: &str) {
        if let Ok(mut slot) = self.last_auth_url.lock() {
            *slot = Some(url.to_string());
        }
        let _ = app.emit(EVENT_AUTH_URL, url);
        if self.open_browser
            && let Err(e) = tauri_plugin_opener::open_url(url, None::<&str>)
        {
            tracing::warn!(error = %e, "cannot open the system browser");
        }
    }

    /// True the first time `resource` turns `needs_reconnect` since it was last fine.
    fn first_needs_reconnect(&self, resource: &str, needs: bool) -> bool {
        let Ok(mut set) = self.notified.lock() else {
            return false;
        };
        if needs {
            set.insert(resource.to_string())
        } else {
            set.remove(resource);
            false
        }
    }

    /// True when the engine serves the control socket (the real app, not unit tests).
    async fn has_control(&self) -> bool {
        self.engine
            .read()
            .await
            .as_ref()
            .is_some_and(|e| e.serving.is_some())
    }

    /// Swaps in another broker without listener (unit tests).
    async fn replace(&self, broker: Arc<Broker>) {
        *self.engine.write().await = Some(Engine {
            broker,
            serving: None,
            forward: None,
        });
    }

    /// Stops the running engine: forwarder, control socket, loopback listener.
    pub async fn stop(&self) {
        let engine = self.engine.write().await.take();
        if let Some(engine) = engine {
            if let Some(forward) = engine.forward {
                forward.abort();
            }
            match engine.serving {
                Some(serving) => serving.stop().await,
                None => engine.broker.shutdown().await,
            }
        }
    }
}

/// An engine opened and serving, not yet attached to the app. Its events are subscribed before
/// it serves, so none is missed in between.
pub struct Started {
    broker: Arc<Broker>,
    serving: Serving,
    events: tokio::sync::broadcast::Receiver<broker::Event>,
}

/// Opens the engine from `config` (reusing `vault` when given) and serves it (loopback listener
/// with the MCP endpoint, agent socket, control socket). Needs nothing of the app: `run` starts
/// it before Tauri sets up GTK, the plugins and the tray, so agents are served meanwhile.
pub async fn serve_engine(
    config: Config,
    vault: Option<broker::api::Vault>,
) -> Result<Started, BrokerError> {
    let broker = Arc::new(match vault {
        Some(vault) => Broker::with_vault(config, vault)?,
        None => Broker::open(config).await?,
    });
    let events = broker.subscribe();
    let serving = Serving::start(broker.clone()).await?;
    Ok(Started {
        broker,
        serving,
        events,
    })
}

/// Stops the running engine, then opens and serves a new one and attaches it (a zone change).
pub async fn start_engine<R: Runtime>(
    app: &AppHandle<R>,
    config: Config,
    vault: Option<broker::api::Vault>,
) -> Result<(), BrokerError> {
    app.state::<Shell>().stop().await;
    let started = serve_engine(config, vault).await?;
    attach_engine(app, started).await;
    Ok(())
}

/// Makes a started engine the app's: its events go to the window and the tray, commands reach it.
pub async fn attach_engine<R: Runtime>(app: &AppHandle<R>, started: Started) {
    let Started {
        broker,
        serving,
        mut events,
    } = started;
    let shell = app.state::<Shell>();
    let forward_app = app.clone();
    let forward = tauri::async_runtime::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => on_event(&forward_app, &event),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Lost some events: tell the window to reload everything.
                    let _ = forward_app.emit(EVENT_ENGINE, Value::Null);
                    tray::refresh(&forward_app).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    *shell.engine.write().await = Some(Engine {
        broker,
        serving: Some(serving),
        forward: Some(forward),
    });
    shell.set_error(None);
    shell.ready.send_replace(true);
    let _ = app.emit(EVENT_ENGINE, Value::Null);
    tray::refresh(app).await;
}

/// One engine event: to the window as is, then the tray and (once) a notification.
fn on_event<R: Runtime>(app: &AppHandle<R>, event: &broker::Event) {
    let _ = app.emit(EVENT_BROKER, event);
    if let broker::Event::GrantChanged {
        resource,
        status,
        reason,
    } = event
    {
        let needs = *status == broker::GrantStatus::NeedsReconnect;
        if app.state::<Shell>().first_needs_reconnect(resource, needs) {
            tray::notify_reconnect(app, resource, reason.as_deref());
        }
    }
    match event {
        broker::Event::ApprovalRequested { call } => tray::notify_approval(app, call),
        broker::Event::AgentAsks { name, .. } => tray::notify_agent_asks(app, name),
        _ => {}
    }
    if !matches!(
        event,
        broker::Event::Activity { .. } | broker::Event::TokenIssued { .. }
    ) {
        let app = app.clone();
        tauri::async_runtime::spawn(async move { tray::refresh(&app).await });
    }
}

/// Shows and focuses the main window, building it first when it is closed: a closed window is
/// destroyed (see `run`), so its WebKit processes end and cost nothing while the app sits in
/// the tray. The tray's Open, a second launch and a deep link all come here.
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
        return;
    }
    if let Err(e) = open_main(app) {
        tracing::error!(error = %e, "cannot open the window");
    }
}

/// Builds the main window from its entry in tauri.conf.json (one place for size, title, …).
fn open_main<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN_WINDOW)
        .cloned()
        .ok_or_else(|| tauri::Error::WindowNotFound)?;
    app.state::<Shell>().note_open_requested();
    WebviewWindowBuilder::from_config(app, &config)?.build()?;
    Ok(())
}

/// Stops the engine cleanly and exits.
pub fn quit<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        app.state::<Shell>().stop().await;
        app.exit(0);
    });
}

/// OAuth redirects that come back through the app's URL scheme (zones that allow private-use
/// redirect URIs, `[broker] redirect = "deep-link"`) go to the engine's waiting round.
fn listen_for_deep_links<R: Runtime>(app: &AppHandle<R>) {
    use tauri_plugin_deep_link::DeepLinkExt;
    // Installed bundles register the scheme; a development build registers it at run time.
    #[cfg(any(target_os = "linux", all(debug_assertions, windows)))]
    if let Err(e) = app.deep_link().register_all() {
        tracing::warn!(error = %e, "URL scheme not registered");
    }
    let handle = app.clone();
    app.deep_link().on_open_url(move |event| {
        for url in event.urls() {
            let handle = handle.clone();
            let link = url.to_string();
            tauri::async_runtime::spawn(async move {
                let shell = handle.state::<Shell>();
                match shell.broker().await {
                    Ok(broker) => match broker.deliver_deep_link(&link) {
                        Ok(_) => show_main(&handle),
                        Err(reason) => tracing::warn!(%reason, "deep link refused"),
                    },
                    Err(failure) => tracing::warn!(%failure, "deep link refused"),
                }
            });
        }
    });
}

/// The tray app's entry point.
pub fn run() {
    // The same logging as the CLI: stderr and daily files in the log folder Settings shows.
    let _log_guard = broker::logging::init("info");
    let open_browser = std::env::var_os("KEYCARD_BROKER_NO_BROWSER").is_none();
    // The engine starts now, beside Tauri's own set-up (GTK, plugins, tray): the MCP endpoint
    // does not wait for the shell. `setup` attaches it once the app exists.
    let early = tauri::async_runtime::spawn(async {
        match Config::from_env() {
            Ok(config) => serve_engine(config, None).await,
            Err(e) => Err(e.into()),
        }
    });
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            show_main(app)
        }))
        // With its deep-link feature, a second launch carrying a sign-in link hands it to this
        // instance's `on_open_url` below.
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .app_name("Keycard Broker")
                .build(),
        )
        .manage(Shell::new(open_browser))
        .invoke_handler(handler())
        .setup(|app| {
            tray::create(app.handle())?;
            listen_for_deep_links(app.handle());
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let result = match early.await {
                    Ok(Ok(started)) => {
                        attach_engine(&handle, started).await;
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(BrokerError::Internal(format!("engine start-up: {e}"))),
                };
                let shell = handle.state::<Shell>();
                if let Err(e) = result {
                    tracing::error!(error = %e, "the broker did not start");
                    shell.set_error(Some(Failure::from(e)));
                    shell.ready.send_replace(true);
                    let _ = handle.emit(EVENT_ENGINE, Value::Null);
                    tray::refresh(&handle).await;
                }
            });
            // After the engine's start is under way: the MCP endpoint does not wait for WebKit.
            open_main(app.handle())?;
            Ok(())
        })
        .build(tauri::generate_context!());
    match app {
        Ok(app) => app.run(|_app, event| {
            if let RunEvent::ExitRequested { api, code, .. } = event
                && code.is_none()
            {
                // The window was closed (and destroyed): keep running in the tray.
                api.prevent_exit();
            }
        }),
        Err(e) => {
            eprintln!("Keycard Broker could not start its window: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests;
