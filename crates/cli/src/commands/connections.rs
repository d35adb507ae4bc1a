//! Connections to providers: connect and reconnect (a consent round), check, revoke.

use broker::api::{Reply, Request};

use super::{Ctx, execute};
use crate::args::ResourceRoundArgs;
use crate::output::{self, Fail, expect_reply, say};

/// `connect` and `reconnect` alike: a consent round for the provider.
pub async fn connect(ctx: &Ctx, args: ResourceRoundArgs) -> Result<(), Fail> {
    let request = Request::Connect {
        resource: args.resource,
        timeout_secs: args.round.timeout,
    };
    let reply = execute(ctx, request, args.round.no_browser).await?;
    let provider = expect_reply!(reply, Reply::Provider)?;
    output::show(ctx.json, &provider, |p| {
        say!("Connected {} ({}).", p.name, p.resource);
    })
}

pub async fn check(ctx: &Ctx, resource: String) -> Result<(), Fail> {
    let reply = execute(ctx, Request::Check { resource }, false).await?;
    let info = expect_reply!(reply, Reply::Token)?;
    output::show(ctx.json, &info, |info| {
        say!(
            "{} works: token with scopes [{}], valid {} s more.",
            info.name,
            info.scopes.join(" "),
            info.expires_in_secs
        );
    })
}

pub async fn revoke(ctx: &Ctx, resource: String) -> Result<(), Fail> {
    let reply = execute(ctx, Request::Revoke { resource }, false).await?;
    let provider = expect_reply!(reply, Reply::Provider)?;
    output::show(ctx.json, &provider, |p| {
        say!(
            "Revoked {}: the broker forgot its credentials and refuses it until you connect again. \
             The zone's delegated grant itself is removed in the Keycard console.",
            p.name
        );
    })
}
