//! The provider catalog's custom resources.

use broker::api::{Reply, Request};
use serde_json::json;

use super::{Ctx, execute};
use crate::args::ResourcesCommand;
use crate::output::{self, Fail, expect_reply, say};

pub async fn run(ctx: &Ctx, command: ResourcesCommand) -> Result<(), Fail> {
    match command {
        ResourcesCommand::Add {
            resource,
            name,
            api_bases,
            scopes,
        } => {
            let request = Request::ResourcesAdd {
                resource,
                name,
                api_bases,
                scopes: scopes
                    .as_deref()
                    .map(broker::api::split_scopes)
                    .unwrap_or_default(),
            };
            let provider = expect_reply!(execute(ctx, request, false).await?, Reply::Provider)?;
            output::show(ctx.json, &provider, |p| {
                say!(
                    "Added {} ({}); API base {}.",
                    p.name,
                    p.resource,
                    p.api_bases.join(", ")
                );
            })
        }
        ResourcesCommand::List => {
            let reply = execute(ctx, Request::ResourcesList, false).await?;
            let providers = expect_reply!(reply, Reply::Providers)?;
            output::show(ctx.json, &providers, |list| {
                for p in list {
                    say!("{:<18} {:<22} {}", p.slug, p.name, p.resource);
                }
            })
        }
        ResourcesCommand::Remove { resource } => {
            let request = Request::ResourcesRemove {
                resource: resource.clone(),
            };
            output::expect_done(execute(ctx, request, false).await?)?;
            output::show(ctx.json, &json!({"ok": true, "removed": resource}), |_| {
                say!("Removed {resource}.");
            })
        }
    }
}
