//! The agent socket: the same `/mcp` on a Unix socket in the broker's data folder, so agents
//! that run elsewhere reach it through a socket the user forwarded (`ssh -R`, a devcontainer
//! mount, WSL), the way `ssh-agent` forwarding serves keys. Consent, tokens and approvals stay
//! here. The socket is 0600 in a 0700 folder, and each connection's peer credentials
//! (SO_PEERCRED on Linux, getpeereid on macOS) must name the user who owns the socket: file
//! modes can be loosened by mistake, the kernel's word on who connected cannot. The socket has
//! a folder of its own (`agent/`, nothing else in it), so a dev container can mount the folder:
//! a mount of the socket file itself would keep the old inode after a broker restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{Broker, BrokerError};

/// The `Host` the bridges send over the socket (and the only one the socket's guard accepts).
pub const SOCKET_HOST: &str = "localhost";

/// Where the agent socket of a broker home lives.
pub fn agent_socket_path(broker_data_dir: &Path) -> PathBuf {
    broker_data_dir.join("agent").join("agent.sock")
}

/// The agent socket while it serves; [`AgentSocket::stop`] closes it and removes the file.
pub struct AgentSocket {
    path: PathBuf,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AgentSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, lets requests in flight finish, and removes the socket file.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
pub use unix::serve;

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use tokio::net::{UnixListener, UnixStream};

    use super::*;

    /// Binds `path` (a stale file from a crashed broker is replaced: the control socket,
    /// taken first, already proved that no other broker owns this home) and serves the
    /// socket's `/mcp` for the broker listening on `port`.
    pub async fn serve(
        broker: Arc<Broker>,
        port: u16,
        path: PathBuf,
    ) -> Result<AgentSocket, BrokerError> {
        let fail = |e: std::io::Error| BrokerError::AgentSocket(format!("{}: {e}", path.display()));
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(fail)?;
            std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
                .map_err(fail)?;
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path).map_err(fail)?;
        }
        let listener = UnixListener::bind(&path).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        // The socket is ours: its owner is this process's effective user.
        let owner = std::fs::metadata(&path).map_err(fail)?.uid();
        let listener = SameUser { listener, owner };
        let app = crate::mcp::socket_router(broker, port);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "agent socket stopped");
            }
        });
        tracing::info!(path = %path.display(), "serving MCP on the agent socket");
        Ok(AgentSocket { path, stop, task })
    }

    /// Accepts only connections whose peer is the socket's owner; others are closed before a
    /// byte is read (and logged, without anything they sent).
    struct SameUser {
        listener: UnixListener,
        owner: u32,
    }

    impl axum::serve::Listener for SameUser {
        type Io = UnixStream;
        type Addr = tokio::net::unix::SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            loop {
                let (stream, addr) = match self.listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "agent socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match stream.peer_cred() {
                    Ok(peer) if peer.uid() == self.owner => return (stream, addr),
                    Ok(peer) => tracing::warn!(
                        uid = peer.uid(),
                        pid = peer.pid(),
                        "agent socket: refused a connection from another user"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "agent socket: peer credentials unreadable; refused")
                    }
                }
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            self.listener.local_addr()
        }
    }
}

/// No Unix sockets: the setting is refused plainly (Windows builds use the loopback port).
#[cfg(not(unix))]
pub async fn serve(
    _broker: Arc<Broker>,
    _port: u16,
    path: PathBuf,
) -> Result<AgentSocket, BrokerError> {
    Err(BrokerError::AgentSocket(format!(
        "{}: Unix sockets are not available on this platform",
        path.display()
    )))
}
