//! `keycard-broker`: the headless broker's command line. Thin: [`args`] parses, a command in
//! [`commands`] asks the engine (`broker::api`), and [`output`] prints the answer or the
//! failure with its next step and exit code.

mod args;
mod commands;
mod output;

use std::process::ExitCode;

use broker::Config;
use broker::api::{ErrorCode, Failure};
use clap::Parser;

use crate::output::{Fail, Hint};

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        // clap has not told us about --json yet: look for it on the line.
        Err(e) => return output::usage(e, std::env::args_os().any(|a| a == "--json")),
    };
    let _log_guard = broker::logging::init("warn");
    let json = cli.json;
    let subject = cli.command.subject();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => output::report(fail, &subject, json),
    }
}

fn run(cli: args::Cli) -> Result<(), Fail> {
    // A config that cannot load says what to fix (the file, KEYCARD_BROKER_HOME, a variable).
    let config = Config::from_env()
        .map_err(|e| Fail::with_hint(broker::BrokerError::from(e).into(), Hint::None))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("cannot start the runtime: {e}"),
            )
        })?;
    let ctx = commands::Ctx {
        config,
        json: cli.json,
    };
    runtime.block_on(commands::run(cli.command, ctx))
}
