//! The issue's acceptance figure: "a `call_api` through an OAuth client with a policy of ten
//! rules adds ≤ 50 µs CPU per call over today's static-client path", as broker CPU time per
//! call (/proc/<pid>/stat) for three variants of the same `GET <fixture>/api/items`:
//!
//! 0. the static client (`kcb_` token) with no `policy.cedar` — today's path;
//! 1. the static client with the ten-rule `policy.cedar` (what the rules alone cost);
//! 2. an OAuth agent (`kcba_` token, signed in through the consent form with `write` on the
//!    fixture) with the ten-rule `policy.cedar` — the figure.
//!
//! In every round, per concurrency, the three cells run back to back (0 2 1, then 1 2 0 in the
//! next round), and the differences are taken round by round, so background load that drifts
//! over the run cancels instead of favouring one side. The file is written or removed between
//! cells, and a probe call that rule `no-api-admin` refuses shows when the broker has picked up
//! the change (it looks at the file at most once a second).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};

use crate::load::{self, Target};
use crate::procfs::{self, TICK_US};
use crate::rules::{self, Micro};
use crate::stats::{Diff, judge, shown};

pub const VARIANTS: [&str; 3] = [
    "Static client, no policy.cedar",
    "Static client + ten rules",
    "OAuth agent + ten rules",
];
pub const CONCURRENCY: [usize; 2] = [1, 8];
/// The limit, µs of broker CPU per call.
pub const LIMIT_US: f64 = 50.0;

pub struct Setup {
    pub mcp_url: String,
    pub static_token: String,
    pub oauth_token: String,
    pub oauth_client: String,
    /// `<fixture>/items`, the benchmarked URL.
    pub items: String,
    /// A URL under the fixture that the ten rules refuse.
    pub probe: String,
    pub policy_file: PathBuf,
    pub broker_pid: u32,
    pub warmup: Duration,
    pub duration: Duration,
    pub rounds: usize,
    /// `decide` calls for the in-process figure (0: skip it).
    pub micro_calls: u64,
}

/// One measured cell.
pub struct Cell {
    pub variant: usize,
    pub concurrency: usize,
    pub round: usize,
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Broker CPU ticks (10 ms) over the measured window.
    pub ticks: u64,
    pub latencies: Vec<u64>,
}

impl Cell {
    fn us_per_call(&self) -> f64 {
        per_call(self.ticks, self.calls)
    }
}

fn per_call(ticks: u64, calls: u64) -> f64 {
    if calls == 0 {
        f64::NAN
    } else {
        ticks as f64 * TICK_US / calls as f64
    }
}

pub struct Overhead {
    pub cells: Vec<Cell>,
    pub rounds: usize,
    pub seconds: f64,
    pub oauth_client: String,
    pub micro: Option<Micro>,
}

pub async fn run(s: &Setup) -> Result<Overhead> {
    let target = |token: &str| Target::Mcp {
        url: s.mcp_url.clone(),
        token: token.to_string(),
        tool: "call_api".into(),
        arguments: json!({"method": "GET", "url": s.items}),
    };
    let targets = [
        target(&s.static_token),
        target(&s.static_token),
        target(&s.oauth_token),
    ];
    let prober = load::Session::open(&s.mcp_url, &s.static_token).await?;
    let mut cells = Vec::new();
    let mut oauth_checked = false;
    for round in 0..s.rounds {
        // One block per concurrency: static, OAuth, static + rules in even rounds, the reverse
        // in odd ones (the OAuth cell in the middle, the other two taking turns at the ends, so
        // a steady drift in background load cancels out of the differences), and the
        // concurrencies in reverse order too, so each block starts as the last one ended:
        // one swap of the file per block.
        let mut order = CONCURRENCY;
        let variants = if round % 2 == 0 { [0, 2, 1] } else { [1, 2, 0] };
        if round % 2 == 1 {
            order.reverse();
        }
        for c in order {
            for variant in variants {
                set_policy(s, &prober, variant != 0).await?;
                if variant != 0 && !oauth_checked {
                    // The OAuth agent, too, is refused by the file and allowed the GET.
                    let oauth = load::Session::open(&s.mcp_url, &s.oauth_token).await?;
                    expect_probe(&oauth, &s.probe, true).await?;
                    if !oauth.call("call_api", &get(&s.items)).await? {
                        bail!("the OAuth agent's GET {} was not answered 200", s.items);
                    }
                    oauth_checked = true;
                }
                eprintln!(
                    "bench: {} at concurrency {c} (round {}/{}) …",
                    VARIANTS[variant],
                    round + 1,
                    s.rounds
                );
                cells.push(measure(s, &targets[variant], variant, c, round).await?);
            }
        }
    }
    set_policy(s, &prober, false).await?;
    let micro = if s.micro_calls > 0 {
        let n = s.micro_calls;
        Some(tokio::task::spawn_blocking(move || rules::micro(n)).await??)
    } else {
        None
    };
    Ok(Overhead {
        cells,
        rounds: s.rounds,
        seconds: s.duration.as_secs_f64(),
        oauth_client: s.oauth_client.clone(),
        micro,
    })
}

async fn measure(
    s: &Setup,
    target: &Target,
    variant: usize,
    concurrency: usize,
    round: usize,
) -> Result<Cell> {
    let pid = s.broker_pid;
    let base = Arc::new(Mutex::new(0u64));
    let base2 = base.clone();
    let outcome = load::run(
        target,
        concurrency,
        s.warmup,
        s.duration,
        move || async move {
            if let Ok(mut b) = base2.lock() {
                *b = procfs::cpu_ticks(pid).unwrap_or(0);
            }
            Ok(())
        },
    )
    .await?;
    let used = procfs::cpu_ticks(pid)
        .ok_or_else(|| anyhow!("the broker (pid {pid}) is gone"))?
        .saturating_sub(*base.lock().map_err(|_| anyhow!("poisoned"))?);
    Ok(Cell {
        variant,
        concurrency,
        round,
        calls: outcome.calls(),
        errors: outcome.errors,
        seconds: outcome.elapsed.as_secs_f64(),
        ticks: used,
        latencies: outcome.latencies,
    })
}

fn get(url: &str) -> Value {
    json!({"method": "GET", "url": url})
}

/// Writes or removes `policy.cedar`, then waits until the broker has the change in force.
async fn set_policy(s: &Setup, prober: &load::Session, with_rules: bool) -> Result<()> {
    let present = s.policy_file.exists();
    if with_rules && !present {
        std::fs::write(&s.policy_file, rules::TEN_RULES)?;
    } else if !with_rules && present {
        std::fs::remove_file(&s.policy_file)?;
    }
    expect_probe(prober, &s.probe, with_rules).await
}

/// Polls the probe call until the broker refuses it by the file's rule (or, without the
/// file, lets it through to the upstream).
async fn expect_probe(session: &load::Session, probe: &str, refused: bool) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let result = session.call_tool("call_api", &get(probe)).await?;
        let text = serde_json::to_string(&result)?;
        let by_rule = text.contains(&format!("rule {}", rules::PROBE_RULE));
        if by_rule == refused {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "the broker did not {} policy.cedar within 15 s (probe answered {text})",
                if refused { "apply" } else { "drop" }
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Per variant and concurrency, every round together.
pub struct Sum {
    pub calls: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50: f64,
    pub us: f64,
    pub rounds_us: Vec<f64>,
}

impl Overhead {
    fn cells_of(&self, variant: usize, c: usize) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .filter(move |x| x.variant == variant && x.concurrency == c)
    }

    pub fn sum(&self, variant: usize, c: usize) -> Option<Sum> {
        let cells: Vec<&Cell> = self.cells_of(variant, c).collect();
        if cells.is_empty() {
            return None;
        }
        let calls = cells.iter().map(|x| x.calls).sum();
        let errors: u64 = cells.iter().map(|x| x.errors).sum();
        let ticks = cells.iter().map(|x| x.ticks).sum();
        let seconds: f64 = cells.iter().map(|x| x.seconds).sum();
        let mut latencies: Vec<u64> = cells.iter().flat_map(|x| x.latencies.clone()).collect();
        latencies.sort_unstable();
        let p50 = latencies
            .get(latencies.len().saturating_sub(1) / 2)
            .map_or(f64::NAN, |&n| n as f64 / 1e6);
        Some(Sum {
            calls,
            errors,
            throughput: latencies.len() as f64 / seconds,
            p50,
            us: per_call(ticks, calls),
            rounds_us: cells.iter().map(|x| x.us_per_call()).collect(),
        })
    }

    /// `to` minus `from`, µs of broker CPU per call, round by round: the two cells of a round
    /// ran within the same half minute, so background load that drifts over the run cancels.
    pub fn diff(&self, c: usize, from: usize, to: usize) -> Option<Diff> {
        let values: Vec<f64> = self
            .cells_of(to, c)
            .filter_map(|t| {
                let f = self.cells_of(from, c).find(|f| f.round == t.round)?;
                Some(t.us_per_call() - f.us_per_call())
            })
            .collect();
        Diff::of(&values)
    }

    /// OAuth + ten rules minus static without the file: the mean of the per-round differences.
    pub fn added(&self, c: usize) -> Option<f64> {
        self.diff(c, 0, 2).map(|d| d.mean)
    }

    /// Every concurrency within the limit in the mean, and no call failed.
    pub fn met(&self) -> bool {
        let clean = self.cells.iter().all(|x| x.errors == 0);
        clean
            && CONCURRENCY
                .iter()
                .all(|&c| self.added(c).is_some_and(|a| a <= LIMIT_US))
    }

    fn clean(&self, c: Option<usize>) -> bool {
        self.cells
            .iter()
            .all(|x| c.is_some_and(|c| x.concurrency != c) || x.errors == 0)
    }

    /// The row of the Targets table.
    pub fn target_row(&self) -> String {
        let measured: Vec<String> = CONCURRENCY
            .iter()
            .map(|&c| {
                self.diff(c, 0, 2).map_or(format!("c{c}: —"), |d| {
                    format!("c{c}: {} µs, upper bound {:+.1}", d.show(), d.upper())
                })
            })
            .collect();
        let diffs: Vec<Option<Diff>> = CONCURRENCY.iter().map(|&c| self.diff(c, 0, 2)).collect();
        format!(
            "| OAuth agent + ten-rule policy adds ≤ {LIMIT_US:.0} µs broker CPU per `call_api` over the static client (c1 and c8; mean of per-round differences ± s.e. (range), one-sided 95 % upper bound) | {} | {} |",
            measured.join("; "),
            shown(judge(&diffs, self.clean(None), LIMIT_US))
        )
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line("\n## OAuth agent with a ten-rule policy (broker CPU per call)\n".into());
        line(format!(
            "The issue's figure. The same `call_api GET <fixture>/api/items` through the same \
             `serve`: the static client (`kcb_` token) without `policy.cedar` (today's path), the \
             static client with a ten-rule `policy.cedar` (7 forbids, 3 permits, one `@itl`; \
             crates/bench/src/rules.rs), and an OAuth agent (`kcba_` token from DCR + consent form \
             + PKCE code exchange, `write` on the fixture; {}) under the same ten rules. Rounds: {}; \
             in each, per concurrency, the three cells back to back (static, OAuth, static + rules; \
             the reverse in the next round); each cell {:.0} s after warm-up. CPU is the broker \
             process's user + system time from /proc/<pid>/stat (10 ms ticks) over the window, \
             divided by the calls made.\n",
            self.oauth_client, self.rounds, self.seconds
        ));
        line("| variant | conc. | calls | errors | calls/s | p50 ms | broker CPU µs/call (all rounds) | per round |".into());
        line("|---|---:|---:|---:|---:|---:|---:|---|".into());
        for &c in &CONCURRENCY {
            for (v, name) in VARIANTS.iter().enumerate() {
                let Some(x) = self.sum(v, c) else { continue };
                let rounds: Vec<String> = x.rounds_us.iter().map(|u| format!("{u:.0}")).collect();
                line(format!(
                    "| {name} | {c} | {} | {} | {:.0} | {:.2} | {:.1} | {} |",
                    x.calls,
                    x.errors,
                    x.throughput,
                    x.p50,
                    x.us,
                    rounds.join(", ")
                ));
            }
        }
        line(String::new());
        line("Differences in broker CPU µs per call, taken round by round (mean ± standard error, range over the rounds):\n".into());
        line("| conc. | added by OAuth + ten rules | its 95 % upper bound | of it: the ten rules (static + rules − static) | of it: OAuth vs static token (both with the rules) | ≤ 50 µs |".into());
        line("|---:|---:|---:|---:|---:|---|".into());
        for &c in &CONCURRENCY {
            let (Some(added), Some(rules), Some(token)) =
                (self.diff(c, 0, 2), self.diff(c, 0, 1), self.diff(c, 1, 2))
            else {
                continue;
            };
            line(format!(
                "| {c} | **{}** | {:+.1} | {} | {} | {} |",
                added.show(),
                added.upper(),
                rules.show(),
                token.show(),
                shown(judge(&[Some(added)], self.clean(Some(c)), LIMIT_US))
            ));
        }
        if let Some(m) = self.micro {
            line(format!(
                "\nIn-process (`keycard-bench policy`, the broker's `Policy::decide` for this call, {} \
                 calls per variant): consent choices only {:.1} µs/call, with the ten rules {:.1} \
                 µs/call (the rules add {:+.1} µs).",
                m.calls,
                m.consent_only_ns / 1e3,
                m.ten_rules_ns / 1e3,
                (m.ten_rules_ns - m.consent_only_ns) / 1e3
            ));
        }
        line(
            "\nThe differences are between whole-process CPU figures of a few hundred µs per call \
             on a machine shared with other work; the broker's CPU per call rises with background \
             load (more wake-ups and cache misses per call), so compare cells of one round, not \
             rounds with each other."
                .into(),
        );
        s
    }

    pub fn json(&self) -> Value {
        let summary: Vec<Value> = CONCURRENCY
            .iter()
            .map(|&c| {
                let us = |v| self.sum(v, c).map(|x| x.us);
                let diff = |from, to| self.diff(c, from, to).map(|d| d.json());
                json!({"concurrency": c, "static_us": us(0), "static_ten_rules_us": us(1),
                    "oauth_ten_rules_us": us(2), "added_us": self.added(c),
                    "added": diff(0, 2), "ten_rules": diff(0, 1), "oauth_vs_static": diff(1, 2)})
            })
            .collect();
        json!({
            "rules": rules::RULES, "rounds": self.rounds, "seconds": self.seconds,
            "limit_us": LIMIT_US, "met": self.met(), "summary": summary,
            "verdict": judge(&CONCURRENCY.map(|c| self.diff(c, 0, 2)), self.clean(None), LIMIT_US),
            "cells": self.cells.iter().map(|x| json!({
                "variant": VARIANTS[x.variant], "concurrency": x.concurrency, "round": x.round,
                "calls": x.calls, "errors": x.errors, "seconds": x.seconds,
                "cpu_ticks_broker": x.ticks, "cpu_us_per_call": x.us_per_call(),
            })).collect::<Vec<_>>(),
            "micro": self.micro.map(|m| json!({"calls": m.calls,
                "consent_only_ns": m.consent_only_ns, "ten_rules_ns": m.ten_rules_ns})),
        })
    }
}

#[cfg(test)]
#[path = "overhead_tests.rs"]
mod tests;
