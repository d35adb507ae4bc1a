//! The serving broker, started and stopped the same way by every shell (CLI `serve`, the tray
//! app): the loopback listener (MCP endpoint and OAuth callback), the agent socket (unless
//! `[broker] agent_socket = false`) and the control socket, all bound before
//! [`Serving::start`] returns, so "ready" means all of them answer.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{About, about};
use crate::{Broker, BrokerError, mcp};

/// A broker that serves agents and admin requests until [`Serving::stop`].
pub struct Serving {
    broker: Arc<Broker>,
    addr: SocketAddr,
    agent_socket: Option<mcp::AgentSocket>,
    stop_control: oneshot::Sender<()>,
    control: JoinHandle<()>,
}

impl Serving {
    /// Checks the policy, takes the control socket (a live one means another broker owns this
    /// home), then the port. On failure nothing stays bound and the broker is shut down.
    pub async fn start(broker: Arc<Broker>) -> Result<Serving, BrokerError> {
        // A policy that does not parse or validate stops the broker here: never fail open.
        if let Err(e) = broker.policy() {
            broker.shutdown().await;
            return Err(e);
        }
        let socket = super::socket_path(&broker.config().paths.data_dir);
        let socket = match super::bind(socket).await {
            Ok(socket) => socket,
            Err(e) => {
                broker.shutdown().await;
                return Err(e);
            }
        };
        let tools = broker.clone();
        let addr = match broker
            .start_with(move |port| mcp::router(tools, port))
            .await
        {
            Ok(addr) => addr,
            Err(e) => {
                drop(socket);
                broker.shutdown().await;
                return Err(e);
            }
        };
        let agent_socket = if cfg!(unix) && broker.config().settings.broker.agent_socket {
            let path = mcp::agent_socket_path(&broker.config().paths.data_dir);
            match mcp::socket::serve(broker.clone(), addr.port(), path).await {
                Ok(agent_socket) => Some(agent_socket),
                Err(e) => {
                    drop(socket);
                    broker.shutdown().await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        let (stop_control, stopped) = oneshot::channel::<()>();
        let control = tokio::spawn(socket.serve(broker.clone(), async {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, "serving MCP and the control socket");
        Ok(Serving {
            broker,
            addr,
            agent_socket,
            stop_control,
            control,
        })
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent socket's path while it serves.
    pub fn agent_socket(&self) -> Option<&std::path::Path> {
        self.agent_socket.as_ref().map(|s| s.path())
    }

    /// What the broker is, with the port it actually serves on.
    pub fn about(&self) -> About {
        let mut about = about(self.broker.config(), Some(self.broker.vault()));
        about.port = self.addr.port();
        about.mcp_url = mcp::mcp_url(self.addr.port());
        about
    }

    /// Stops answering the control socket and the agent socket (their files are removed),
    /// writes what is pending and closes the listener.
    pub async fn stop(self) {
        let _ = self.stop_control.send(());
        let _ = self.control.await;
        if let Some(agent_socket) = self.agent_socket {
            agent_socket.stop().await;
        }
        self.broker.shutdown().await;
        tracing::info!("stopped serving");
    }
}
