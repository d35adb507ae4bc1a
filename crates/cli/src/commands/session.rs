//! The zone and the session: init, login, status, logout, pause/resume, about.

use std::io::BufRead;

use broker::api::{self, Failure, Reply, Request, ZoneChange};
use broker::{Broker, Status};
use secrecy::SecretString;

use super::{Ctx, execute};
use crate::args::{InitArgs, RoundArgs};
use crate::output::{self, Fail, expect_reply, say};

pub async fn init(ctx: &Ctx, args: InitArgs) -> Result<(), Fail> {
    let client_secret = if args.client_secret_stdin {
        Some(read_secret_line(std::io::stdin().lock())?)
    } else {
        None
    };
    let change = ZoneChange {
        zone: args.zone,
        client_id: args.client_id,
        resource: args.resource,
        port: args.port,
        strategy: args.strategy.map(Into::into),
        client_secret,
    };
    let broker = Broker::open(ctx.config.clone()).await?;
    let result = api::configure_zone(&broker, change).await;
    broker.shutdown().await;
    let (config, done) = result?;
    output::show(ctx.json, &done, |done| {
        if done.signed_out_previous {
            say!("Signed out of the previous zone first.");
        }
        if let Some(signed_in_for) = &done.signed_in_for_other_resource {
            // The session stays pinned to the identifier it was made for: nothing is lost,
            // but the new identifier takes effect only with a new sign-in.
            say!(
                "The broker's resource identifier is now {}, but you are signed in for {signed_in_for}; run `keycard-broker login` to sign in for the new identifier.",
                config.resource_id()
            );
        }
        say!("Zone set to {}. Next: keycard-broker login", done.issuer);
    })
}

/// The application secret for `init --client-secret-stdin`: one line, not empty.
fn read_secret_line(mut input: impl BufRead) -> Result<SecretString, Failure> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| Failure::invalid(format!("cannot read the client secret from stdin: {e}")))?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(Failure::invalid(
            "the client secret on stdin is empty (pipe it in: `… | keycard-broker init --client-secret-stdin …`)",
        ));
    }
    Ok(SecretString::from(secret.to_string()))
}

pub async fn login(ctx: &Ctx, round: RoundArgs) -> Result<(), Fail> {
    let request = Request::Login {
        timeout_secs: round.timeout,
    };
    let reply = execute(ctx, request, round.no_browser).await?;
    let status = expect_reply!(reply, Reply::Status)?;
    output::show(ctx.json, &status, |s| {
        say!(
            "Signed in to {} as {}.",
            s.zone.as_deref().unwrap_or_default(),
            s.account.as_deref().unwrap_or("(unknown account)")
        );
    })
}

pub async fn status(ctx: &Ctx) -> Result<(), Fail> {
    let reply = execute(ctx, Request::Status, false).await?;
    let status = expect_reply!(reply, Reply::Status)?;
    output::show(ctx.json, &status, print_status)
}

pub async fn logout(ctx: &Ctx) -> Result<(), Fail> {
    let reply = execute(ctx, Request::Logout, false).await?;
    let status = expect_reply!(reply, Reply::Status)?;
    output::show(ctx.json, &status, |_| {
        say!(
            "Signed out; the session and all connections were revoked and wiped from the keychain."
        );
    })
}

/// Pausing means something only to a running broker: no in-process fallback.
pub async fn pause(ctx: &Ctx, pause: bool) -> Result<(), Fail> {
    let request = if pause {
        Request::Pause
    } else {
        Request::Resume
    };
    let status = expect_reply!(super::running(ctx, request).await?, Reply::Status)?;
    output::show(ctx.json, &status, |s| {
        say!(
            "{}",
            if s.paused {
                "Agent access paused."
            } else {
                "Agent access resumed."
            }
        );
    })
}

pub async fn about(ctx: &Ctx) -> Result<(), Fail> {
    let reply = execute(ctx, Request::About, false).await?;
    let about = expect_reply!(reply, Reply::About)?;
    output::show(ctx.json, &about, |a| {
        say!("Keycard Broker {}", a.version);
        say!(
            "Zone:      {}",
            a.zone.as_deref().unwrap_or("(not configured)")
        );
        say!("MCP:       {}", a.mcp_url);
        say!("Resource:  {}", a.resource);
        say!("Keychain:  {}", a.keychain.as_deref().unwrap_or("-"));
        say!("Config:    {}", a.config_file);
        say!("Data:      {}", a.data_dir);
        say!("Logs:      {}", a.logs_dir);
    })
}

fn print_status(status: &Status) {
    say!(
        "Zone:    {}",
        status.zone.as_deref().unwrap_or("(not configured)")
    );
    say!(
        "Account: {} ({})",
        status.account.as_deref().unwrap_or("-"),
        status.session.as_str().replace('_', " ")
    );
    if status.paused {
        say!("Agents:  paused (run `keycard-broker resume`)");
    }
    if status.keychain_pending > 0 {
        say!(
            "Keychain: locked — {} renewed sign-in token(s) wait in memory; unlock the keychain before quitting the broker",
            status.keychain_pending
        );
    }
    if status.connections.is_empty() {
        say!("No connections yet — run `keycard-broker connect github` (or any resource).");
        return;
    }
    say!(
        "{:<20} {:<16} {:<20} {:<20} RESOURCE",
        "NAME",
        "STATUS",
        "SCOPES",
        "LAST USED"
    );
    for c in &status.connections {
        say!(
            "{:<20} {:<16} {:<20} {:<20} {}",
            c.name,
            c.status.as_str(),
            c.scopes.join(" "),
            c.last_used_at
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
            c.resource
        );
        if let Some(e) = &c.last_error {
            say!("    {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_secret_is_one_line_without_its_line_end() {
        for (input, want) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("s3cret\nignored\n", "s3cret"),
            (" spaced \n", " spaced "),
        ] {
            let secret = read_secret_line(input.as_bytes()).unwrap();
            assert_eq!(secret.expose_secret(), want, "{input:?}");
        }
        for empty in ["", "\n", "\r\n"] {
            let e = read_secret_line(empty.as_bytes()).unwrap_err();
            assert_eq!(e.code, api::ErrorCode::InvalidInput);
            assert!(e.message.contains("empty"), "{}", e.message);
        }
        let e = read_secret_line(&[0xff, 0xfe, b'\n'][..]).unwrap_err();
        assert_eq!(e.code, api::ErrorCode::InvalidInput);
        assert!(!e.message.contains('\u{fffd}'));
    }
}
