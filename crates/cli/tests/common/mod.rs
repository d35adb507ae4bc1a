//! Shared helpers for the binary's end-to-end suites.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

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
        "invalid_input" | "not_found" | "already_exists" => 1,
        "not_configured" | "not_signed_in" | "not_connected" | "needs_reconnect"
        | "consent_declined" | "timeout" | "cancelled" | "busy" => 2,
        "zone_unreachable" | "zone_setup" | "zone_refused" | "bad_redirect" => 3,
        "keychain_locked" | "keychain_unavailable" => 4,
        "config_file" | "disk_full" | "storage" | "port_in_use" | "port_unavailable"
        | "internal" => 5,
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

/// A minimal MCP client over raw HTTP (2025-11-25 session), to probe exact statuses.
pub struct Mcp {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
    session: Option<String>,
    next_id: u64,
}

impl Mcp {
    pub async fn connect(url: &str, token: &str) -> Mcp {
        let mut mcp = Mcp {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            url: url.to_string(),
            token: token.to_string(),
            session: None,
            next_id: 1,
        };
        let init = mcp
            .rpc(
                "initialize",
                serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "keycard-tests", "version": "1"}}),
            )
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
        let response = mcp
            .post(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(response.status(), 202);
        mcp
    }

    pub fn request(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req
    }

    pub async fn post(&self, body: Value) -> reqwest::Response {
        self.request(&body).send().await.unwrap()
    }

    /// One JSON-RPC call; returns the response message.
    pub async fn rpc(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let response = self
            .post(
                serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            )
            .await;
        assert_eq!(response.status(), 200, "{method}");
        if let Some(s) = response.headers().get("mcp-session-id") {
            self.session = Some(s.to_str().unwrap().to_string());
        }
        let body = response.text().await.unwrap();
        broker::mcp::bridge::sse_data(&body)
            .into_iter()
            .chain(std::iter::once(body.clone()))
            .filter_map(|m| serde_json::from_str::<Value>(&m).ok())
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no response to {method} in {body}"))
    }

    /// `tools/call`; returns the CallToolResult.
    pub async fn tool(&mut self, name: &str, arguments: Value) -> Value {
        let response = self
            .rpc(
                "tools/call",
                serde_json::json!({"name": name, "arguments": arguments}),
            )
            .await;
        response["result"].clone()
    }
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
    let added: Value =
        serde_json::from_str(&home.ok(&["clients", "add", "agent-1", "--json"]).await).unwrap();
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
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
