//! What agents did, newest first; or every matching record exported to a file.

use broker::api::{Failure, Reply, Request};

use super::{Ctx, execute};
use crate::args::AuditArgs;
use crate::output::{self, Fail, expect_reply, say};

pub async fn run(ctx: &Ctx, args: AuditArgs) -> Result<(), Fail> {
    let AuditArgs {
        client,
        resource,
        outcome,
        since,
        limit,
        export,
        to,
    } = args;
    if let Some(format) = export {
        // The running broker writes the file: it must not depend on that process's folder.
        let to = std::path::absolute(to.unwrap_or_else(|| ".".into()))
            .map_err(|e| Failure::invalid(format!("export destination: {e}")))?;
        let to = to
            .to_str()
            .ok_or_else(|| Failure::invalid("the export destination is not valid UTF-8"))?
            .to_string();
        let request = Request::ExportActivity {
            client,
            resource,
            outcome,
            since,
            format,
            to,
        };
        let exported = expect_reply!(execute(ctx, request, false).await?, Reply::Exported)?;
        return output::show(ctx.json, &exported, |e| {
            say!("Exported {} records to {}", e.records, e.path);
        });
    }
    let request = Request::Audit {
        client,
        resource,
        outcome,
        since,
        limit,
    };
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
