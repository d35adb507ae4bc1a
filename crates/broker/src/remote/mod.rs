//! Agents on other machines (an SSH host, a dev container) reaching this laptop's broker
//! through its agent socket: the forwarding config they need and the MCP config for their end.
//! Only text and file merges live here; the client token comes from `clients` (the API wires
//! the two, see `api::remote`).

pub mod devcontainer;
pub mod ssh;

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::client_setup::SERVER_NAME;

/// The variable the remote end's `keycard-broker stdio --token-env` reads: remote hosts have
/// no keychain.
pub const TOKEN_ENV: &str = "KEYCARD_BROKER_TOKEN";
/// Where the remote end finds the socket when no `--socket` is given.
pub const SOCKET_ENV: &str = "KEYCARD_BROKER_SOCKET";
/// The loopback port the remote `bridge` listens on for HTTP-only clients.
pub const BRIDGE_PORT: u16 = 8937;

/// The broker's agent socket in its data folder.
pub fn agent_socket(data_dir: &Path) -> PathBuf {
    crate::mcp::agent_socket_path(data_dir)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "invalid host {0:?}: use a host name or address from your ssh config (letters, digits, '.', '-', '_', ':'), not an option or a pattern"
    )]
    BadHost(String),
    #[error("invalid remote user {0:?}: use letters, digits, '.', '_' or '-'")]
    BadUser(String),
    #[error("{what} {path:?} cannot be used: {why}")]
    BadPath {
        what: &'static str,
        path: String,
        why: &'static str,
    },
}

/// A host as typed on the `ssh` command line: one name, never an option (`-oProxyCommand=…`),
/// a pattern, a second keyword or a comment in the config line it lands on.
pub fn validate_host(host: &str) -> Result<(), RemoteError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(RemoteError::BadHost(host.into()))
    }
}

pub fn validate_user(user: &str) -> Result<(), RemoteError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(RemoteError::BadUser(user.into()))
    }
}

/// A socket path that goes into ssh_config or JSON as it is: absolute, and free of what ssh
/// would expand (`%` tokens, `${VAR}`), end quoting (`"`) or read as a new line.
pub fn validate_path(what: &'static str, path: &str) -> Result<(), RemoteError> {
    let bad = |why| {
        Err(RemoteError::BadPath {
            what,
            path: path.into(),
            why,
        })
    };
    if !path.starts_with('/') {
        return bad("it must be an absolute path");
    }
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, '"' | '%' | '$' | '\\'))
    {
        return bad("it must not hold quotes, '%', '$', backslashes or control characters");
    }
    // sun_path holds 108 bytes on Linux, 104 on macOS.
    if path.len() > 100 {
        return bad("a Unix socket path must be shorter than 100 bytes");
    }
    Ok(())
}

/// A client name made of `prefix-` and what is left of `raw` in the characters client names
/// allow, at most 64 in all.
pub fn client_name(prefix: &str, raw: &str) -> String {
    let tail: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let tail = tail.trim_matches('-');
    let tail = if tail.is_empty() { "project" } else { tail };
    let mut name = format!("{prefix}-{tail}");
    name.truncate(64);
    name
}

/// What an agent on the remote end puts in its MCP config.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteMcp {
    /// For stdio clients: `keycard-broker stdio --socket … --token-env …`.
    pub stdio: String,
    /// For clients that speak only HTTP: start this on the remote end (it holds no token:
    /// anyone on the host can reach its port)…
    pub bridge_command: String,
    /// …and point the client here, with its own bearer.
    pub bridge: String,
}

/// `token`: the value for the entry's `env` (the token, or a placeholder when it was shown
/// before); `None` when the environment already holds it (a dev container's `remoteEnv`).
pub fn remote_mcp(socket: &str, token: Option<&str>) -> RemoteMcp {
    let mut stdio = json!({
        "command": "keycard-broker",
        "args": ["stdio", "--socket", socket, "--token-env", TOKEN_ENV],
    });
    if let Some(token) = token {
        stdio["env"] = json!({ TOKEN_ENV: token });
    }
    let render = |entry| {
        serde_json::to_string_pretty(&json!({"mcpServers": {SERVER_NAME: entry}}))
            .unwrap_or_default()
    };
    let bridge_command =
        format!("keycard-broker bridge --listen 127.0.0.1:{BRIDGE_PORT} --socket {socket}");
    // Where the environment holds the token (a dev container's remoteEnv), the entry names it.
    let bearer = match token {
        Some(token) => format!("Bearer {token}"),
        None => format!("Bearer ${{{TOKEN_ENV}}}"),
    };
    RemoteMcp {
        stdio: render(stdio),
        bridge_command,
        bridge: render(json!({
            "type": "http",
            "url": format!("http://127.0.0.1:{BRIDGE_PORT}/mcp"),
            "headers": {"Authorization": bearer},
        })),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn hosts_are_one_plain_name() {
        for good in [
            "devbox",
            "dev-box.example.com",
            "10.0.0.7",
            "fe80::1",
            "my_host",
        ] {
            validate_host(good).unwrap();
        }
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/x",
            "-J",
            "dev box",
            "dev\nbox",
            "devbox\r",
            "dev\tbox",
            "\"devbox\"",
            "'devbox'",
            "devbox#x",
            "*.corp",
            "dev?",
            "!devbox",
            "a,b",
            "user@devbox",
            "dev%h",
            "${HOME}",
            ".hidden",
            &"a".repeat(254),
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn users_and_paths_are_checked() {
        validate_user("alice").unwrap();
        validate_user("ci.bot-2").unwrap();
        for bad in ["", "-l", "a b", "a\"b", "ali$ce"] {
            assert!(validate_user(bad).is_err(), "{bad:?}");
        }
        validate_path("p", "/home/alice/.keycard-broker.sock").unwrap();
        validate_path("p", "/Users/a/Library/Application Support/x/agent.sock").unwrap();
        for bad in [
            "relative.sock",
            "~/x.sock",
            "/a\"b",
            "/a%hb",
            "/a${HOME}",
            "/a\nb",
            "/a\\b",
        ] {
            assert!(validate_path("p", bad).is_err(), "{bad:?}");
        }
        assert!(validate_path("p", &format!("/{}", "x".repeat(100))).is_err());
    }

    #[test]
    fn client_names_are_valid_client_names() {
        assert_eq!(client_name("ssh", "devbox"), "ssh-devbox");
        assert_eq!(client_name("ssh", "fe80::1"), "ssh-fe80--1");
        assert_eq!(
            client_name("devcontainer", "My Project"),
            "devcontainer-My-Project"
        );
        assert_eq!(client_name("devcontainer", "—"), "devcontainer-project");
        let long = client_name("devcontainer", &"x".repeat(200));
        assert_eq!(long.len(), 64);
        for name in [long, client_name("ssh", "a:b:c")] {
            crate::clients::validate_name(&name).unwrap();
        }
    }

    #[test]
    fn the_remote_config_runs_the_bridge_on_the_socket() {
        let mcp = remote_mcp("/home/a/.keycard-broker.sock", Some("kcb_x"));
        let doc: serde_json::Value = serde_json::from_str(&mcp.stdio).unwrap();
        let entry = &doc["mcpServers"]["keycard-broker"];
        assert_eq!(entry["command"], "keycard-broker");
        assert_eq!(
            entry["args"],
            json!([
                "stdio",
                "--socket",
                "/home/a/.keycard-broker.sock",
                "--token-env",
                TOKEN_ENV
            ])
        );
        assert_eq!(entry["env"][TOKEN_ENV], "kcb_x");
        assert!(
            mcp.bridge_command
                .contains("bridge --listen 127.0.0.1:8937")
        );
        assert!(
            !mcp.bridge_command.contains("kcb_x") && !mcp.bridge_command.contains("token"),
            "the bridge holds no token: {}",
            mcp.bridge_command
        );
        let bridge: serde_json::Value = serde_json::from_str(&mcp.bridge).unwrap();
        let entry = &bridge["mcpServers"]["keycard-broker"];
        assert_eq!(entry["url"], "http://127.0.0.1:8937/mcp");
        assert_eq!(entry["headers"]["Authorization"], "Bearer kcb_x");
        let no_env: serde_json::Value =
            serde_json::from_str(&remote_mcp("/run/x.sock", None).stdio).unwrap();
        assert!(no_env["mcpServers"]["keycard-broker"].get("env").is_none());
    }
}
