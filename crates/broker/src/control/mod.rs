//! The admin protocol. One broker owns the port, the keychain entries and the token cache:
//! while `serve` (or the tray app) runs, admin commands reach it over a Unix socket that only
//! the same OS user can open (0600 in a 0700 directory), so its cache and clients see a revoke
//! or a new client at once. With no broker running, the CLI calls [`handle`] in-process:
//! the same code path either way.

mod serving;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::api::{ErrorCode, Failure, Reply, Request, handle};
use crate::{Broker, BrokerError};

pub use serving::Serving;

/// Longest request line accepted on the socket.
const MAX_LINE: usize = 64 * 1024;

/// Lines the server sends: progress (`url`), then exactly one `ok` or `error`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frame {
    Url(String),
    Ok(Reply),
    Error(Failure),
}

/// Where the control socket of a broker home lives.
pub fn socket_path(broker_data_dir: &Path) -> PathBuf {
    broker_data_dir.join("control.sock")
}

#[cfg(unix)]
pub use unix::{ControlSocket, bind, call};

#[cfg(unix)]
mod unix {
    use super::*;
    use tokio::net::{UnixListener, UnixStream};

    /// The control socket, bound and owned by this broker; removed when dropped.
    pub struct ControlSocket {
        listener: UnixListener,
        path: PathBuf,
    }

    /// Binds the control socket (0600). A stale socket file from a crashed broker is
    /// replaced; a live one means another broker owns this home.
    pub async fn bind(path: PathBuf) -> Result<ControlSocket, BrokerError> {
        let listen_err =
            |e: std::io::Error| BrokerError::ControlSocket(format!("{}: {e}", path.display()));
        if path.exists() {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(BrokerError::AlreadyRunning(path.display().to_string()));
            }
            std::fs::remove_file(&path).map_err(listen_err)?;
        }
        let listener = UnixListener::bind(&path).map_err(listen_err)?;
        let socket = ControlSocket { listener, path };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| {
                    BrokerError::ControlSocket(format!("{}: {e}", socket.path.display()))
                })?;
        }
        Ok(socket)
    }

    impl ControlSocket {
        /// Answers admin requests until `stop` resolves.
        pub async fn serve(self, broker: Arc<Broker>, stop: impl std::future::Future<Output = ()>) {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    accepted = self.listener.accept() => {
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
        }
    }

    impl Drop for ControlSocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
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
                                if send(&mut write, &Frame::Url(url)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    };
                    while let Ok(url) = url_rx.try_recv() {
                        let _ = send(&mut write, &Frame::Url(url)).await;
                    }
                    match result {
                        Ok(reply) => Frame::Ok(reply),
                        Err(failure) => Frame::Error(failure),
                    }
                }
                Err(e) => Frame::Error(Failure::invalid(format!("malformed control request: {e}"))),
            },
            Ok(None) => return,
            Err(e) => Frame::Error(Failure::invalid(format!("unreadable control request: {e}"))),
        };
        let _ = send(&mut write, &reply).await;
    }

    async fn send(
        write: &mut tokio::net::unix::OwnedWriteHalf,
        reply: &Frame,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
        line.push('\n');
        write.write_all(line.as_bytes()).await
    }

    fn broken(message: String) -> Failure {
        Failure::new(ErrorCode::Internal, message)
    }

    /// Sends a request to the running broker. `None` when no broker listens on `path`.
    pub async fn call(
        path: &Path,
        request: &Request,
        mut on_url: impl FnMut(&str),
    ) -> Option<Result<Reply, Failure>> {
        let stream = UnixStream::connect(path).await.ok()?;
        let (read, mut write) = stream.into_split();
        let Ok(mut line) = serde_json::to_string(request) else {
            return Some(Err(Failure::new(
                ErrorCode::Internal,
                "cannot encode control request",
            )));
        };
        line.push('\n');
        if let Err(e) = write.write_all(line.as_bytes()).await {
            return Some(Err(broken(format!("control socket: {e}"))));
        }
        let mut lines = BufReader::new(read).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(text)) => match serde_json::from_str::<Frame>(&text) {
                    Ok(Frame::Url(url)) => on_url(&url),
                    Ok(Frame::Ok(reply)) => return Some(Ok(reply)),
                    Ok(Frame::Error(failure)) => return Some(Err(failure)),
                    Err(e) => {
                        return Some(Err(broken(format!("malformed reply from the broker: {e}"))));
                    }
                },
                Ok(None) => {
                    return Some(Err(broken(
                        "the running broker closed the connection".into(),
                    )));
                }
                Err(e) => return Some(Err(broken(format!("control socket: {e}")))),
            }
        }
    }
}

#[cfg(not(unix))]
pub async fn call(
    _path: &Path,
    _request: &Request,
    _on_url: impl FnMut(&str),
) -> Option<Result<Reply, Failure>> {
    // Named-pipe transport for Windows is not built yet: act on the store directly.
    None
}

/// The control socket (not built on this platform yet: admin commands act on the store).
#[cfg(not(unix))]
pub struct ControlSocket;

#[cfg(not(unix))]
pub async fn bind(_path: PathBuf) -> Result<ControlSocket, BrokerError> {
    Ok(ControlSocket)
}

#[cfg(not(unix))]
impl ControlSocket {
    pub async fn serve(self, _broker: Arc<Broker>, stop: impl std::future::Future<Output = ()>) {
        stop.await;
    }
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
