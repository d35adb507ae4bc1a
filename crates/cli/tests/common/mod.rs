//! Shared helpers for the binary's end-to-end suites.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion, Tool,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{IntoTransport, StreamableHttpClientTransport};
use rmcp::{ServiceError, ServiceExt};
use serde_json::Value;
use testkit::{Upstream, ZoneEmulator, authorize, callback_prefix, free_port};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Home {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Everything the binary printed, for the leak check.
    pub transcript: std::sync::Mutex<String>,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            transcript: Default::default(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keycard-broker"));
        cmd.args(args)
            .env("KEYCARD_BROKER_HOME", self.dir.path())
            // Debug logs from every crate: the leak check covers the chattiest setting.
            .env("RUST_LOG", "debug")
            .env_remove("KEYCARD_ZONE")
            .env_remove("KEYCARD_CLIENT_ID")
            .env_remove("KEYCARD_CLIENT_SECRET")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub fn record(&self, run: &Run) {
        let mut t = self.transcript.lock().unwrap();
        t.push_str(&run.stdout);
        t.push_str(&run.stderr);
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(args)).await
    }

    pub async fn run_with(&self, mut cmd: Command) -> Run {
        let out = cmd.output().await.unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        };
        self.record(&run);
        run
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args).await;
        assert_eq!(run.code, 0, "{args:?} failed: {}", run.stderr);
        run.stdout
    }

    /// Runs a browser round (`login`/`connect`/`reconnect --no-browser`): the first stdout
    /// line is the authorization URL, which the test follows like a browser.
    pub async fn round(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).await.unwrap();
        assert!(
            first.starts_with("http://127.0.0.1:"),
            "first line is the URL: {first:?}"
        );
        let (status, page) = authorize(first.trim(), &callback_prefix(self.port)).await;
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).await.unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        let code = child.wait().await.unwrap().code().unwrap_or(-1);
        let run = Run {
            code,
            stdout: first + &rest,
            stderr,
        };
        self.record(&run);
        assert_eq!(status, 200, "callback page: {page}");
        run
    }

    /// A browser round with `--json --no-browser`: the URL is the first stderr line that is a
    /// URL (stdout holds only the result); returns the run with stdout untouched.
    pub async fn round_json(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            assert_ne!(
                stderr.read_line(&mut line).await.unwrap(),
                0,
                "no URL on stderr: {seen}"
            );
            seen.push_str(&line);
            if line.starts_with("http://127.0.0.1:") {
                break line.trim().to_string();
            }
        };
        let (status, page) = authorize(&url, &callback_prefix(self.port)).await;
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).await.unwrap();
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        let code = child.wait().await.unwrap().code().unwrap_or(-1);
        let run = Run {
            code,
            stdout,
            stderr: seen + &rest,
        };
        self.record(&run);
        assert_eq!(status, 200, "callback page: {page}");
        run
    }

    /// `init` against `issuer` on this home's port.
    pub async fn init(&self, issuer: &str) -> String {
        self.ok(&["init", "--zone", issuer, "--port", &self.port.to_string()])
            .await
    }

    pub async fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"]).await).unwrap()
    }

    pub fn connection<'a>(status: &'a Value, resource: &str) -> &'a Value {
        status["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["resource"] == resource)
            .unwrap_or_else(|| panic!("{resource} not in {status}"))
    }
}

pub fn one_line_error(run: &Run) -> String {
    assert_ne!(run.code, 0, "expected failure, got: {}", run.stdout);
    let line = run
        .stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in {:?}", run.stderr));
    line.to_string()
}

/// The line after the `error:` line: the next step the CLI advises.
pub fn hint_line(run: &Run) -> String {
    let lines: Vec<&str> = run.stderr.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in {:?}", run.stderr));
    lines
        .get(at + 1)
        .unwrap_or_else(|| panic!("no hint after the error in {:?}", run.stderr))
        .to_string()
}

/// The exit code README documents for each error code.
pub fn exit_for(code: &str) -> i32 {
    match code {
        "invalid_input" | "not_found" | "already_exists" | "policy_invalid" => 1,
        "not_configured" | "not_running" | "unauthorized" | "not_signed_in" | "not_connected"
        | "needs_reconnect" | "consent_declined" | "timeout" | "cancelled" | "busy" => 2,
        "zone_unreachable" | "zone_setup" | "zone_refused" | "bad_redirect" => 3,
        "keychain_locked" | "keychain_unavailable" => 4,
        "config_file" | "disk_full" | "storage" | "port_in_use" | "already_running"
        | "port_unavailable" | "internal" => 5,
        other => panic!("undocumented error code {other:?}"),
    }
}

/// `--json` output: stdout is exactly one JSON document (nothing before or after it).
pub fn json_doc(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
            run.stdout, run.stderr
        )
    })
}

/// A `--json` failure: `{"error": {code, message, resource?}}` and the documented exit code.
/// Returns the error object.
pub fn json_error(run: &Run, code: &str) -> Value {
    let doc = json_doc(run);
    let error = &doc["error"];
    assert_eq!(error["code"], code, "{doc}\nstderr: {}", run.stderr);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{doc}"
    );
    for key in error.as_object().unwrap().keys() {
        assert!(
            ["code", "message", "resource"].contains(&key.as_str()),
            "unexpected key {key} in {doc}"
        );
    }
    assert_eq!(run.code, exit_for(code), "exit code for {code}: {doc}");
    error.clone()
}

/// A running `keycard-broker serve`; killed on drop.
pub struct Serving {
    _child: tokio::process::Child,
    pub url: String,
}

impl Home {
    pub async fn serve(&self) -> Serving {
        self.serve_with(self.command(&["serve"])).await
    }

    /// Starts `serve` from a prepared command (extra environment).
    pub async fn serve_with(&self, mut cmd: Command) -> Serving {
        cmd.env("KEYCARD_BROKER_NO_BROWSER", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("serving MCP at ").nth(1) {
                    return rest.trim().to_string();
                }
            }
            panic!("serve exited before it was ready");
        })
        .await
        .expect("serve ready");
        Serving { _child: child, url }
    }
}

/// An MCP client session: rmcp's own client over Streamable HTTP, protocol 2025-11-25 (the
/// `initialize` handshake and a session id), authenticated with a client token. Tests that must
/// forge what a client library sets for itself (Host, Origin, the header's form, credentials in
/// the query, oversize or malformed requests) send raw HTTP instead; see `attacks.rs`.
pub struct Mcp {
    client: RunningService<RoleClient, ClientConfig>,
}

impl Mcp {
    pub async fn connect(url: &str, token: &str) -> Mcp {
        let config = StreamableHttpClientTransportConfig::with_uri(url)
            .auth_header(token)
            // The load suite sends 200 calls at once on one session.
            .max_concurrent_requests(256);
        Mcp::start(StreamableHttpClientTransport::from_config(config), url).await
    }

    /// The same client over a child's stdout and stdin (the `stdio` bridge).
    pub async fn over_stdio(child: &mut tokio::process::Child) -> Mcp {
        let transport = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
        Mcp::start(transport, "stdio").await
    }

    async fn start<T, E, A>(transport: T, at: &str) -> Mcp
    where
        T: IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("keycard-tests", "1"),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25);
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(20), info.serve(transport)).await;
        let Ok(answer) = answer else {
            panic!("MCP initialize at {at}: no answer in 20 s");
        };
        let client = answer.unwrap_or_else(|e| panic!("MCP initialize at {at}: {e}"));
        let version = client.peer_info().map(|i| i.protocol_version.clone());
        assert_eq!(version, Some(ProtocolVersion::V_2025_11_25), "{at}");
        Mcp { client }
    }

    /// `tools/call`; the CallToolResult as JSON (as it was on the wire).
    pub async fn tool(&self, name: &str, arguments: Value) -> Value {
        let result = self
            .try_tool(name, arguments)
            .await
            .unwrap_or_else(|e| panic!("tools/call {name}: {e}"));
        serde_json::to_value(result).unwrap()
    }

    pub async fn try_tool(
        &self,
        name: &str,
        arguments: Value,
    ) -> Result<CallToolResult, ServiceError> {
        let Value::Object(arguments) = arguments else {
            panic!("tool arguments are an object: {arguments}");
        };
        self.client
            .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(arguments))
            .await
    }

    /// `tools/list`. rmcp caches the list and answers from the cache when a later request
    /// fails, so a probe for a refusal sends a `tools/call` instead.
    pub async fn list_tools(&self) -> Result<Vec<Tool>, ServiceError> {
        self.client.list_all_tools().await
    }
}

/// The HTTP status the endpoint refused a request with, when that is why it failed: 401 and
/// 403 with a challenge, 429 and 5xx (rmcp's client keeps the status, not the body).
pub fn refused_status(error: &ServiceError) -> Option<u16> {
    let ServiceError::TransportSend(error) = error else {
        return None;
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.error.as_ref());
    while let Some(e) = source {
        match e.downcast_ref::<StreamableHttpError<reqwest_rmcp::Error>>() {
            Some(StreamableHttpError::AuthRequired(_)) => return Some(401),
            Some(StreamableHttpError::InsufficientScope(_)) => return Some(403),
            Some(StreamableHttpError::HttpStatus(status)) => return Some(status.status),
            _ => source = e.source(),
        }
    }
    None
}

/// One JSON-RPC message POSTed to `/mcp` as raw HTTP with a bearer token and no session:
/// for reading the exact status and body the endpoint's guard answers with.
pub async fn post_raw(url: &str, token: &str, message: Value) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&message)
        .send()
        .await
        .unwrap()
}

pub struct Stack {
    pub zone: ZoneEmulator,
    pub upstream: Upstream,
    pub home: Home,
    pub serving: Serving,
    pub token: String,
}

/// Zone + fixture + serve, signed in, fixture connected (with `scopes` required), one client.
pub async fn stack(scopes: Option<&str>) -> Stack {
    stack_with(scopes, &[]).await
}

/// [`stack`] with more `init` arguments (e.g. `--strategy`).
pub async fn stack_with(scopes: Option<&str>, init: &[&str]) -> Stack {
    let zone = ZoneEmulator::start().await;
    let upstream = Upstream::start(&zone).await;
    let home = Home::new();
    let port = home.port.to_string();
    let mut args = vec![
        "init",
        "--zone",
        zone.issuer.as_str(),
        "--port",
        port.as_str(),
    ];
    args.extend_from_slice(init);
    home.ok(&args).await;
    let serving = home.serve().await;
    let login = home.round(&["login", "--no-browser"]).await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    let api = upstream.api();
    let mut add = vec!["resources", "add", api.as_str(), "--name", "Fixture API"];
    if let Some(s) = scopes {
        add.extend(["--scopes", s]);
    }
    home.ok(&add).await;
    let connect = home.round(&["connect", &api, "--no-browser"]).await;
    assert_eq!(connect.code, 0, "{}", connect.stderr);
    let added: Value = serde_json::from_str(
        &home
            .ok(&["clients", "add", "agent-1", "--access", "write", "--json"])
            .await,
    )
    .unwrap();
    assert_eq!(added["name"], "agent-1");
    let token = added["token"].as_str().unwrap().to_string();
    Stack {
        zone,
        upstream,
        home,
        serving,
        token,
    }
}

/// Sends raw bytes to the broker's port and returns the first response line.
pub async fn raw_http(port: u16, bytes: &[u8]) -> String {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    first_line(stream, bytes).await
}

/// Sends raw bytes to the broker's agent socket and returns the first response line.
pub async fn raw_socket(socket: &std::path::Path, bytes: &[u8]) -> String {
    first_line(
        tokio::net::UnixStream::connect(socket).await.unwrap(),
        bytes,
    )
    .await
}

async fn first_line(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    bytes: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// What one family of attack probes ran and saw (every response body, tool result and page),
/// for the checks at its end: the exact number of probes, and no secret anywhere.
#[derive(Default)]
pub struct Probes {
    seen: String,
    count: usize,
}

impl Probes {
    /// One probe ran; `saw` is what it got back.
    pub fn ran(&mut self, saw: &str) {
        self.count += 1;
        self.saw(saw);
    }

    /// More of what a probe got back (a part of its answer, or a set-up step's).
    pub fn saw(&mut self, text: &str) {
        self.seen.push_str(text);
        self.seen.push('\n');
    }

    /// Exactly `expected` probes ran, and no token the zone issued is in anything they saw,
    /// anything the binary printed or any file it wrote; the client token only in the
    /// transcript of `clients add`, where the test itself asked for it.
    pub async fn finish(self, s: &Stack, family: &str, expected: usize) {
        assert_eq!(self.count, expected, "{family}: probes run");
        println!("{family}: {} probes", self.count);
        let transcript = s.home.transcript.lock().unwrap().clone();
        testkit::assert_no_leak(
            &s.zone.issued().await,
            s.home.dir.path(),
            &[&transcript, &self.seen],
        );
        for (path, bytes) in testkit::files_under(s.home.dir.path()) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&s.token),
                "{family}: client token in {}",
                path.display()
            );
        }
        assert!(
            !self.seen.contains(&s.token),
            "{family}: client token echoed in a response"
        );
    }
}
