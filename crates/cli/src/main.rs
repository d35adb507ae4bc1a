//! `keycard-broker`: the headless broker's command line. Thin: every command parses its
//! arguments, calls `broker::Broker`, and prints the result or a one-line reason.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;

use broker::client_setup::{self, Kind};
use broker::config::{Config, UpstreamStrategy, ZoneSettings, normalize_zone};
use broker::control::{self, Request};
use broker::{Broker, BrokerError};
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "keycard-broker",
    version,
    about = "The local credential broker for AI agents: Keycard zone sign-in, provider consent, OS keychain."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Configure the Keycard zone (issuer URL or zone id).
    Init {
        #[arg(long)]
        zone: String,
        /// A configured client id instead of dynamic registration.
        #[arg(long, env = "KEYCARD_CLIENT_ID")]
        client_id: Option<String>,
        /// Read the application client secret from stdin (stored in the keychain only).
        #[arg(long, requires = "client_id")]
        client_secret_stdin: bool,
        /// Loopback port for the callback (and MCP endpoint).
        #[arg(long)]
        port: Option<u16>,
        /// The broker's resource identifier at the zone (default http://localhost:<port>/mcp).
        #[arg(long)]
        resource: Option<String>,
        /// How provider tokens are obtained.
        #[arg(long, value_enum)]
        strategy: Option<Strategy>,
    },
    /// Sign in to the Keycard zone in the system browser.
    Login(RoundArgs),
    /// Connect a provider (its consent runs through the zone).
    Connect(ResourceRoundArgs),
    /// Run a provider's consent again (after its scopes changed).
    Reconnect(ResourceRoundArgs),
    /// Show the session and every connection.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Get a provider token now to prove a connection works (the token is never printed).
    Check {
        resource: String,
        #[arg(long)]
        json: bool,
    },
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
    Audit {
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        /// RFC 3339 time, or a span back from now: 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// stdio ↔ HTTP bridge for stdio-only MCP clients (Claude Desktop).
    Stdio {
        #[arg(long)]
        client: String,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client; prints its bearer token once.
    Add {
        name: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a client; its token stops working on the next request.
    Remove { name: String },
    /// Print (or merge into the client's own file with --write) the MCP config for a client.
    /// Issues a fresh token for NAME (registering it if needed).
    Config {
        /// claude-code, cursor, vscode, codex, windsurf or claude-desktop.
        #[arg(value_parser = parse_kind)]
        kind: Kind,
        name: String,
        /// Merge into the client's config file (keeping what is there, with a backup).
        #[arg(long)]
        write: bool,
        /// Config file to write instead of the client's default location.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum ResourcesCommand {
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
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a custom resource (revoking its connection).
    Remove { resource: String },
}

#[derive(clap::Args)]
struct RoundArgs {
    /// Print the authorization URL as the first stdout line instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Seconds to wait for the browser to come back.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(clap::Args)]
struct ResourceRoundArgs {
    /// Resource identifier (e.g. https://api.github.com) or catalog name (github).
    resource: String,
    #[command(flatten)]
    round: RoundArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Strategy {
    Exchange,
    RefreshWithResource,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let _log_guard = init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{e}");
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Logs go to stderr (`RUST_LOG`, default warnings) and to a daily file in the log folder.
fn init_logging(config: &Config) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, fmt};
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
    let (file, guard) = match std::fs::create_dir_all(&config.paths.log_dir) {
        Ok(()) => {
            let appender = tracing_appender::rolling::daily(&config.paths.log_dir, "broker.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(EnvFilter::new("info"));
            (Some(layer), Some(guard))
        }
        Err(_) => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    guard
}

/// Sends an admin request to the running broker (control socket) or, with none running,
/// carries it out here. Browser rounds show their URL through `show_url`.
async fn execute(config: &Config, request: Request, no_browser: bool) -> Result<Value, String> {
    let socket = control::socket_path(&config.paths.data_dir);
    let show = |url: &str| show_url(url, no_browser);
    if let Some(result) = control::call(&socket, &request, show).await {
        return result;
    }
    let broker = Arc::new(
        Broker::open(config.clone())
            .await
            .map_err(|e| e.to_string())?,
    );
    let result = control::handle(&broker, request, show)
        .await
        .map_err(|e| e.to_string());
    broker.shutdown().await;
    result
}

fn show_url(url: &str, no_browser: bool) {
    if no_browser {
        println!("{url}");
        let _ = std::io::stdout().flush();
    } else if broker::consent::open_browser(url) {
        eprintln!("Continue in your browser…");
    } else {
        eprintln!("Open this URL to continue:\n{url}");
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("unexpected answer from the broker: {e}"))
}

async fn run(command: Command, mut config: Config) -> Result<(), String> {
    match command {
        Command::Init {
            zone,
            client_id,
            client_secret_stdin,
            port,
            resource,
            strategy,
        } => init(
            config,
            zone,
            client_id,
            client_secret_stdin,
            port,
            resource,
            strategy,
        )
        .await
        .map_err(|e| e.to_string())?,
        Command::Login(args) => {
            let request = Request::Login {
                timeout_secs: args.timeout,
            };
            let status: broker::Status = parse(execute(&config, request, args.no_browser).await?)?;
            println!(
                "Signed in to {} as {}.",
                status.zone.unwrap_or_default(),
                status.account.unwrap_or_else(|| "(unknown account)".into())
            );
        }
        Command::Connect(args) | Command::Reconnect(args) => {
            let request = Request::Connect {
                resource: args.resource.clone(),
                timeout_secs: args.round.timeout,
            };
            let provider: broker::Provider =
                parse(execute(&config, request, args.round.no_browser).await?)?;
            println!("Connected {} ({}).", provider.name, provider.resource);
        }
        Command::Status { json } => {
            let value = execute(&config, Request::Status, false).await?;
            if json {
                print_json(&value);
            } else {
                print_status(&parse(value)?);
            }
        }
        Command::Check { resource, json } => {
            let value = execute(&config, Request::Check { resource }, false).await?;
            if json {
                print_json(&value);
            } else {
                let info: broker::TokenInfo = parse(value)?;
                println!(
                    "{} works: token with scopes [{}], valid {} s more.",
                    info.name,
                    info.scopes.join(" "),
                    info.expires_in_secs
                );
            }
        }
        Command::Revoke { resource } => {
            let p: broker::Provider =
                parse(execute(&config, Request::Revoke { resource }, false).await?)?;
            println!(
                "Revoked {}: the broker forgot its credentials and refuses it until you connect again. \
                 The zone's delegated grant itself is removed in the Keycard console.",
                p.name
            );
        }
        Command::Resources { command } => match command {
            ResourcesCommand::Add {
                resource,
                name,
                api_bases,
                scopes,
            } => {
                let scopes = scopes
                    .as_deref()
                    .map(broker::zone::split_scopes)
                    .unwrap_or_default();
                let request = Request::ResourcesAdd {
                    resource,
                    name,
                    api_bases,
                    scopes,
                };
                let p: broker::Provider = parse(execute(&config, request, false).await?)?;
                println!(
                    "Added {} ({}); API base {}.",
                    p.name,
                    p.resource,
                    p.api_bases.join(", ")
                );
            }
            ResourcesCommand::List { json } => {
                let value = execute(&config, Request::ResourcesList, false).await?;
                if json {
                    print_json(&value);
                } else {
                    for p in parse::<Vec<broker::Provider>>(value)? {
                        println!("{:<18} {:<22} {}", p.slug, p.name, p.resource);
                    }
                }
            }
            ResourcesCommand::Remove { resource } => {
                execute(
                    &config,
                    Request::ResourcesRemove {
                        resource: resource.clone(),
                    },
                    false,
                )
                .await?;
                println!("Removed {resource}.");
            }
        },
        Command::Logout => {
            execute(&config, Request::Logout, false).await?;
            println!(
                "Signed out; the session and all connections were revoked and wiped from the keychain."
            );
        }
        Command::Pause | Command::Resume => {
            let pause = matches!(command, Command::Pause);
            let socket = control::socket_path(&config.paths.data_dir);
            let request = if pause {
                Request::Pause
            } else {
                Request::Resume
            };
            // Pausing means something only to a running broker: no in-process fallback.
            match control::call(&socket, &request, |_| {}).await {
                Some(result) => {
                    result?;
                    println!(
                        "{}",
                        if pause {
                            "Agent access paused."
                        } else {
                            "Agent access resumed."
                        }
                    );
                }
                None => {
                    return Err(
                        "no Keycard Broker is running (start `keycard-broker serve` or the app)"
                            .into(),
                    );
                }
            }
        }
        Command::Serve { port } => {
            if let Some(port) = port {
                config.settings.broker.port = port;
            }
            serve(config).await.map_err(|e| e.to_string())?;
        }
        Command::Clients { command } => clients(&config, command).await?,
        Command::Audit {
            client,
            resource,
            since,
            limit,
            json,
        } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let request = Request::Audit {
                client,
                resource,
                since,
                limit,
            };
            let value = execute(&config, request, false).await?;
            if json {
                print_json(&value);
            } else {
                let records: Vec<broker::audit::AuditRecord> = parse(value)?;
                if records.is_empty() {
                    println!("No activity yet.");
                }
                for r in records {
                    println!(
                        "{}  {:<14} {:<16} {:<7} {:<28} {:>4} {:>5}ms {}",
                        r.at.format("%Y-%m-%d %H:%M:%S"),
                        r.client.as_deref().unwrap_or("-"),
                        r.kind,
                        r.method.as_deref().unwrap_or(""),
                        format!(
                            "{}{}",
                            r.host.as_deref().unwrap_or(""),
                            r.path.as_deref().unwrap_or("")
                        ),
                        r.status.map(|s| s.to_string()).unwrap_or_default(),
                        r.latency_ms,
                        r.outcome
                    );
                }
            }
        }
        Command::Stdio { client } => {
            let broker = Broker::open(config.clone())
                .await
                .map_err(|e| e.to_string())?;
            let token = broker
                .vault()
                .get(broker::vault::SecretKey::ClientToken(client.clone()))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!("no stored token for client {client:?}; run `keycard-broker clients config claude-desktop {client} --write`")
                })?;
            let url = format!("http://127.0.0.1:{}/mcp", config.port());
            broker::mcp::bridge::run(&url, &token)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

async fn init(
    mut config: Config,
    zone: String,
    client_id: Option<String>,
    client_secret_stdin: bool,
    port: Option<u16>,
    resource: Option<String>,
    strategy: Option<Strategy>,
) -> Result<(), BrokerError> {
    let issuer = normalize_zone(&zone)?;
    // Fail early on a wrong zone URL: discovery must work and name the same issuer.
    let mut settings = ZoneSettings::new(issuer.clone());
    broker::zone::Zone::discover(&issuer, settings.timeout()).await?;
    let previous = config.settings.zone.clone();
    settings.client_id = client_id;
    settings.resource = resource;
    settings.upstream_strategy = match strategy {
        Some(Strategy::RefreshWithResource) => UpstreamStrategy::RefreshWithResource,
        Some(Strategy::Exchange) => UpstreamStrategy::Exchange,
        None => previous
            .as_ref()
            .map(|p| p.upstream_strategy)
            .unwrap_or_default(),
    };
    if let Some(p) = &previous {
        settings.timeout_secs = p.timeout_secs;
    }
    let secret = if client_secret_stdin {
        Some(read_secret_line()?)
    } else {
        config.env_client_secret.clone()
    };
    settings.confidential = secret.is_some() && settings.client_id.is_some();
    if let Some(port) = port {
        config.settings.broker.port = port;
    }
    let broker = Broker::open(config.clone()).await?;
    if previous.as_ref().is_some_and(|p| p.issuer != issuer)
        && broker.status()?.session != "signed_out"
    {
        eprintln!("Signing out of the previous zone first.");
        broker.logout().await?;
    }
    if let (Some(secret), true) = (secret, settings.confidential) {
        broker.store_client_secret(secret).await?;
    }
    config.settings.zone = Some(settings);
    config.save()?;
    let status = broker.status()?;
    if let Some(signed_in_for) = status.resource.filter(|r| *r != config.resource_id()) {
        // The session stays pinned to the identifier it was made for: nothing is lost, but
        // the new identifier takes effect only with a new sign-in.
        println!(
            "The broker's resource identifier is now {}, but you are signed in for {signed_in_for}; run `keycard-broker login` to sign in for the new identifier.",
            config.resource_id()
        );
    }
    println!("Zone set to {issuer}. Next: keycard-broker login");
    Ok(())
}

/// Runs the broker until Ctrl-C / SIGTERM: MCP endpoint + callback on the port, admin
/// requests on the control socket.
async fn serve(config: Config) -> Result<(), BrokerError> {
    let port = config.port();
    let socket = control::socket_path(&config.paths.data_dir);
    let broker = Arc::new(Broker::open(config).await?);
    let addr = broker
        .start_with(broker::mcp::router(broker.clone(), port))
        .await?;
    println!("Keycard Broker is serving MCP at http://{addr}/mcp");
    let _ = std::io::stdout().flush();
    let result = control::serve(broker.clone(), socket, shutdown_signal()).await;
    broker.shutdown().await;
    result
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn clients(config: &Config, command: ClientsCommand) -> Result<(), String> {
    match command {
        ClientsCommand::Add { name, json } => {
            let value = execute(config, Request::ClientsAdd { name }, false).await?;
            if json {
                print_json(&value);
            } else {
                println!(
                    "Client {} added. Its token is shown only this once:\n{}",
                    value["name"].as_str().unwrap_or_default(),
                    value["token"].as_str().unwrap_or_default()
                );
            }
        }
        ClientsCommand::List { json } => {
            let value = execute(config, Request::ClientsList, false).await?;
            if json {
                print_json(&value);
            } else {
                let list: Vec<broker::clients::ClientRecord> = parse(value)?;
                if list.is_empty() {
                    println!(
                        "No agent clients yet — add one with `keycard-broker clients add NAME`."
                    );
                }
                for c in list {
                    println!(
                        "{:<24} added {}  last seen {}",
                        c.name,
                        c.created_at.format("%Y-%m-%d %H:%M"),
                        c.last_seen_at
                            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
        }
        ClientsCommand::Remove { name } => {
            execute(config, Request::ClientsRemove { name: name.clone() }, false).await?;
            println!("Removed client {name}; its token no longer works.");
        }
        ClientsCommand::Config {
            kind,
            name,
            write,
            file,
        } => {
            broker::clients::validate_name(&name).map_err(|e| e.to_string())?;
            let value =
                execute(config, Request::ClientsIssue { name: name.clone() }, false).await?;
            let token = SecretString::from(value["token"].as_str().unwrap_or_default().to_string());
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "keycard-broker".into());
            let broker = Broker::open(config.clone())
                .await
                .map_err(|e| e.to_string())?;
            let snippet = broker
                .client_snippet(kind, &name, &token, &exe)
                .await
                .map_err(|e| e.to_string())?;
            if write {
                let path = match file {
                    Some(p) => p,
                    None => client_setup::default_path(kind).map_err(|e| e.to_string())?,
                };
                let written =
                    client_setup::merge_into(&snippet, &path).map_err(|e| e.to_string())?;
                println!(
                    "Wrote the {name} entry into {}{}.",
                    path.display(),
                    written
                        .backup
                        .as_ref()
                        .map(|b| format!(" (backup: {})", b.display()))
                        .unwrap_or_default()
                );
                if let Some(warning) = written.warning() {
                    eprintln!("{warning}");
                }
                if let Some(note) = snippet.note() {
                    println!("{note}");
                }
            } else {
                println!("{}", snippet.render());
                if let Some(note) = snippet.note() {
                    eprintln!("{note}");
                }
            }
        }
    }
    Ok(())
}

fn parse_kind(value: &str) -> Result<Kind, String> {
    Kind::parse(value).ok_or_else(|| {
        "use one of: claude-code, cursor, vscode, codex, windsurf, claude-desktop".to_string()
    })
}

/// `--since`: RFC 3339, or `30m` / `2h` / `7d` back from now.
fn parse_since(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    parse_since_at(value, chrono::Utc::now())
}

/// `--since`: RFC 3339, or a span back from `now` (30m, 2h, 7d). Spans too large for the
/// calendar are an error, never a panic.
fn parse_since_at(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let usage = || format!("invalid --since {value:?}: use RFC 3339 or 30m / 2h / 7d");
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
    let n: i64 = number.parse().ok().filter(|n| *n >= 0).ok_or_else(usage)?;
    unit(n)
        .and_then(|span| now.checked_sub_signed(span))
        .ok_or_else(|| {
            format!("invalid --since {value:?}: that is before any date the log can hold")
        })
}

fn read_secret_line() -> Result<SecretString, BrokerError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        broker::config::ConfigError::BadValue {
            name: "client secret",
            value: "<stdin>".into(),
            reason: e.to_string(),
        }
    })?;
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        return Err(broker::config::ConfigError::BadValue {
            name: "client secret",
            value: "<stdin>".into(),
            reason: "empty".into(),
        }
        .into());
    }
    Ok(SecretString::from(secret))
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

fn print_status(status: &broker::Status) {
    println!(
        "Zone:    {}",
        status.zone.as_deref().unwrap_or("(not configured)")
    );
    println!(
        "Account: {} ({})",
        status.account.as_deref().unwrap_or("-"),
        status.session.replace('_', " ")
    );
    if status.paused {
        println!("Agents:  paused (run `keycard-broker resume`)");
    }
    if status.keychain_pending > 0 {
        println!(
            "Keychain: locked — {} renewed sign-in token(s) wait in memory; unlock the keychain before quitting the broker",
            status.keychain_pending
        );
    }
    if status.connections.is_empty() {
        println!("No connections yet — run `keycard-broker connect github` (or any resource).");
        return;
    }
    println!(
        "{:<20} {:<16} {:<20} {:<20} RESOURCE",
        "NAME", "STATUS", "SCOPES", "LAST USED"
    );
    for c in &status.connections {
        println!(
            "{:<20} {:<16} {:<20} {:<20} {}",
            c.name,
            c.status.as_str(),
            c.scopes.join(" "),
            c.last_used_at
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
            c.resource
        );
        if let Some(e) = &c.last_error {
            println!("    {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_spans_and_dates_and_refuses_overflow_without_panicking() {
        let now = chrono::Utc::now();
        assert_eq!(
            parse_since_at("2h", now).unwrap(),
            now - chrono::Duration::hours(2)
        );
        assert_eq!(
            parse_since_at("30m", now).unwrap(),
            now - chrono::Duration::minutes(30)
        );
        assert!(parse_since_at("2026-01-01T00:00:00Z", now).is_ok());
        for bad in [
            "99999999999999d",
            "9999999999d",
            "9223372036854775807m",
            "-5d",
            "5x",
            "d",
            "",
            "5é",
            "é",
        ] {
            let e = parse_since_at(bad, now).unwrap_err();
            assert!(e.contains("--since"), "{bad}: {e}");
        }
    }
}
