//! stdio ↔ HTTP bridge for stdio-only clients (Claude Desktop): each JSON-RPC line from stdin
//! is POSTed to the running broker's `/mcp` with the client's bearer token; every JSON-RPC
//! message in the answer (JSON or an SSE stream) is written to stdout as one line.

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(
        "cannot reach Keycard Broker at {0}; is `keycard-broker serve` (or the tray app) running?"
    )]
    Unreachable(String),
    #[error(
        "Keycard Broker refused the client token (HTTP {0}); run `keycard-broker clients config claude-desktop NAME --write` again"
    )]
    Refused(u16),
    #[error("stdio: {0}")]
    Io(String),
}

/// Runs until stdin closes.
pub async fn run(url: &str, token: &SecretString) -> Result<(), BridgeError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| BridgeError::Io(e.to_string()))?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut session: Option<String> = None;
    let mut version: Option<String> = None;
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| BridgeError::Io(e.to_string()))?
    {
        if line.trim().is_empty() {
            continue;
        }
        let mut request = http
            .post(url)
            .bearer_auth(token.expose_secret())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(line);
        if let Some(id) = &session {
            request = request.header("mcp-session-id", id);
        }
        if let Some(v) = &version {
            request = request.header("mcp-protocol-version", v);
        }
        let response = request
            .send()
            .await
            .map_err(|_| BridgeError::Unreachable(url.to_string()))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(BridgeError::Refused(status));
        }
        if let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            session = Some(id.to_string());
        }
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let body = response
            .text()
            .await
            .map_err(|e| BridgeError::Io(e.to_string()))?;
        let messages: Vec<String> = if is_sse {
            sse_data(&body)
        } else if body.trim().is_empty() {
            Vec::new()
        } else {
            vec![body.trim().to_string()]
        };
        for message in messages {
            if version.is_none()
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&message)
                && let Some(p) = v["result"]["protocolVersion"].as_str()
            {
                version = Some(p.to_string());
            }
            stdout
                .write_all(format!("{message}\n").as_bytes())
                .await
                .map_err(|e| BridgeError::Io(e.to_string()))?;
        }
        stdout
            .flush()
            .await
            .map_err(|e| BridgeError::Io(e.to_string()))?;
    }
    Ok(())
}

/// The `data:` payloads of an SSE body, one per event (multi-line data joined).
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
        let body = "id: 0\nretry: 3000\ndata:\n\nevent: message\ndata: {\"a\":1}\n\ndata: {\"b\":\ndata: 2}\n\n";
        assert_eq!(
            sse_data(body),
            vec!["{\"a\":1}".to_string(), "{\"b\":\n2}".to_string()]
        );
    }
}
