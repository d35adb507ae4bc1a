//! The admin protocol. One broker owns the port, the keychain entries and the token cache:
//! while `serve` (or the tray app) runs, admin commands reach it over a Unix socket that only
//! the same OS user can open (0600 in a 0700 directory), so its cache and clients see a revoke
//! or a new client at once. With no broker running, the CLI calls [`handle`] in-process:
//! the same code path either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::audit::AuditFilter;
use crate::{Broker, BrokerError, RoundKind};

/// Longest request line accepted on the socket.
const MAX_LINE: usize = 64 * 1024;

/// One admin operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Pause,
    Resume,
    Login {
        timeout_secs: u64,
    },
    Connect {
        resource: String,
        timeout_secs: u64,
    },
    Check {
        resource: String,
    },
    Revoke {
        resource: String,
    },
    Logout,
    ResourcesAdd {
        resource: String,
        name: Option<String>,
        api_bases: Vec<String>,
        scopes: Vec<String>,
    },
    ResourcesList,
    ResourcesRemove {
        resource: String,
    },
    ClientsAdd {
        name: String,
    },
    ClientsIssue {
        name: String,
    },
    ClientsList,
    ClientsRemove {
        name: String,
    },
    Audit {
        client: Option<String>,
        resource: Option<String>,
        since: Option<chrono::DateTime<chrono::Utc>>,
        limit: Option<u32>,
    },
}

/// Lines the server sends: progress (`url`), then exactly one `ok` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Url(String),
    Ok(Value),
    Error(String),
}

fn to_value(v: impl Serialize) -> Result<Value, BrokerError> {
    serde_json::to_value(v).map_err(|e| BrokerError::Internal(format!("cannot encode reply: {e}")))
}

/// Carries out one admin request. `on_url` receives the authorize URL of a browser round
/// (the caller opens the browser or prints it).
pub async fn handle(
    broker: &Arc<Broker>,
    request: Request,
    mut on_url: impl FnMut(&str),
) -> Result<Value, BrokerError> {
    match request {
        Request::Status => to_value(broker.status()?),
        Request::Pause | Request::Resume => {
            broker.set_paused(matches!(request, Request::Pause));
            to_value(broker.status()?)
        }
        Request::Login { timeout_secs } => {
            let round = broker.begin_login().await?;
            on_url(round.url.as_str());
            broker
                .complete(round, Duration::from_secs(timeout_secs))
                .await?;
            to_value(broker.status()?)
        }
        Request::Connect {
            resource,
            timeout_secs,
        } => {
            let round = broker.begin_connect(&resource).await?;
            let provider = match &round.kind {
                RoundKind::Connect(p) => p.clone(),
                RoundKind::Login => broker.provider(&resource)?,
            };
            on_url(round.url.as_str());
            broker
                .complete(round, Duration::from_secs(timeout_secs))
                .await?;
            to_value(provider)
        }
        Request::Check { resource } => to_value(broker.check(&resource).await?),
        Request::Revoke { resource } => {
            broker.revoke(&resource).await?;
            to_value(broker.provider(&resource)?)
        }
        Request::Logout => {
            broker.logout().await?;
            Ok(Value::Null)
        }
        Request::ResourcesAdd {
            resource,
            name,
            api_bases,
            scopes,
        } => to_value(broker.add_resource(&resource, name.as_deref(), &api_bases, &scopes)?),
        Request::ResourcesList => to_value(broker.providers()?),
        Request::ResourcesRemove { resource } => {
            broker.remove_resource(&resource).await?;
            Ok(Value::Null)
        }
        Request::ClientsAdd { name } => {
            let issued = broker.add_client(&name)?;
            Ok(
                json!({"name": issued.name, "token": secrecy::ExposeSecret::expose_secret(&issued.token)}),
            )
        }
        Request::ClientsIssue { name } => {
            let issued = broker.issue_client(&name)?;
            Ok(
                json!({"name": issued.name, "token": secrecy::ExposeSecret::expose_secret(&issued.token)}),
            )
        }
        Request::ClientsList => to_value(broker.list_clients()?),
        Request::ClientsRemove { name } => {
            broker.remove_client(&name)?;
            Ok(Value::Null)
        }
        Request::Audit {
            client,
            resource,
            since,
            limit,
        } => to_value(broker.audit(&AuditFilter {
            client,
            resource,
            since,
            limit,
        })?),
    }
}

/// Where the control socket of a broker home lives.
pub fn socket_path(broker_data_dir: &Path) -> PathBuf {
    broker_data_dir.join("control.sock")
}

#[cfg(unix)]
pub use unix::{call, serve};

#[cfg(unix)]
mod unix {
    use super::*;
    use tokio::net::{UnixListener, UnixStream};

    /// Serves the control socket until `stop` resolves. A stale socket file from a crashed
    /// broker is replaced; a live one means another broker owns this home.
    pub async fn serve(
        broker: Arc<Broker>,
        path: PathBuf,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), BrokerError> {
        let listen_err =
            |e: std::io::Error| BrokerError::ControlSocket(format!("{}: {e}", path.display()));
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(BrokerError::AlreadyRunning(path.display().to_string()));
            }
            std::fs::remove_file(&path).map_err(listen_err)?;
        }
        let listener = UnixListener::bind(&path).map_err(listen_err)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(listen_err)?;
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    match accepted {
                        Ok((stream, _)) => {
                            let broker = broker.clone();
                            tokio::spawn(async move { session(broker, stream).await });
                        }
                        Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
        Ok(())
    }

    async fn session(broker: Arc<Broker>, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(MAX_LINE as u64)).lines();
        let reply = match lines.next_line().await {
            Ok(Some(line)) => match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let (url_tx, mut url_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                    let work = handle(&broker, request, move |url| {
                        let _ = url_tx.send(url.to_string());
                    });
                    tokio::pin!(work);
                    let result = loop {
                        tokio::select! {
                            result = &mut work => break result,
                            Some(url) = url_rx.recv() => {
                                if send(&mut write, &Reply::Url(url)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    };
                    while let Ok(url) = url_rx.try_recv() {
                        let _ = send(&mut write, &Reply::Url(url)).await;
                    }
                    match result {
                        Ok(value) => Reply::Ok(value),
                        Err(e) => Reply::Error(e.to_string()),
                    }
                }
                Err(e) => Reply::Error(format!("malformed control request: {e}")),
            },
            Ok(None) => return,
            Err(e) => Reply::Error(format!("unreadable control request: {e}")),
        };
        let _ = send(&mut write, &reply).await;
    }

    async fn send(
        write: &mut tokio::net::unix::OwnedWriteHalf,
        reply: &Reply,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
        line.push('\n');
        write.write_all(line.as_bytes()).await
    }

    /// Sends a request to the running broker. `None` when no broker listens on `path`.
    pub async fn call(
        path: &Path,
        request: &Request,
        mut on_url: impl FnMut(&str),
    ) -> Option<Result<Value, String>> {
        let stream = UnixStream::connect(path).await.ok()?;
        let (read, mut write) = stream.into_split();
        let Ok(mut line) = serde_json::to_string(request) else {
            return Some(Err("cannot encode control request".into()));
        };
        line.push('\n');
        if let Err(e) = write.write_all(line.as_bytes()).await {
            return Some(Err(format!("control socket: {e}")));
        }
        let mut lines = BufReader::new(read).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(text)) => match serde_json::from_str::<Reply>(&text) {
                    Ok(Reply::Url(url)) => on_url(&url),
                    Ok(Reply::Ok(value)) => return Some(Ok(value)),
                    Ok(Reply::Error(e)) => return Some(Err(e)),
                    Err(e) => return Some(Err(format!("malformed reply from the broker: {e}"))),
                },
                Ok(None) => return Some(Err("the running broker closed the connection".into())),
                Err(e) => return Some(Err(format!("control socket: {e}"))),
            }
        }
    }
}

#[cfg(not(unix))]
pub async fn call(
    _path: &Path,
    _request: &Request,
    _on_url: impl FnMut(&str),
) -> Option<Result<Value, String>> {
    // Named-pipe transport for Windows is not built yet: act on the store directly.
    None
}

#[cfg(not(unix))]
pub async fn serve(
    _broker: Arc<Broker>,
    _path: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BrokerError> {
    stop.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_rejected() {
        let r = Request::Connect {
            resource: "github".into(),
            timeout_secs: 5,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""op":"connect""#));
        assert!(serde_json::from_str::<Request>(&text).is_ok());
        assert!(serde_json::from_str::<Request>(r#"{"op":"rm -rf"}"#).is_err());
        assert!(serde_json::from_str::<Request>("not json").is_err());
    }
}
