//! Tauri commands: each maps to `broker::control::handle` (the CLI's code path) or a Broker
//! call, with errors turned into the engine's one-line message.

use std::sync::Arc;

use broker::client_setup::{self, Kind};
use broker::control::{self, Request};
use broker::{Broker, Config};
use serde_json::{Value, json};
use tauri::ipc::Invoke;
use tauri::{AppHandle, Manager, Runtime, State};

use crate::{DEMO_ZONE, ROUND_TIMEOUT_SECS, Shell};

type Reply = Result<Value, String>;

/// The command handler for the window (generic so the mock runtime can test it).
pub fn handler<R: Runtime>() -> impl Fn(Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        app_info,
        status,
        set_zone,
        login,
        connect,
        revoke,
        logout,
        resources_list,
        resources_add,
        resources_remove,
        clients_list,
        clients_add,
        clients_issue,
        clients_remove,
        client_kinds,
        audit,
        save_export,
        autostart,
        quit_app,
    ]
}

/// Runs one admin request; browser rounds announce their URL to the window and browser.
async fn admin<R: Runtime>(app: &AppHandle<R>, shell: &Shell, request: Request) -> Reply {
    let broker = shell.broker().await?;
    control::handle(&broker, request, |url| shell.announce_url(app, url))
        .await
        .map_err(|e| e.to_string())
}

#[tauri::command]
async fn app_info(shell: State<'_, Shell>) -> Reply {
    let broker = shell.broker().await.ok();
    let config = match &broker {
        Some(b) => Some(b.config().clone()),
        None => Config::from_env().ok(),
    };
    let port = config.as_ref().map(Config::port);
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "running": broker.is_some(),
        "error": shell.error(),
        "zone": config.as_ref().and_then(|c| c.settings.zone.as_ref().map(|z| z.issuer.clone())),
        "port": port,
        "mcp_url": port.map(|p| format!("http://127.0.0.1:{p}{}", broker::mcp::MCP_PATH)),
        "keychain": broker.as_ref().map(|b| b.vault().backend()),
        "logs_dir": config.as_ref().map(|c| c.paths.log_dir.display().to_string()),
        "data_dir": config.as_ref().map(|c| c.paths.data_dir.display().to_string()),
        "config_file": config.as_ref().map(|c| c.paths.config_file.display().to_string()),
        "demo_zone": DEMO_ZONE,
        "last_auth_url": shell.last_auth_url(),
    }))
}

#[tauri::command]
async fn status<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>) -> Reply {
    admin(&app, &shell, Request::Status).await
}

/// First run: saves the zone (URL or bare zone id) and restarts the engine with it.
#[tauri::command]
async fn set_zone<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>, zone: String) -> Reply {
    let broker = shell.broker().await?;
    let issuer = broker::config::normalize_zone(&zone).map_err(|e| e.to_string())?;
    let mut config = broker.config().clone();
    match &mut config.settings.zone {
        Some(z) if z.issuer == issuer => {}
        Some(_)
            if broker
                .status()
                .map(|s| s.session != "signed_out")
                .unwrap_or(false) =>
        {
            return Err("sign out before switching to another zone".into());
        }
        slot => *slot = Some(broker::config::ZoneSettings::new(issuer)),
    }
    config.save().map_err(|e| e.to_string())?;
    let vault = broker.vault().clone();
    drop(broker);
    restart(&app, &shell, config, vault).await?;
    admin(&app, &shell, Request::Status).await
}

async fn restart<R: Runtime>(
    app: &AppHandle<R>,
    shell: &Shell,
    config: Config,
    vault: broker::vault::Vault,
) -> Result<(), String> {
    let listening = shell.has_control().await;
    if listening {
        crate::start_engine(app, config, Some(vault))
            .await
            .map_err(|e| e.to_string())
    } else {
        // Tests: no listener or control socket, just a fresh broker over the same vault.
        let broker = Broker::with_vault(config, vault).map_err(|e| e.to_string())?;
        shell.replace(Arc::new(broker)).await;
        Ok(())
    }
}

#[tauri::command]
async fn login<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>) -> Reply {
    admin(
        &app,
        &shell,
        Request::Login {
            timeout_secs: ROUND_TIMEOUT_SECS,
        },
    )
    .await
}

/// Connect and reconnect alike: a consent round for `resource` (identifier or slug).
#[tauri::command]
async fn connect<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    resource: String,
) -> Reply {
    admin(
        &app,
        &shell,
        Request::Connect {
            resource,
            timeout_secs: ROUND_TIMEOUT_SECS,
        },
    )
    .await
}

#[tauri::command]
async fn revoke<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>, resource: String) -> Reply {
    admin(&app, &shell, Request::Revoke { resource }).await
}

#[tauri::command]
async fn logout<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>) -> Reply {
    admin(&app, &shell, Request::Logout).await
}

#[tauri::command]
async fn resources_list<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>) -> Reply {
    admin(&app, &shell, Request::ResourcesList).await
}

#[tauri::command]
async fn resources_add<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    resource: String,
    name: Option<String>,
    api_base: Option<String>,
    scopes: Option<String>,
) -> Reply {
    let name = name.filter(|n| !n.trim().is_empty());
    let api_bases = api_base
        .filter(|b| !b.trim().is_empty())
        .map(|b| vec![b.trim().to_string()])
        .unwrap_or_default();
    let scopes = broker::zone::split_scopes(&scopes.unwrap_or_default());
    admin(
        &app,
        &shell,
        Request::ResourcesAdd {
            resource: resource.trim().to_string(),
            name,
            api_bases,
            scopes,
        },
    )
    .await
}

#[tauri::command]
async fn resources_remove<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    resource: String,
) -> Reply {
    admin(&app, &shell, Request::ResourcesRemove { resource }).await
}

#[tauri::command]
async fn clients_list<R: Runtime>(app: AppHandle<R>, shell: State<'_, Shell>) -> Reply {
    admin(&app, &shell, Request::ClientsList).await
}

#[tauri::command]
fn client_kinds() -> Reply {
    Ok(Value::Array(
        Kind::ALL
            .iter()
            .map(|k| {
                let path = client_setup::default_path(*k)
                    .map(|p| p.display().to_string())
                    .ok();
                json!({"kind": k.as_str(), "path": path})
            })
            .collect(),
    ))
}

/// Registers a client, renders its config snippet and, when `write`, merges it into the
/// client's own config file. The token is returned this once.
#[tauri::command]
async fn clients_add<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    name: String,
    kind: String,
    write: bool,
) -> Reply {
    setup_client(&app, &shell, Request::ClientsAdd { name }, &kind, write).await
}

/// A new token for an existing client (the old one stops working at once), with its snippet.
#[tauri::command]
async fn clients_issue<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    name: String,
    kind: String,
    write: bool,
) -> Reply {
    setup_client(&app, &shell, Request::ClientsIssue { name }, &kind, write).await
}

async fn setup_client<R: Runtime>(
    app: &AppHandle<R>,
    shell: &Shell,
    request: Request,
    kind: &str,
    write: bool,
) -> Reply {
    let kind = Kind::parse(kind).ok_or_else(|| format!("unknown client kind {kind:?}"))?;
    let broker = shell.broker().await?;
    let issued = admin(app, shell, request).await?;
    let name = issued["name"].as_str().unwrap_or_default().to_string();
    let token = issued["token"].as_str().unwrap_or_default().to_string();
    let snippet = broker
        .client_snippet(
            kind,
            &name,
            &secrecy::SecretString::from(token.clone()),
            &cli_exe(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut written = None;
    let mut backup = None;
    let mut warning = None;
    let mut write_error = None;
    if write {
        match client_setup::default_path(kind)
            .and_then(|path| client_setup::merge_into(&snippet, &path).map(|w| (path, w)))
        {
            Ok((path, w)) => {
                written = Some(path.display().to_string());
                backup = w.backup.as_ref().map(|b| b.display().to_string());
                warning = w.warning();
            }
            Err(e) => write_error = Some(e.to_string()),
        }
    }
    Ok(json!({
        "name": name,
        "token": token,
        "kind": kind.as_str(),
        "snippet": snippet.render(),
        "note": snippet.note(),
        "written": written,
        "backup": backup,
        "warning": warning,
        "write_error": write_error,
    }))
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

#[tauri::command]
async fn clients_remove<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    name: String,
) -> Reply {
    admin(&app, &shell, Request::ClientsRemove { name }).await
}

#[tauri::command]
async fn audit<R: Runtime>(
    app: AppHandle<R>,
    shell: State<'_, Shell>,
    client: Option<String>,
    resource: Option<String>,
    limit: Option<u32>,
) -> Reply {
    admin(
        &app,
        &shell,
        Request::Audit {
            client: client.filter(|c| !c.is_empty()),
            resource: resource.filter(|r| !r.is_empty()),
            since: None,
            limit: Some(limit.unwrap_or(1000)),
        },
    )
    .await
}

/// Writes an activity export (CSV or JSON text made by the window) to the Downloads folder.
#[tauri::command]
fn save_export<R: Runtime>(app: AppHandle<R>, format: String, content: String) -> Reply {
    let ext = match format.as_str() {
        "csv" | "json" => format,
        _ => return Err(format!("unknown export format {format:?}")),
    };
    let dir = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .map_err(|e| format!("cannot find the Downloads folder: {e}"))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let path = dir.join(format!("keycard-broker-activity-{stamp}.{ext}"));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, content))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Value::String(path.display().to_string()))
}

/// Start at login: reads it, or sets it first when `enabled` is given.
#[tauri::command]
fn autostart<R: Runtime>(app: AppHandle<R>, enabled: Option<bool>) -> Reply {
    let Some(manager) = app.try_state::<tauri_plugin_autostart::AutoLaunchManager>() else {
        return Err("start at login is not available in this build".into());
    };
    match enabled {
        Some(true) => manager.enable(),
        Some(false) => manager.disable(),
        None => Ok(()),
    }
    .map_err(|e| format!("cannot change start at login: {e}"))?;
    manager
        .is_enabled()
        .map(Value::Bool)
        .map_err(|e| format!("cannot read start at login: {e}"))
}

#[tauri::command]
fn quit_app<R: Runtime>(app: AppHandle<R>) {
    crate::quit(&app);
}
