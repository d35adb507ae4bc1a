//! `~/.ssh/config` for an agent on an SSH host: a `RemoteForward` of a socket in the remote
//! user's home to this broker's agent socket, in a marked block that a rerun replaces.
//!
//! Facts from ssh_config(5)/sshd_config(5) (OpenSSH 9.2) that shape the block:
//! - the remote path is written resolved: `%d` and `%u` are the *local* home and user, and
//!   OpenSSH before 8.x expands no tokens in forward paths at all;
//! - `StreamLocalBindUnlink` in ssh_config only covers sockets `ssh` binds (LocalForward); a
//!   RemoteForward socket is bound by the remote sshd under *its* `StreamLocalBindUnlink`
//!   (default no), so the block says what the remote sshd needs instead of pretending;
//! - no `ExitOnForwardFailure yes`: the block applies to every connection to the host (a
//!   second terminal, scp, git), and while one holds the socket the others would be refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{RemoteError, validate_host, validate_path, validate_user};
use crate::client_setup::{self, SetupError, Written};

const BEGIN: &str = "# keycard-broker remote BEGIN";
const END: &str = "# keycard-broker remote END";
/// The socket's name in the remote user's home (a folder only they can write to, unlike /tmp).
pub const REMOTE_SOCKET_NAME: &str = ".keycard-broker-agent.sock";

/// Where the forward goes, all validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub host: String,
    pub remote_socket: String,
    pub local_socket: String,
}

impl Forward {
    /// `remote_home`: the remote user's home (`/home/<user>`, `/root` for root, unless given).
    pub fn new(
        host: &str,
        remote_user: &str,
        remote_home: Option<&str>,
        local_socket: &Path,
    ) -> Result<Forward, RemoteError> {
        validate_host(host)?;
        validate_user(remote_user)?;
        let home = match remote_home {
            Some(home) => home.trim_end_matches('/').to_string(),
            None if remote_user == "root" => "/root".into(),
            None => format!("/home/{remote_user}"),
        };
        let remote_socket = format!("{home}/{REMOTE_SOCKET_NAME}");
        validate_path("the remote socket path", &remote_socket)?;
        let local_socket = local_socket.display().to_string();
        validate_path("this broker's agent socket", &local_socket)?;
        Ok(Forward {
            host: host.into(),
            remote_socket,
            local_socket,
        })
    }

    /// The marked block for `~/.ssh/config`. Paths are quoted: macOS data folders hold spaces.
    pub fn block(&self) -> String {
        format!(
            "{BEGIN} {host}\n\
             # Written by `keycard-broker remote ssh {host}`; running it again replaces this block.\n\
             # Agents on {host} reach Keycard Broker on this machine through {remote}.\n\
             # The remote sshd needs `StreamLocalBindUnlink yes` in sshd_config to reuse that path\n\
             # after a connection ends (this option on the ssh side only covers local forwards).\n\
             Host {host}\n    RemoteForward \"{remote}\" \"{local}\"\n\
             {END} {host}\n",
            host = self.host,
            remote = self.remote_socket,
            local = self.local_socket,
        )
    }

    /// What the remote end needs, in words.
    pub fn notes(&self) -> Vec<String> {
        vec![
            format!(
                "On {host}, sshd must allow the forward: `AllowStreamLocalForwarding yes` (the default) and `StreamLocalBindUnlink yes` in /etc/ssh/sshd_config (then reload sshd); without the latter a socket left by an earlier connection blocks the next one (`ssh -o ClearAllForwardings=yes {host} rm -f {remote}` clears it).",
                host = self.host,
                remote = self.remote_socket
            ),
            format!(
                "Install keycard-broker on {} (no keychain or zone needed there): the agent's MCP entry starts it as a bridge to the socket.",
                self.host
            ),
        ]
    }
}

/// Puts `forward`'s block into `existing` config text: in place of its earlier block for the
/// same host, else at the end (a `Host` line at the top would capture the user's global
/// options). Everything else is kept byte for byte.
pub fn merge(existing: &str, forward: &Forward, path: &Path) -> Result<String, SetupError> {
    let begin = format!("{BEGIN} {}", forward.host);
    let end = format!("{END} {}", forward.host);
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end() == begin);
    let Some(start) = start else {
        let mut out = existing.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.trim().is_empty() {
            out.push('\n');
        }
        out.push_str(&forward.block());
        return Ok(out);
    };
    let stop = lines[start..]
        .iter()
        .position(|l| l.trim_end() == end)
        .map(|i| start + i)
        .ok_or_else(|| SetupError::Unparseable {
            path: path.into(),
            format: "an ssh config with a whole keycard-broker block",
            reason: format!("\"{begin}\" has no \"{end}\" line after it"),
        })?;
    let mut out: String = lines[..start].concat();
    out.push_str(&forward.block());
    out.push_str(&lines[stop + 1..].concat());
    Ok(out)
}

/// `~/.ssh/config`.
pub fn default_path() -> Result<PathBuf, SetupError> {
    let base = directories::BaseDirs::new().ok_or(SetupError::NoHome)?;
    Ok(base.home_dir().join(".ssh").join("config"))
}

/// Merges the block into `path` with a backup, 0600. A symlinked config (dotfile managers) is
/// not replaced by a plain file: the user is told to name its target.
pub fn write(forward: &Forward, path: &Path) -> Result<Written, SetupError> {
    let io = |reason: String| SetupError::Io {
        path: path.into(),
        reason,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        let target = std::fs::canonicalize(path).map_err(|e| io(e.to_string()))?;
        return Err(io(format!(
            "it is a symbolic link to {}; write that file instead (--file {})",
            target.display(),
            target.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        // ssh wants its folder private.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| io(e.to_string()))?;
    }
    client_setup::rewrite(path, |existing| merge(existing, forward, path))
}

/// The user ssh logs in as on `host` after the user's own config (`ssh -G`, reading `config`
/// instead of ~/.ssh/config when given), when ssh is there.
pub fn remote_user(host: &str, config: Option<&Path>) -> Option<String> {
    validate_host(host).ok()?;
    let mut ssh = Command::new("ssh");
    if let Some(config) = config.filter(|c| c.exists()) {
        ssh.arg("-F").arg(config);
    }
    let out = ssh.args(["-G", "--", host]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("user ").map(str::to_string))
        .filter(|u| validate_user(u).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn forward(host: &str) -> Forward {
        Forward::new(
            host,
            "alice",
            None,
            Path::new("/home/me/.local/share/kb/agent.sock"),
        )
        .unwrap()
    }

    #[test]
    fn the_block_forwards_the_remote_home_socket_to_the_agent_socket() {
        let f = forward("devbox");
        assert_eq!(f.remote_socket, "/home/alice/.keycard-broker-agent.sock");
        let block = f.block();
        assert!(block.starts_with("# keycard-broker remote BEGIN devbox\n"));
        assert!(block.contains(
            "Host devbox\n    RemoteForward \"/home/alice/.keycard-broker-agent.sock\" \"/home/me/.local/share/kb/agent.sock\"\n"
        ));
        assert!(block.ends_with("# keycard-broker remote END devbox\n"));
        let root = Forward::new("h", "root", None, Path::new("/x/agent.sock")).unwrap();
        assert_eq!(root.remote_socket, "/root/.keycard-broker-agent.sock");
        let mac = Forward::new("h", "a", Some("/Users/a/"), Path::new("/x/agent.sock")).unwrap();
        assert_eq!(mac.remote_socket, "/Users/a/.keycard-broker-agent.sock");
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_written() {
        let local = Path::new("/x/agent.sock");
        assert!(Forward::new("-oProxyCommand=x", "a", None, local).is_err());
        assert!(Forward::new("h", "a b", None, local).is_err());
        assert!(Forward::new("h", "a", Some("relative"), local).is_err());
        assert!(Forward::new("h", "a", Some("/home/%u"), local).is_err());
        assert!(Forward::new("h", "a", None, Path::new("/data/$HOME/agent.sock")).is_err());
    }

    #[test]
    fn merging_appends_once_and_replaces_in_place() {
        let path = Path::new("config");
        let mine = "Host *\n    ServerAliveInterval 30\n\nHost other\n    User bob";
        let once = merge(mine, &forward("devbox"), path).unwrap();
        assert!(once.starts_with(mine), "the user's text is kept as it was");
        assert!(once.ends_with(&forward("devbox").block()));
        assert_eq!(merge(&once, &forward("devbox"), path).unwrap(), once);
        // Another host gets its own block; a changed block replaces the old one in place.
        let two = merge(&once, &forward("box2"), path).unwrap();
        let moved = Forward::new("devbox", "carol", None, Path::new("/y/agent.sock")).unwrap();
        let three = merge(&two, &moved, path).unwrap();
        assert_eq!(three.matches("BEGIN devbox").count(), 1);
        let devbox = &three[three.find("BEGIN devbox").unwrap()..three.find("END devbox").unwrap()];
        assert!(
            devbox.contains("/home/carol/") && !devbox.contains("/home/alice/"),
            "{devbox}"
        );
        assert!(
            three.find("BEGIN devbox") < three.find("BEGIN box2"),
            "replaced where it was"
        );
        assert!(
            merge("", &forward("devbox"), path)
                .unwrap()
                .starts_with(BEGIN)
        );
        let broken = format!("{BEGIN} devbox\nHost devbox\n");
        assert!(matches!(
            merge(&broken, &forward("devbox"), path),
            Err(SetupError::Unparseable { .. })
        ));
    }
}
