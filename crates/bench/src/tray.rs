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

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

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

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_u(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Tray {
    pub fn closed_kib(&self) -> u64 {
        median_u(&self.closed_sums)
    }
    pub fn open_kib(&self) -> u64 {
        median_u(&self.open_sums)
    }
    pub fn open_window_ms(&self) -> f64 {
        median(&self.open_ms)
    }
    pub fn ready(&self) -> f64 {
        median(&self.ready_ms)
    }
    pub fn wakeups_per_sec(&self) -> f64 {
        self.wakeups.iter().map(|w| w.switches).sum::<u64>() as f64 / self.idle_secs
    }

    pub fn json(&self) -> Value {
        let pss = |v: &[Pss]| {
            v.iter()
                .map(|p| json!({"process": p.name, "pss_kib": p.kib}))
                .collect::<Vec<_>>()
        };
        json!({
            "closed_pss_kib": self.closed_kib(),
            "open_pss_kib": self.open_kib(),
            "open_window_ms": self.open_window_ms(),
            "ready_ms": self.ready(),
            "ready_trials_ms": self.ready_ms,
            "launch_open_ms": self.launch_open_ms,
            "open_trials_ms": self.open_ms,
            "open_from_second_launch_ms": self.open_outside_ms,
            "open_page_part_ms": self.page_ms,
            "view": self.view,
            "providers_listed": self.providers,
            "closed_pss_sums_kib": self.closed_sums,
            "open_pss_sums_kib": self.open_sums,
            "closed_pss_by_process": pss(&self.closed_pss),
            "open_pss_by_process": pss(&self.open_pss),
            "idle_wakeups_per_s": self.wakeups_per_sec(),
            "idle_secs": self.idle_secs,
            "idle_wakeups_by_thread": self.wakeups.iter().map(|w| json!({
                "process": w.process, "thread": w.thread, "switches": w.switches})).collect::<Vec<_>>(),
        })
    }

    /// Rows for the report's targets table.
    pub fn target_rows(&self) -> String {
        let v = crate::report::verdict;
        let mut s = String::new();
        let closed = mib(self.closed_kib());
        let open = mib(self.open_kib());
        let _ = writeln!(
            s,
            "| tray app, window closed to tray: PSS (app + WebKit) ≤ {CLOSED_TARGET_MIB:.0} MB | {closed:.1} MiB | {} |",
            v(closed <= CLOSED_TARGET_MIB)
        );
        let _ = writeln!(
            s,
            "| tray app, window open on Connections ({} providers): PSS ≤ {OPEN_TARGET_MIB:.0} MB | {open:.1} MiB | {} |",
            self.providers,
            v(open <= OPEN_TARGET_MIB)
        );
        let _ = writeln!(
            s,
            "| tray app, window open time ≤ {OPEN_TARGET_MS:.0} ms | median {:.0} ms | {} |",
            self.open_window_ms(),
            v(self.open_window_ms() <= OPEN_TARGET_MS)
        );
        let _ = writeln!(
            s,
            "| tray app, launch → MCP serving ≤ {READY_TARGET_MS:.0} ms | median {:.0} ms | {} |",
            self.ready(),
            v(self.ready() <= READY_TARGET_MS)
        );
        let _ = writeln!(
            s,
            "| tray app idle, window closed: no wake-ups beyond the broker's timers | {:.2} /s over {:.0} s (by thread below) | {} |",
            self.wakeups_per_sec(),
            self.idle_secs,
            v(self
                .wakeups
                .iter()
                .all(|w| w.switches == 0 || is_broker_timer(&w.thread)))
        );
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let ms = |v: &[f64]| {
            v.iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "\n## Tray app (release build, under Xvfb)\n");
        let _ = writeln!(
            s,
            "The app on the same signed-in home (Connections lists {} providers: the catalog's and \
             the fixture). PSS = `Pss` of `/proc/<pid>/smaps_rollup` summed over the app and its \
             descendants (WebKitWebProcess, WebKitNetworkProcess); the window is closed with \
             WM_DELETE_WINDOW as a window manager would, and opened again by a second launch, \
             which reaches the same `show_main` as the tray's Open.\n",
            self.providers
        );
        let _ = writeln!(s, "| figure | median | trials |");
        let _ = writeln!(s, "|---|---:|---|");
        let _ = writeln!(
            s,
            "| launch → `initialize` answered 200 on /mcp | {:.0} ms | {} |",
            self.ready(),
            ms(&self.ready_ms)
        );
        let _ = writeln!(
            s,
            "| open: `show_main` → page rendered `{}` (the app's own figure) | {:.0} ms | {} |",
            self.view,
            self.open_window_ms(),
            ms(&self.open_ms)
        );
        let _ = writeln!(
            s,
            "| of which: page navigation start → rendered (the rest: window, WebKit web process) | {:.0} ms | {} |",
            median(&self.page_ms),
            ms(&self.page_ms)
        );
        let _ = writeln!(
            s,
            "| open: spawn of the second launch → that log line | {:.0} ms | {} |",
            median(&self.open_outside_ms),
            ms(&self.open_outside_ms)
        );
        if let Some(first) = self.launch_open_ms {
            let _ = writeln!(
                s,
                "| the window at launch, beside the engine starting | {first:.0} ms | — |"
            );
        }
        let sums = |v: &[u64]| {
            v.iter()
                .map(|k| format!("{:.1}", mib(*k)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| PSS, window open on Connections | {:.1} MiB | {} |",
            mib(self.open_kib()),
            sums(&self.open_sums)
        );
        let _ = writeln!(
            s,
            "| PSS, window closed to tray | {:.1} MiB | {} |",
            mib(self.closed_kib()),
            sums(&self.closed_sums)
        );
        let _ = writeln!(s, "\nPSS by process (last measurement of each state):\n");
        let _ = writeln!(s, "| process | window open | window closed |");
        let _ = writeln!(s, "|---|---:|---:|");
        let mut names: Vec<&str> = self.open_pss.iter().map(|p| p.name.as_str()).collect();
        for p in &self.closed_pss {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
            }
        }
        for name in names {
            let cell = |v: &[Pss]| {
                let k: u64 = v.iter().filter(|p| p.name == name).map(|p| p.kib).sum();
                if v.iter().any(|p| p.name == name) {
                    format!("{:.1} MiB", mib(k))
                } else {
                    "— (exited)".into()
                }
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} |",
                cell(&self.open_pss),
                cell(&self.closed_pss)
            );
        }
        let _ = writeln!(
            s,
            "\nIdle, window closed, {:.0} s: **{:.2} wake-ups/s** (voluntary + involuntary context \
             switches of every thread of the app and its descendants, `/proc/<pid>/task/*/status`).",
            self.idle_secs,
            self.wakeups_per_sec()
        );
        let busy: Vec<&ThreadWakeups> = self.wakeups.iter().filter(|w| w.switches > 0).collect();
        if busy.is_empty() {
            let _ = writeln!(s, "No thread woke up.");
        } else {
            let _ = writeln!(s, "\n| process | thread | switches | per s |");
            let _ = writeln!(s, "|---|---|---:|---:|");
            for w in busy {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2} |",
                    w.process,
                    w.thread,
                    w.switches,
                    w.switches as f64 / self.idle_secs
                );
            }
        }
        s
    }

    /// Two groups of bars: PSS by process (open, closed) against the limits, and the times.
    pub fn svg(&self, machine: &str) -> String {
        let (w, h) = (820.0, 420.0);
        let colors = ["#1f77b4", "#e67e22", "#2ca02c", "#9467bd", "#7f8c8d"];
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="26" font-size="17" text-anchor="middle" font-weight="bold">Tray app (release): memory and times against the limits</text>"#,
            w / 2.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="44" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
            w / 2.0,
            esc(machine)
        );
        // Left: stacked PSS bars, scale to the open limit.
        let (top, plot_h, base) = (70.0, 280.0, 350.0);
        let scale = OPEN_TARGET_MIB.max(mib(self.open_kib())) * 1.1;
        let y = |mib: f64| base - mib / scale * plot_h;
        let mut names: Vec<String> = Vec::new();
        for p in self.open_pss.iter().chain(&self.closed_pss) {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
        let bars = [
            ("window open", &self.open_pss, OPEN_TARGET_MIB, 90.0),
            ("closed to tray", &self.closed_pss, CLOSED_TARGET_MIB, 250.0),
        ];
        for (label, procs, limit, x) in bars {
            let mut acc = 0.0;
            for (i, name) in names.iter().enumerate() {
                let m: f64 = procs
                    .iter()
                    .filter(|p| &p.name == name)
                    .map(|p| mib(p.kib))
                    .sum();
                if m <= 0.0 {
                    continue;
                }
                let _ = writeln!(
                    s,
                    r#"<rect x="{x}" y="{:.1}" width="90" height="{:.1}" fill="{}"/>"#,
                    y(acc + m),
                    m / scale * plot_h,
                    colors[i % colors.len()]
                );
                acc += m;
            }
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" font-size="12" text-anchor="middle">{acc:.0} MiB</text><line x1="{}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="5,3"/><text x="{}" y="{:.1}" font-size="10" fill="#c0392b">limit {limit:.0}</text><text x="{}" y="{}" font-size="12" text-anchor="middle">{label}</text>"##,
                x + 45.0,
                y(acc) - 5.0,
                x - 10.0,
                y(limit),
                x + 100.0,
                y(limit),
                x + 102.0,
                y(limit) + 3.0,
                x + 45.0,
                base + 18.0
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="70" y1="{base}" x2="400" y2="{base}" stroke="#333"/><text x="60" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 60 {})">PSS, MiB</text>"##,
            top + plot_h / 2.0,
            top + plot_h / 2.0
        );
        for (i, name) in names.iter().enumerate() {
            let yy = base + 40.0 + (i / 2) as f64 * 16.0;
            let xx = 80.0 + (i % 2) as f64 * 170.0;
            let _ = writeln!(
                s,
                r#"<rect x="{xx}" y="{}" width="11" height="11" fill="{}"/><text x="{}" y="{yy}" font-size="11">{}</text>"#,
                yy - 9.0,
                colors[i % colors.len()],
                xx + 16.0,
                esc(name)
            );
        }
        // Right: times, scale to the larger of the limits and the figures.
        let times = [
            (
                "launch → MCP serving",
                self.ready(),
                READY_TARGET_MS,
                colors[0],
            ),
            (
                "open → Connections rendered",
                self.open_window_ms(),
                OPEN_TARGET_MS,
                colors[1],
            ),
        ];
        let tmax = times
            .iter()
            .map(|t| t.1.max(t.2))
            .fold(1.0, f64::max)
            .max(1.0)
            * 1.1;
        let ty = |ms: f64| base - ms / tmax * plot_h;
        for (i, (label, value, limit, color)) in times.iter().enumerate() {
            let x = 480.0 + i as f64 * 160.0;
            let v = if value.is_finite() { *value } else { 0.0 };
            let _ = writeln!(
                s,
                r##"<rect x="{x}" y="{:.1}" width="90" height="{:.1}" fill="{color}"/><text x="{}" y="{:.1}" font-size="12" text-anchor="middle">{v:.0} ms</text><line x1="{}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="5,3"/><text x="{}" y="{:.1}" font-size="10" fill="#c0392b">limit {limit:.0}</text><text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
                ty(v),
                base - ty(v),
                x + 45.0,
                ty(v) - 5.0,
                x - 10.0,
                ty(*limit),
                x + 100.0,
                ty(*limit),
                x + 60.0,
                ty(*limit) - 3.0,
                x + 45.0,
                base + 18.0,
                esc(label)
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="460" y1="{base}" x2="800" y2="{base}" stroke="#333"/><text x="640" y="{}" font-size="11" text-anchor="middle">idle, window closed: {:.2} wake-ups/s</text>"##,
            base + 40.0,
            self.wakeups_per_sec()
        );
        s.push_str("</svg>\n");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Threads whose wake-ups are the broker's own timers: the tokio runtime the engine runs on.
fn is_broker_timer(thread: &str) -> bool {
    thread.starts_with("tokio-runtime") || thread.starts_with("tokio-rt")
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

/// Every descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                found.push(k);
                todo.push(k);
            }
        }
    }
    found
}

/// The program name of a process (its argv[0]'s last component).
fn name(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let first = c.split(|b| *b == 0).next()?.to_vec();
            let first = String::from_utf8_lossy(&first).into_owned();
            Path::new(&first)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| format!("pid {pid}"))
}

fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// PSS of the app and each descendant that is alive.
fn pss(app: u32) -> Vec<Pss> {
    std::iter::once(app)
        .chain(descendants(app))
        .filter(|p| procfs::alive(*p))
        .filter_map(|p| {
            Some(Pss {
                name: name(p),
                kib: pss_kib(p)?,
            })
        })
        .collect()
}

fn webkit_web(app: u32) -> Vec<u32> {
    descendants(app)
        .into_iter()
        .filter(|p| procfs::alive(*p) && name(*p) == "WebKitWebProcess")
        .collect()
}

/// (process name, thread name) → voluntary + involuntary context switches, per thread id.
fn switches(app: u32) -> BTreeMap<(u32, u32), (String, String, u64)> {
    let mut out = BTreeMap::new();
    for pid in std::iter::once(app).chain(descendants(app)) {
        let process = name(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let field = |f: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let thread = std::fs::read_to_string(task.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let n = field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:");
            out.insert((pid, tid), (process.clone(), thread, n));
        }
    }
    out
}

/// The app's stderr, ANSI colours removed.
fn log_text(path: &Path) -> String {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One `window shown` line of the app's log.
#[derive(Clone, Default)]
struct Shown {
    view: String,
    /// `show_main` → the page's report.
    open_ms: Option<f64>,
    /// The page's navigation start → its report.
    page_ms: Option<f64>,
}

/// The `window shown` lines so far.
fn shown(path: &Path) -> Vec<Shown> {
    log_text(path)
        .lines()
        .filter(|l| l.contains("window shown"))
        .map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(|v| v.trim_matches('"').to_string())
            };
            Shown {
                view: field("view=").unwrap_or_default(),
                open_ms: field("open_ms=").and_then(|v| v.parse().ok()),
                page_ms: field("page_ms=").and_then(|v| v.parse().ok()),
            }
        })
        .collect()
}

async fn wait_for<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() > until {
            bail!("tray: timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Spawns the app and waits for its MCP endpoint; (child, ms from spawn).
async fn launch(s: &Setup, stderr: &Path) -> Result<(tokio::process::Child, f64)> {
    let (http, body) = crate::probe_client()?;
    let until = Instant::now() + Duration::from_secs(10);
    while crate::probe(&http, &s.mcp_url, &s.mcp_token, &body)
        .await
        .is_some()
    {
        if Instant::now() > until {
            bail!("{} still answers before the tray app started", s.mcp_url);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(&s.app)
        .env("KEYCARD_BROKER_NO_BROWSER", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", s.app))?;
    loop {
        if let Some(status) = crate::probe(&http, &s.mcp_url, &s.mcp_token, &body).await {
            if status == 200 {
                return Ok((child, t0.elapsed().as_secs_f64() * 1e3));
            }
            bail!("tray app answered initialize with HTTP {status}");
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "tray app exited with {status} before it was ready: {}",
                log_text(stderr)
            );
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("tray app not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGTERM the app and wait for it and its WebKit processes to be gone.
async fn quit(child: &mut tokio::process::Child) -> Result<()> {
    let Some(pid) = child.id() else {
        return Ok(());
    };
    let kids = descendants(pid);
    crate::stop_child(child).await?;
    wait_for("the app's WebKit processes to exit", 10, || {
        kids.iter().all(|k| !procfs::alive(*k))
    })
    .await
}

fn xwindow(s: &Setup, verb: &str) -> Result<std::process::Output> {
    std::process::Command::new(&s.python)
        .args(["ui/e2e/xwindow.py", verb, TITLE])
        .output()
        .context("ui/e2e/xwindow.py")
}

/// Sends the close as a window manager would until the window is gone from the display (a
/// message sent while GTK is still busy with the just-built window can go unanswered); returns
/// how many were sent.
async fn close_window(s: &Setup) -> Result<u32> {
    let mut sent = 0;
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let out = xwindow(s, "close")?;
        sent += 1;
        if !out.status.success() {
            bail!("xwindow.py close: {}", String::from_utf8_lossy(&out.stderr));
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if String::from_utf8_lossy(&xwindow(s, "count")?.stdout).trim() == "0" {
                return Ok(sent);
            }
        }
        if Instant::now() > until {
            bail!("the window is still on the display after {sent} close messages");
        }
    }
}

fn providers_listed(s: &Setup) -> usize {
    std::process::Command::new(&s.cli)
        .args(["resources", "list", "--json"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
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
