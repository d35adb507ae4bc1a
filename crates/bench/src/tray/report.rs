//! The tray figures as report rows, JSON and the chart.

use super::*;

pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(super) fn median_u(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

pub(super) fn mib(kib: u64) -> f64 {
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
        let mut s = crate::report::svg_head(
            w,
            h,
            "Tray app (release): memory and times against the limits",
            machine,
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

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Threads whose wake-ups are the broker's own timers: the tokio runtime the engine runs on.
pub(super) fn is_broker_timer(thread: &str) -> bool {
    thread.starts_with("tokio-runtime") || thread.starts_with("tokio-rt")
}
