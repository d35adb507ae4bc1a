//! Test support for the real-component suites: starts the Keycard zone emulator
//! (`tests/zone/server.mjs`, oidc-provider), follows authorize URLs like a browser with a
//! cookie jar, runs the `keycard-broker` binary with its own home, and reads the keychain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Repository root (testkit lives in crates/testkit).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// How long a started component may take to say it is ready, per attempt. Generous: on a
/// 2-core machine a node process can start slowly while the crash and load suites run beside
/// it. A start that never says it is ready (seen once in CI, cause unknown) is retried.
const READY_WITHIN: Duration = Duration::from_secs(45);
const START_ATTEMPTS: usize = 3;

/// A running zone emulator; killed on drop.
pub struct ZoneEmulator {
    child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

impl ZoneEmulator {
    pub async fn start() -> ZoneEmulator {
        let dir = repo_root().join("tests/zone");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the zone emulator's packages are missing: run `npm ci --prefix tests/zone` (scripts/test does)"
        );
        let (child, issuer) =
            spawn_ready("tests/zone/server.mjs", &["--port", "0"], "ZONE_READY").await;
        ZoneEmulator {
            child,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// POST a JSON body to a control endpoint (`/__control/<path>`).
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.url(&format!("/__control/{path}")))
            .json(&body)
            .send()
            .await
            .expect("control request");
        assert!(
            response.status().is_success(),
            "control {path} failed: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(self.url(&format!("/__control/{path}")))
            .send()
            .await
            .expect("control request")
            .json()
            .await
            .expect("control JSON")
    }

    pub async fn counters(&self) -> Value {
        self.get("counters").await
    }

    pub async fn reset_counters(&self) {
        self.control("reset", serde_json::json!({})).await;
    }

    /// Token-endpoint calls of one grant type (`authorization_code`, `refresh_token`, `token_exchange`).
    pub async fn token_calls(&self, grant: &str) -> u64 {
        self.counters().await["token"][grant].as_u64().unwrap_or(0)
    }

    /// Every secret value the zone has issued so far.
    pub async fn issued(&self) -> Vec<String> {
        self.get("issued").await["tokens"]
            .as_array()
            .expect("issued tokens")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Spawns a node script that prints `<READY_WORD> <url>` once listening; returns (child, url).
/// Retries a start that stays silent; a failure shows what the script wrote to stderr.
async fn spawn_ready(script: &str, args: &[&str], ready: &str) -> (Child, String) {
    let mut failures = Vec::new();
    for attempt in 1..=START_ATTEMPTS {
        match spawn_once(script, args, ready).await {
            Ok(started) => return started,
            Err(why) => {
                eprintln!("{script}: attempt {attempt} failed: {why}");
                failures.push(why);
            }
        }
    }
    panic!("{script} never became ready: {}", failures.join(" | "));
}

async fn spawn_once(script: &str, args: &[&str], ready: &str) -> Result<(Child, String), String> {
    let path = repo_root().join(script);
    let stderr = tempfile::NamedTempFile::new().expect("stderr file");
    let mut child = Command::new("node")
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().expect("stderr handle"))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start node {script}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let prefix = format!("{ready} ");
    let waited = tokio::time::timeout(READY_WITHIN, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix(&prefix) {
                return Some(url.trim().to_string());
            }
        }
        None
    })
    .await;
    let url = match waited {
        Ok(Some(url)) => url,
        outcome => {
            let _ = child.kill().await;
            let said = std::fs::read_to_string(stderr.path()).unwrap_or_default();
            let tail: String = said
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let what = if outcome.is_err() {
                format!("not ready within {READY_WITHIN:?}")
            } else {
                "exited before it was ready".to_string()
            };
            return Err(format!("{what}; stderr: {tail}"));
        }
    };
    // Keep draining stdout so the script never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// The upstream API fixture (`tests/upstream/server.mjs`): accepts only tokens the zone
/// issued for its resource, `<url>/api`.
pub struct Upstream {
    _child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Upstream {
    pub async fn start(zone: &ZoneEmulator) -> Upstream {
        let (child, url) = spawn_ready(
            "tests/upstream/server.mjs",
            &["--zone", &zone.issuer, "--port", "0"],
            "UPSTREAM_READY",
        )
        .await;
        Upstream {
            _child: child,
            url,
            http: reqwest::Client::new(),
        }
    }

    /// Resource identifier and API base.
    pub fn api(&self) -> String {
        format!("{}/api", self.url)
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}/__control/{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("fixture control")
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/__control/stats", self.url))
            .send()
            .await
            .expect("fixture stats")
            .json()
            .await
            .expect("stats JSON")
    }
}

/// Browser stand-in: follows the authorize URL through the zone's redirects (cookies kept)
/// and stops at the first redirect to `callback_prefix`, returning that URL unvisited.
pub async fn authorize_until_callback(authorize_url: &str, callback_prefix: &str) -> url::Url {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let mut url = url::Url::parse(authorize_url).expect("authorize URL");
    for _ in 0..20 {
        if url.as_str().starts_with(callback_prefix) {
            return url;
        }
        let response = client
            .get(url.clone())
            .send()
            .await
            .expect("follow redirect");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("zone answered {status} without a redirect at {url}"))
            .to_str()
            .unwrap()
            .to_string();
        url = url.join(&location).unwrap();
    }
    panic!("too many redirects from {authorize_url}");
}

/// Browser stand-in that also delivers the redirect to the broker; returns the broker's
/// answer (status, page text).
pub async fn authorize(authorize_url: &str, callback_prefix: &str) -> (u16, String) {
    let callback = authorize_until_callback(authorize_url, callback_prefix).await;
    deliver(callback.as_str()).await
}

/// Visits a (possibly tampered) callback URL.
pub async fn deliver(callback: &str) -> (u16, String) {
    let response = reqwest::get(callback).await.expect("deliver callback");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A free loopback port (bound and released; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn callback_prefix(port: u16) -> String {
    format!("http://127.0.0.1:{port}/callback")
}

/// Panics unless the keychain holds the session and the connection to `resource` of `profile`.
pub fn assert_signed_in_and_connected(profile: &str, resource: &str) {
    let entries = keychain_entries(profile);
    for want in [
        format!("{profile}/session"),
        format!("{profile}/connection/{resource}"),
    ] {
        assert!(entries.contains(&want), "{want} missing from {entries:?}");
    }
}

/// Keychain entries of this service whose `username` starts with `profile/`, via
/// `secret-tool` (a client independent of the broker).
pub fn keychain_entries(profile: &str) -> Vec<String> {
    // Other suites add and delete entries meanwhile; a search that trips over an item
    // deleted under it fails, so it is repeated.
    let mut out = None;
    for _ in 0..5 {
        let run = std::process::Command::new("secret-tool")
            .args(["search", "--all", "--unlock", "service", "keycard-broker"])
            .output()
            .expect("secret-tool (libsecret-tools) installed");
        let ok = run.status.success();
        out = Some(run);
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = out.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("attribute.username = "))
        .filter(|u| u.starts_with(&format!("{profile}/")))
        .map(str::to_string)
        .collect()
}

/// Every file under `dir`, recursively, with its bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Panics if any issued token occurs in any file under `dir` or in `extra` texts.
pub fn assert_no_leak(tokens: &[String], dir: &Path, extra: &[&str]) {
    assert!(
        !tokens.is_empty(),
        "the zone issued no tokens: nothing was checked"
    );
    let files = files_under(dir);
    assert!(
        !files.is_empty(),
        "no broker files to check under {}",
        dir.display()
    );
    for token in tokens.iter().filter(|t| t.len() >= 16) {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, token.as_bytes()),
                "a token issued by the zone leaked into {}",
                path.display()
            );
        }
        for text in extra {
            assert!(
                !text.contains(token.as_str()),
                "a token issued by the zone leaked into output"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The session keyring's password as `scripts/with-keyring` set it up.
fn keyring_password() -> String {
    std::env::var("KEYCARD_TEST_KEYRING_PASSWORD").unwrap_or_else(|_| "keycard-broker-test".into())
}

const SECRETS: &str = "org.freedesktop.secrets";
const SECRETS_PATH: &str = "/org/freedesktop/secrets";
const LOGIN_COLLECTION: &str = "/org/freedesktop/secrets/collection/login";

/// Locks the login keyring through the Secret Service API, as a screen lock or the user
/// would. Reads then need an unlock prompt (which fails on a headless session).
pub async fn lock_keychain() {
    tokio::task::spawn_blocking(|| {
        let conn = zbus::blocking::Connection::session().expect("session bus");
        let collection = zbus::zvariant::ObjectPath::try_from(LOGIN_COLLECTION).unwrap();
        let reply = conn
            .call_method(
                Some(SECRETS),
                SECRETS_PATH,
                Some("org.freedesktop.Secret.Service"),
                "Lock",
                &(vec![collection],),
            )
            .expect("Secret Service Lock");
        let (locked, _prompt): (
            Vec<zbus::zvariant::OwnedObjectPath>,
            zbus::zvariant::OwnedObjectPath,
        ) = reply.body().deserialize().unwrap();
        assert_eq!(locked.len(), 1, "the login collection was locked");
    })
    .await
    .unwrap();
}

/// Unlocks the login keyring with its password, in place (the same daemon, so the broker's
/// open Secret Service connection stays valid), through gnome-keyring's own unlock call.
pub async fn unlock_keychain() {
    tokio::task::spawn_blocking(|| {
        let conn = zbus::blocking::Connection::session().expect("session bus");
        let reply = conn
            .call_method(
                Some(SECRETS),
                SECRETS_PATH,
                Some("org.freedesktop.Secret.Service"),
                "OpenSession",
                &("plain", zbus::zvariant::Value::from("")),
            )
            .expect("Secret Service OpenSession");
        let (_, session): (zbus::zvariant::OwnedValue, zbus::zvariant::OwnedObjectPath) =
            reply.body().deserialize().unwrap();
        let secret = (
            session,
            Vec::<u8>::new(),
            keyring_password().into_bytes(),
            "text/plain",
        );
        let collection = zbus::zvariant::ObjectPath::try_from(LOGIN_COLLECTION).unwrap();
        conn.call_method(
            Some(SECRETS),
            SECRETS_PATH,
            Some("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"),
            "UnlockWithMasterPassword",
            &(collection, secret),
        )
        .expect("gnome-keyring UnlockWithMasterPassword");
    })
    .await
    .unwrap();
}

const PRIVATE_KEYRING: &str = "KEYCARD_TEST_PRIVATE_KEYRING";

/// For tests that lock the keychain (locking the shared one would break the tests running
/// beside them): returns true inside a private D-Bus session with its own gnome-keyring, where
/// the test goes on. Otherwise it runs the named test of this binary again inside one
/// (`scripts/with-keyring`), asserts that run passed, and returns false.
pub fn private_keyring(test: &str) -> bool {
    if std::env::var_os(PRIVATE_KEYRING).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let status = std::process::Command::new(repo_root().join("scripts/with-keyring"))
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(PRIVATE_KEYRING, "1")
        .status()
        .expect("run scripts/with-keyring");
    assert!(
        status.success(),
        "{test} failed inside its private keyring session"
    );
    false
}
