//! Calls waiting for the user: list, approve (once or for an hour), deny. Only the serving
//! broker holds them.

use broker::api::{DecidedBy, Reply, Request, Verdict};

use super::{Ctx, running};
use crate::output::{self, Fail, expect_reply, say};

pub async fn list(ctx: &Ctx) -> Result<(), Fail> {
    let pending = expect_reply!(running(ctx, Request::Approvals).await?, Reply::Approvals)?;
    output::show(ctx.json, &pending, |calls| {
        if calls.is_empty() {
            say!("Nothing is waiting for your approval.");
        }
        for c in calls {
            say!(
                "{}  {} wants {} {}  ({}; asked {}, expires {})",
                c.id,
                c.client_name,
                c.method,
                c.url,
                c.rule,
                c.asked_at.format("%H:%M:%S"),
                c.expires_at.format("%H:%M:%S")
            );
            if let Some(body) = &c.body_preview {
                for line in body.lines() {
                    say!("    {line}");
                }
            }
        }
    })
}

pub async fn approve(ctx: &Ctx, id: String, for_an_hour: bool) -> Result<(), Fail> {
    let verdict = if for_an_hour {
        Verdict::AllowForAnHour
    } else {
        Verdict::AllowOnce
    };
    decide(ctx, id, verdict).await
}

pub async fn deny(ctx: &Ctx, id: String) -> Result<(), Fail> {
    decide(ctx, id, Verdict::Deny).await
}

async fn decide(ctx: &Ctx, id: String, verdict: Verdict) -> Result<(), Fail> {
    let request = Request::Decide {
        id,
        verdict,
        by: DecidedBy::Cli,
    };
    let call = expect_reply!(running(ctx, request).await?, Reply::Decided)?;
    output::show(ctx.json, &call, |c| {
        let what = match verdict {
            Verdict::AllowOnce => "Allowed once",
            Verdict::AllowForAnHour => "Allowed for an hour",
            Verdict::Deny => "Denied",
        };
        say!(
            "{what}: {} {} {} ({})",
            c.client_name,
            c.method,
            c.url,
            c.id
        );
    })
}
