//! The tray app (release build) under Xvfb: launch → MCP endpoint serving, memory with the
//! window open on Connections and closed to the tray (PSS over the app and its WebKit
//! processes), the time from "open the window" to the page having rendered, and the wake-ups
//! of every thread while the window is closed.
//!
//! Runs after the headless figures, on the same signed-in home, when `KEYCARD_TRAY_APP` names
//! the app binary (tests/bench/run.sh sets it, starts Xvfb and exports DISPLAY). The window is
//! closed the way a window manager closes it (WM_DELETE_WINDOW, `ui/e2e/xwindow.py`) and
//! opened again by a second launch, which the single-instance plugin hands to the running app's
//! `show_main`: the same function the tray's "Open" calls. The open time is the app's own
//! figure, from `show_main` to the page's `window_shown` call after it painted its first view
//! (two animation frames after the data arrived), read from the app's log; the time from the
//! second launch's spawn to that log line is shown beside it.

mod app;
mod procs;
mod report;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use app::*;
use procs::*;
use report::*;

use crate::procfs;

pub const CLOSED_TARGET_MIB: f64 = 60.0;
pub const OPEN_TARGET_MIB: f64 = 250.0;
pub const OPEN_TARGET_MS: f64 = 300.0;
pub const READY_TARGET_MS: f64 = 150.0;
const TITLE: &str = "Keycard Broker";

/// One process's proportional set size.
#[derive(Clone)]
pub struct Pss {
    pub name: String,
    pub kib: u64,
}

/// Context switches of one thread over the idle window.
pub struct ThreadWakeups {
    pub process: String,
    pub thread: String,
    pub switches: u64,
}

pub struct Tray {
    /// Spawn of the app on the signed-in home → `initialize` answered 200 on /mcp.
    pub ready_ms: Vec<f64>,
    /// The window opened at launch: `show_main` → the page rendered (the app's own figure).
    pub launch_open_ms: Option<f64>,
    /// Re-opened from the tray's code path: the app's figure, and spawn of the second launch →
    /// the app's log line.
    pub open_ms: Vec<f64>,
    pub open_outside_ms: Vec<f64>,
    /// Of the open time, the part after the page's navigation started (the rest is building
    /// the window and starting WebKit's web process).
    pub page_ms: Vec<f64>,
    /// The view the page rendered on re-opening, and the rows Connections lists.
    pub view: String,
    pub providers: usize,
    /// Per process, at the last measurement of each state.
    pub open_pss: Vec<Pss>,
    pub closed_pss: Vec<Pss>,
    /// Sums at every measurement (one per cycle).
    pub open_sums: Vec<u64>,
    pub closed_sums: Vec<u64>,
    pub idle_secs: f64,
    pub wakeups: Vec<ThreadWakeups>,
}

/// What the run needs from tests/bench/run.sh.
pub struct Setup {
    pub app: String,
    pub cli: String,
    pub python: String,
    pub mcp_url: String,
    pub mcp_token: String,
    pub home: PathBuf,
    pub trials: usize,
    pub cycles: usize,
    pub idle: Duration,
}

pub async fn run(s: &Setup) -> Result<Tray> {
    let stderr = s.home.join("tray-app.err");
    // --- launch → serving, a fresh process each time -------------------------------------------
    let mut ready_ms = Vec::new();
    for i in 0..s.trials {
        let (mut child, ms) = launch(s, &stderr).await?;
        eprintln!("bench: tray app ready {i}: {ms:.0} ms");
        ready_ms.push(ms);
        // Let the window finish (its processes would otherwise still start as we stop it).
        let _ = wait_for("the window at launch", 30, || !shown(&stderr).is_empty()).await;
        quit(&mut child).await?;
    }

    // --- the window: open at launch, then closed and opened again `cycles` times ---------------
    let (mut child, ms) = launch(s, &stderr).await?;
    ready_ms.push(ms);
    let app = child.id().context("tray app pid")?;
    wait_for("the window at launch", 30, || !shown(&stderr).is_empty()).await?;
    let launch_open_ms = shown(&stderr).first().and_then(|l| l.open_ms);
    let providers = providers_listed(s);
    let settle = Duration::from_secs(2);
    let mut t = Tray {
        ready_ms,
        launch_open_ms,
        open_ms: Vec::new(),
        open_outside_ms: Vec::new(),
        page_ms: Vec::new(),
        view: String::new(),
        providers,
        open_pss: Vec::new(),
        closed_pss: Vec::new(),
        open_sums: Vec::new(),
        closed_sums: Vec::new(),
        idle_secs: s.idle.as_secs_f64(),
        wakeups: Vec::new(),
    };
    tokio::time::sleep(settle).await;
    for cycle in 0..s.cycles {
        let web = webkit_web(app);
        if web.is_empty() {
            bail!("no WebKitWebProcess under the app with the window open");
        }
        let sent = close_window(s).await?;
        if sent > 1 {
            eprintln!("bench: tray cycle {cycle}: the close took {sent} messages");
        }
        wait_for("the web process to exit after the close", 10, || {
            web.iter().all(|p| !procfs::alive(*p))
        })
        .await?;
        tokio::time::sleep(settle).await;
        t.closed_pss = pss(app);
        t.closed_sums.push(t.closed_pss.iter().map(|p| p.kib).sum());
        if cycle == 0 {
            let before = switches(app);
            tokio::time::sleep(s.idle).await;
            let after = switches(app);
            t.wakeups = after
                .iter()
                .map(|(k, (process, thread, n))| ThreadWakeups {
                    process: process.clone(),
                    thread: thread.clone(),
                    switches: n.saturating_sub(before.get(k).map_or(*n, |b| b.2)),
                })
                .collect();
            t.wakeups.sort_by_key(|w| std::cmp::Reverse(w.switches));
        }
        let count = shown(&stderr).len();
        let t0 = Instant::now();
        let second = tokio::process::Command::new(&s.app)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let second = tokio::time::timeout(Duration::from_secs(30), second)
            .await
            .context("second launch did not exit")??;
        if !second.success() {
            bail!("second launch exited with {second}");
        }
        wait_for("the reopened window to render", 30, || {
            shown(&stderr).len() > count
        })
        .await?;
        t.open_outside_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let lines = shown(&stderr);
        let last = lines.last().cloned().unwrap_or_default();
        t.view = last.view;
        t.open_ms
            .push(last.open_ms.context("window shown without open_ms")?);
        t.page_ms.push(last.page_ms.unwrap_or(f64::NAN));
        tokio::time::sleep(settle).await;
        t.open_pss = pss(app);
        t.open_sums.push(t.open_pss.iter().map(|p| p.kib).sum());
        eprintln!(
            "bench: tray cycle {cycle}: closed {:.1} MiB, open {:.0} ms, open {:.1} MiB",
            mib(*t.closed_sums.last().unwrap_or(&0)),
            t.open_ms.last().copied().unwrap_or(f64::NAN),
            mib(*t.open_sums.last().unwrap_or(&0)),
        );
    }
    quit(&mut child).await?;
    Ok(t)
}
