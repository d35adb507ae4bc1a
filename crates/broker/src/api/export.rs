//! Activity export: the records a filter selects, as CSV or JSON, written to a file the user
//! chose (the CLI's `--to`, the window's Downloads folder). One renderer for every shell, so
//! a spreadsheet opened from either gets the same columns and the same formula guard.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Failure;
use crate::activity::AuditRecord;
use crate::error::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Csv,
    Json,
}

impl ExportFormat {
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
        }
    }
}

/// Where an export went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Exported {
    pub path: String,
    pub records: u64,
}

/// The columns, in order; the same names as the JSON fields.
const COLUMNS: [&str; 11] = [
    "at",
    "client",
    "kind",
    "resource",
    "method",
    "host",
    "path",
    "status",
    "latency_ms",
    "outcome",
    "detail",
];

/// RFC 4180 CSV with CRLF line ends.
pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in records {
        let cells = [
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            r.client.clone().unwrap_or_default(),
            r.kind.to_string(),
            r.resource.clone().unwrap_or_default(),
            r.method.clone().unwrap_or_default(),
            r.host.clone().unwrap_or_default(),
            r.path.clone().unwrap_or_default(),
            r.status.map(|s| s.to_string()).unwrap_or_default(),
            r.latency_ms.to_string(),
            r.outcome.to_string(),
            r.detail.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// A cell an agent influenced (a path, a detail) that starts like a spreadsheet formula is
/// kept as text with a leading quote; quotes, commas and line breaks are quoted.
fn csv_cell(value: &str) -> String {
    let mut cell = String::with_capacity(value.len() + 2);
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.push('\'');
    }
    cell.push_str(value);
    if cell.contains(['"', ',', '\r', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// Renders `records` and writes them to `to`: into a folder under a dated name, or to a file
/// path that does not exist yet. Never overwrites; the file is readable by the user only.
pub fn write(
    records: &[AuditRecord],
    format: ExportFormat,
    to: &Path,
) -> Result<Exported, Failure> {
    let text = match format {
        ExportFormat::Csv => to_csv(records),
        ExportFormat::Json => serde_json::to_string_pretty(records)
            .map(|mut t| {
                t.push('\n');
                t
            })
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("cannot render JSON: {e}")))?,
    };
    let (mut file, path) = create(to, format)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_failure(&path, &e))?;
    Ok(Exported {
        path: path.display().to_string(),
        records: records.len() as u64,
    })
}

/// Opens the new file: `to` itself, or `keycard-broker-activity-<time>[-n].<ext>` in the
/// folder `to`.
fn create(to: &Path, format: ExportFormat) -> Result<(std::fs::File, PathBuf), Failure> {
    if to.as_os_str().is_empty() {
        return Err(Failure::invalid("no export destination given"));
    }
    if !to.is_dir() {
        return open_new(to).map(|f| (f, to.to_path_buf())).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Failure::new(
                    ErrorCode::AlreadyExists,
                    format!("{} already exists", to.display()),
                )
            } else {
                io_failure(to, &e)
            }
        });
    }
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    for n in 0..100u32 {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = to.join(format!(
            "keycard-broker-activity-{stamp}{suffix}.{}",
            format.extension()
        ));
        match open_new(&path) {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_failure(&path, &e)),
        }
    }
    Err(Failure::new(
        ErrorCode::AlreadyExists,
        format!("too many exports named {stamp} in {}", to.display()),
    ))
}

fn open_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn io_failure(path: &Path, e: &std::io::Error) -> Failure {
    let code = if e.raw_os_error() == Some(28) {
        ErrorCode::DiskFull
    } else if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    ) {
        ErrorCode::InvalidInput
    } else {
        ErrorCode::Storage
    };
    Failure::new(code, format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::{ActivityKind, Outcome};

    fn record(path: &str, detail: &str) -> AuditRecord {
        let mut r = AuditRecord::new(ActivityKind::CallApi, Some("cursor"));
        r.path = Some(path.into());
        r.detail = Some(detail.into());
        r.status = Some(200);
        r.outcome = Outcome::UpstreamError;
        r
    }

    #[test]
    fn csv_quotes_and_keeps_formulas_as_text() {
        let csv = to_csv(&[
            record("/a,b", "=HYPERLINK(\"x\")"),
            record("-1", "line\nbreak"),
        ]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert!(lines[1].contains(",\"/a,b\","), "{}", lines[1]);
        assert!(
            lines[1].ends_with(",upstream_error,\"'=HYPERLINK(\"\"x\"\")\""),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains(",'-1,"), "{}", lines[2]);
        assert!(lines[2].ends_with(",\"line\nbreak\""), "{}", lines[2]);
        assert_eq!(lines[3], "", "records end with CRLF");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
    }

    #[test]
    fn writes_a_new_file_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![record("/x", "d")];
        let a = write(&records, ExportFormat::Json, dir.path()).unwrap();
        let b = write(&records, ExportFormat::Json, dir.path()).unwrap();
        assert_ne!(
            a.path, b.path,
            "a second export in the same second gets its own name"
        );
        assert_eq!(a.records, 1);
        let back: Vec<AuditRecord> =
            serde_json::from_str(&std::fs::read_to_string(&a.path).unwrap()).unwrap();
        assert_eq!(back, records);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let named = dir.path().join("mine.csv");
        write(&records, ExportFormat::Csv, &named).unwrap();
        let again = write(&records, ExportFormat::Csv, &named).unwrap_err();
        assert_eq!(again.code, ErrorCode::AlreadyExists);
        assert!(std::fs::read_to_string(&named).unwrap().contains("/x"));
        let missing = write(
            &records,
            ExportFormat::Csv,
            &dir.path().join("no/such/x.csv"),
        );
        assert_eq!(missing.unwrap_err().code, ErrorCode::InvalidInput);
        assert_eq!(
            write(&records, ExportFormat::Csv, Path::new(""))
                .unwrap_err()
                .code,
            ErrorCode::InvalidInput
        );
    }
}
