//! Agent clients: add, list, remove, their config entries, and the kinds the broker knows.

use std::path::PathBuf;

use broker::api::{self, ClientSetup, Failure, Reply, Request, WriteTo};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{Ctx, execute};
use crate::args::ClientsCommand;
use crate::output::{self, Fail, Hint, expect_reply, say, tell};

pub async fn run(ctx: &Ctx, command: ClientsCommand) -> Result<(), Fail> {
    match command {
        ClientsCommand::Add { name, access } => {
            let request = Request::ClientsAdd {
                name,
                access: Some(access),
            };
            let reply = execute(ctx, request, false).await?;
            let issued = expect_reply!(reply, Reply::Issued)?;
            output::show(ctx.json, &issued, |c| {
                say!(
                    "Client {} added. Its token is shown only this once:\n{}",
                    c.name,
                    c.token.expose_secret()
                );
            })
        }
        ClientsCommand::List => {
            let reply = execute(ctx, Request::Agents, false).await?;
            let agents = expect_reply!(reply, Reply::Agents)?;
            output::show(ctx.json, &agents, |list| {
                if list.is_empty() {
                    say!("No agent clients yet — add one with `keycard-broker clients add NAME`.");
                }
                for a in list {
                    let kind = match a.registration {
                        None => "static token",
                        Some(api::Registration::Cimd) => "OAuth, verified",
                        Some(api::Registration::Dcr) => "OAuth, unverified",
                    };
                    let access: Vec<String> =
                        a.access.iter().map(|(r, l)| format!("{r}={l}")).collect();
                    say!(
                        "{:<24} {:<18} {}  last seen {}\n    id {}  access: {}",
                        a.name,
                        kind,
                        a.created_at.format("%Y-%m-%d %H:%M"),
                        a.last_seen_at
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_else(|| "never".into()),
                        a.key,
                        if access.is_empty() {
                            "none".to_string()
                        } else {
                            access.join(", ")
                        }
                    );
                }
            })
        }
        ClientsCommand::Signout { name } => {
            let request = Request::AgentSignOut {
                client: name.clone(),
            };
            output::expect_done(execute(ctx, request, false).await?)?;
            output::show(ctx.json, &json!({"ok": true, "signed_out": name}), |_| {
                say!("{name} is signed out; its tokens no longer work.");
            })
        }
        ClientsCommand::Remove { name } => {
            let request = Request::ClientsRemove { name: name.clone() };
            output::expect_done(execute(ctx, request, false).await?)?;
            output::show(ctx.json, &json!({"ok": true, "removed": name}), |_| {
                say!("Removed client {name}; its token no longer works.");
            })
        }
        ClientsCommand::Access { name, choices } => {
            let request = Request::SetAccess {
                client: name.clone(),
                choices: choices.clone(),
            };
            output::expect_done(execute(ctx, request, false).await?)?;
            output::show(ctx.json, &json!({"ok": true, "client": name}), |_| {
                let words: Vec<String> = choices.iter().map(|(r, a)| format!("{r}={a}")).collect();
                say!("{name} may now use: {}", words.join(", "));
            })
        }
        ClientsCommand::Config {
            kind,
            name,
            write,
            file,
            access,
            static_token,
        } => {
            config(
                ctx,
                kind,
                name,
                write_to(write, file)?,
                access,
                static_token,
            )
            .await
        }
        ClientsCommand::Kinds => output::show(ctx.json, &api::client_kinds(), |kinds| {
            for k in kinds {
                say!(
                    "{:<16} {:<16} {}{}",
                    k.kind,
                    k.label,
                    k.path.as_deref().unwrap_or("-"),
                    if k.stdio { "  (stdio bridge)" } else { "" }
                );
            }
        }),
    }
}

/// `--write` writes to the client's own file, `--file PATH` to that one. The path is made
/// absolute here: a running broker that writes it has another working directory.
pub(super) fn write_to(write: bool, file: Option<PathBuf>) -> Result<Option<WriteTo>, Failure> {
    Ok(match (write, file) {
        (_, Some(path)) => Some(WriteTo::File(std::path::absolute(&path).map_err(|e| {
            Failure::invalid(format!("invalid --file {}: {e}", path.display()))
        })?)),
        (true, None) => Some(WriteTo::Default),
        (false, None) => None,
    })
}

/// Issues a new token for the client and prints (or writes) its entry. When writing fails
/// the token has already replaced the old one, so the entry is printed all the same.
async fn config(
    ctx: &Ctx,
    kind: String,
    name: String,
    write: Option<WriteTo>,
    access: Option<api::Access>,
    static_token: bool,
) -> Result<(), Fail> {
    let stdio_command = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "keycard-broker".into());
    let request = Request::ClientSetup {
        name,
        kind,
        stdio_command,
        write,
        replace: true,
        access,
        static_token,
    };
    let setup = expect_reply!(execute(ctx, request, false).await?, Reply::ClientSetup)?;
    if let Some(error) = setup.write_error.clone() {
        return Err(write_failed(ctx.json, &setup, error));
    }
    output::show(ctx.json, &setup, |s| match &s.written {
        Some(path) => {
            say!(
                "Wrote the {} entry into {path}{}.",
                s.name,
                s.backup
                    .as_ref()
                    .map(|b| format!(" (backup: {b})"))
                    .unwrap_or_default()
            );
            if let Some(warning) = &s.warning {
                tell!("{warning}");
            }
            if let Some(note) = &s.note {
                say!("{note}");
            }
        }
        None => {
            say!("{}", s.snippet);
            if let Some(note) = &s.note {
                tell!("{note}");
            }
        }
    })
}

fn write_failed(as_json: bool, setup: &ClientSetup, error: Failure) -> Fail {
    if as_json {
        return output::json_with_error(setup, error);
    }
    say!("{}", setup.snippet);
    if let Some(note) = &setup.note {
        tell!("{note}");
    }
    Fail::with_hint(
        error,
        Hint::Text(
            "The new token is in the entry printed above (the old one no longer works): paste it \
             into the client's config yourself, or fix the problem and run this again."
                .into(),
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn file_implies_write_and_is_made_absolute() {
        assert!(write_to(false, None).unwrap().is_none());
        assert!(matches!(
            write_to(true, None).unwrap(),
            Some(WriteTo::Default)
        ));
        for write in [false, true] {
            let Some(WriteTo::File(path)) = write_to(write, Some("mcp.json".into())).unwrap()
            else {
                panic!("--file writes");
            };
            assert!(path.is_absolute(), "{}", path.display());
            assert!(path.ends_with("mcp.json"));
        }
    }
}
