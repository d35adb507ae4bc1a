//! Driving the app: launch, the log lines it writes, opening and closing its window.

use super::*;

/// The app's stderr, ANSI colours removed.
pub(super) fn log_text(path: &Path) -> String {
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
pub(super) struct Shown {
    pub(super) view: String,
    /// `show_main` → the page's report.
    pub(super) open_ms: Option<f64>,
    /// The page's navigation start → its report.
    pub(super) page_ms: Option<f64>,
}

/// The `window shown` lines so far.
pub(super) fn shown(path: &Path) -> Vec<Shown> {
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

pub(super) async fn wait_for<F: FnMut() -> bool>(what: &str, secs: u64, mut f: F) -> Result<()> {
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
pub(super) async fn launch(s: &Setup, stderr: &Path) -> Result<(tokio::process::Child, f64)> {
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
pub(super) async fn quit(child: &mut tokio::process::Child) -> Result<()> {
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

pub(super) fn xwindow(s: &Setup, verb: &str) -> Result<std::process::Output> {
    std::process::Command::new(&s.python)
        .args(["ui/e2e/xwindow.py", verb, TITLE])
        .output()
        .context("ui/e2e/xwindow.py")
}

/// Sends the close as a window manager would until the window is gone from the display (a
/// message sent while GTK is still busy with the just-built window can go unanswered); returns
/// how many were sent.
pub(super) async fn close_window(s: &Setup) -> Result<u32> {
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

pub(super) fn providers_listed(s: &Setup) -> usize {
    std::process::Command::new(&s.cli)
        .args(["resources", "list", "--json"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}
