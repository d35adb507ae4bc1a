//! One file per area. A command parses nothing more (clap did), builds an `api::Request`
//! (or calls the one engine function for it), and renders the answer.

mod approvals;
mod audit;
mod clients;
mod connections;
mod policy;
mod remote;
mod resources;
mod serve;
mod service;
mod session;

use std::sync::Arc;

use broker::api::{self, Failure, Reply, Request};
use broker::{Broker, Config, control};

use crate::args::Command;
use crate::output::{Fail, say, tell};

/// What every command gets: the resolved config and whether to answer in JSON.
pub struct Ctx {
    pub config: Config,
    pub json: bool,
}

pub async fn run(command: Command, ctx: Ctx) -> Result<(), Fail> {
    match command {
        Command::Init(args) => session::init(&ctx, args).await,
        Command::Login(round) => session::login(&ctx, round).await,
        Command::Status => session::status(&ctx).await,
        Command::Logout => session::logout(&ctx).await,
        Command::Pause => session::pause(&ctx, true).await,
        Command::Resume => session::pause(&ctx, false).await,
        Command::About => session::about(&ctx).await,
        Command::Connect(args) | Command::Reconnect(args) => connections::connect(&ctx, args).await,
        Command::Check { resource } => connections::check(&ctx, resource).await,
        Command::Revoke { resource } => connections::revoke(&ctx, resource).await,
        Command::Resources { command } => resources::run(&ctx, command).await,
        Command::Clients { command } => clients::run(&ctx, command).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
        Command::Approvals => approvals::list(&ctx).await,
        Command::Approve { id, span } => {
            let hour = span == Some(crate::args::Span::Hour);
            approvals::approve(&ctx, id, hour).await
        }
        Command::Deny { id } => approvals::deny(&ctx, id).await,
        Command::Policy { command } => policy::run(&ctx, command).await,
        Command::Serve { port } => serve::serve(ctx, port).await,
        Command::Stdio(args) => serve::stdio(&ctx, args).await,
        Command::Bridge { listen, socket } => serve::bridge(listen, socket).await,
        Command::Remote { command } => remote::run(&ctx, command).await,
        Command::Service { command } => service::run(&ctx, command).await,
    }
}

/// Sends a request to the running broker (control socket) or, with none running, carries it
/// out here with the same handler. Browser rounds show their URL through [`show_url`].
pub async fn execute(ctx: &Ctx, request: Request, no_browser: bool) -> Result<Reply, Failure> {
    let socket = control::socket_path(&ctx.config.paths.data_dir);
    let json = ctx.json;
    let show = |url: &str| show_url(url, no_browser, json);
    if let Some(result) = control::call(&socket, &request, show).await {
        return result;
    }
    let broker = Arc::new(Broker::open(ctx.config.clone()).await?);
    let result = api::handle(&broker, request, show).await;
    broker.shutdown().await;
    result
}

/// Sends a request that means something only to the serving broker (pause, approvals): no
/// in-process fallback.
pub async fn running(ctx: &Ctx, request: Request) -> Result<Reply, Failure> {
    let socket = control::socket_path(&ctx.config.paths.data_dir);
    control::call(&socket, &request, |_| {})
        .await
        .unwrap_or_else(|| {
            Err(Failure::new(
                api::ErrorCode::NotRunning,
                "no Keycard Broker is running",
            ))
        })
}

/// `--no-browser`: the URL alone as the first stdout line (on stderr with `--json`, whose
/// stdout holds only the result); else the browser opens, or the URL is printed for the user.
fn show_url(url: &str, no_browser: bool, json: bool) {
    if no_browser && json {
        tell!("{url}");
    } else if no_browser {
        say!("{url}");
    } else if broker::api::open_browser(url) {
        tell!("Continue in your browser…");
    } else {
        tell!("Open this URL to continue:\n{url}");
    }
}
