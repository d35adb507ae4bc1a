//! The load generator: N workers, each with its own keep-alive connection (and, for MCP targets,
//! its own 2025-11-25 session through rmcp's client), calling one target in a closed loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;
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

/// An MCP session through rmcp's own client (Streamable HTTP, protocol 2025-11-25 with a
/// session id), on its own keep-alive connection.
pub struct Session {
    client: RunningService<RoleClient, ClientConfig>,
}

impl Session {
    pub async fn open(url: &str, token: &str) -> Result<Session> {
        // rmcp's default HTTP client opens a connection per request; the bench keeps one
        // alive per worker, as the Direct target does, so the figures compare like with like.
        let http = reqwest_rmcp::Client::builder()
            .no_proxy()
            .redirect(reqwest_rmcp::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token);
        let transport = StreamableHttpClientTransport::with_client(http, config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keycard-bench", "1"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25);
        let client = info
            .serve(transport)
            .await
            .map_err(|e| anyhow!("initialize at {url}: {e}"))?;
        let version = client.peer_info().map(|i| i.protocol_version.clone());
        if version != Some(ProtocolVersion::V_2025_11_25) {
            bail!("initialize at {url} negotiated {version:?}");
        }
        Ok(Session { client })
    }

    /// One `tools/call`.
    pub async fn call_tool(&self, tool: &str, arguments: &Value) -> Result<CallToolResult> {
        let Value::Object(arguments) = arguments.clone() else {
            bail!("tool arguments must be an object: {arguments}");
        };
        Ok(self
            .client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
            .await?)
    }

    /// One `tools/call`; Ok(true) when the upstream answered 200 through the tool.
    pub async fn call(&self, tool: &str, arguments: &Value) -> Result<bool> {
        let result = self.call_tool(tool, arguments).await?;
        Ok(result.is_error != Some(true) && upstream_status(&result) == Some(200))
    }
}

/// The upstream's status as the tool reports it (`structuredContent.status`).
pub fn upstream_status(result: &CallToolResult) -> Option<u64> {
    result
        .structured_content
        .as_ref()
        .and_then(|c| c["status"].as_u64())
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
                Session::open(url, token).await?,
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
