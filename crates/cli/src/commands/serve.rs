//! Running the broker (`serve`) and the stdio bridge to it (`stdio`).

use std::sync::Arc;

use broker::api::{self, ErrorCode, Failure};
use broker::mcp::bridge::BridgeError;
use broker::{Broker, control};

use super::Ctx;
use crate::output::{Fail, Hint, say};

/// Runs the broker until Ctrl-C / SIGTERM: MCP endpoint + callback on the port, admin
/// requests on the control socket. Ready is one line on stdout (with `--json`, the
/// broker's `about` document on that line).
pub async fn serve(mut ctx: Ctx, port: Option<u16>) -> Result<(), Fail> {
    if let Some(port) = port {
        ctx.config.settings.broker.port = port;
    }
    let port = ctx.config.port();
    let socket = control::socket_path(&ctx.config.paths.data_dir);
    let broker = Arc::new(Broker::open(ctx.config.clone()).await?);
    let addr = match broker
        .start_with(broker::mcp::router(broker.clone(), port))
        .await
    {
        Ok(addr) => addr,
        Err(e) => {
            broker.shutdown().await;
            return Err(e.into());
        }
    };
    let url = broker::mcp::mcp_url(addr.port());
    if ctx.json {
        let mut about = api::about(broker.config(), Some(broker.vault()));
        about.port = addr.port();
        about.mcp_url = url;
        match serde_json::to_string(&about) {
            Ok(line) => say!("{line}"),
            Err(e) => tracing::warn!(error = %e, "cannot render the ready line as JSON"),
        }
    } else {
        say!("Keycard Broker is serving MCP at {url}");
    }
    let result = control::serve(broker.clone(), socket, shutdown_signal()).await;
    broker.shutdown().await;
    result.map_err(Fail::from)
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

/// The bridge's own errors already say what to do.
fn bridge_failure(e: BridgeError) -> Fail {
    let code = match e {
        BridgeError::Unreachable(_) | BridgeError::Refused(_) => ErrorCode::NotConfigured,
        BridgeError::Io(_) => ErrorCode::Internal,
    };
    Fail::with_hint(Failure::new(code, e.to_string()), Hint::None)
}
