//! Settings file (TOML) plus environment overrides. Holds no secret: the optional
//! application client secret goes to the keychain (see `vault`).
//!
//! `KEYCARD_BROKER_HOME=DIR` relocates config, database and logs into DIR, which is how
//! every test gets a broker of its own.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Fixed default loopback port for the callback (and, later, the MCP endpoint).
pub const DEFAULT_PORT: u16 = 8937;
const FILE_NAME: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{path} is not a valid Keycard Broker config: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid zone {value:?}: {reason}")]
    BadZone { value: String, reason: String },
    #[error("invalid {name} {value:?}: {reason}")]
    BadValue {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("no Keycard zone configured")]
    NoZone,
    #[error("cannot find a home directory for this user; set KEYCARD_BROKER_HOME")]
    NoHome,
}

/// How the broker obtains the upstream (provider) token for a connection. PROTOCOL.md §1:
/// `exchange` is what the Keycard SDK does; `refresh_with_resource` is what the CLI docs describe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamStrategy {
    #[default]
    Exchange,
    RefreshWithResource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSettings {
    /// Full issuer URL of the zone.
    pub issuer: String,
    /// A configured client id (public application credential, or the confidential
    /// application's id when `confidential`); unset means dynamic registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The application secret for `client_id` is in the keychain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confidential: bool,
    /// The broker's own resource identifier at the zone (login round's `resource`).
    /// Defaults to `http://localhost:<port>/mcp`, as in the Keycard guide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Scopes asked for in the login round.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub upstream_strategy: UpstreamStrategy,
    /// Seconds one zone request may take before it counts as failed (and is retried).
    /// Bounds how long an agent waits on a slow zone.
    #[serde(default = "default_zone_timeout")]
    pub timeout_secs: u64,
}

/// Zone requests answered slower than this fail; 1..=300 is accepted.
pub const DEFAULT_ZONE_TIMEOUT_SECS: u64 = 20;

fn default_zone_timeout() -> u64 {
    DEFAULT_ZONE_TIMEOUT_SECS
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "offline_access".into()]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    #[serde(default = "default_port")]
    pub port: u16,
    /// Namespace of this broker's keychain entries (several homes can share one keychain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Where the zone sends the browser back: the loopback listener (default) or the app's
    /// custom URL scheme (deep link), for zones that allow private-use redirect URIs.
    #[serde(default)]
    pub redirect: RedirectMode,
    /// How long a write the policy marks "ask" waits for the user before it is denied.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout_secs: u64,
    /// Serve agents on `agent.sock` in the data folder too (remote agents reach it through a
    /// forwarded socket). Off: loopback port only.
    #[serde(default = "default_true")]
    pub agent_socket: bool,
}

fn default_true() -> bool {
    true
}

fn default_approval_timeout() -> u64 {
    crate::approvals::DEFAULT_TIMEOUT.as_secs()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedirectMode {
    #[default]
    Loopback,
    DeepLink,
}

/// The private-use redirect URI (RFC 8252 §7.1: reverse domain name scheme).
pub const DEEP_LINK_REDIRECT: &str = "cloud.keycard.broker:/callback";

fn default_port() -> u16 {
    DEFAULT_PORT
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            port: DEFAULT_PORT,
            profile: None,
            redirect: RedirectMode::Loopback,
            approval_timeout_secs: default_approval_timeout(),
            agent_socket: true,
        }
    }
}

/// The settings file as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneSettings>,
    #[serde(default)]
    pub broker: BrokerSettings,
}

/// Where things live on disk.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
    pub db_file: PathBuf,
    pub log_dir: PathBuf,
}

impl Paths {
    /// `KEYCARD_BROKER_HOME` if set, else the platform's config / data / log directories.
    pub fn resolve(home: Option<&Path>) -> Result<Paths, ConfigError> {
        if let Some(home) = home {
            return Ok(Paths {
                config_file: home.join(FILE_NAME),
                data_dir: home.to_path_buf(),
                db_file: home.join("broker.db"),
                log_dir: home.join("logs"),
            });
        }
        let dirs = directories::ProjectDirs::from("cloud", "Keycard", "keycard-broker")
            .ok_or(ConfigError::NoHome)?;
        let data_dir = dirs.data_dir().to_path_buf();
        let log_dir = if cfg!(target_os = "macos") {
            directories::BaseDirs::new()
                .map(|b| b.home_dir().join("Library/Logs/keycard-broker"))
                .ok_or(ConfigError::NoHome)?
        } else {
            dirs.data_local_dir().join("logs")
        };
        Ok(Paths {
            config_file: dirs.config_dir().join(FILE_NAME),
            db_file: data_dir.join("broker.db"),
            data_dir,
            log_dir,
        })
    }
}

/// Resolved configuration: file + environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub paths: Paths,
    pub settings: Settings,
    /// `KEYCARD_CLIENT_SECRET` from the environment, if given (moved to the keychain by init).
    pub env_client_secret: Option<SecretString>,
    home_override: bool,
}

/// `KEYCARD_BROKER_HOME`, when set: every file of the broker lives under it.
fn env_home() -> Option<PathBuf> {
    std::env::var_os("KEYCARD_BROKER_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Paths {
    /// The paths the process environment selects, even when the settings file is unreadable
    /// (logging starts before the config is parsed).
    pub fn from_env() -> Result<Paths, ConfigError> {
        Paths::resolve(env_home().as_deref())
    }
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut config = Config::load(env_home().as_deref())?;
        config.apply_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))?;
        Ok(config)
    }

    /// Reads the settings file; a missing file is an empty configuration.
    pub fn load(home: Option<&Path>) -> Result<Config, ConfigError> {
        let paths = Paths::resolve(home)?;
        let settings = match std::fs::read_to_string(&paths.config_file) {
            Ok(text) => parse(&text).map_err(|reason| ConfigError::Parse {
                path: paths.config_file.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(e) => {
                return Err(ConfigError::Read {
                    path: paths.config_file.clone(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(Config {
            paths,
            settings,
            env_client_secret: None,
            home_override: home.is_some(),
        })
    }

    /// Environment overrides: `KEYCARD_ZONE`, `KEYCARD_BROKER_PORT`, `KEYCARD_CLIENT_ID`,
    /// `KEYCARD_CLIENT_SECRET`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(zone) = get("KEYCARD_ZONE") {
            let issuer = normalize_zone(&zone)?;
            match &mut self.settings.zone {
                Some(z) => z.issuer = issuer,
                None => self.settings.zone = Some(ZoneSettings::new(issuer)),
            }
        }
        if let Some(port) = get("KEYCARD_BROKER_PORT") {
            self.settings.broker.port = parse_port(&port)?;
        }
        if let Some(id) = get("KEYCARD_CLIENT_ID")
            && let Some(z) = &mut self.settings.zone
        {
            z.client_id = Some(id);
        }
        if let Some(secret) = get("KEYCARD_CLIENT_SECRET") {
            self.env_client_secret = Some(SecretString::from(secret));
        }
        Ok(())
    }

    /// Writes the settings file atomically, readable by this user only.
    pub fn save(&self) -> Result<(), ConfigError> {
        let path = &self.paths.config_file;
        let write_err = |e: std::io::Error| ConfigError::Write {
            path: path.clone(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let text = toml::to_string_pretty(&self.settings).map_err(|e| ConfigError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("toml.tmp");
        write_private(&tmp, text.as_bytes()).map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    pub fn zone(&self) -> Result<&ZoneSettings, ConfigError> {
        self.settings.zone.as_ref().ok_or(ConfigError::NoZone)
    }

    pub fn port(&self) -> u16 {
        self.settings.broker.port
    }

    /// The broker's own resource identifier at the zone.
    pub fn resource_id(&self) -> String {
        self.settings
            .zone
            .as_ref()
            .and_then(|z| z.resource.clone())
            .unwrap_or_else(|| format!("http://localhost:{}/mcp", self.port()))
    }

    /// Keychain namespace: explicit in the file, else `default` for the user's own broker
    /// and a digest of the home directory when `KEYCARD_BROKER_HOME` relocates it.
    pub fn profile(&self) -> String {
        if let Some(p) = &self.settings.broker.profile {
            return p.clone();
        }
        if !self.home_override {
            return "default".into();
        }
        let digest = Sha256::digest(self.paths.data_dir.to_string_lossy().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

impl ZoneSettings {
    pub fn new(issuer: String) -> ZoneSettings {
        ZoneSettings {
            issuer,
            client_id: None,
            confidential: false,
            resource: None,
            scopes: default_scopes(),
            upstream_strategy: UpstreamStrategy::default(),
            timeout_secs: DEFAULT_ZONE_TIMEOUT_SECS,
        }
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

/// Parses the settings file text; the reason names the line and the key at fault.
pub fn parse(text: &str) -> Result<Settings, String> {
    let settings: Settings = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    if let Some(zone) = &settings.zone {
        normalize_zone(&zone.issuer).map_err(|e| e.to_string())?;
        if let Some(resource) = &zone.resource {
            url::Url::parse(resource).map_err(|e| format!("zone.resource: {e}"))?;
        }
        if !(1..=300).contains(&zone.timeout_secs) {
            return Err(format!(
                "zone.timeout_secs: {} is out of range (1 to 300 seconds)",
                zone.timeout_secs
            ));
        }
    }
    Ok(settings)
}

/// Accepts a full issuer URL or a bare zone id (`acme` → `https://acme.keycard.cloud`).
/// Plain `http` is only allowed for loopback hosts (the demo zone and tests).
pub fn normalize_zone(value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    let bad = |reason: &str| ConfigError::BadZone {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if !value.is_empty()
        && !value.contains("://")
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Ok(format!(
            "https://{}.keycard.cloud",
            value.to_ascii_lowercase()
        ));
    }
    let url = url::Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an issuer has no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("an issuer has no user info"));
    }
    let loopback = crate::net::is_loopback_url(&url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(bad("a zone must use https (http only on loopback)")),
        _ => return Err(bad("not an http(s) URL")),
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn parse_port(value: &str) -> Result<u16, ConfigError> {
    value
        .trim()
        .parse::<u16>()
        .map_err(|e| ConfigError::BadValue {
            name: "port",
            value: value.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_shorthand_and_validation() {
        assert_eq!(
            normalize_zone("acme").unwrap(),
            "https://acme.keycard.cloud"
        );
        assert_eq!(
            normalize_zone("https://acme.keycard.cloud/").unwrap(),
            "https://acme.keycard.cloud"
        );
        assert!(normalize_zone("http://127.0.0.1:3000").is_ok());
        assert!(normalize_zone("http://evil.example").is_err());
        // Loopback is decided by the one rule in `net` (RFC 6761 names included).
        assert!(normalize_zone("http://localhost:3000").is_ok());
        assert!(normalize_zone("http://[::1]:3000").is_ok());
        assert!(normalize_zone("http://localhost.evil.example").is_err());
        assert!(normalize_zone("ftp://x").is_err());
        assert!(normalize_zone("https://a.b/?x=1").is_err());
        assert!(normalize_zone("").is_err());
    }

    #[test]
    fn corrupt_files_are_typed_errors() {
        assert!(parse("[zone\nissuer=").is_err());
        assert!(parse("[zone]\nissuer = 3").is_err());
        assert!(parse("[zone]\nissuer = \"http://evil.example\"").is_err());
        assert!(parse("[broker]\nport = 99999").is_err());
        assert!(parse("[broker]\nunknown = 1").is_err());
        let ok = parse("[zone]\nissuer = \"https://a.keycard.cloud\"\n").unwrap();
        assert_eq!(ok.broker.port, DEFAULT_PORT);
        assert_eq!(
            ok.zone.unwrap().upstream_strategy,
            UpstreamStrategy::Exchange
        );
    }

    #[test]
    fn round_trip_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(Some(dir.path())).unwrap();
        assert!(config.zone().is_err());
        config
            .apply_env(|k| match k {
                "KEYCARD_ZONE" => Some("acme".into()),
                "KEYCARD_BROKER_PORT" => Some("9100".into()),
                _ => None,
            })
            .unwrap();
        config.save().unwrap();
        let again = Config::load(Some(dir.path())).unwrap();
        assert_eq!(again.settings, config.settings);
        assert_eq!(again.resource_id(), "http://localhost:9100/mcp");
        assert_eq!(again.profile().len(), 16);
        assert!(
            config
                .apply_env(|k| (k == "KEYCARD_BROKER_PORT").then(|| "x".into()))
                .is_err()
        );
    }
}
