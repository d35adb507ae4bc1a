//! `remote ssh`, `remote devcontainer` and `service` end to end: the binary against real
//! tools — `ssh -G` reads the config it wrote, a JSONC parser reads the devcontainer.json, and
//! `systemd-analyze verify` checks the unit. Nothing here reaches a real service manager:
//! HOME and XDG_RUNTIME_DIR point at empty folders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command as StdCommand;

use serde_json::Value;

mod common;

use common::{Home, json_doc, json_error};

const REMOTE_SOCKET: &str = "/home/alice/.keycard-broker-agent.sock";

/// `ssh -G -F FILE HOST`: what ssh makes of the config, one `key value` per line.
fn ssh_g(file: &Path, host: &str) -> Vec<(String, String)> {
    let out = StdCommand::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(file)
        .arg(host)
        .output()
        .expect("ssh is not installed: run scripts/bootstrap (openssh-client)");
    assert!(
        out.status.success(),
        "ssh -G: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn values<'a>(options: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    options
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn client_names(home: &Home) -> Vec<String> {
    let list = json_doc(&home.run(&["clients", "list", "--json"]).await);
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn remote_ssh_writes_a_block_ssh_reads_and_reruns_change_nothing() {
    let home = Home::new();
    // A broker home with a space in it, as macOS's Application Support has.
    let spaced = home.dir.path().join("broker home");
    let config = home.dir.path().join("ssh_config");
    let mine = "Host *\n    ServerAliveInterval 30\n\nHost other\n    User bob\n";
    std::fs::write(&config, mine).unwrap();
    let file = config.to_str().unwrap();
    let setup = |extra: &[&str]| {
        let mut args = vec![
            "remote",
            "ssh",
            "devbox",
            "--remote-user",
            "alice",
            "--file",
            file,
            "--json",
        ];
        args.extend_from_slice(extra);
        let mut cmd = home.command(&args);
        cmd.env("KEYCARD_BROKER_HOME", &spaced);
        cmd
    };

    let run = home.run_with(setup(&[])).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let doc = json_doc(&run);
    assert_eq!(doc["client"], "ssh-devbox");
    assert_eq!(doc["reused"], false);
    let token = doc["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kcb_"), "{doc}");
    assert_eq!(doc["written"], file);
    assert!(
        doc["backup"].is_string(),
        "the user's file was backed up: {doc}"
    );
    let local = spaced
        .join("agent")
        .join("agent.sock")
        .display()
        .to_string();
    assert_eq!(doc["local_socket"], local.as_str());

    // What ssh itself reads from the file.
    let devbox = ssh_g(&config, "devbox");
    assert_eq!(
        values(&devbox, "remoteforward"),
        [format!("{REMOTE_SOCKET} {local}")]
    );
    assert_eq!(
        values(&devbox, "serveraliveinterval"),
        ["30"],
        "the user's entries still apply"
    );
    let other = ssh_g(&config, "other");
    assert_eq!(values(&other, "user"), ["bob"]);
    assert!(
        values(&other, "remoteforward").is_empty(),
        "only devbox forwards"
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.starts_with(mine),
        "the user's text is kept as it was:\n{written}"
    );
    assert_eq!(mode(&config), 0o600);

    // The remote agent's MCP entry runs the bridge on the forwarded socket with the token.
    let mcp: Value = serde_json::from_str(doc["mcp_config"].as_str().unwrap()).unwrap();
    let entry = &mcp["mcpServers"]["keycard-broker"];
    assert_eq!(
        entry["args"],
        serde_json::json!([
            "stdio",
            "--socket",
            REMOTE_SOCKET,
            "--token-env",
            "KEYCARD_BROKER_TOKEN"
        ])
    );
    assert_eq!(entry["env"]["KEYCARD_BROKER_TOKEN"], token.as_str());
    assert!(
        doc["bridge_command"]
            .as_str()
            .unwrap()
            .contains("bridge --listen 127.0.0.1:")
    );

    // A rerun keeps the client and its token, and the file byte for byte (no new backup).
    let run = home.run_with(setup(&[])).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let again = json_doc(&run);
    assert_eq!(again["reused"], true);
    assert!(again["token"].is_null());
    assert!(again["backup"].is_null(), "{again}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
    assert!(
        !run.stdout.contains(&token),
        "a kept token is never shown again"
    );

    // --new-token replaces it; the block stays one block.
    let renewed = json_doc(&home.run_with(setup(&["--new-token"])).await);
    let new_token = renewed["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    assert_eq!(
        std::fs::read_to_string(&config)
            .unwrap()
            .matches("Host devbox")
            .count(),
        1
    );

    // Its own client, with its own name in the audit log and the policy.
    let mut list = home.command(&["clients", "list", "--json"]);
    list.env("KEYCARD_BROKER_HOME", &spaced);
    let agents = json_doc(&home.run_with(list).await);
    let me = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "ssh-devbox")
        .unwrap();
    assert_eq!(me["access"], serde_json::json!([["*", "ask"]]), "{me}");
}

#[tokio::test]
async fn bad_hosts_are_refused_before_any_client_or_file() {
    let home = Home::new();
    let config = home.dir.path().join("ssh_config");
    let file = config.to_str().unwrap();
    for host in [
        "-oProxyCommand=touch /tmp/pwned",
        "dev box",
        "devbox\nHost *",
        "dev\"box",
        "devbox#x",
        "*",
        "a,b",
        "user@devbox",
        "",
    ] {
        let run = home
            .run(&[
                "remote",
                "ssh",
                "--file",
                file,
                "--remote-user",
                "a",
                "--json",
                "--",
                host,
            ])
            .await;
        json_error(&run, "invalid_input");
        assert_eq!(run.code, 1, "{host:?}");
        assert!(!config.exists(), "{host:?} wrote the config");
    }
    for bad in [
        &["--remote-user", "a b"][..],
        &["--remote-user", "a", "--remote-home", "~/x"],
    ] {
        let args = [
            &["remote", "ssh", "devbox", "--file", file, "--json"][..],
            bad,
        ]
        .concat();
        json_error(&home.run(&args).await, "invalid_input");
    }
    assert!(!config.exists());
    assert!(client_names(&home).await.is_empty(), "no client was made");
}

#[tokio::test]
async fn remote_devcontainer_keeps_comments_and_reads_back() {
    let home = Home::new();
    let project = home.dir.path().join("web-app");
    let file = project.join(".devcontainer/devcontainer.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mine = "// The web app's container\n{\n  \"name\": \"web\", // shown in VS Code\n  /* base image */\n  \"image\": \"debian:bookworm\",\n  \"mounts\": [\"source=/var/cache/apt,target=/var/cache/apt,type=bind\"],\n  \"remoteEnv\": { \"EDITOR\": \"vim\" },\n}\n";
    std::fs::write(&file, mine).unwrap();
    let folder = project.to_str().unwrap();
    let args = [
        "remote",
        "devcontainer",
        "--folder",
        folder,
        "--write",
        "--json",
    ];

    let run = home.run(&args).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let doc = json_doc(&run);
    assert_eq!(doc["client"], "devcontainer-web-app");
    let token = doc["token"].as_str().unwrap().to_string();
    let written = std::fs::read_to_string(&file).unwrap();
    for kept in [
        "// The web app's container",
        "// shown in VS Code",
        "/* base image */",
    ] {
        assert!(written.contains(kept), "{kept} lost:\n{written}");
    }
    assert!(
        !written.contains(&token),
        "the token never goes into the project's file"
    );
    let parsed = jsonc_parser::cst::CstRootNode::parse(&written, &Default::default())
        .unwrap()
        .to_serde_value()
        .unwrap();
    let mounts = parsed["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2, "{parsed}");
    assert_eq!(mounts[1]["target"], "/run/keycard-broker");
    assert_eq!(mounts[1]["type"], "bind");
    assert_eq!(
        mounts[1]["source"],
        home.dir.path().join("agent").display().to_string()
    );
    assert_eq!(parsed["remoteEnv"]["EDITOR"], "vim");
    assert_eq!(
        parsed["remoteEnv"]["KEYCARD_BROKER_SOCKET"],
        "/run/keycard-broker/agent.sock"
    );
    assert_eq!(
        parsed["remoteEnv"]["KEYCARD_BROKER_TOKEN"],
        "${localEnv:KEYCARD_BROKER_TOKEN_DEVCONTAINER_WEB_APP}"
    );
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "KEYCARD_BROKER_TOKEN_DEVCONTAINER_WEB_APP={token}"
        )),
        "{notes}"
    );

    let again = json_doc(&home.run(&args).await);
    assert_eq!(again["reused"], true);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        written,
        "a rerun changes nothing"
    );

    // A file it cannot edit is left alone; the entries are printed to paste by hand.
    let odd = "{ // mounts as a string is not something to guess at\n  \"mounts\": \"oops\"\n}\n";
    std::fs::write(&file, odd).unwrap();
    let run = home.run(&args).await;
    assert_eq!(run.code, 1);
    let failed = json_doc(&run);
    assert_eq!(failed["error"]["code"], "invalid_input");
    assert!(
        failed["snippet"]
            .as_str()
            .unwrap()
            .contains("/run/keycard-broker/agent.sock")
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), odd);
    let text = home.run(&args[..5]).await;
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("\"remoteEnv\""), "{}", text.stdout);
    assert!(
        text.stderr.contains("error: ") && text.stderr.contains("mounts"),
        "{}",
        text.stderr
    );
}

/// `service` with HOME in a temp folder and no reachable user manager, as in CI.
#[cfg(target_os = "linux")]
fn service(home: &Home, fake_home: &Path, args: &[&str]) -> tokio::process::Command {
    let runtime = fake_home.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut cmd = home.command(args);
    cmd.env("HOME", fake_home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    cmd
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn service_install_writes_a_unit_systemd_accepts_and_says_nothing_runs_it() {
    let home = Home::new();
    let fake_home = home.dir.path().join("user");
    let unit = fake_home.join(".config/systemd/user/keycard-broker.service");
    let broker_home = home.dir.path().display().to_string();

    let run = home
        .run_with(service(&home, &fake_home, &["service", "install"]))
        .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("No systemd user manager is running")
            && run.stdout.contains(&unit.display().to_string())
            && run.stdout.contains("systemctl --user daemon-reload && systemctl --user enable --now keycard-broker.service"),
        "{}",
        run.stdout
    );
    let text = std::fs::read_to_string(&unit).unwrap();
    let exe = env!("CARGO_BIN_EXE_keycard-broker");
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        format!("ExecStart=\"{exe}\" serve"),
        format!("Environment=\"KEYCARD_BROKER_HOME={broker_home}\""),
        "Restart=on-failure".into(),
        "StandardOutput=journal".into(),
        "WantedBy=default.target".into(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} missing:\n{text}");
    }
    assert!(!text.contains("SECRET"), "no client secret in the unit");

    let has_analyze = StdCommand::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if has_analyze {
        let out = StdCommand::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!(
            "systemd-analyze is not installed: the unit was not verified (scripts/bootstrap installs systemd)"
        );
    }
    let again = json_doc(
        &home
            .run_with(service(
                &home,
                &fake_home,
                &["service", "install", "--json"],
            ))
            .await,
    );
    assert_eq!(again["manager"], "systemd");
    assert_eq!(again["manager_running"], false);
    assert_eq!(again["started"], false);
    assert_eq!(
        again["verified"],
        if has_analyze {
            Value::Bool(true)
        } else {
            Value::Null
        }
    );

    let status = json_doc(
        &home
            .run_with(service(&home, &fake_home, &["service", "status", "--json"]))
            .await,
    );
    assert_eq!(status["installed"], true);
    assert_eq!(status["running"], false);
    assert_eq!(status["broker_answers"], false);

    let gone = json_doc(
        &home
            .run_with(service(
                &home,
                &fake_home,
                &["service", "uninstall", "--json"],
            ))
            .await,
    );
    assert_eq!(gone["removed"], true);
    assert!(!unit.exists());
    let run = home
        .run_with(service(&home, &fake_home, &["service", "uninstall"]))
        .await;
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("No service was installed"),
        "{}",
        run.stdout
    );
    let status = json_doc(
        &home
            .run_with(service(&home, &fake_home, &["service", "status", "--json"]))
            .await,
    );
    assert_eq!(status["installed"], false);
}
