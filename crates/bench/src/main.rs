//! keycard-bench: measures Direct vs Keycard Broker vs the Keycard reference server on one
//! machine, in one run, against one zone emulator and one upstream fixture, and what an OAuth
//! agent under a ten-rule policy costs the broker per call over a static client. Driven by
//! tests/bench/run.sh, which stands the stack up and passes everything through the environment.

mod load;
mod oauth;
mod overhead;
mod procfs;
mod report;
mod rules;
mod stats;
mod tray;
mod zone;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use load::Target;
use report::{Lifetime, Memory, Phase, Ready, Results};

pub const CONCURRENCY: [usize; 3] = [1, 8, 64];
pub const TARGETS: [&str; 3] = ["Direct", "Keycard Broker", "Reference (Python SDK)"];

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run tests/bench/run.sh)"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Pids {
    zone: u32,
    upstream: u32,
}

fn ticks(pid: u32) -> u64 {
    procfs::cpu_ticks(pid).unwrap_or(0)
}

fn main() -> Result<()> {
    // `keycard-bench policy [CALLS]`: the broker's Policy::decide timed in-process.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("policy") {
        let calls = match args.get(2) {
            Some(n) => n.parse().context("usage: keycard-bench policy [CALLS]")?,
            None => 200_000,
        };
        return rules::print_micro(calls);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_num("BENCH_THREADS", 2))
        .enable_all()
        .build()?;
    rt.block_on(bench())
}

async fn bench() -> Result<()> {
    // `keycard-bench load URL TOKEN TARGET_URL CONCURRENCY SECONDS`: call_api load only (for
    // profiling the broker with perf/strace while it runs).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("load") {
        let [_, _, url, token, target_url, c, secs] = &args[..] else {
            bail!("usage: keycard-bench load MCP_URL TOKEN TARGET_URL CONCURRENCY SECONDS");
        };
        let target = Target::Mcp {
            url: url.clone(),
            token: token.clone(),
            tool: "call_api".into(),
            arguments: json!({"method": "GET", "url": target_url}),
        };
        let o = load::run(
            &target,
            c.parse()?,
            Duration::from_millis(500),
            Duration::from_secs_f64(secs.parse()?),
            || async { Ok(()) },
        )
        .await?;
        println!(
            "calls {} errors {} calls/s {:.0} p50 {:.2} ms p99 {:.2} ms",
            o.calls(),
            o.errors,
            o.throughput(),
            o.quantile_ms(0.5),
            o.quantile_ms(0.99)
        );
        return Ok(());
    }
    let issuer = env("ZONE")?;
    let fixture = env("FIXTURE")?.trim_end_matches('/').to_string();
    let upstream_base = fixture
        .strip_suffix("/api")
        .ok_or_else(|| anyhow!("FIXTURE must end in /api"))?
        .to_string();
    let mcp_url = env("MCP_URL")?;
    let mcp_token = env("MCP_TOKEN")?;
    let ref_url = env("REF_URL")?;
    let broker_bin = env("KEYCARD_BROKER_BIN")?;
    let broker_pid: u32 = env("BROKER_PID")?.parse()?;
    let ref_pid: u32 = env("REF_PID")?.parse()?;
    let pids = Pids {
        zone: env("ZONE_PID")?.parse()?,
        upstream: env("UPSTREAM_PID")?.parse()?,
    };
    let secs: f64 = env_num("BENCH_SECS", 8.0);
    let warmup = Duration::from_secs_f64(env_num("BENCH_WARMUP", 1.0));
    let duration = Duration::from_secs_f64(secs);
    let out_dir = env_or("BENCH_OUT", "target/bench");

    // --- tokens: real ones, from the zone emulator --------------------------------------------
    let zone = zone::Zone::connect(&issuer).await?;
    zone.authorize(&fixture).await.context("connect round")?; // the user's consent for the fixture
    let caller = zone
        .authorize(&ref_url)
        .await
        .context("reference caller token")?;
    let direct_token = zone
        .exchange(&caller, &fixture)
        .await
        .context("direct token")?;
    eprintln!("bench: tokens obtained (caller token for {ref_url}; exchanged token for {fixture})");

    let items = format!("{fixture}/items");
    let targets = [
        Target::Direct {
            url: items.clone(),
            token: direct_token,
        },
        Target::Mcp {
            url: mcp_url.clone(),
            token: mcp_token.clone(),
            tool: "call_api".into(),
            arguments: json!({"method": "GET", "url": items}),
        },
        Target::Mcp {
            url: ref_url.clone(),
            token: caller,
            tool: "get_items".into(),
            arguments: json!({}),
        },
    ];
    let server_pid = [None, Some(broker_pid), Some(ref_pid)];

    // --- sanity + warm cache, then idle memory --------------------------------------------------
    let http = load::client()?;
    let res = http.get(&items).bearer_auth(match &targets[0] {
        Target::Direct { token, .. } => token.as_str(),
        Target::Mcp { .. } => "",
    });
    let status = res.send().await?.status();
    if status.as_u16() != 200 {
        bail!("direct call answered HTTP {status}");
    }
    for t in &targets[1..] {
        if let Target::Mcp {
            url,
            token,
            tool,
            arguments,
        } = t
        {
            let s = load::Session::open(url, token).await?;
            let answer = s.call_tool(tool, arguments).await?;
            if load::upstream_status(&answer) != Some(200) {
                bail!("{url} {tool} answered {answer:?}");
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = [
        None,
        procfs::memory(broker_pid).map(|m| m.0),
        procfs::memory(ref_pid).map(|m| m.0),
    ];

    // --- the phases: interleaved by concurrency so drifting background load hits all three -----
    let mut phases: Vec<Phase> = Vec::new();
    for &c in &CONCURRENCY {
        for (i, target) in targets.iter().enumerate() {
            eprintln!("bench: {} at concurrency {c} …", TARGETS[i]);
            let base = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
            let (z, up, srv) = (pids.zone, pids.upstream, server_pid[i]);
            let base2 = base.clone();
            let zone_ref = &zone;
            let http2 = http.clone();
            let up_reset = format!("{upstream_base}/__control/reset");
            let outcome = load::run(target, c, warmup, duration, move || async move {
                zone_ref.control_post("reset", json!({})).await?;
                zone::control_post(&http2, &up_reset, json!({})).await?;
                if let Ok(mut b) = base2.lock() {
                    *b = (ticks(z), ticks(up), srv.map(ticks).unwrap_or(0));
                }
                Ok(())
            })
            .await?;
            let counters = zone.control_get("counters").await?;
            let stats =
                zone::control_get(&http, &format!("{upstream_base}/__control/stats")).await?;
            let (bz, bu, bs) = *base.lock().map_err(|_| anyhow!("poisoned"))?;
            phases.push(Phase {
                target: i,
                concurrency: c,
                calls: outcome.calls(),
                errors: outcome.errors,
                throughput: outcome.throughput(),
                p50: outcome.quantile_ms(0.50),
                p99: outcome.quantile_ms(0.99),
                zone_round_trips: zone::token_round_trips(&counters),
                introspections: stats["introspections"].as_u64().unwrap_or(0),
                upstream_requests: stats["requests"].as_u64().unwrap_or(0),
                cpu_server: srv.map(|p| ticks(p).saturating_sub(bs)),
                cpu_zone: ticks(pids.zone).saturating_sub(bz),
                cpu_upstream: ticks(pids.upstream).saturating_sub(bu),
            });
        }
    }

    let peak = [
        None,
        procfs::memory(broker_pid).map(|m| m.1),
        procfs::memory(ref_pid).map(|m| m.1),
    ];
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = [
        None,
        procfs::memory(broker_pid).map(|m| m.0),
        procfs::memory(ref_pid).map(|m| m.0),
    ];
    let memory = Memory { idle, peak, after };

    // --- OAuth agent + ten-rule policy.cedar vs the static client: broker CPU per call --------
    let rounds: usize = env_num("BENCH_POLICY_ROUNDS", 12);
    let overhead = if rounds == 0 {
        None
    } else {
        let agent = oauth::sign_in(&mcp_url, "keycard-bench-agent", &fixture, "write")
            .await
            .context("OAuth sign-in through the consent form")?;
        eprintln!(
            "bench: OAuth agent {} signed in (write on {fixture})",
            agent.client_id
        );
        let home = env("KEYCARD_BROKER_HOME")?;
        let setup = overhead::Setup {
            mcp_url: mcp_url.clone(),
            static_token: mcp_token.clone(),
            oauth_token: agent.access_token,
            oauth_client: agent.client_id,
            items: items.clone(),
            probe: format!("{fixture}{}", rules::PROBE_PATH),
            policy_file: std::path::Path::new(&home).join("policy.cedar"),
            broker_pid,
            warmup,
            duration: Duration::from_secs_f64(env_num("BENCH_POLICY_SECS", 4.0)),
            rounds,
            micro_calls: env_num("BENCH_POLICY_CALLS", 200_000),
        };
        Some(overhead::run(&setup).await?)
    };

    // --- ready-to-serve: fresh `serve` on the already signed-in home ---------------------------
    stop(broker_pid).await?;
    let trials: usize = env_num("BENCH_READY_TRIALS", 5);
    let mut ready_ms = Vec::new();
    for _ in 0..trials {
        let (mut child, ms) = start_serve(&broker_bin, &mcp_url, &mcp_token).await?;
        ready_ms.push(ms);
        stop_child(&mut child).await?;
    }

    // --- token lifetime: short-lived exchanged tokens, a fresh serve, sustained load ------------
    let life_secs: f64 = env_num("BENCH_LIFETIME_SECS", 16.0);
    let exchanged_ttl = 65u64; // the broker refreshes 60 s before expiry: 5 s of use per token
    let usable = exchanged_ttl as f64 - 60.0;
    zone.control_post("ttl", json!({"exchanged": exchanged_ttl}))
        .await?;
    let (mut child, ms) = start_serve(&broker_bin, &mcp_url, &mcp_token).await?;
    ready_ms.push(ms);
    let fresh_pid = child.id().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh_idle = procfs::memory(fresh_pid).map(|m| m.0);
    zone.control_post("reset", json!({})).await?;
    let s = load::Session::open(&mcp_url, &mcp_token).await?;
    let t0 = Instant::now();
    let first_ok = s
        .call("call_api", &json!({"method": "GET", "url": items}))
        .await?;
    let first_call_ms = t0.elapsed().as_secs_f64() * 1e3;
    if !first_ok {
        bail!("first call after a fresh start failed");
    }
    let outcome = load::run(
        &targets[1],
        8,
        Duration::ZERO,
        Duration::from_secs_f64(life_secs),
        || async { Ok(()) },
    )
    .await?;
    let counters = zone.control_get("counters").await?;
    let by = &counters["token_by_resource"][&fixture];
    let lifetime = Lifetime {
        seconds: life_secs + first_call_ms / 1e3,
        usable_secs: usable,
        calls: outcome.calls() + 1,
        errors: outcome.errors,
        exchanges: by["token_exchange"].as_u64().unwrap_or(0),
        refreshes_for_fixture: by["refresh_token"].as_u64().unwrap_or(0),
        session_refreshes: counters["token"]["refresh_token"].as_u64().unwrap_or(0)
            - by["refresh_token"].as_u64().unwrap_or(0),
        all_round_trips: zone::token_round_trips(&counters),
        first_call_ms,
        fresh_idle_kib: fresh_idle,
    };
    stop_child(&mut child).await?;
    zone.control_post("ttl", json!({"exchanged": 3600})).await?;

    // --- the tray app (release) under Xvfb, on the same home: memory, open time, wake-ups -----
    let tray = match std::env::var("KEYCARD_TRAY_APP") {
        Ok(app) if !app.is_empty() => Some(
            tray::run(&tray::Setup {
                app,
                cli: broker_bin.clone(),
                python: env("BENCH_PYTHON")?,
                mcp_url: mcp_url.clone(),
                mcp_token: mcp_token.clone(),
                home: env("KEYCARD_BROKER_HOME")?.into(),
                trials: env_num("BENCH_READY_TRIALS", 5),
                cycles: env_num("BENCH_TRAY_CYCLES", 5),
                idle: Duration::from_secs_f64(env_num("BENCH_TRAY_IDLE_SECS", 10.0)),
            })
            .await
            .context("tray app")?,
        ),
        _ => None,
    };

    let results = Results {
        phases,
        memory,
        ready: Ready { ms: ready_ms },
        lifetime,
        overhead,
        tray,
        seconds: secs,
        warmup: warmup.as_secs_f64(),
        machine: env_or("BENCH_MACHINE", "unknown machine"),
        reference_note: env_or("BENCH_REFERENCE_NOTE", ""),
    };
    let md = report::markdown(&results);
    let svg = report::svg(&results);
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(format!("{out_dir}/results.md"), &md)?;
    std::fs::write(format!("{out_dir}/chart.svg"), &svg)?;
    if let Some(t) = &results.tray {
        std::fs::write(format!("{out_dir}/tray.svg"), t.svg(&results.machine))?;
    }
    std::fs::write(
        format!("{out_dir}/results.json"),
        report::json(&results).to_string(),
    )?;
    println!("{md}");
    eprintln!("bench: wrote {out_dir}/results.md, {out_dir}/chart.svg, {out_dir}/results.json");
    Ok(())
}

/// SIGTERM a process we started (by pid) and wait until it is gone.
async fn stop(pid: u32) -> Result<()> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(10);
    while procfs::alive(pid) {
        if Instant::now() > until {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            bail!("process {pid} ignored SIGTERM for 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn stop_child(child: &mut tokio::process::Child) -> Result<()> {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => {
            child.kill().await?;
        }
    }
    Ok(())
}

/// Starts `serve` and returns the child and the time from spawn to the MCP endpoint answering
/// `initialize` with 200 (polled every millisecond). Raw HTTP on purpose: the figure is the
/// first HTTP 200, and a client library's own set-up per poll would be timed with it.
async fn start_serve(bin: &str, url: &str, token: &str) -> Result<(tokio::process::Child, f64)> {
    let (http, body) = probe_client()?;
    // The port must be free first, or we would time the previous process.
    let until = Instant::now() + Duration::from_secs(10);
    while probe(&http, url, token, &body).await.is_some() {
        if Instant::now() > until {
            bail!("{url} still answers before the broker was started");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .arg("serve")
        .env("KEYCARD_BROKER_NO_BROWSER", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {bin} serve"))?;
    loop {
        if let Some(status) = probe(&http, url, token, &body).await {
            if status == 200 {
                return Ok((child, t0.elapsed().as_secs_f64() * 1e3));
            }
            bail!("fresh serve answered initialize with HTTP {status}");
        }
        if let Some(status) = child.try_wait()? {
            bail!("serve exited with {status} before it was ready");
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("serve not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The client and `initialize` body the ready-to-serve probes use.
fn probe_client() -> Result<(reqwest::Client, Value)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params":
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "keycard-bench", "version": "1"}}});
    Ok((http, body))
}

async fn probe(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Option<u16> {
    http.post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(body)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
