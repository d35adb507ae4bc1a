//! The load generator: N workers, each with its own keep-alive connection (and, for MCP targets,
//! its own 2025-11-25 session), calling one target in a closed loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::Barrier;

#[derive(Clone)]
pub enum Target {
    /// `GET url` with the bearer token in hand.
    Direct { url: String, token: String },
    /// `tools/call name arguments` on an MCP endpoint, authenticated with `token`.
    Mcp {
        url: String,
        token: String,
        tool: String,
        arguments: Value,
    },
}

pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// The `data:` payloads of an SSE body, or the body itself when it is plain JSON.
fn messages(body: &str) -> Vec<Value> {
    let mut out: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    if out.is_empty()
        && let Ok(v) = serde_json::from_str(body)
    {
        out.push(v);
    }
    out
}

/// A raw 2025-11-25 MCP session, as in crates/cli/tests/common/mod.rs.
pub struct Session {
    http: reqwest::Client,
    url: String,
    token: String,
    id: Option<String>,
    next: u64,
}

impl Session {
    pub async fn open(http: reqwest::Client, url: &str, token: &str) -> Result<Session> {
        let mut s = Session {
            http,
            url: url.to_string(),
            token: token.to_string(),
            id: None,
            next: 1,
        };
        let init = s
            .rpc(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "keycard-bench", "version": "1"}}),
            )
            .await?;
        if init["result"]["protocolVersion"] != "2025-11-25" {
            bail!("initialize answered {init}");
        }
        let res = s
            .request(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await?;
        if res.status().as_u16() != 202 {
            bail!("notifications/initialized: HTTP {}", res.status());
        }
        Ok(s)
    }

    fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(id) = &self.id {
            req = req
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req
    }

    pub async fn rpc(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next;
        self.next += 1;
        let res = self
            .request(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await?;
        let status = res.status();
        if let Some(s) = res.headers().get("mcp-session-id") {
            self.id = Some(s.to_str()?.to_string());
        }
        let body = res.text().await?;
        if status.as_u16() != 200 {
            bail!("{method}: HTTP {status}: {body}");
        }
        messages(&body)
            .into_iter()
            .find(|m| m["id"] == id)
            .ok_or_else(|| anyhow!("no answer to {method} in {body}"))
    }

    /// One `tools/call`; Ok(true) when the upstream answered 200 through the tool.
    pub async fn call(&mut self, tool: &str, arguments: &Value) -> Result<bool> {
        let answer = self
            .rpc("tools/call", json!({"name": tool, "arguments": arguments}))
            .await?;
        let result = &answer["result"];
        Ok(result["isError"] != true && result["structuredContent"]["status"] == 200)
    }
}

enum Worker {
    Direct(reqwest::Client, String, String),
    Mcp(Session, String, Value),
}

impl Worker {
    async fn new(target: &Target) -> Result<Worker> {
        Ok(match target {
            Target::Direct { url, token } => Worker::Direct(client()?, url.clone(), token.clone()),
            Target::Mcp {
                url,
                token,
                tool,
                arguments,
            } => Worker::Mcp(
                Session::open(client()?, url, token).await?,
                tool.clone(),
                arguments.clone(),
            ),
        })
    }

    async fn call(&mut self) -> bool {
        match self {
            Worker::Direct(http, url, token) => {
                match http.get(url.as_str()).bearer_auth(token).send().await {
                    Ok(res) => {
                        let ok = res.status().as_u16() == 200;
                        res.bytes().await.is_ok() && ok
                    }
                    Err(_) => false,
                }
            }
            Worker::Mcp(session, tool, arguments) => {
                session.call(tool, arguments).await.unwrap_or(false)
            }
        }
    }
}

pub struct Outcome {
    /// Latencies of the measured calls, nanoseconds, sorted.
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn calls(&self) -> u64 {
        self.latencies.len() as u64 + self.errors
    }
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    /// Quantile in milliseconds (nearest rank).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1e6
    }
}

/// Runs `concurrency` workers: set-up, `warmup` of unmeasured calls, then `between` (counter
/// resets), then `duration` of measured calls. Errors are counted, not timed.
pub async fn run<F, Fut>(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    between: F,
) -> Result<Outcome>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        workers.push(Worker::new(target).await?);
    }
    let warm = Arc::new(Barrier::new(concurrency + 1));
    let go = Arc::new(Barrier::new(concurrency + 1));
    let start_at = Arc::new(tokio::sync::OnceCell::new());
    let warm_until = Instant::now() + warmup;
    let mut handles = Vec::with_capacity(concurrency);
    for mut w in workers {
        let (warm, go, start_at) = (warm.clone(), go.clone(), start_at.clone());
        handles.push(tokio::spawn(async move {
            while Instant::now() < warm_until {
                w.call().await;
            }
            warm.wait().await;
            go.wait().await;
            let end: Instant = *start_at.get().unwrap_or(&Instant::now()) + duration;
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                if w.call().await {
                    lat.push(t0.elapsed().as_nanos() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    warm.wait().await;
    between().await?;
    let t0 = Instant::now();
    let _ = start_at.set(t0);
    go.wait().await;
    let mut latencies = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed();
    latencies.sort_unstable();
    Ok(Outcome {
        latencies,
        errors,
        elapsed,
    })
}
