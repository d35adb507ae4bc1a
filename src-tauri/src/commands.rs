//! Tauri commands. Every engine operation goes through one command, `api`, into
//! `broker::api::handle` (the CLI's code path); the rest are what only a desktop shell does
//! (its own state, the Downloads folder, start at login, quit). Errors are the engine's
//! `Failure {code, message}`; the window chooses its button by code.

use std::sync::Arc;

use broker::api::{self, ErrorCode, Failure, Reply, Request, ZoneChange};
use broker::{Broker, Config};
use serde::{Deserialize, Serialize};
use tauri::ipc::Invoke;
use tauri::{AppHandle, Manager, Runtime, State};

use crate::{DEMO_ZONE, Shell};

/// The command handler for the window (generic so the mock runtime can test it).
pub fn handler<R: Runtime>() -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        api,
        configure_zone,
        app_info,
        autostart,
        quit_app,
        window_shown
    ]
}

/// One engine operation. Browser rounds announce their URL to the window and the browser;
/// client set-up points stdio-only clients at the CLI installed next to this app; exports go
/// to the Downloads folder.
#[tauri::command]
async fn api<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    request: Request,
) -> Result<Reply, Failure> {
    let broker = shell.broker().await?;
    let request = match request {
        Request::ClientSetup {
            name,
            kind,
            write,
            replace,
            access,
            static_token,
            ..
        } => Request::ClientSetup {
            name,
            kind,
            stdio_command: cli_exe(),
            write,
            replace,
            access,
            static_token,
        },
        Request::ExportActivity {
            client,
            resource,
            outcome,
            since,
            format,
            ..
        } => Request::ExportActivity {
            client,
            resource,
            outcome,
            since,
            format,
            to: downloads(&app)?,
        },
        other => other,
    };
    api::handle(&broker, request, |url| shell.announce_url(&app, url)).await
}

/// Configures the zone (discovery, a clean switch, kept settings) and restarts the engine
/// with it; answers the new status.
#[tauri::command]
async fn configure_zone<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    change: ZoneChange,
) -> Result<broker::Status, Failure> {
    let broker = shell.broker().await?;
    let (config, _) = api::configure_zone(&broker, change).await?;
    let vault = broker.vault().clone();
    drop(broker);
    restart(&app, &shell, config, vault).await?;
    Ok(shell.broker().await?.status()?)
}

async fn restart<R: Runtime>(
    app: &AppHandle<R>,
    shell: &Shell,
    config: Config,
    vault: api::Vault,
) -> Result<(), Failure> {
    if shell.has_control().await {
        crate::start_engine(app, config, Some(vault)).await?;
    } else {
        // Tests: no listener or control socket, just a fresh broker over the same vault.
        shell
            .replace(Arc::new(Broker::with_vault(config, vault)?))
            .await;
    }
    Ok(())
}

/// What the window shows before and beside the engine's own state.
#[derive(Debug, Serialize, Deserialize, ts_rs::TS)]
pub struct AppInfo {
    pub running: bool,
    /// Why the engine is not running.
    pub error: Option<Failure>,
    /// The engine's facts, from the running broker or, when it failed, from the config.
    pub about: Option<api::About>,
    pub demo_zone: String,
    pub last_auth_url: Option<String>,
}

#[tauri::command]
async fn app_info(shell: State<'_, Shell>) -> Result<AppInfo, Failure> {
    let broker = shell.broker().await.ok();
    let about = match &broker {
        Some(b) => Some(api::about(b.config(), Some(b.vault()))),
        None => Config::from_env().ok().map(|c| api::about(&c, None)),
    };
    Ok(AppInfo {
        running: broker.is_some(),
        error: shell.error(),
        about,
        demo_zone: DEMO_ZONE.to_string(),
        last_auth_url: shell.last_auth_url(),
    })
}

/// The `keycard-broker` CLI next to this app, for stdio-only clients (Claude Desktop).
fn cli_exe() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("keycard-broker")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "keycard-broker".into())
}

/// The Downloads folder (the home folder when there is none), created if missing.
fn downloads<R: Runtime>(app: &AppHandle<R>) -> Result<String, Failure> {
    let dir = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .map_err(|e| {
            Failure::new(
                ErrorCode::NotConfigured,
                format!("cannot find the Downloads folder: {e}"),
            )
        })?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::new(
            ErrorCode::Storage,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    dir.to_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::invalid("the Downloads folder's path is not valid UTF-8"))
}

/// Start at login: reads it, or sets it first when `enabled` is given.
#[tauri::command]
fn autostart<R: Runtime>(app: AppHandle<R>, enabled: Option<bool>) -> Result<bool, Failure> {
    let unavailable = |m: String| Failure::new(ErrorCode::Internal, m);
    let Some(manager) = app.try_state::<tauri_plugin_autostart::AutoLaunchManager>() else {
        return Err(unavailable(
            "start at login is not available in this build".into(),
        ));
    };
    match enabled {
        Some(true) => manager.enable(),
        Some(false) => manager.disable(),
        None => Ok(()),
    }
    .map_err(|e| unavailable(format!("cannot change start at login: {e}")))?;
    manager
        .is_enabled()
        .map_err(|e| unavailable(format!("cannot read start at login: {e}")))
}

#[tauri::command]
fn quit_app<R: Runtime>(app: AppHandle<R>) {
    crate::quit(&app);
}

/// The page has rendered its first view (`view`), `page_ms` after its navigation started: logs
/// both and the time from the request to open the window (the tray click or its equivalent),
/// which the benchmark reads; the difference is what building the window and WebKit's processes
/// took before the page began. Once per opening; a reload logs without an open time.
#[tauri::command]
fn window_shown(shell: State<'_, Shell>, view: String, page_ms: f64) {
    let page_ms = (page_ms * 10.0).round() / 10.0;
    match shell.take_open_elapsed_ms() {
        Some(ms) => {
            let open_ms = (ms * 10.0).round() / 10.0;
            tracing::info!(view = %view, open_ms, page_ms, "window shown");
        }
        None => tracing::info!(view = %view, page_ms, "window shown"),
    }
}
