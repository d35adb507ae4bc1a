//! The engine's shape, checked on its source text (pure std; no component runs):
//!
//! - every `.rs` file under `src` is short enough to read in one sitting (DESIGN.md: "split a
//!   file into a folder when it grows");
//! - the top-level modules depend on each other in one direction only, so each can be read,
//!   tested and changed knowing only what is below it.
//!
//! Why a source scan rather than a parser crate: the graph needs only module paths, and the
//! engine names another module in two ways only, `crate::x…` and `super::…` (also inside
//! `use` groups). Comments, strings and char literals are dropped first, so a path in a doc
//! comment or an error message is not a dependency. A name re-exported at the root
//! (`crate::BrokerError`) counts as the module it comes from, read from `lib.rs`'s `use`
//! lines; the root itself (`crate::Broker`) is left out of the graph: it depends on every
//! module by design. A `#[path]` file counts as the module its file name says (the one in
//! `upstream` really sits a level deeper), which matters only to a `super::` chain climbing to
//! the root; the engine writes `crate::` for that.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest a source file may be.
const MAX_LINES: usize = 500;

/// Files over [`MAX_LINES`] for now, each with the most lines it may have until it is split.
/// None today; an entry here is a debt with a name.
const LONGER_FOR_NOW: &[(&str, usize)] = &[];

/// Every `.rs` file under `src`, as (path relative to `src` with `/`, contents), sorted.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy();
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((rel.replace('\\', "/"), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

#[test]
fn no_source_file_is_too_long() {
    let files = sources();
    assert!(files.iter().any(|(p, _)| p == "lib.rs"), "src not found");
    let mut too_long = Vec::new();
    for (path, text) in &files {
        let lines = text.lines().count();
        let limit = LONGER_FOR_NOW
            .iter()
            .find(|(p, _)| p == path)
            .map_or(MAX_LINES, |(_, n)| *n);
        if lines > limit {
            too_long.push(format!("{path}: {lines} lines (at most {limit})"));
        }
    }
    assert!(
        too_long.is_empty(),
        "split these into a folder of smaller files:\n  {}",
        too_long.join("\n  ")
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    let files = sources();
    let lib = &files.iter().find(|(p, _)| p == "lib.rs").unwrap().1;
    let graph = module_graph(lib, &files);
    // The scan must see real dependencies, or "no cycle" would prove nothing.
    assert!(
        graph.get("error").is_some_and(|to| to.contains_key("zone")),
        "the scan missed error → zone (BrokerError wraps ZoneError): {graph:?}"
    );
    assert!(
        graph
            .get("grants")
            .is_some_and(|to| to.contains_key("error")),
        "the scan missed grants → error (crate::BrokerError): {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the top-level modules of broker depend on each other in a cycle:\n  {}\nmove the shared plain types into a small module both can use",
            describe(&graph, &cycle)
        );
    }
}

/// The checker itself: it finds a cycle through `super::`, a root re-export and a nested
/// `use` group, and is not fooled by paths in comments, strings or char literals.
#[test]
fn the_scan_finds_cycles_and_ignores_comments_and_strings() {
    let lib = "pub mod a;\npub mod b;\nmod c;\nmod d;\npub use b::Thing;\npub use d::{inner::Renamed as Alias};\npub struct Root;\n";
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let files = vec![
        file("lib.rs", lib),
        file(
            "a.rs",
            "use crate::Thing; // crate::d::X\n/* crate::d::Y /* nested */ crate::d::Z */\n\
             fn f() -> &'static str { let _ = '{'; let _ = '\\''; let _ = r#\"crate::d::\"#; \"crate::d::W\" }\n\
             mod tests { use super::*; }\n",
        ),
        file("b/mod.rs", "mod inner;\npub struct Thing;\n"),
        file(
            "b/inner.rs",
            "use super::Thing;\nmod deep { use super::super::super::c::Z; }\n",
        ),
        file(
            "c.rs",
            "use crate::{Root, a::{F, G}};\nfn g() { crate::Alias; }\n",
        ),
        file(
            "d.rs",
            "pub(crate) fn h() { let _ = (br#\"crate::a::\"#, b'\"', \"crate::a::\"); }\n\
             mod m { pub(super) fn k() {} }\n",
        ),
    ];
    let graph = module_graph(lib, &files);
    let edges = |m: &str| -> Vec<String> {
        graph
            .get(m)
            .map(|to| to.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(edges("a"), ["b"], "comments and literals are not paths");
    assert_eq!(
        edges("b"),
        ["c"],
        "super::super::super from an inline module"
    );
    assert_eq!(
        edges("c"),
        ["a", "d"],
        "a use group, an alias; Root is the root"
    );
    assert!(
        edges("d").is_empty(),
        "pub(crate), pub(super) and byte literals are not paths"
    );
    let cycle = find_cycle(&graph).expect("a → b → c → a");
    assert_eq!(cycle, ["a", "b", "c", "a"]);
    assert!(describe(&graph, &cycle).contains("b/inner.rs"));
    let mut broken = graph.clone();
    broken.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&broken), None, "no cycle without c → a");
}

/// Module → (module it uses → first file that says so).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn module_graph(lib: &str, files: &[(String, String)]) -> Graph {
    let lib = tokens(lib);
    // `mod x;` in lib.rs: the top-level modules.
    let modules: BTreeSet<String> = lib
        .windows(3)
        .filter_map(|w| match w {
            [Tok::Ident(m), Tok::Ident(name), Tok::Sym(';')] if m == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect();
    // `use x::{A, B as C};` in lib.rs: each name the root re-exports, and the module behind it.
    let mut reexports = BTreeMap::new();
    let mut at = 0;
    while let Some(start) = lib[at..].iter().position(|t| *t == Tok::ident("use")) {
        let stmt = &lib[at + start + 1..];
        let end = stmt
            .iter()
            .position(|t| *t == Tok::Sym(';'))
            .unwrap_or(stmt.len());
        let stmt = &stmt[..end];
        let stmt = match stmt {
            [Tok::Ident(s), Tok::PathSep, rest @ ..] if s == "crate" || s == "self" => rest,
            _ => stmt,
        };
        if let Some(Tok::Ident(module)) = stmt.first()
            && modules.contains(module)
        {
            for w in stmt.windows(2) {
                if let [Tok::Ident(name), Tok::Sym(',' | '}')] = w {
                    reexports.insert(name.clone(), module.clone());
                }
            }
            if let Some(Tok::Ident(name)) = stmt.last() {
                reexports.insert(name.clone(), module.clone());
            }
        }
        at += start + 1 + end;
    }
    let top = |name: &str| -> Option<String> {
        if modules.contains(name) {
            Some(name.to_string())
        } else {
            reexports.get(name).cloned()
        }
    };

    let mut graph = Graph::new();
    for (path, text) in files {
        if path == "lib.rs" {
            continue;
        }
        // `a/b/mod.rs` and `a/b.rs` are both module path [a, b].
        let mut file_path: Vec<String> = path
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_string)
            .collect();
        if file_path.last().is_some_and(|l| l == "mod") {
            file_path.pop();
        }
        let from = file_path[0].clone();
        let toks = tokens(text);
        // Inline `mod x { … }` blocks, as (name, brace depth inside them).
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let path_start = i == 0 || toks[i - 1] != Tok::PathSep;
            match &toks[i] {
                Tok::Sym('{') => {
                    depth += 1;
                    if let (Some(Tok::Ident(m)), Some(Tok::Ident(name))) = (
                        i.checked_sub(2).map(|j| &toks[j]),
                        i.checked_sub(1).map(|j| &toks[j]),
                    ) && m == "mod"
                    {
                        inline.push((name.clone(), depth));
                    }
                }
                Tok::Sym('}') => {
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                Tok::Ident(kw) if path_start && (kw == "crate" || kw == "super") => {
                    // Resolve the prefix (`crate::` or `super::super::…`) to a module path.
                    let mut base: Vec<String> = Vec::new();
                    let mut j = i;
                    if kw == "super" {
                        base = file_path.clone();
                        base.extend(inline.iter().map(|(n, _)| n.clone()));
                        while toks.get(j) == Some(&Tok::ident("super"))
                            && toks.get(j + 1) == Some(&Tok::PathSep)
                        {
                            base.pop();
                            j += 2;
                        }
                        if j == i {
                            i += 1;
                            continue; // `pub(super)`
                        }
                    } else if toks.get(j + 1) == Some(&Tok::PathSep) {
                        j += 2;
                    } else {
                        i += 1;
                        continue; // `pub(crate)`
                    }
                    let targets: Vec<String> = match (base.first(), toks.get(j)) {
                        (Some(m), _) => vec![m.clone()],
                        (None, Some(Tok::Ident(name))) => top(name).into_iter().collect(),
                        (None, Some(Tok::Sym('{'))) => group_heads(&toks[j..])
                            .iter()
                            .filter_map(|n| top(n))
                            .collect(),
                        _ => Vec::new(),
                    };
                    for to in targets {
                        if to != from {
                            graph
                                .entry(from.clone())
                                .or_default()
                                .entry(to)
                                .or_insert_with(|| path.clone());
                        }
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    graph
}

/// The first name of each item in a `use` group starting at `{`: `{A, b::C, d::{E}}` → A, b, d.
fn group_heads(toks: &[Tok]) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for t in toks {
        match t {
            Tok::Sym('{') => depth += 1,
            Tok::Sym('}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Sym(',') if depth == 1 => item_start = true,
            Tok::Ident(name) if depth == 1 && item_start => {
                heads.push(name.clone());
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// A cycle as [a, b, …, a], found by depth-first search in name order (so always the same one).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|to| to.keys()) {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

/// `a → b (a/x.rs) → a (b.rs)`: each step with the file that makes it.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut out = cycle[0].clone();
    for pair in cycle.windows(2) {
        let file = &graph[&pair[0]][&pair[1]];
        out.push_str(&format!(" → {} (in {file})", pair[1]));
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Sym(char),
}

impl Tok {
    fn ident(s: &str) -> Tok {
        Tok::Ident(s.to_string())
    }
}

/// Identifiers, `::` and single punctuation of Rust source, with comments, strings (plain, raw,
/// byte) and char literals dropped. Lifetimes (`'a`) are not char literals.
fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    // At a token start, `r` followed by `#`s and `"` opens a raw string: how many `#`s.
    let raw = |i: usize| {
        let hashes = c.get(i + 1..)?.iter().take_while(|&&h| h == '#').count();
        (c.get(i) == Some(&'r') && c.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
    };
    let closes = |i: usize, hashes: usize| {
        c.iter().skip(i).take(hashes).all(|&h| h == '#') && i + hashes <= c.len()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        match c[i] {
            '/' if next == Some('/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            // Byte and C string prefixes: the literal itself is skipped next.
            'b' | 'c' if matches!(next, Some('"' | '\'')) || raw(i + 1).is_some() => i += 1,
            // Raw strings: r"…", r#"…"#.
            'r' if raw(i).is_some() => {
                let hashes = raw(i).unwrap_or(0);
                i += hashes + 2;
                while i < c.len() && !(c[i] == '"' && closes(i + 1, hashes)) {
                    i += 1;
                }
                i += hashes + 1;
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '\'' if next == Some('\\') => {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '\'' if c.get(i + 2) == Some(&'\'') => i += 3,
            ':' if next == Some(':') => {
                out.push(Tok::PathSep);
                i += 2;
            }
            ch if ident(ch) => {
                let start = i;
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            ch if ch.is_whitespace() => i += 1,
            ch => {
                out.push(Tok::Sym(ch));
                i += 1;
            }
        }
    }
    out
}

/// Engine modules a shell (the CLI, the tray app) may name: the API, and the pieces that run
/// the broker in a process (logging, the MCP router and bridge, the control socket). Anything
/// else (vault, zone, grants, db, …) is an engine internal: the shells only wire.
const SHELL_MAY_USE: &[&str] = &["api", "logging", "mcp", "control"];

/// `broker::x` references in a shell's source that name an engine internal, as "file: x".
fn internals_named(path: &str, text: &str) -> Vec<String> {
    let toks = tokens(text);
    let mut named = BTreeSet::new();
    for (i, t) in toks.iter().enumerate() {
        if *t != Tok::ident("broker") || toks.get(i + 1) != Some(&Tok::PathSep) {
            continue;
        }
        let heads = match toks.get(i + 2) {
            Some(Tok::Ident(name)) => vec![name.clone()],
            Some(Tok::Sym('{')) => group_heads(&toks[i + 2..]),
            _ => Vec::new(),
        };
        for head in heads {
            // Capitalised names are the root's re-exports (Broker, Status, …): the API.
            let lower = head.chars().next().is_some_and(|c| c.is_lowercase());
            if lower && !SHELL_MAY_USE.contains(&head.as_str()) {
                named.insert(format!("{path}: broker::{head}"));
            }
        }
    }
    named.into_iter().collect()
}

#[test]
fn shells_name_only_the_engine_api() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    let mut scanned = 0;
    for shell in ["crates/cli/src", "src-tauri/src"] {
        let root = repo.join(shell);
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if path.is_dir() {
                    stack.push(path);
                } else if name.ends_with(".rs") && name != "tests.rs" {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let rel = path.strip_prefix(&repo).unwrap().display().to_string();
                    found.extend(internals_named(&rel, &text));
                    scanned += 1;
                }
            }
        }
    }
    assert!(
        scanned >= 8,
        "the shells' sources were not found ({scanned} files)"
    );
    assert!(
        found.is_empty(),
        "a shell names engine internals; add what it needs to broker::api instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_shell_scan_sees_groups_and_paths() {
    let text = "use broker::{Broker, api, vault::Vault};\nfn f() { broker::zone::split(); }\n// broker::db in a comment\n";
    assert_eq!(
        internals_named("x.rs", text),
        ["x.rs: broker::vault", "x.rs: broker::zone"]
    );
}
