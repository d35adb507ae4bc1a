//! The tray icon: state at a glance (all good / paused / attention needed / signed out), a menu with
//! every connection, and the one desktop notification per `needs_reconnect`.

use broker::api::{self, Failure, Request};
use broker::{GrantStatus, OverallState};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Runtime};

use crate::{ROUND_TIMEOUT_SECS, Shell};

pub const TRAY_ID: &str = "main";
const CONNECTION_PREFIX: &str = "conn:";

/// What the tray shows: the engine's overall state (the window's banner shows the same), or
/// attention when the engine did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    Ok,
    Paused,
    Attention,
    SignedOut,
}

impl TrayState {
    fn icon(self) -> Result<Image<'static>, tauri::Error> {
        Image::from_bytes(match self {
            TrayState::Ok => include_bytes!("../../icons/tray-ok.png"),
            TrayState::Attention => include_bytes!("../../icons/tray-attention.png"),
            // Paused and signed out share the grey look: agents get nothing either way.
            TrayState::Paused | TrayState::SignedOut => {
                include_bytes!("../../icons/tray-signed-out.png")
            }
        })
    }
}

/// The tray state and tooltip for a status (or the engine's start-up error).
pub fn summarize(status: Result<&broker::Status, &Failure>) -> (TrayState, String) {
    let status = match status {
        Ok(s) => s,
        Err(e) => return (TrayState::Attention, format!("Keycard Broker: {e}")),
    };
    let state = match status.overall.state {
        OverallState::Ok => TrayState::Ok,
        OverallState::Paused => TrayState::Paused,
        OverallState::Attention => TrayState::Attention,
        OverallState::SignedOut => TrayState::SignedOut,
    };
    (state, format!("Keycard Broker — {}", status.overall.text))
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
    let request = Request::Connect {
        resource,
        timeout_secs: ROUND_TIMEOUT_SECS,
    };
    if let Err(e) = api::handle(&broker, request, |url| shell.announce_url(app, url)).await {
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
        Ok(broker) => broker.status().map_err(Failure::from),
        Err(e) => Err(e),
    };
    let (state, tooltip) = summarize(status.as_ref());
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

/// An agent's write waits for the user: say who wants what, and where to decide.
pub fn notify_approval<R: Runtime>(app: &AppHandle<R>, call: &broker::PendingCall) {
    notify(
        app,
        &format!("{} asks to write", call.client_name),
        &format!(
            "{} {} — open Keycard Broker's Requests to allow or deny.",
            call.method, call.url
        ),
    );
}

/// An agent opened the consent page in the browser.
pub fn notify_agent_asks<R: Runtime>(app: &AppHandle<R>, name: &str) {
    notify(
        app,
        &format!("{name} asks for access"),
        "Choose what it may use on the page in your browser.",
    );
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
