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

    /// Stdio-only clients reach the broker through `keycard-broker stdio`, which reads the
    /// client token from the keychain.
    pub fn uses_bridge(self) -> bool {
        self == Kind::ClaudeDesktop
    }

    /// Whether the client's own documentation says it signs in to remote (HTTP) MCP servers
    /// with OAuth (the MCP authorization spec): such a client gets an entry without a token
    /// and signs in through the broker's consent page. Claude Code (`/mcp` → Authenticate),
    /// Cursor, VS Code and Codex (`codex mcp login`) do; Windsurf's documentation names only
    /// headers for HTTP servers, and Claude Desktop speaks stdio.
    pub fn supports_oauth(self) -> bool {
        matches!(
            self,
            Kind::ClaudeCode | Kind::Cursor | Kind::Vscode | Kind::Codex
        )
    }

    /// The client's product name, as the window shows it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::ClaudeCode => "Claude Code",
            Kind::Cursor => "Cursor",
            Kind::Vscode => "VS Code",
            Kind::Codex => "Codex",
            Kind::Windsurf => "Windsurf",
            Kind::ClaudeDesktop => "Claude Desktop",
        }
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
    /// `None`: the client signs in with OAuth, so its entry holds no credential.
    token: Option<String>,
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
    pub fn new(kind: Kind, client: &str, url: &str, token: Option<&str>, exe: &str) -> Snippet {
        Snippet {
            kind,
            url: url.into(),
            token: token.map(str::to_string),
            exe: exe.into(),
            client: client.into(),
        }
    }

    /// Whether the entry leaves sign-in to the client (OAuth) instead of holding a token.
    pub fn oauth(&self) -> bool {
        self.token.is_none()
    }

    /// Adds the bearer header when the entry holds a static token.
    fn with_bearer(&self, mut entry: Value) -> Value {
        if let (Some(token), Some(map)) = (&self.token, entry.as_object_mut()) {
            map.insert(
                "headers".into(),
                json!({ "Authorization": format!("Bearer {token}") }),
            );
        }
        entry
    }

    /// The (section, entry) this client's JSON file gets.
    fn json_entry(&self) -> (&'static str, Value) {
        match self.kind {
            Kind::ClaudeCode => (
                "mcpServers",
                self.with_bearer(json!({"type": "http", "url": self.url})),
            ),
            Kind::Cursor => ("mcpServers", self.with_bearer(json!({"url": self.url}))),
            Kind::Vscode => (
                "servers",
                self.with_bearer(json!({"type": "http", "url": self.url})),
            ),
            Kind::Windsurf => (
                "mcpServers",
                self.with_bearer(json!({"serverUrl": self.url})),
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
            Kind::Codex if self.oauth() => {
                format!("[mcp_servers.{SERVER_NAME}]\nurl = \"{}\"\n", self.url)
            }
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
        let Some(token) = &self.token else {
            let how = match self.kind {
                Kind::ClaudeCode => format!(
                    "Or add it with: claude mcp add --transport http {SERVER_NAME} {}. Then run /mcp in Claude Code and choose Authenticate: ",
                    self.url
                ),
                Kind::Codex => format!("Then run: codex mcp login {SERVER_NAME}. "),
                _ => format!(
                    "{} asks you to sign in when it first connects: ",
                    self.kind.label()
                ),
            };
            return Some(format!(
                "{how}your browser opens Keycard Broker's consent page, where you choose what it may use. No token is stored in its config."
            ));
        };
        match self.kind {
            Kind::Codex => Some(format!(
                "Codex reads the token from the environment: export {}={}",
                codex_env_var(&self.client),
                token
            )),
            Kind::ClaudeCode => Some(format!(
                "Or add it with: claude mcp add --transport http {SERVER_NAME} {} --header \"Authorization: Bearer {}\"",
                self.url, token
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
                if !self.oauth() {
                    entry["bearer_token_env_var"] = toml_edit::value(codex_env_var(&self.client));
                }
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

/// What [`merge_into`] did.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// A copy of the file as it was, when one existed.
    pub backup: Option<PathBuf>,
    /// The git work tree the file lies in, if any: a token written there could be committed.
    pub git_work_tree: Option<PathBuf>,
}

impl Written {
    /// A warning for the user when the file could end up in a repository.
    pub fn warning(&self) -> Option<String> {
        self.git_work_tree.as_ref().map(|root| {
            format!(
                "warning: this file is inside the git work tree {}; make sure it is ignored (.gitignore) so the client token is never committed",
                root.display()
            )
        })
    }
}

/// Merges the snippet into `path`, keeping a backup of what was there. Files are created
/// afresh (`O_EXCL`, mode 0600) and renamed into place: a file or symlink planted at a
/// temporary or backup name never receives the token.
pub fn merge_into(snippet: &Snippet, path: &Path) -> Result<Written, SetupError> {
    rewrite(path, |existing| snippet.merge(existing, path))
}

/// Reads `path` (empty when missing), lets `merge` compute the new text, and writes it the way
/// [`merge_into`] does: a backup of what was there, a fresh 0600 file renamed into place.
pub fn rewrite(
    path: &Path,
    merge: impl FnOnce(&str) -> Result<String, SetupError>,
) -> Result<Written, SetupError> {
    let io = |e: std::io::Error| SetupError::Io {
        path: path.into(),
        reason: e.to_string(),
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let merged = merge(existing.as_deref().unwrap_or(""))?;
    let dir_of = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if existing.as_deref() == Some(merged.as_str()) {
        // Nothing changes: no backup, no write.
        return Ok(Written {
            backup: None,
            git_work_tree: git_work_tree(&dir_of(path)),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let backup = match &existing {
        Some(text) => {
            let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
            let mut file = tempfile::Builder::new()
                .prefix(&format!("{name}.bak-{stamp}-"))
                .tempfile_in(&dir)
                .map_err(io)?;
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
            let (_, kept) = file.keep().map_err(|e| io(e.error))?;
            Some(kept)
        }
        None => None,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.keycard-"))
        .tempfile_in(&dir)
        .map_err(io)?;
    std::io::Write::write_all(&mut tmp, merged.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    // rename(2) replaces a symlink at `path` itself; it never writes through it.
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(Written {
        backup,
        git_work_tree: git_work_tree(&dir),
    })
}

/// The nearest ancestor of `dir` holding `.git` (a directory, or a file for worktrees).
fn git_work_tree(dir: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    start
        .ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

#[cfg(test)]
#[path = "client_setup_tests.rs"]
mod tests;
