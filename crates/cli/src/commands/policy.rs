//! The per-agent policy: check it, show the effective rules.

use broker::api::{Reply, Request};

use super::{Ctx, execute};
use crate::args::PolicyCommand;
use crate::output::{self, Fail, expect_reply, say};

pub async fn run(ctx: &Ctx, command: PolicyCommand) -> Result<(), Fail> {
    match command {
        PolicyCommand::Check => {
            let report = expect_reply!(
                execute(ctx, Request::PolicyCheck, false).await?,
                Reply::Policy
            )?;
            output::show(ctx.json, &report, |r| {
                say!(
                    "The policy is valid: {} rules ({}{}).",
                    r.rules,
                    r.file,
                    if r.file_exists {
                        ""
                    } else {
                        " does not exist: consent choices only"
                    }
                );
            })
        }
        PolicyCommand::Show { client } => {
            let request = Request::PolicyShow { client };
            let rules = expect_reply!(execute(ctx, request, false).await?, Reply::Rules)?;
            output::show(ctx.json, &rules, |rules| {
                if rules.is_empty() {
                    say!("No rules: every agent call is refused.");
                }
                for r in rules {
                    say!(
                        "{}  {:?}{}",
                        r.id,
                        r.effect,
                        if r.asks { " (asks you first)" } else { "" }
                    );
                    for line in r.source.lines() {
                        say!("    {line}");
                    }
                }
            })
        }
    }
}
