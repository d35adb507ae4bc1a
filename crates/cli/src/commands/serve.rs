//! Running the broker (`serve`) and the stdio bridge to it (`stdio`).

use std::sync::Arc;

use broker::Broker;
use broker::api::{self, ErrorCode, Failure};
use broker::control::Serving;
use broker::mcp::bridge::BridgeError;

use super::Ctx;
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

/// The stdio bridge: MCP on stdin/stdout, HTTP to the running broker with the client's
/// token from the keychain (`clients config claude-desktop NAME --write` stored it).
pub async fn stdio(ctx: &Ctx, client: String) -> Result<(), Fail> {
    let broker = Broker::open(ctx.config.clone()).await?;
    let token = api::stored_client_token(&broker, &client).await;
    broker.shutdown().await;
    let Some(token) = token? else {
        return Err(Failure::new(
            ErrorCode::NotConfigured,
            format!("no token is stored for client {client:?}"),
        )
        .into());
    };
    let url = broker::mcp::mcp_url(ctx.config.port());
    broker::mcp::bridge::run(&url, &token)
        .await
        .map_err(bridge_failure)
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
