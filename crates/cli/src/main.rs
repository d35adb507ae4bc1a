//! `keycard-broker`: the headless broker's command line. Thin: every command parses its
//! arguments, calls `broker::Broker`, and prints the result or a one-line reason.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use broker::config::{Config, UpstreamStrategy, ZoneSettings, normalize_zone};
use broker::{Broker, BrokerError, Round};
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

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

async fn run(command: Command, mut config: Config) -> Result<(), BrokerError> {
    match command {
        Command::Init {
            zone,
            client_id,
            client_secret_stdin,
            port,
            resource,
            strategy,
        } => {
            let issuer = normalize_zone(&zone)?;
            // Fail early on a wrong zone URL: discovery must work and name the same issuer.
            broker::zone::Zone::discover(&issuer).await?;
            let previous = config.settings.zone.clone();
            let mut settings = ZoneSettings::new(issuer.clone());
            settings.client_id = client_id;
            settings.resource = resource;
            settings.upstream_strategy = match strategy {
                Some(Strategy::RefreshWithResource) => UpstreamStrategy::RefreshWithResource,
                Some(Strategy::Exchange) | None => previous
                    .as_ref()
                    .map(|p| p.upstream_strategy)
                    .unwrap_or_default(),
            };
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
            println!("Zone set to {issuer}. Next: keycard-broker login");
        }
        Command::Login(args) => {
            let broker = Broker::open(config).await?;
            let round = broker.begin_login().await?;
            finish_round(&broker, round, &args).await?;
            let status = broker.status()?;
            println!(
                "Signed in to {} as {}.",
                status.zone.unwrap_or_default(),
                status.account.unwrap_or_else(|| "(unknown account)".into())
            );
        }
        Command::Connect(args) | Command::Reconnect(args) => {
            let broker = Broker::open(config).await?;
            let round = broker.begin_connect(&args.resource).await?;
            let provider = broker.provider(&args.resource)?;
            finish_round(&broker, round, &args.round).await?;
            println!("Connected {} ({}).", provider.name, provider.resource);
        }
        Command::Status { json } => {
            let broker = Broker::open(config).await?;
            let status = broker.status()?;
            if json {
                print_json(&status);
            } else {
                print_status(&status);
            }
        }
        Command::Check { resource, json } => {
            let broker = Broker::open(config).await?;
            let info = broker.check(&resource).await?;
            if json {
                print_json(&info);
            } else {
                println!(
                    "{} works: token with scopes [{}], valid {} s more.",
                    info.name,
                    info.scopes.join(" "),
                    info.expires_in_secs
                );
            }
        }
        Command::Revoke { resource } => {
            let broker = Broker::open(config).await?;
            broker.revoke(&resource).await?;
            println!(
                "Revoked {resource}: the broker forgot its credentials and refuses it until you connect again. \
                 The zone's delegated grant itself is removed in the Keycard console."
            );
        }
        Command::Resources { command } => {
            let broker = Broker::open(config).await?;
            match command {
                ResourcesCommand::Add {
                    resource,
                    name,
                    api_bases,
                    scopes,
                } => {
                    let scopes: Vec<String> = scopes
                        .as_deref()
                        .map(broker::zone::split_scopes)
                        .unwrap_or_default();
                    let p = broker.add_resource(&resource, name.as_deref(), &api_bases, &scopes)?;
                    println!(
                        "Added {} ({}); API base {}.",
                        p.name,
                        p.resource,
                        p.api_bases.join(", ")
                    );
                }
                ResourcesCommand::List { json } => {
                    let providers = broker.providers()?;
                    if json {
                        print_json(&providers);
                    } else {
                        for p in providers {
                            println!("{:<18} {:<22} {}", p.slug, p.name, p.resource);
                        }
                    }
                }
                ResourcesCommand::Remove { resource } => {
                    broker.remove_resource(&resource).await?;
                    println!("Removed {resource}.");
                }
            }
        }
        Command::Logout => {
            let broker = Broker::open(config).await?;
            broker.logout().await?;
            println!(
                "Signed out; the session and all connections were revoked and wiped from the keychain."
            );
        }
    }
    Ok(())
}

/// Shows the authorization URL (browser or stdout) and waits for the redirect.
async fn finish_round(broker: &Broker, round: Round, args: &RoundArgs) -> Result<(), BrokerError> {
    let url = round.url.to_string();
    if args.no_browser {
        println!("{url}");
        let _ = std::io::stdout().flush();
    } else if webbrowser::open(&url).is_err() {
        eprintln!("Could not open a browser. Open this URL to continue:\n{url}");
    } else {
        eprintln!("Continue in your browser…");
    }
    let result = broker
        .complete(round, Duration::from_secs(args.timeout))
        .await;
    broker.shutdown().await;
    result
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
