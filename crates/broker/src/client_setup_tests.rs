//! Client config entries: every format, merging, and the files around them.

use super::*;

#[test]
fn every_format_merges_and_keeps_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    for kind in Kind::ALL {
        let path = dir.path().join(format!("{}.cfg", kind.as_str()));
        let existing = if kind == Kind::Codex {
            "# mine\nmodel = \"o3\"\n[mcp_servers.other]\nurl = \"http://x\"\n".to_string()
        } else {
            r#"{"theme":"dark","mcpServers":{"other":{"url":"http://x"}},"servers":{"other":{}}}"#
                .to_string()
        };
        std::fs::write(&path, &existing).unwrap();
        let s = Snippet::new(
            kind,
            "agent-1",
            "http://127.0.0.1:8937/mcp",
            Some("kcb_tok"),
            "/bin/kb",
        );
        let backup = merge_into(&s, &path).unwrap().backup.unwrap();
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
fn planted_temporary_names_and_symlinks_never_receive_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let path = dir.path().join("mcp.json");
    std::fs::write(&path, "{}").unwrap();
    // The names an older version used, planted as symlinks to a file the attacker reads.
    std::os::unix::fs::symlink(&victim, dir.path().join("mcp.json.keycard-tmp")).unwrap();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    std::os::unix::fs::symlink(&victim, dir.path().join(format!("mcp.json.bak-{stamp}"))).unwrap();
    let s = Snippet::new(
        Kind::Cursor,
        "a",
        "http://127.0.0.1:1/mcp",
        Some("kcb_secret"),
        "kb",
    );
    let written = merge_into(&s, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("kcb_secret")
    );
    assert!(written.git_work_tree.is_none());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // A symlink at the target itself is replaced, not written through.
    let linked = dir.path().join("linked.json");
    std::fs::write(&linked, "{}").unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&linked, &path).unwrap();
    merge_into(&s, &path).unwrap();
    assert_eq!(std::fs::read_to_string(&linked).unwrap(), "{}");
    assert!(
        !std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_file_inside_a_git_work_tree_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let path = dir.path().join("sub/.mcp.json");
    let s = Snippet::new(
        Kind::ClaudeCode,
        "a",
        "http://127.0.0.1:1/mcp",
        Some("t"),
        "kb",
    );
    let written = merge_into(&s, &path).unwrap();
    let root = written.git_work_tree.clone().unwrap();
    assert_eq!(root, std::fs::canonicalize(dir.path()).unwrap());
    assert!(written.warning().unwrap().contains(".gitignore"));
}

#[test]
fn unparseable_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mcp.json");
    std::fs::write(&path, "{ not json").unwrap();
    let s = Snippet::new(Kind::Cursor, "a", "http://127.0.0.1:1/mcp", Some("t"), "kb");
    assert!(matches!(
        merge_into(&s, &path),
        Err(SetupError::Unparseable { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
}

#[test]
fn oauth_entries_hold_no_credential_and_say_how_to_sign_in() {
    for kind in Kind::ALL.into_iter().filter(|k| k.supports_oauth()) {
        let s = Snippet::new(
            kind,
            "agent-1",
            "http://127.0.0.1:8937/mcp",
            None,
            "/bin/kb",
        );
        let text = s.render();
        assert!(
            text.contains("http://127.0.0.1:8937/mcp"),
            "{kind:?}: {text}"
        );
        assert!(
            !text.contains("Authorization") && !text.contains("bearer_token_env_var"),
            "{kind:?}: {text}"
        );
        let note = s.note().unwrap();
        assert!(
            note.contains("consent page") && !note.contains("kcb_"),
            "{note}"
        );
    }
    assert!(!Kind::ClaudeDesktop.supports_oauth() && !Kind::Windsurf.supports_oauth());
}
