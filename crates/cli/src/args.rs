//! The command line: clap types and the parsers of typed values. Nothing here talks to the
//! engine; a value that does not parse is a usage error (exit 1).

use std::path::PathBuf;

use broker::api::{Access, ExportFormat, Outcome, UpstreamStrategy};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::output::Subject;

#[derive(Debug, Parser)]
#[command(
    name = "keycard-broker",
    version,
    about = "The local credential broker for AI agents: Keycard zone sign-in, provider consent, OS keychain."
)]
pub struct Cli {
    /// Print exactly one JSON document on stdout: the result, or {"error": {code, message}}.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configure the Keycard zone (issuer URL or zone id).
    Init(InitArgs),
    /// Sign in to the Keycard zone in the system browser.
    Login(RoundArgs),
    /// Connect a provider (its consent runs through the zone).
    Connect(ResourceRoundArgs),
    /// Run a provider's consent again (after its scopes changed).
    Reconnect(ResourceRoundArgs),
    /// Show the session and every connection.
    Status,
    /// Get a provider token now to prove a connection works (the token is never printed).
    Check { resource: String },
    /// Revoke a connection: zone revocation, keychain wipe, cache drop.
    Revoke { resource: String },
    /// Manage the provider catalog's custom resources.
    Resources {
        #[command(subcommand)]
        command: ResourcesCommand,
    },
    /// Sign out: revoke and wipe the session and all connections.
    Logout,
    /// Pause every agent's access to the running broker (its endpoint answers 503).
    Pause,
    /// Resume agent access.
    Resume,
    /// Run the broker: the loopback MCP endpoint and the OAuth callback on one port.
    Serve {
        #[arg(long)]
        port: Option<u16>,
    },
    /// Manage the agent clients allowed to call the MCP endpoint.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// What agents did: tool calls and token acquisitions, newest first.
    Audit(AuditArgs),
    /// Calls waiting for your approval (writes a policy marks "ask"), oldest first.
    Approvals,
    /// Let a waiting call through: once, or with --for 1h every call of the same agent to the
    /// same provider and method class for an hour.
    Approve {
        id: String,
        #[arg(long = "for", value_parser = parse_for)]
        span: Option<Span>,
    },
    /// Refuse a waiting call (the agent is told the user denied it).
    Deny { id: String },
    /// The per-agent policy: consent choices plus policy.cedar.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// What this broker is and where it keeps its config, data and logs (no secrets).
    About,
    /// Let an agent on another machine (an SSH host, a dev container) use this broker through
    /// its agent socket: prints (or writes) the forwarding config and the remote MCP config.
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Run `keycard-broker serve` as your user's background service (systemd user unit on
    /// Linux, launchd agent on macOS), started at login and again after a failure.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
    /// stdio ↔ HTTP bridge for stdio-only MCP clients (Claude Desktop; on a remote host, any
    /// stdio client through a forwarded agent socket).
    Stdio(StdioArgs),
    /// An HTTP MCP endpoint on this host's loopback that relays to a forwarded agent socket,
    /// for HTTP-only clients on a remote host. Holds no token: each client sends its own.
    Bridge {
        /// Loopback address to listen on, e.g. 127.0.0.1:8937.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The forwarded agent socket.
        #[arg(long, env = "KEYCARD_BROKER_SOCKET")]
        socket: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("token").required(true).args(["client", "token_env"])))]
pub struct StdioArgs {
    /// The client whose token the keychain holds (`clients config claude-desktop NAME --write`).
    #[arg(long)]
    pub client: Option<String>,
    /// Read the client token from this environment variable (a remote host has no keychain).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Reach the broker through this agent socket (a forwarded one on a remote host) instead of
    /// the loopback port.
    #[arg(long, env = "KEYCARD_BROKER_SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its bearer token once.
    Add {
        name: String,
        /// Its access to every provider: none, read, ask (read; writes wait for you) or write.
        #[arg(long, value_parser = parse_access, default_value = "ask")]
        access: Access,
    },
    /// What a client may do per provider: RESOURCE=LEVEL (LEVEL none, read, ask, write;
    /// RESOURCE a provider identifier or slug, or * for every provider). Replaces its choices.
    Access {
        name: String,
        #[arg(required = true, value_parser = parse_choice)]
        choices: Vec<(String, Access)>,
    },
    /// Every agent, OAuth (signed in through the consent page) and static, with its access.
    List,
    /// End an OAuth agent's sign-in now (its tokens stop working; it can sign in again), or
    /// remove a static client. NAME is the client id `clients list` shows.
    Signout { name: String },
    /// Remove a client; its token stops working on the next request.
    Remove { name: String },
    /// Print (or merge into the client's own file with --write) the MCP config for a client.
    /// Issues a fresh token for NAME (registering it if needed).
    Config {
        /// claude-code, cursor, vscode, codex, windsurf or claude-desktop.
        #[arg(value_parser = parse_kind)]
        kind: String,
        name: String,
        /// Merge into the client's config file (keeping what is there, with a backup).
        #[arg(long)]
        write: bool,
        /// Config file to write instead of the client's default location (implies --write).
        #[arg(long)]
        file: Option<PathBuf>,
        /// A new client's access to every provider: none, read, ask or write (default ask).
        /// Applies to static tokens; an OAuth client's access is chosen on the consent page.
        #[arg(long, value_parser = parse_access)]
        access: Option<Access>,
        /// A static bearer token in the entry, even for a client that can sign in with OAuth
        /// (claude-code, cursor, vscode, codex get a token-free OAuth entry by default).
        #[arg(long)]
        static_token: bool,
    },
    /// The kinds of agent client `clients config` knows, and where their files are.
    Kinds,
}

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// An agent on HOST over SSH: a RemoteForward of a socket in the remote user's home to
    /// this broker's agent socket, merged into ~/.ssh/config with --write.
    Ssh {
        /// The host as you type it after `ssh` (a name from your ssh config, or an address).
        host: String,
        /// The login on HOST (what `ssh -G HOST` says unless given).
        #[arg(long)]
        remote_user: Option<String>,
        /// Its home folder on HOST (/home/USER, or /root, unless given; /Users/USER on macOS).
        #[arg(long)]
        remote_home: Option<String>,
        /// Merge the Host block into ~/.ssh/config (a marked block, replaced on rerun; backup kept).
        #[arg(long)]
        write: bool,
        /// The ssh config file to write instead of ~/.ssh/config (implies --write).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        client: RemoteClientArgs,
    },
    /// An agent in this project's dev container: a bind mount of the agent socket and
    /// remoteEnv, merged into .devcontainer/devcontainer.json with --write (comments kept).
    Devcontainer {
        /// The project folder (the current one unless given).
        #[arg(long)]
        folder: Option<PathBuf>,
        /// Merge into FOLDER/.devcontainer/devcontainer.json (backup kept).
        #[arg(long)]
        write: bool,
        /// The devcontainer.json to write instead (implies --write).
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        client: RemoteClientArgs,
    },
}

/// The agent client a remote set-up makes or keeps.
#[derive(Debug, clap::Args)]
pub struct RemoteClientArgs {
    /// The client's name (ssh-HOST or devcontainer-FOLDER unless given).
    #[arg(long = "client")]
    pub name: Option<String>,
    /// Issue a new token for an existing client (the old one stops working).
    #[arg(long)]
    pub new_token: bool,
    /// A new client's access to every provider: none, read, ask or write (default ask).
    #[arg(long, value_parser = parse_access)]
    pub access: Option<Access>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the service file, validate it, and enable and start it where a user service
    /// manager runs (else say how to start it).
    Install,
    /// Stop, disable and remove the service.
    Uninstall,
    /// Whether the service is installed and running, and whether a broker answers.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate the policy in force; a problem is shown with file:line:column.
    Check,
    /// The effective rules, per agent or for all.
    Show {
        #[arg(long)]
        client: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResourcesCommand {
    /// Add any OAuth resource the zone brokers.
    Add {
        resource: String,
        #[arg(long)]
        name: Option<String>,
        /// URL prefix its token may be sent to (repeatable; defaults to the identifier).
        #[arg(long = "api-base")]
        api_bases: Vec<String>,
        /// Scopes a connection needs (space-separated).
        #[arg(long)]
        scopes: Option<String>,
    },
    /// List the catalog (seed providers and custom resources).
    List,
    /// Remove a custom resource (revoking its connection).
    Remove { resource: String },
}

/// `audit`'s filter, and where an export goes.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    pub client: Option<String>,
    /// A provider's resource identifier.
    #[arg(long)]
    pub resource: Option<String>,
    /// Only what ended this way: ok, upstream_error, needs_reconnect, refused, declined, error.
    #[arg(long, value_parser = parse_outcome)]
    pub outcome: Option<Outcome>,
    /// RFC 3339 time, or a span back from now: 30m, 2h, 7d.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many records (1000 unless given).
    #[arg(long, conflicts_with = "export")]
    pub limit: Option<u32>,
    /// Write every matching record to a file instead: csv or json.
    #[arg(long, value_parser = parse_export_format)]
    pub export: Option<ExportFormat>,
    /// Where the export goes: a folder (the file gets a dated name) or a new file's path.
    /// The current folder unless given.
    #[arg(long, requires = "export")]
    pub to: Option<PathBuf>,
}

/// `init`'s options, as typed.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[arg(long)]
    pub zone: String,
    /// A configured client id instead of dynamic registration.
    #[arg(long, env = "KEYCARD_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Read the application client secret from stdin (stored in the keychain only).
    #[arg(long, requires = "client_id")]
    pub client_secret_stdin: bool,
    /// Loopback port for the callback (and MCP endpoint).
    #[arg(long)]
    pub port: Option<u16>,
    /// The broker's resource identifier at the zone (default http://localhost:<port>/mcp).
    #[arg(long)]
    pub resource: Option<String>,
    /// How provider tokens are obtained.
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
}

#[derive(Debug, clap::Args)]
pub struct RoundArgs {
    /// Print the authorization URL as the first stdout line instead of opening a browser
    /// (with --json, on stderr: stdout carries only the result).
    #[arg(long)]
    pub no_browser: bool,
    /// Seconds to wait for the browser to come back.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct ResourceRoundArgs {
    /// Resource identifier (e.g. https://api.github.com) or catalog name (github).
    pub resource: String,
    #[command(flatten)]
    pub round: RoundArgs,
}

/// `init --strategy`: how provider tokens are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    Exchange,
    RefreshWithResource,
}

impl From<Strategy> for UpstreamStrategy {
    fn from(s: Strategy) -> UpstreamStrategy {
        match s {
            Strategy::Exchange => UpstreamStrategy::Exchange,
            Strategy::RefreshWithResource => UpstreamStrategy::RefreshWithResource,
        }
    }
}

impl Command {
    /// What the command is about: the advice after a failure names it.
    pub fn subject(&self) -> Subject {
        match self {
            Command::Connect(a) | Command::Reconnect(a) => Subject::Resource(a.resource.clone()),
            Command::Check { resource } | Command::Revoke { resource } => {
                Subject::Resource(resource.clone())
            }
            Command::Resources { command } => match command {
                ResourcesCommand::Add { resource, .. } | ResourcesCommand::Remove { resource } => {
                    Subject::Resource(resource.clone())
                }
                ResourcesCommand::List => Subject::Resources,
            },
            Command::Clients { command } => match command {
                ClientsCommand::Add { name, .. }
                | ClientsCommand::Remove { name }
                | ClientsCommand::Signout { name }
                | ClientsCommand::Access { name, .. }
                | ClientsCommand::Config { name, .. } => Subject::Client(name.clone()),
                ClientsCommand::List | ClientsCommand::Kinds => Subject::Clients,
            },
            Command::Serve { .. } => Subject::Serve,
            Command::Remote { command } => match command {
                RemoteCommand::Ssh { client, .. } | RemoteCommand::Devcontainer { client, .. } => {
                    client
                        .name
                        .clone()
                        .map_or(Subject::Clients, Subject::Client)
                }
            },
            Command::Service { .. } => Subject::General,
            Command::Pause | Command::Resume => Subject::RunningBroker,
            Command::Stdio(StdioArgs {
                client: Some(client),
                ..
            }) => Subject::Bridge(client.clone()),
            Command::Stdio(StdioArgs { token_env, .. }) => Subject::Remote(token_env.clone()),
            Command::Bridge { .. } => Subject::Remote(None),
            Command::Init(_) => Subject::Init,
            Command::Login(_)
            | Command::Status
            | Command::Logout
            | Command::Audit(_)
            | Command::Policy { .. }
            | Command::About => Subject::General,
            Command::Approvals | Command::Approve { .. } | Command::Deny { .. } => {
                Subject::RunningBroker
            }
        }
    }
}

/// `clients config KIND`: one of the kinds the engine can write an entry for.
pub fn parse_kind(value: &str) -> Result<String, String> {
    let kinds = broker::api::client_kinds();
    if kinds.iter().any(|k| k.kind == value) {
        return Ok(value.to_string());
    }
    let known: Vec<&str> = kinds.iter().map(|k| k.kind.as_str()).collect();
    Err(format!("use one of: {}", known.join(", ")))
}

/// `--outcome`: one of the words the activity log stores.
pub fn parse_outcome(value: &str) -> Result<Outcome, String> {
    Outcome::parse(value).ok_or_else(|| {
        "use one of: ok, upstream_error, needs_reconnect, refused, declined, error".to_string()
    })
}

/// How long an approval lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Once,
    Hour,
}

/// `approve --for`: `once` or `1h` (the only standing allowance there is).
pub fn parse_for(value: &str) -> Result<Span, String> {
    match value {
        "once" => Ok(Span::Once),
        "1h" | "60m" => Ok(Span::Hour),
        _ => Err("use 1h (or once)".into()),
    }
}

/// An access level: none, read, ask, write.
pub fn parse_access(value: &str) -> Result<Access, String> {
    Access::parse(value).ok_or_else(|| "use none, read, ask or write".to_string())
}

/// `RESOURCE=LEVEL`.
pub fn parse_choice(value: &str) -> Result<(String, Access), String> {
    let (resource, level) = value
        .rsplit_once('=')
        .ok_or_else(|| "use RESOURCE=LEVEL (e.g. github=read, *=ask)".to_string())?;
    if resource.is_empty() {
        return Err("name a provider before '='".into());
    }
    Ok((resource.to_string(), parse_access(level)?))
}

/// `--export`: csv or json.
pub fn parse_export_format(value: &str) -> Result<ExportFormat, String> {
    match value {
        "csv" => Ok(ExportFormat::Csv),
        "json" => Ok(ExportFormat::Json),
        _ => Err("use csv or json".to_string()),
    }
}

/// `--since`: RFC 3339, or `30m` / `2h` / `7d` back from now.
pub fn parse_since(value: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(value, Utc::now())
}

/// `--since`: RFC 3339, or a span back from `now` (30m, 2h, 7d). Spans too large for the
/// calendar are an error, never a panic.
pub fn parse_since_at(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let usage = || "use an RFC 3339 time or a span back from now: 30m, 2h, 7d".to_string();
    let (number, unit): (&str, fn(i64) -> Option<chrono::Duration>) =
        if let Some(n) = value.strip_suffix('m') {
            (n, chrono::Duration::try_minutes)
        } else if let Some(n) = value.strip_suffix('h') {
            (n, chrono::Duration::try_hours)
        } else if let Some(n) = value.strip_suffix('d') {
            (n, chrono::Duration::try_days)
        } else {
            return Err(usage());
        };
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
        .ok_or_else(usage)?;
    unit(n)
        .and_then(|span| now.checked_sub_signed(span))
        .ok_or_else(|| "that is before any date the log can hold".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keycard-broker").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn since_accepts_spans_and_dates() {
        let now = Utc::now();
        assert_eq!(
            parse_since_at("2h", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_since_at("30m", now).unwrap(),
            now - chrono::Duration::minutes(30)
        );
        assert_eq!(
            parse_since_at("7d", now).unwrap(),
            now - chrono::Duration::days(7)
        );
        assert_eq!(parse_since_at("0m", now).unwrap(), now);
        // Rust's integer syntax allows a plus sign; it means the same span.
        assert_eq!(
            parse_since_at("+5d", now).unwrap(),
            parse_since_at("5d", now).unwrap()
        );
        assert_eq!(
            parse_since_at("2026-01-01T00:00:00Z", now).unwrap(),
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap()
        );
        // An offset is converted, not dropped.
        assert_eq!(
            parse_since_at("2026-01-01T02:00:00+02:00", now).unwrap(),
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap()
        );
        assert!(parse_since("1h").unwrap() <= Utc::now());
    }

    #[test]
    fn since_refuses_garbage_and_overflow_without_panicking() {
        let now = Utc::now();
        for overflow in ["99999999999999d", "9999999999d", "9223372036854775807m"] {
            let e = parse_since_at(overflow, now).unwrap_err();
            assert_eq!(e, "that is before any date the log can hold", "{overflow}");
        }
        for bad in [
            "99999999999999999999d",
            "-5d",
            "5x",
            "5",
            "d",
            "",
            " 5d",
            "5 d",
            "5é",
            "é",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "yesterday",
        ] {
            let e = parse_since_at(bad, now).unwrap_err();
            assert_eq!(
                e, "use an RFC 3339 time or a span back from now: 30m, 2h, 7d",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn since_is_a_usage_error_on_the_command_line() {
        let cli = parse(&["audit", "--since", "2h"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Audit(AuditArgs { since: Some(_), .. })
        ));
        let e = parse(&["audit", "--since", "99999999999999d"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("--since"), "{e}");
    }

    #[test]
    fn audit_filters_and_export_parse_or_are_usage_errors() {
        let cli = parse(&[
            "audit",
            "--outcome",
            "refused",
            "--export",
            "csv",
            "--to",
            "x",
        ])
        .unwrap();
        let Command::Audit(args) = cli.command else {
            panic!("not audit")
        };
        assert_eq!(args.outcome, Some(Outcome::Refused));
        assert_eq!(args.export, Some(ExportFormat::Csv));
        assert_eq!(args.to, Some(PathBuf::from("x")));
        for bad in [
            &["audit", "--outcome", "fine"][..],
            &["audit", "--export", "xlsx"],
            &["audit", "--to", "x"],
            &["audit", "--export", "csv", "--limit", "3"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kind_is_one_the_engine_knows() {
        for kind in broker::api::client_kinds() {
            assert_eq!(parse_kind(&kind.kind).unwrap(), kind.kind);
        }
        for bad in ["", "Cursor", "cursor ", "claude", "emacs"] {
            let e = parse_kind(bad).unwrap_err();
            assert!(
                e.contains("claude-code") && e.contains("claude-desktop"),
                "{e}"
            );
        }
        let e = parse(&["clients", "config", "emacs", "me"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn strategy_names_map_to_the_engine_strategy() {
        for (name, want) in [
            ("exchange", UpstreamStrategy::Exchange),
            (
                "refresh-with-resource",
                UpstreamStrategy::RefreshWithResource,
            ),
        ] {
            let cli = parse(&["init", "--zone", "acme", "--strategy", name]).unwrap();
            let Command::Init(InitArgs {
                strategy: Some(s), ..
            }) = cli.command
            else {
                panic!("{name}: {:?}", cli.command);
            };
            assert_eq!(UpstreamStrategy::from(s), want);
        }
        for bad in ["Exchange", "refresh_with_resource", "token-exchange"] {
            let e = parse(&["init", "--zone", "acme", "--strategy", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{bad}");
        }
    }

    #[test]
    fn json_is_accepted_anywhere_on_every_command() {
        for args in [
            &["status"][..],
            &["login", "--no-browser"],
            &["connect", "github"],
            &["reconnect", "github"],
            &["check", "github"],
            &["revoke", "github"],
            &["resources", "add", "https://api.example.com"],
            &["resources", "list"],
            &["resources", "remove", "x"],
            &["logout"],
            &["pause"],
            &["resume"],
            &["serve"],
            &["clients", "add", "a"],
            &["clients", "list"],
            &["clients", "remove", "a"],
            &["clients", "config", "cursor", "a"],
            &["clients", "kinds"],
            &["audit"],
            &["about"],
            &["stdio", "--client", "a"],
            &["init", "--zone", "acme"],
            &["remote", "ssh", "devbox"],
            &["remote", "devcontainer", "--write"],
            &["service", "status"],
        ] {
            let after: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
            assert!(parse(&after).unwrap().json, "{args:?} --json");
            let before: Vec<&str> = std::iter::once("--json")
                .chain(args.iter().copied())
                .collect();
            assert!(parse(&before).unwrap().json, "--json {args:?}");
            assert!(!parse(args).unwrap().json);
        }
    }

    #[test]
    fn usage_mistakes_are_errors_and_help_is_not() {
        use clap::error::ErrorKind;
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            ErrorKind::DisplayHelp
        );
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
        assert_eq!(
            parse(&["nope"]).unwrap_err().kind(),
            ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            parse(&["init", "--client-secret-stdin", "--zone", "z"])
                .unwrap_err()
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["serve", "--port", "70000"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["audit", "--limit", "-1"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
    }

    #[test]
    fn every_command_names_its_subject() {
        let subject = |args: &[&str]| parse(args).unwrap().command.subject();
        assert_eq!(
            subject(&["connect", "github"]),
            Subject::Resource("github".into())
        );
        assert_eq!(
            subject(&["resources", "remove", "x"]),
            Subject::Resource("x".into())
        );
        assert_eq!(subject(&["resources", "list"]), Subject::Resources);
        assert_eq!(
            subject(&["clients", "config", "cursor", "me"]),
            Subject::Client("me".into())
        );
        assert_eq!(subject(&["clients", "list"]), Subject::Clients);
        assert_eq!(subject(&["pause"]), Subject::RunningBroker);
        assert_eq!(subject(&["serve"]), Subject::Serve);
        assert_eq!(
            subject(&["stdio", "--client", "d"]),
            Subject::Bridge("d".into())
        );
        assert_eq!(
            subject(&["stdio", "--token-env", "T", "--socket", "/s"]),
            Subject::Remote(Some("T".into()))
        );
        assert_eq!(
            subject(&["bridge", "--listen", "127.0.0.1:1", "--socket", "/s"]),
            Subject::Remote(None)
        );
        assert_eq!(subject(&["init", "--zone", "z"]), Subject::Init);
        assert_eq!(subject(&["status"]), Subject::General);
    }
}
