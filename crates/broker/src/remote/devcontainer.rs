//! `devcontainer.json` for an agent in a dev container: a bind mount of this broker's agent
//! socket at a fixed path inside, and `remoteEnv` naming it. The token is never written into
//! the file (it is usually committed): `remoteEnv` takes it from the laptop's environment.
//!
//! The file is JSONC; edits go through a concrete syntax tree so the user's comments, order
//! and formatting stay as they were.

use std::path::{Path, PathBuf};

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstObject, CstRootNode};
use serde_json::{Value, json};

use super::{RemoteError, SOCKET_ENV, TOKEN_ENV, validate_path};
use crate::client_setup::{self, SetupError, Written};

/// Where the agent socket's folder is mounted inside the container, and the socket in it. The
/// folder, not the socket file: a bind mount of a file keeps the inode it found, so a socket
/// the broker binds anew after a restart would be invisible until the container restarts.
pub const CONTAINER_DIR: &str = "/run/keycard-broker";
pub const CONTAINER_SOCKET: &str = "/run/keycard-broker/agent.sock";

/// The entries for one project.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// The mount's source: the agent socket's folder (it holds nothing else), under
    /// `${localEnv:HOME}` when it lies in the home folder, so the file works for everyone who
    /// opens the project.
    pub source: String,
    /// The laptop variable `remoteEnv` copies the token from.
    pub token_var: String,
}

impl Mount {
    pub fn new(
        local_socket: &Path,
        home: Option<&Path>,
        client: &str,
    ) -> Result<Mount, RemoteError> {
        let folder = local_socket.parent().unwrap_or(local_socket);
        let absolute = folder.display().to_string();
        validate_path("this broker's agent socket", &absolute)?;
        let source = match home.and_then(|h| folder.strip_prefix(h).ok()) {
            Some(rest) => format!("${{localEnv:HOME}}/{}", rest.display()),
            None => absolute,
        };
        Ok(Mount {
            source,
            token_var: client_setup::codex_env_var(client),
        })
    }

    fn mount(&self) -> Value {
        json!({"source": self.source, "target": CONTAINER_DIR, "type": "bind"})
    }

    fn remote_env(&self) -> [(&'static str, String); 2] {
        [
            (SOCKET_ENV, CONTAINER_SOCKET.to_string()),
            (TOKEN_ENV, format!("${{localEnv:{}}}", self.token_var)),
        ]
    }

    /// The two entries, to paste into `devcontainer.json` by hand.
    pub fn snippet(&self) -> String {
        let env: serde_json::Map<String, Value> = self
            .remote_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        serde_json::to_string_pretty(&json!({"mounts": [self.mount()], "remoteEnv": env}))
            .unwrap_or_default()
    }

    pub fn notes(&self, token: Option<&str>) -> Vec<String> {
        let export = match token {
            Some(token) => format!("export {}={token}", self.token_var),
            None => format!("export {}=<the client's token>", self.token_var),
        };
        vec![
            format!(
                "The container reads the token from this machine's environment: `{export}` in the shell (profile) that starts VS Code or `devcontainer up`, then rebuild the container."
            ),
            "The container's user must have your user id (the default for VS Code on Linux: updateRemoteUserUID), and Docker must share Unix sockets from the host (Linux does; Docker Desktop on macOS does not).".into(),
        ]
    }
}

fn unparseable(path: &Path, reason: impl Into<String>) -> SetupError {
    SetupError::Unparseable {
        path: path.into(),
        format: "a devcontainer.json this command can edit",
        reason: reason.into(),
    }
}

fn input(value: &Value) -> CstInputValue {
    match value {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(a) => CstInputValue::Array(a.iter().map(input).collect()),
        Value::Object(o) => {
            CstInputValue::Object(o.iter().map(|(k, v)| (k.clone(), input(v))).collect())
        }
    }
}

/// Whether a `mounts` element already targets the container socket (object or string form).
fn targets_socket(element: &Value) -> bool {
    match element {
        Value::Object(o) => o.get("target").and_then(Value::as_str) == Some(CONTAINER_DIR),
        Value::String(s) => s
            .split(',')
            .any(|part| matches!(part.split_once('='), Some(("target" | "dst" | "destination", t)) if t == CONTAINER_DIR)),
        _ => false,
    }
}

fn set_prop(object: &CstObject, name: &str, value: CstInputValue) {
    match object.get(name) {
        Some(prop) => prop.set_value(value),
        None => {
            object.append(name, value);
        }
    }
}

/// Puts the mount and the `remoteEnv` entries into `existing` (empty = a new file): an
/// earlier mount at the same target is replaced, everything else is kept, comments included.
pub fn merge(existing: &str, mount: &Mount, path: &Path) -> Result<String, SetupError> {
    let text = if existing.trim().is_empty() {
        "{}\n"
    } else {
        existing
    };
    let root = CstRootNode::parse(text, &ParseOptions::default())
        .map_err(|e| unparseable(path, e.to_string()))?;
    let object = root
        .object_value()
        .ok_or_else(|| unparseable(path, "the top level is not an object"))?;
    let mounts = object
        .array_value_or_create("mounts")
        .ok_or_else(|| unparseable(path, "\"mounts\" is not an array"))?;
    // The first mount at the socket's target is kept when equal, else replaced where it is
    // (formatting around it untouched); any further ones go.
    let ours = mount.mount();
    let mut placed = false;
    for element in mounts.elements() {
        let Some(value) = element.to_serde_value().filter(targets_socket) else {
            continue;
        };
        if placed {
            element.remove();
        } else if value != ours {
            match (element.as_object(), element.as_string_lit()) {
                (Some(o), _) => {
                    o.replace_with(input(&ours));
                }
                (_, Some(s)) => {
                    s.replace_with(input(&ours));
                }
                _ => element.remove(),
            }
        }
        placed = true;
    }
    if !placed {
        mounts.append(input(&ours));
    }
    let env = object
        .object_value_or_create("remoteEnv")
        .ok_or_else(|| unparseable(path, "\"remoteEnv\" is not an object"))?;
    for (name, value) in mount.remote_env() {
        set_prop(&env, name, CstInputValue::String(value));
    }
    Ok(root.to_string())
}

/// `<folder>/.devcontainer/devcontainer.json`.
pub fn default_path(folder: &Path) -> PathBuf {
    folder.join(".devcontainer").join("devcontainer.json")
}

/// Merges into `path` with a backup; the file keeps its mode (it holds no secret and is
/// usually shared in the project's repository).
pub fn write(mount: &Mount, path: &Path) -> Result<Written, SetupError> {
    let mode = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let written = client_setup::rewrite(path, |existing| merge(existing, mount, path))?;
    let mode = mode.or_else(|| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            Some(std::fs::Permissions::from_mode(0o644))
        }
        #[cfg(not(unix))]
        None
    });
    if let Some(mode) = mode {
        std::fs::set_permissions(path, mode).map_err(|e| SetupError::Io {
            path: path.into(),
            reason: e.to_string(),
        })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn mount() -> Mount {
        Mount::new(
            Path::new("/home/me/.local/share/kb/agent.sock"),
            Some(Path::new("/home/me")),
            "devcontainer-web",
        )
        .unwrap()
    }

    fn parse(text: &str) -> Value {
        CstRootNode::parse(text, &ParseOptions::default())
            .unwrap()
            .to_serde_value()
            .unwrap()
    }

    #[test]
    fn the_source_follows_home_and_the_token_stays_out() {
        let m = mount();
        assert_eq!(m.source, "${localEnv:HOME}/.local/share/kb");
        assert_eq!(m.token_var, "KEYCARD_BROKER_TOKEN_DEVCONTAINER_WEB");
        let elsewhere = Mount::new(
            Path::new("/srv/kb/agent.sock"),
            Some(Path::new("/home/me")),
            "x",
        )
        .unwrap();
        assert_eq!(elsewhere.source, "/srv/kb");
        let doc: Value = serde_json::from_str(&m.snippet()).unwrap();
        assert_eq!(doc["mounts"][0]["target"], CONTAINER_DIR);
        assert_eq!(
            doc["remoteEnv"][TOKEN_ENV],
            "${localEnv:KEYCARD_BROKER_TOKEN_DEVCONTAINER_WEB}"
        );
        assert_eq!(doc["remoteEnv"][SOCKET_ENV], CONTAINER_SOCKET);
    }

    #[test]
    fn comments_and_other_entries_survive_and_reruns_change_nothing() {
        let mine = r#"// Project container
{
    "name": "web", // the name
    /* keep me */
    "image": "mcr.microsoft.com/devcontainers/base:bookworm",
    "mounts": [
        "source=/var/cache,target=/cache,type=bind",
        "source=/old,target=/run/keycard-broker,type=bind",
    ],
    "remoteEnv": { "EDITOR": "vim" },
}
"#;
        let path = Path::new("devcontainer.json");
        let once = merge(mine, &mount(), path).unwrap();
        for kept in [
            "// Project container",
            "// the name",
            "/* keep me */",
            "/var/cache",
            "\"EDITOR\": \"vim\"",
        ] {
            assert!(once.contains(kept), "{kept} lost:\n{once}");
        }
        assert!(
            !once.contains("source=/old"),
            "the earlier socket mount is replaced:\n{once}"
        );
        let doc = parse(&once);
        assert_eq!(doc["mounts"].as_array().unwrap().len(), 2);
        assert_eq!(doc["mounts"][1]["source"], mount().source);
        assert_eq!(doc["remoteEnv"]["EDITOR"], "vim");
        assert_eq!(doc["remoteEnv"][SOCKET_ENV], CONTAINER_SOCKET);
        assert_eq!(merge(&once, &mount(), path).unwrap(), once);
        let moved =
            Mount::new(Path::new("/srv/agent/agent.sock"), None, "devcontainer-web").unwrap();
        let again = parse(&merge(&once, &moved, path).unwrap());
        assert_eq!(again["mounts"].as_array().unwrap().len(), 2);
        assert_eq!(again["mounts"][1]["source"], "/srv/agent");
        let fresh = parse(&merge("", &mount(), path).unwrap());
        assert_eq!(fresh["mounts"][0]["target"], CONTAINER_DIR);
    }

    #[test]
    fn what_cannot_be_edited_is_refused() {
        let path = Path::new("devcontainer.json");
        for bad in [
            "{ \"mounts\": \"x\" }",
            "[1]",
            "{ \"remoteEnv\": [] }",
            "{ \"a\": ",
            "{} {}",
        ] {
            assert!(
                matches!(
                    merge(bad, &mount(), path),
                    Err(SetupError::Unparseable { .. })
                ),
                "{bad}"
            );
        }
    }
}
