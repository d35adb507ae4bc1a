//! stdio ↔ HTTP bridge for stdio-only clients (Claude Desktop, or any stdio client on a remote
//! host whose forwarded agent socket leads here): each JSON-RPC line from stdin
//! is POSTed to the running broker's `/mcp` with the client's bearer token; every JSON-RPC
//! message in the answer (JSON, or an SSE stream) is written to stdout as one line *as it
//! arrives*, while stdin keeps being read — so a server request inside an open stream (URL
//! elicitation during `connect`) reaches the client and its answer goes back.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot reach Keycard Broker at {0}: it is not running")]
    Unreachable(String),
    #[error("Keycard Broker refused the client token (HTTP {0})")]
    Refused(u16),
    #[error("stdio: {0}")]
    Io(String),
}

/// Where the broker's `/mcp` is: its loopback URL, or an agent socket (forwarded or local).
#[derive(Debug, Clone)]
pub enum Endpoint {
    Http(String),
    Socket(PathBuf),
}

impl Endpoint {
    /// The URL requests carry (over a socket, the Host is [`super::SOCKET_HOST`]).
    pub fn url(&self) -> String {
        match self {
            Endpoint::Http(url) => url.clone(),
            Endpoint::Socket(_) => format!("http://{}{}", super::SOCKET_HOST, super::MCP_PATH),
        }
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Http(url) => url.clone(),
            Endpoint::Socket(path) => path.display().to_string(),
        }
    }

    /// An HTTP client for it: never through a proxy (the bearer goes to this machine or down a
    /// socket), never following redirects.
    pub fn client(&self) -> Result<reqwest::Client, BridgeError> {
        let builder = match self {
            Endpoint::Http(url) => {
                let loopback = url::Url::parse(url).is_ok_and(|u| crate::net::is_loopback_url(&u));
                crate::net::client_builder(loopback)
            }
            #[cfg(unix)]
            Endpoint::Socket(path) => crate::net::client_builder(true).unix_socket(path.clone()),
            #[cfg(not(unix))]
            Endpoint::Socket(path) => {
                return Err(BridgeError::Io(format!(
                    "{}: Unix sockets are not available on this platform",
                    path.display()
                )));
            }
        };
        builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BridgeError::Io(e.to_string()))
    }
}

/// Session facts learned from the server's answers and the client's requests.
#[derive(Default)]
struct Session {
    id: Option<String>,
    version: Option<String>,
}

type Stdout = Arc<Mutex<tokio::io::Stdout>>;

/// Runs until stdin closes (and every open answer stream has been delivered).
pub async fn run(endpoint: &Endpoint, token: &SecretString) -> Result<(), BridgeError> {
    let http = endpoint.client()?;
    let url = endpoint.url();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let stdout: Stdout = Arc::new(Mutex::new(tokio::io::stdout()));
    let session = Arc::new(Mutex::new(Session::default()));
    let mut streams = tokio::task::JoinSet::new();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| BridgeError::Io(e.to_string()))?
    {
        if line.trim().is_empty() {
            continue;
        }
        let message: Option<Value> = serde_json::from_str(&line).ok();
        let mut request = http
            .post(&url)
            .bearer_auth(token.expose_secret())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        {
            let mut s = session.lock().await;
            if let Some(v) = message.as_ref().and_then(meta_protocol_version) {
                s.version = Some(v);
            }
            if let Some(id) = &s.id {
                request = request.header("mcp-session-id", id);
            }
            if let Some(v) = &s.version {
                request = request.header("mcp-protocol-version", v);
            }
        }
        if let Some(method) = message.as_ref().and_then(|m| m["method"].as_str()) {
            request = request.header("mcp-method", method);
        }
        // Headers first (in order, so the session id is known for the next line), then the
        // body streams in the background.
        let response = request
            .body(line)
            .send()
            .await
            .map_err(|_| BridgeError::Unreachable(endpoint.describe()))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(BridgeError::Refused(status));
        }
        if let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            session.lock().await.id = Some(id.to_string());
        }
        let out = stdout.clone();
        let session = session.clone();
        streams.spawn(async move { forward(response, out, session).await });
    }
    while let Some(done) = streams.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    Ok(())
}

/// Writes every message of one answer to stdout as soon as it is complete.
async fn forward(
    mut response: reqwest::Response,
    out: Stdout,
    session: Arc<Mutex<Session>>,
) -> Result<(), BridgeError> {
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut buffer = String::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BridgeError::Io(e.to_string()))?
    {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        if is_sse {
            buffer = buffer.replace("\r\n", "\n");
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                for message in sse_data(&event) {
                    emit(&out, &session, &message).await?;
                }
            }
        }
    }
    let rest = if is_sse {
        sse_data(&buffer)
    } else if buffer.trim().is_empty() {
        Vec::new()
    } else {
        vec![buffer.trim().to_string()]
    };
    for message in rest {
        emit(&out, &session, &message).await?;
    }
    Ok(())
}

async fn emit(out: &Stdout, session: &Mutex<Session>, message: &str) -> Result<(), BridgeError> {
    if let Ok(v) = serde_json::from_str::<Value>(message)
        && let Some(p) = v["result"]["protocolVersion"].as_str()
    {
        session.lock().await.version = Some(p.to_string());
    }
    let mut out = out.lock().await;
    out.write_all(format!("{message}\n").as_bytes())
        .await
        .map_err(|e| BridgeError::Io(e.to_string()))?;
    out.flush()
        .await
        .map_err(|e| BridgeError::Io(e.to_string()))
}

/// The protocol version a 2026-07-28 request names in its `_meta`, which the HTTP transport
/// must repeat in `MCP-Protocol-Version`.
fn meta_protocol_version(message: &Value) -> Option<String> {
    let meta = message["params"]["_meta"].as_object()?;
    meta.iter()
        .find(|(k, _)| k.ends_with("protocolVersion"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string)
}

/// The `data:` payloads of SSE events, one per event (multi-line data joined); events with
/// no data (priming, keep-alive comments) are skipped.
pub fn sse_data(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            let joined = data.join("\n");
            (!joined.trim().is_empty()).then_some(joined)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_priming_events_skipped() {
        let body = "id: 0\nretry: 3000\ndata:\n\nevent: message\ndata: {\"a\":1}\n\ndata: {\"b\":\ndata: 2}\n\n: keep-alive\n\n";
        assert_eq!(
            sse_data(body),
            vec!["{\"a\":1}".to_string(), "{\"b\":\n2}".to_string()]
        );
    }

    #[test]
    fn protocol_version_is_read_from_meta() {
        let m: Value = serde_json::json!({"method": "server/discover", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert_eq!(meta_protocol_version(&m).as_deref(), Some("2026-07-28"));
        assert_eq!(
            meta_protocol_version(&serde_json::json!({"params": {}})),
            None
        );
    }
}
