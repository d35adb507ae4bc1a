//! `remote ssh|devcontainer`: one engine request (`RemoteSetup`), printed.

use broker::api::{Failure, RemoteSetup, RemoteTarget, Reply, Request};
use secrecy::ExposeSecret;

use super::clients::write_to;
use super::{Ctx, execute};
use crate::args::{RemoteClientArgs, RemoteCommand};
use crate::output::{self, Fail, Hint, expect_reply, say, tell};

pub async fn run(ctx: &Ctx, command: RemoteCommand) -> Result<(), Fail> {
    let (target, write, client) = match command {
        RemoteCommand::Ssh {
            host,
            remote_user,
            remote_home,
            write,
            file,
            client,
        } => (
            RemoteTarget::Ssh {
                host,
                remote_user,
                remote_home,
            },
            write_to(write, file)?,
            client,
        ),
        RemoteCommand::Devcontainer {
            folder,
            write,
            file,
            client,
        } => {
            let folder = folder.unwrap_or_else(|| ".".into());
            let folder = std::path::absolute(&folder).map_err(|e| {
                Failure::invalid(format!("invalid --folder {}: {e}", folder.display()))
            })?;
            (
                RemoteTarget::Devcontainer { folder },
                write_to(write, file)?,
                client,
            )
        }
    };
    let RemoteClientArgs {
        name,
        new_token,
        access,
    } = client;
    let request = Request::RemoteSetup {
        target,
        client: name,
        write,
        new_token,
        access,
    };
    let setup = expect_reply!(execute(ctx, request, false).await?, Reply::RemoteSetup)?;
    if let Some(error) = setup.write_error.clone() {
        return Err(write_failed(ctx.json, &setup, error));
    }
    output::show(ctx.json, &setup, |s| print(s, true))
}

/// The whole set-up as text; `written` false prints the laptop-side snippet for pasting.
fn print(s: &RemoteSetup, show_written: bool) {
    match &s.token {
        Some(token) => say!(
            "Client {} added for this {}. Its token is shown only this once (it is also in the MCP config below):\n{}\n",
            s.client,
            if s.via == "ssh" {
                "host"
            } else {
                "dev container"
            },
            token.expose_secret()
        ),
        None => say!("Using the existing client {}.\n", s.client),
    }
    let file = if s.via == "ssh" {
        "~/.ssh/config"
    } else {
        ".devcontainer/devcontainer.json"
    };
    match (&s.written, show_written) {
        (Some(path), true) => say!(
            "Wrote the entries into {path}{}.\n",
            s.backup
                .as_ref()
                .map(|b| format!(" (backup: {b})"))
                .unwrap_or_default()
        ),
        _ => say!(
            "Add this to {file} (or run again with --write):\n{}",
            s.snippet
        ),
    }
    let there = if s.via == "ssh" {
        "on the host"
    } else {
        "in the container"
    };
    say!(
        "The agent's MCP config {there} (stdio clients):\n{}\n",
        s.mcp_config
    );
    say!(
        "Clients that speak only HTTP: run `{}` {there} and use:\n{}\n",
        s.bridge_command,
        s.bridge_config
    );
    for note in &s.notes {
        say!("Note: {note}");
    }
}

/// Like `clients config`: the entries (and a new token) are shown all the same, so nothing is
/// lost, and the command fails with the write error.
fn write_failed(as_json: bool, setup: &RemoteSetup, error: Failure) -> Fail {
    if as_json {
        return output::json_with_error(setup, error);
    }
    print(setup, false);
    tell!("The file was not changed.");
    Fail::with_hint(
        error,
        Hint::Text(
            "Paste the entries printed above yourself, or fix the file and run this again.".into(),
        ),
    )
}
