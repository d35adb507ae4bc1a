//! The tray icon: state at a glance (all good / attention needed / signed out), a menu with
//! every connection, and the one desktop notification per `needs_reconnect`.

use broker::GrantStatus;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};

use crate::{ROUND_TIMEOUT_SECS, Shell};

pub const TRAY_ID: &str = "main";
const CONNECTION_PREFIX: &str = "conn:";

/// What the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    Ok,
    Attention,
    SignedOut,
}

impl TrayState {
    fn icon(self) -> Result<Image<'static>, tauri::Error> {
        Image::from_bytes(match self {
            TrayState::Ok => include_bytes!("../../icons/tray-ok.png"),
            TrayState::Attention => include_bytes!("../../icons/tray-attention.png"),
            TrayState::SignedOut => include_bytes!("../../icons/tray-signed-out.png"),
        })
    }
}

/// The tray state and tooltip for a status (or the engine's start-up error).
pub fn summarize(status: Result<&broker::Status, &str>) -> (TrayState, String) {
    let status = match status {
        Ok(s) => s,
        Err(e) => return (TrayState::Attention, format!("Keycard Broker: {e}")),
    };
    if status.session != "signed_in" {
        let why = if status.zone.is_none() {
            "no zone configured"
        } else if status.session == "needs_login" {
            "sign in again"
        } else {
            "signed out"
        };
        return (TrayState::SignedOut, format!("Keycard Broker — {why}"));
    }
    if status.keychain_pending > 0 {
        return (
            TrayState::Attention,
            "Keycard Broker — unlock the keychain: a renewed sign-in waits to be saved".to_string(),
        );
    }
    if status.paused {
        return (
            TrayState::Attention,
            "Keycard Broker — agent access paused".to_string(),
        );
    }
    let attention: Vec<&str> = status
        .connections
        .iter()
        .filter(|c| matches!(c.status, GrantStatus::NeedsReconnect | GrantStatus::Error))
        .map(|c| c.name.as_str())
        .collect();
    if attention.is_empty() {
        let live = status
            .connections
            .iter()
            .filter(|c| c.status == GrantStatus::Connected)
            .count();
        (
            TrayState::Ok,
            format!("Keycard Broker — all good ({live} connected)"),
        )
    } else {
        (
            TrayState::Attention,
            format!(
                "Keycard Broker — attention needed: {}",
                attention.join(", ")
            ),
        )
    }
}

/// Words for a connection's status in the menu.
pub fn status_words(status: GrantStatus) -> &'static str {
    match status {
        GrantStatus::Connected => "connected",
        GrantStatus::NeedsReconnect => "needs reconnect — click to reconnect",
        GrantStatus::Revoked => "revoked",
        GrantStatus::Error => "error (retrying)",
    }
}

const PAUSE_ID: &str = "pause-toggle";

fn menu<R: Runtime>(app: &AppHandle<R>, status: Option<&broker::Status>) -> tauri::Result<Menu<R>> {
    let open = MenuItem::with_id(app, "open", "Open Keycard Broker", true, None::<&str>)?;
    let connections = Submenu::with_id(app, "connections", "Connections", true)?;
    let listed: Vec<_> = status
        .map(|s| {
            s.connections
                .iter()
                .filter(|c| c.status != GrantStatus::Revoked)
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        connections.append(&MenuItem::with_id(
            app,
            "conn-none",
            "No connections yet",
            false,
            None::<&str>,
        )?)?;
    }
    for c in listed {
        connections.append(&MenuItem::with_id(
            app,
            format!("{CONNECTION_PREFIX}{}", c.resource),
            format!("{} — {}", c.name, status_words(c.status)),
            true,
            None::<&str>,
        )?)?;
    }
    let paused = status.is_some_and(|s| s.paused);
    let pause = MenuItem::with_id(
        app,
        PAUSE_ID,
        if paused {
            "Resume agent access"
        } else {
            "Pause agent access"
        },
        status.is_some(),
        None::<&str>,
    )?;
    let separator = PredefinedMenuItem::separator(app)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    Menu::with_items(app, &[&open, &connections, &pause, &separator, &quit])
}

/// Creates the tray icon (signed-out look until the engine reports).
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(TrayState::SignedOut.icon()?)
        .tooltip("Keycard Broker — starting")
        .menu(&menu(app, None)?)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                crate::show_main(tray.app_handle());
            }
        })
        .build(app)?;
    Ok(())
}

fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    match id {
        "open" => crate::show_main(app),
        "quit" => crate::quit(app),
        PAUSE_ID => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if let Ok(broker) = app.state::<Shell>().broker().await {
                    // The engine's PauseChanged event refreshes this menu and the tooltip.
                    broker.set_paused(!broker.paused());
                }
            });
        }
        _ => {
            if let Some(resource) = id.strip_prefix(CONNECTION_PREFIX) {
                let resource = resource.to_string();
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    reconnect_if_needed(&app, resource).await;
                });
            }
        }
    }
}

/// A connection clicked in the tray: reconnect when it needs it, else open the window.
async fn reconnect_if_needed<R: Runtime>(app: &AppHandle<R>, resource: String) {
    let shell = app.state::<Shell>();
    let Ok(broker) = shell.broker().await else {
        crate::show_main(app);
        return;
    };
    let needs = broker
        .status()
        .map(|s| {
            s.connections
                .iter()
                .any(|c| c.resource == resource && c.status == GrantStatus::NeedsReconnect)
        })
        .unwrap_or(false);
    if !needs {
        crate::show_main(app);
        return;
    }
    let request = broker::control::Request::Connect {
        resource,
        timeout_secs: ROUND_TIMEOUT_SECS,
    };
    if let Err(e) =
        broker::control::handle(&broker, request, |url| shell.announce_url(app, url)).await
    {
        tracing::warn!(error = %e, "reconnect from the tray failed");
        notify(app, "Reconnect failed", &e.to_string());
    }
}

/// Brings icon, tooltip and menu in line with the engine's state.
pub async fn refresh<R: Runtime>(app: &AppHandle<R>) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    let shell = app.state::<Shell>();
    let status = match shell.broker().await {
        Ok(broker) => broker.status().map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let (state, tooltip) = summarize(status.as_ref().map_err(String::as_str));
    if let Ok(icon) = state.icon() {
        let _ = tray.set_icon(Some(icon));
    }
    let _ = tray.set_tooltip(Some(&tooltip));
    match menu(app, status.as_ref().ok()) {
        Ok(m) => {
            let _ = tray.set_menu(Some(m));
        }
        Err(e) => tracing::warn!(error = %e, "tray menu not updated"),
    }
}

/// The desktop notification for a connection that just turned `needs_reconnect`.
pub fn notify_reconnect<R: Runtime>(app: &AppHandle<R>, resource: &str, reason: Option<&str>) {
    let name = app
        .state::<Shell>()
        .engine
        .try_read()
        .ok()
        .and_then(|e| e.as_ref().and_then(|e| e.broker.provider(resource).ok()))
        .map(|p| p.name)
        .unwrap_or_else(|| resource.to_string());
    let body = match reason {
        Some(r) => {
            format!("{name} needs to be reconnected: {r}. Open Keycard Broker and click Reconnect.")
        }
        None => format!("{name} needs to be reconnected. Open Keycard Broker and click Reconnect."),
    };
    notify(app, "Reconnect needed", &body);
}

fn notify<R: Runtime>(app: &AppHandle<R>, title: &str, body: &str) {
    use tauri_plugin_notification::NotificationExt;
    // The plugin is absent under the mock runtime of the unit tests.
    if app
        .try_state::<tauri_plugin_notification::Notification<R>>()
        .is_none()
    {
        return;
    }
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::warn!(error = %e, "desktop notification not shown");
    }
}
