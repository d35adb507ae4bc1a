//! What /proc says of the app and its WebKit processes: the process tree, PSS, and context
//! switches per thread.

use super::*;

/// Every descendant of `pid`.
pub(super) fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                found.push(k);
                todo.push(k);
            }
        }
    }
    found
}

/// The program name of a process (its argv[0]'s last component).
pub(super) fn name(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let first = c.split(|b| *b == 0).next()?.to_vec();
            let first = String::from_utf8_lossy(&first).into_owned();
            Path::new(&first)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| format!("pid {pid}"))
}

pub(super) fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// PSS of the app and each descendant that is alive.
pub(super) fn pss(app: u32) -> Vec<Pss> {
    std::iter::once(app)
        .chain(descendants(app))
        .filter(|p| procfs::alive(*p))
        .filter_map(|p| {
            Some(Pss {
                name: name(p),
                kib: pss_kib(p)?,
            })
        })
        .collect()
}

pub(super) fn webkit_web(app: u32) -> Vec<u32> {
    descendants(app)
        .into_iter()
        .filter(|p| procfs::alive(*p) && name(*p) == "WebKitWebProcess")
        .collect()
}

/// (process name, thread name) → voluntary + involuntary context switches, per thread id.
pub(super) fn switches(app: u32) -> BTreeMap<(u32, u32), (String, String, u64)> {
    let mut out = BTreeMap::new();
    for pid in std::iter::once(app).chain(descendants(app)) {
        let process = name(pid);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let field = |f: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(f))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let thread = std::fs::read_to_string(task.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            let n = field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:");
            out.insert((pid, tid), (process.clone(), thread, n));
        }
    }
    out
}
