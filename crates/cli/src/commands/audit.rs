//! What agents did, newest first.

use broker::api::{Reply, Request};

use super::{Ctx, execute};
use crate::output::{self, Fail, expect_reply, say};

pub async fn run(ctx: &Ctx, request: Request) -> Result<(), Fail> {
    let records = expect_reply!(execute(ctx, request, false).await?, Reply::Activity)?;
    output::show(ctx.json, &records, |records| {
        if records.is_empty() {
            say!("No activity yet.");
        }
        for r in records {
            say!(
                "{}  {:<14} {:<16} {:<7} {:<28} {:>4} {:>5}ms {}",
                r.at.format("%Y-%m-%d %H:%M:%S"),
                r.client.as_deref().unwrap_or("-"),
                r.kind,
                r.method.as_deref().unwrap_or(""),
                format!(
                    "{}{}",
                    r.host.as_deref().unwrap_or(""),
                    r.path.as_deref().unwrap_or("")
                ),
                r.status.map(|s| s.to_string()).unwrap_or_default(),
                r.latency_ms,
                r.outcome
            );
        }
    })
}
