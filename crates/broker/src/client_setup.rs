//! Config snippets that point agent clients at the loopback MCP endpoint (PROTOCOL.md §2),
//! and merging them into the client's own file: everything already there is kept, the old
//! file is backed up, and the result is written atomically, readable by the user only
//! (it holds a bearer token).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Entry name under which the broker appears in a client's config.
pub const SERVER_NAME: &str = "keycard-broker";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClaudeCode,
    Cursor,
    Vscode,
    Codex,
    Windsurf,
    ClaudeDesktop,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::ClaudeCode,
        Kind::Cursor,
        Kind::Vscode,
        Kind::Codex,
        Kind::Windsurf,
        Kind::ClaudeDesktop,
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "claude-code" => Kind::ClaudeCode,
            "cursor" => Kind::Cursor,
            "vscode" => Kind::Vscode,
            "codex" => Kind::Codex,
            "windsurf" => Kind::Windsurf,
            "claude-desktop" => Kind::ClaudeDesktop,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ClaudeCode => "claude-code",
            Kind::Cursor => "cursor",
            Kind::Vscode => "vscode",
            Kind::Codex => "codex",
            Kind::Windsurf => "windsurf",
            Kind::ClaudeDesktop => "claude-desktop",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot find the home directory")]
    NoHome,
    #[error("{path} is not valid {format}; fix or move it, then try again ({reason})")]
    Unparseable {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// One client's configuration entry.
#[derive(Debug, Clone)]
pub struct Snippet {
    pub kind: Kind,
    url: String,
    token: String,
    exe: String,
    client: String,
}

/// Name of the environment variable Codex reads the token from.
pub fn codex_env_var(client: &str) -> String {
    let upper: String = client
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("KEYCARD_BROKER_TOKEN_{upper}")
}

impl Snippet {
    pub fn new(kind: Kind, client: &str, url: &str, token: &str, exe: &str) -> Snippet {
        Snippet {
            kind,
            url: url.into(),
            token: token.into(),
            exe: exe.into(),
            client: client.into(),
        }
    }

    fn bearer(&self) -> Value {
        json!({ "Authorization": format!("Bearer {}", self.token) })
    }

    /// The (section, entry) this client's JSON file gets.
    fn json_entry(&self) -> (&'static str, Value) {
        match self.kind {
            Kind::ClaudeCode => (
                "mcpServers",
                json!({"type": "http", "url": self.url, "headers": self.bearer()}),
            ),
            Kind::Cursor => (
                "mcpServers",
                json!({"url": self.url, "headers": self.bearer()}),
            ),
            Kind::Vscode => (
                "servers",
                json!({"type": "http", "url": self.url, "headers": self.bearer()}),
            ),
            Kind::Windsurf => (
                "mcpServers",
                json!({"serverUrl": self.url, "headers": self.bearer()}),
            ),
            Kind::ClaudeDesktop => (
                "mcpServers",
                json!({"command": self.exe, "args": ["stdio", "--client", self.client]}),
            ),
            // Codex is TOML; see `render`.
            Kind::Codex => ("mcp_servers", json!({})),
        }
    }

    /// The snippet as text, in the client's own format.
    pub fn render(&self) -> String {
        match self.kind {
            Kind::Codex => format!(
                "[mcp_servers.{SERVER_NAME}]\nurl = \"{}\"\nbearer_token_env_var = \"{}\"\n",
                self.url,
                codex_env_var(&self.client)
            ),
            _ => {
                let (section, entry) = self.json_entry();
                let doc = json!({ section: { SERVER_NAME: entry } });
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            }
        }
    }

    /// What else the user has to do, if anything.
    pub fn note(&self) -> Option<String> {
        match self.kind {
            Kind::Codex => Some(format!(
                "Codex reads the token from the environment: export {}={}",
                codex_env_var(&self.client),
                self.token
            )),
            Kind::ClaudeCode => Some(format!(
                "Or add it with: claude mcp add --transport http {SERVER_NAME} {} --header \"Authorization: Bearer {}\"",
                self.url, self.token
            )),
            Kind::ClaudeDesktop => Some(
                "Claude Desktop speaks stdio: it starts `keycard-broker stdio`, which reads the token from the keychain. Keep `keycard-broker serve` (or the tray app) running.".into(),
            ),
            _ => None,
        }
    }

    /// Merges the entry into `existing` text (empty = new file).
    pub fn merge(&self, existing: &str, path: &Path) -> Result<String, SetupError> {
        match self.kind {
            Kind::Codex => {
                let mut doc: toml_edit::DocumentMut =
                    existing.parse().map_err(|e: toml_edit::TomlError| {
                        SetupError::Unparseable {
                            path: path.into(),
                            format: "TOML",
                            reason: e.message().to_string(),
                        }
                    })?;
                let servers = doc
                    .entry("mcp_servers")
                    .or_insert(toml_edit::table())
                    .as_table_mut()
                    .ok_or_else(|| SetupError::Unparseable {
                        path: path.into(),
                        format: "a Codex config",
                        reason: "mcp_servers is not a table".into(),
                    })?;
                servers.set_implicit(true);
                let mut entry = toml_edit::Table::new();
                entry["url"] = toml_edit::value(self.url.clone());
                entry["bearer_token_env_var"] = toml_edit::value(codex_env_var(&self.client));
                servers.insert(SERVER_NAME, toml_edit::Item::Table(entry));
                Ok(doc.to_string())
            }
            _ => {
                let mut doc: Value = if existing.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(existing).map_err(|e| SetupError::Unparseable {
                        path: path.into(),
                        format: "JSON",
                        reason: e.to_string(),
                    })?
                };
                let (section, entry) = self.json_entry();
                let root = doc.as_object_mut().ok_or_else(|| SetupError::Unparseable {
                    path: path.into(),
                    format: "a JSON object",
                    reason: "the top level is not an object".into(),
                })?;
                let servers = root.entry(section).or_insert_with(|| json!({}));
                let servers = servers
                    .as_object_mut()
                    .ok_or_else(|| SetupError::Unparseable {
                        path: path.into(),
                        format: "an MCP config",
                        reason: format!("{section} is not an object"),
                    })?;
                servers.insert(SERVER_NAME.into(), entry);
                Ok(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n")
            }
        }
    }
}

/// The client's default config file.
pub fn default_path(kind: Kind) -> Result<PathBuf, SetupError> {
    let base = directories::BaseDirs::new().ok_or(SetupError::NoHome)?;
    let home = base.home_dir();
    Ok(match kind {
        Kind::ClaudeCode => home.join(".claude.json"),
        Kind::Cursor => home.join(".cursor/mcp.json"),
        Kind::Vscode => base.config_dir().join("Code/User/mcp.json"),
        Kind::Codex => home.join(".codex/config.toml"),
        Kind::Windsurf => home.join(".codeium/windsurf/mcp_config.json"),
        Kind::ClaudeDesktop => base.config_dir().join("Claude/claude_desktop_config.json"),
    })
}

/// Merges the snippet into `path`; returns the backup's path when a file existed.
pub fn merge_into(snippet: &Snippet, path: &Path) -> Result<Option<PathBuf>, SetupError> {
    let io = |e: std::io::Error| SetupError::Io {
        path: path.into(),
        reason: e.to_string(),
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let merged = snippet.merge(existing.as_deref().unwrap_or(""), path)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let backup = match &existing {
        Some(text) => {
            let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".bak-{stamp}"));
            let backup = PathBuf::from(name);
            crate::config::write_private(&backup, text.as_bytes()).map_err(io)?;
            Some(backup)
        }
        None => None,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".keycard-tmp");
    let tmp = PathBuf::from(tmp);
    crate::config::write_private(&tmp, merged.as_bytes()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_merges_and_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        for kind in Kind::ALL {
            let path = dir.path().join(format!("{}.cfg", kind.as_str()));
            let existing = if kind == Kind::Codex {
                "# mine\nmodel = \"o3\"\n[mcp_servers.other]\nurl = \"http://x\"\n".to_string()
            } else {
                r#"{"theme":"dark","mcpServers":{"other":{"url":"http://x"}},"servers":{"other":{}}}"#.to_string()
            };
            std::fs::write(&path, &existing).unwrap();
            let s = Snippet::new(
                kind,
                "agent-1",
                "http://127.0.0.1:8937/mcp",
                "kcb_tok",
                "/bin/kb",
            );
            let backup = merge_into(&s, &path).unwrap().unwrap();
            assert_eq!(std::fs::read_to_string(backup).unwrap(), existing);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("other"), "{kind:?} kept the other server");
            // Merging twice is idempotent (one entry).
            merge_into(&s, &path).unwrap();
            let again = std::fs::read_to_string(&path).unwrap();
            assert_eq!(again.matches(SERVER_NAME).count(), 1, "{kind:?}: {again}");
            if kind == Kind::Codex {
                assert!(again.contains("# mine") && again.contains("model = \"o3\""));
                assert!(again.contains("bearer_token_env_var = \"KEYCARD_BROKER_TOKEN_AGENT_1\""));
                assert!(
                    !again.contains("kcb_tok"),
                    "Codex gets the token from the environment"
                );
            } else {
                let v: Value = serde_json::from_str(&again).unwrap();
                assert_eq!(v["theme"], "dark");
                let section = if kind == Kind::Vscode {
                    "servers"
                } else {
                    "mcpServers"
                };
                let entry = &v[section][SERVER_NAME];
                match kind {
                    Kind::ClaudeDesktop => {
                        assert_eq!(entry["args"], json!(["stdio", "--client", "agent-1"]));
                        assert!(!again.contains("kcb_tok"), "the bridge reads the keychain");
                    }
                    Kind::Windsurf => assert_eq!(entry["serverUrl"], "http://127.0.0.1:8937/mcp"),
                    _ => assert_eq!(entry["headers"]["Authorization"], "Bearer kcb_tok"),
                }
                if matches!(kind, Kind::ClaudeCode | Kind::Vscode) {
                    assert_eq!(entry["type"], "http");
                }
            }
        }
    }

    #[test]
    fn unparseable_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp.json");
        std::fs::write(&path, "{ not json").unwrap();
        let s = Snippet::new(Kind::Cursor, "a", "http://127.0.0.1:1/mcp", "t", "kb");
        assert!(matches!(
            merge_into(&s, &path),
            Err(SetupError::Unparseable { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    }
}
