//! Running the broker (`serve`) and the bridges to it: `stdio` (stdio clients, here or on a
//! remote host) and `bridge` (HTTP clients on a remote host).

use std::sync::Arc;

use broker::Broker;
use broker::api::{self, ErrorCode, Failure};
use broker::control::Serving;
use broker::mcp::bridge::{BridgeError, Endpoint};
use broker::mcp::relay;
use secrecy::SecretString;

use super::Ctx;
use crate::args::StdioArgs;
use crate::output::{Fail, say};

/// Runs the broker until Ctrl-C / SIGTERM: MCP endpoint + callback on the port, admin
/// requests on the control socket. Ready is one line on stdout (with `--json`, the
/// broker's `about` document on that line).
pub async fn serve(mut ctx: Ctx, port: Option<u16>) -> Result<(), Fail> {
    if let Some(port) = port {
        ctx.config.settings.broker.port = port;
    }
    let broker = Arc::new(Broker::open(ctx.config.clone()).await?);
    let serving = Serving::start(broker).await?;
    let about = serving.about();
    if ctx.json {
        match serde_json::to_string(&about) {
            Ok(line) => say!("{line}"),
            Err(e) => tracing::warn!(error = %e, "cannot render the ready line as JSON"),
        }
    } else {
        say!("Keycard Broker is serving MCP at {}", about.mcp_url);
        if let Some(socket) = serving.agent_socket() {
            say!("and on the agent socket {}", socket.display());
        }
    }
    shutdown_signal().await;
    serving.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The stdio bridge: MCP on stdin/stdout, HTTP to the running broker — on its loopback port,
/// or through an agent socket (`--socket`, forwarded from the laptop on a remote host) — with
/// the client's token from the keychain (`clients config claude-desktop NAME --write` stored
/// it) or, where there is no keychain, from an environment variable (`--token-env`).
pub async fn stdio(ctx: &Ctx, args: StdioArgs) -> Result<(), Fail> {
    let token = match (&args.token_env, &args.client) {
        (Some(var), _) => match std::env::var(var) {
            Ok(token) if !token.trim().is_empty() => SecretString::from(token.trim().to_string()),
            _ => {
                return Err(Failure::new(
                    ErrorCode::NotConfigured,
                    format!("the environment variable {var} holds no client token"),
                )
                .into());
            }
        },
        (None, Some(client)) => keychain_token(ctx, client).await?,
        (None, None) => {
            return Err(Failure::new(
                ErrorCode::InvalidInput,
                "give --client NAME or --token-env VAR",
            )
            .into());
        }
    };
    let endpoint = match args.socket {
        Some(path) => Endpoint::Socket(path),
        None => Endpoint::Http(broker::mcp::mcp_url(ctx.config.port())),
    };
    broker::mcp::bridge::run(&endpoint, &token)
        .await
        .map_err(bridge_failure)
}

async fn keychain_token(ctx: &Ctx, client: &str) -> Result<SecretString, Fail> {
    let broker = Broker::open(ctx.config.clone()).await?;
    let token = api::stored_client_token(&broker, client).await;
    broker.shutdown().await;
    token?.ok_or_else(|| {
        Failure::new(
            ErrorCode::NotConfigured,
            format!("no token is stored for client {client:?}"),
        )
        .into()
    })
}

/// The HTTP bridge on a remote host's loopback, relaying to a forwarded agent socket until
/// Ctrl-C / SIGTERM. Prints the MCP URL it serves once it listens.
pub async fn bridge(listen: std::net::SocketAddr, socket: std::path::PathBuf) -> Result<(), Fail> {
    let bound = relay::bind(listen, Endpoint::Socket(socket))
        .await
        .map_err(|e| {
            let code = match e {
                relay::RelayError::NotLoopback(_) => ErrorCode::InvalidInput,
                relay::RelayError::Listen { .. } => ErrorCode::PortUnavailable,
                relay::RelayError::Client(_) => ErrorCode::Internal,
            };
            Fail::from(Failure::new(code, e.to_string()))
        })?;
    let addr = bound
        .addr()
        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
    say!("http://{addr}{}", broker::mcp::MCP_PATH);
    bound
        .serve(shutdown_signal())
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()).into())
}

/// The bridge's errors by code; the CLI's hint says what to do (start the broker, store a
/// new token).
fn bridge_failure(e: BridgeError) -> Fail {
    let code = match e {
        BridgeError::Unreachable(_) => ErrorCode::NotRunning,
        BridgeError::Refused(_) => ErrorCode::Unauthorized,
        BridgeError::Io(_) => ErrorCode::Internal,
    };
    Failure::new(code, e.to_string()).into()
}
