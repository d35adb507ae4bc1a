//! Everything the CLI prints: results as text or as one JSON document, failures as
//! `error: <message>` plus the next step (chosen by the failure's code, never its text), and
//! the exit code of each failure.

use std::io::Write;
use std::process::ExitCode;

use broker::api::{ErrorCode, Failure, Reply};
use serde::Serialize;

/// Prints a line on stdout; a closed pipe (`| head`) is not a reason to panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Prints a line on stderr.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Takes the expected variant out of a [`Reply`], or fails with an internal error.
macro_rules! expect_reply {
    ($reply:expr, $variant:path) => {
        match $reply {
            $variant(value) => Ok(value),
            other => Err($crate::output::unexpected(&other)),
        }
    };
}

pub(crate) use {expect_reply, say, tell};

/// What a command is about: the advice after a failure names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    General,
    Init,
    /// A provider, as the user typed it (catalog name or identifier).
    Resource(String),
    Resources,
    Client(String),
    Clients,
    Serve,
    /// Commands that act only on a running broker (pause, resume).
    RunningBroker,
    /// The stdio bridge for this client.
    Bridge(String),
    /// A bridge on a remote host, to a forwarded agent socket (the token's variable, if any).
    Remote(Option<String>),
}

/// The advice printed after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// From [`hint`]: the failure's code and the command's subject.
    ByCode,
    Text(String),
    /// The message already says what to do.
    None,
}

/// A failed command.
#[derive(Debug)]
pub struct Fail {
    pub failure: Failure,
    pub hint: Hint,
    /// The command already printed its result (with the error in it); only the exit code is left.
    pub shown: bool,
}

impl From<Failure> for Fail {
    fn from(failure: Failure) -> Fail {
        Fail {
            failure,
            hint: Hint::ByCode,
            shown: false,
        }
    }
}

impl From<broker::BrokerError> for Fail {
    fn from(e: broker::BrokerError) -> Fail {
        Fail::from(Failure::from(e))
    }
}

impl Fail {
    pub fn with_hint(failure: Failure, hint: Hint) -> Fail {
        Fail {
            failure,
            hint,
            shown: false,
        }
    }
}

/// The exit code of a failure, by kind: 1 the input, 2 something only the user can do,
/// 3 the zone or the network, 4 the keychain, 5 this machine (storage, disk, port) or a bug.
pub fn exit_code(code: ErrorCode) -> u8 {
    use ErrorCode as C;
    match code {
        C::InvalidInput | C::NotFound | C::AlreadyExists | C::PolicyInvalid => 1,
        C::NotConfigured
        | C::NotRunning
        | C::Unauthorized
        | C::NotSignedIn
        | C::NotConnected
        | C::NeedsReconnect
        | C::ConsentDeclined
        | C::Timeout
        | C::Cancelled
        | C::Busy => 2,
        C::ZoneUnreachable | C::ZoneSetup | C::ZoneRefused | C::BadRedirect => 3,
        C::KeychainLocked | C::KeychainUnavailable => 4,
        C::ConfigFile
        | C::DiskFull
        | C::Storage
        | C::PortInUse
        | C::AlreadyRunning
        | C::PortUnavailable
        | C::Internal => 5,
    }
}

/// Exit code of a usage error (unknown command or option, a value that does not parse).
pub const USAGE: u8 = 1;

/// The next step after a failure, as a command to run. `resource` is the provider the engine
/// names; the subject (what the user typed) wins, since that is what they can type again.
pub fn hint(code: ErrorCode, resource: Option<&str>, subject: &Subject) -> Option<String> {
    use ErrorCode as C;
    let resource = match subject {
        Subject::Resource(r) => Some(r.as_str()),
        _ => resource,
    }
    .unwrap_or("RESOURCE");
    let text = match (code, subject) {
        (C::NotSignedIn, _) => "Run `keycard-broker login`.".to_string(),
        (C::NotConnected, _) => format!("Run `keycard-broker connect {resource}`."),
        (C::NeedsReconnect, _) => format!("Run `keycard-broker reconnect {resource}`."),
        (C::NotConfigured, Subject::Remote(var)) => format!(
            "Set ${} to the token `keycard-broker remote ssh HOST` printed on the laptop.",
            var.as_deref().unwrap_or("KEYCARD_BROKER_TOKEN")
        ),
        (C::NotRunning, Subject::Remote(_)) => "Check that the SSH session forwarding the agent socket is up and Keycard Broker runs on the laptop (`keycard-broker remote ssh HOST` shows the set-up).".to_string(),
        (C::Unauthorized, Subject::Remote(var)) => format!(
            "The broker refused the token{}: on the laptop, run `keycard-broker remote ssh HOST` again for a new one.",
            var.as_ref().map(|v| format!(" in ${v}")).unwrap_or_default()
        ),
        (C::NotRunning, _) => "Start `keycard-broker serve` (or the tray app) first.".to_string(),
        (C::AlreadyRunning, _) => {
            "Stop the other Keycard Broker (`serve` or the tray app) for this home first."
                .to_string()
        }
        (C::NotConfigured | C::Unauthorized, Subject::Bridge(client)) => format!(
            "Run `keycard-broker clients config claude-desktop {client} --write` to store its token."
        ),
        (C::Unauthorized, _) => {
            "Give the client a new token with `keycard-broker clients config KIND NAME`."
                .to_string()
        }
        (C::NotConfigured, _) => "Run `keycard-broker init --zone ZONE` (an issuer URL or zone id)."
            .to_string(),
        (C::NotFound, Subject::Resource(_) | Subject::Resources) => {
            "See `keycard-broker resources list`, or add it with `keycard-broker resources add URL`."
                .to_string()
        }
        (C::NotFound, Subject::Client(_) | Subject::Clients) => {
            "See `keycard-broker clients list`.".to_string()
        }
        (C::AlreadyExists, Subject::Client(name)) => format!(
            "Choose another name, or give {name} a new token with `keycard-broker clients config KIND {name}`."
        ),
        (C::PortInUse, Subject::Serve) => {
            "Stop the other Keycard Broker, or choose another port with --port.".to_string()
        }
        (C::PortInUse, _) => "Stop the other Keycard Broker, or choose another port with \
             `keycard-broker init --zone ZONE --port PORT` (or KEYCARD_BROKER_PORT)."
            .to_string(),
        (C::KeychainLocked, _) => {
            "Unlock the keychain (your login keyring), then run the command again.".to_string()
        }
        (C::KeychainUnavailable, _) => {
            "Start or unlock the OS keychain for this session, then run the command again."
                .to_string()
        }
        (C::Timeout, _) => {
            "Run the command again and finish in the browser before --timeout runs out."
                .to_string()
        }
        (C::ConsentDeclined, _) => {
            "Run the command again and allow access in the browser.".to_string()
        }
        (C::Cancelled | C::BadRedirect, _) => "Run the command again.".to_string(),
        (C::Busy, _) => {
            "Finish or cancel a waiting consent round in the browser, then try again.".to_string()
        }
        (C::ZoneUnreachable, Subject::Init) => {
            "Check the zone URL and the network, then run the command again.".to_string()
        }
        (C::ZoneUnreachable, _) => {
            "Check the network (and the zone in `keycard-broker status`), then run the command again."
                .to_string()
        }
        (C::ZoneSetup, _) => "Change what the message names in the Keycard console.".to_string(),
        (C::PolicyInvalid, _) => {
            "Fix policy.cedar where the message says (`keycard-broker policy check`).".to_string()
        }
        (C::DiskFull, _) => "Free some disk space, then run the command again.".to_string(),
        (
            C::InvalidInput
            | C::NotFound
            | C::AlreadyExists
            | C::ConfigFile
            | C::ZoneRefused
            | C::Storage
            | C::PortUnavailable
            | C::Internal,
            _,
        ) => return None,
    };
    Some(text)
}

/// Prints a value as the one JSON document on stdout.
pub fn json(value: &impl Serialize) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        Failure::new(
            ErrorCode::Internal,
            format!("cannot render the answer as JSON: {e}"),
        )
    })?;
    say!("{text}");
    Ok(())
}

/// A write that failed after a token was issued: one JSON document with the error for scripts
/// and everything needed to finish by hand (the token included), so nothing is lost.
pub fn json_with_error(value: &impl Serialize, error: Failure) -> Fail {
    let mut doc = match serde_json::to_value(value) {
        Ok(doc) => doc,
        Err(e) => {
            return Failure::new(ErrorCode::Internal, format!("cannot render JSON: {e}")).into();
        }
    };
    doc["error"] = serde_json::json!(error);
    match json(&doc) {
        Ok(()) => Fail {
            failure: error,
            hint: Hint::None,
            shown: true,
        },
        Err(fail) => fail,
    }
}

/// Prints a result: one JSON document with `--json`, else the command's own text.
pub fn show<T: Serialize>(as_json: bool, value: &T, human: impl FnOnce(&T)) -> Result<(), Fail> {
    if as_json {
        json(value)
    } else {
        human(value);
        Ok(())
    }
}

/// Checks that an operation with nothing to report said `done`.
pub fn expect_done(reply: Reply) -> Result<(), Fail> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(&other)),
    }
}

/// An answer of the wrong kind (a broker of another version on the control socket).
pub fn unexpected(reply: &Reply) -> Fail {
    let kind = serde_json::to_value(reply)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_string))
        .unwrap_or_default();
    Failure::new(
        ErrorCode::Internal,
        format!("unexpected answer from the broker ({kind})"),
    )
    .into()
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: &'a Failure,
}

/// Prints a failure and returns the exit code for it.
pub fn report(fail: Fail, subject: &Subject, as_json: bool) -> ExitCode {
    let Fail {
        failure,
        hint: advice,
        shown,
    } = fail;
    // Into the log file too (stderr shows it only with a verbose filter).
    tracing::info!(code = %failure.code, "command failed: {}", failure.message);
    let status = ExitCode::from(exit_code(failure.code));
    if shown {
        return status;
    }
    if as_json {
        if json(&ErrorDocument { error: &failure }).is_err() {
            tell!("error: {}", failure.message);
        }
        return status;
    }
    tell!("error: {}", failure.message);
    let advice = match advice {
        Hint::ByCode => hint(failure.code, failure.resource.as_deref(), subject),
        Hint::Text(text) => Some(text),
        Hint::None => None,
    };
    if let Some(advice) = advice {
        tell!("{advice}");
    }
    status
}

/// A command line clap refused: exit 1 (help and version exit 0). With `--json` anywhere on
/// the line, the error is the JSON document.
pub fn usage(e: clap::Error, as_json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if as_json {
        let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            "a command is missing; see `keycard-broker --help`".to_string()
        } else {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        };
        if json(&ErrorDocument {
            error: &Failure::invalid(message),
        })
        .is_ok()
        {
            return ExitCode::from(USAGE);
        }
    }
    let _ = e.print();
    let _ = std::io::stderr().flush();
    ExitCode::from(USAGE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ErrorCode as C;

    /// Every code, in the order of the README's table. The match makes a new code a compile
    /// error here until it is added.
    const ALL: [ErrorCode; 27] = [
        C::InvalidInput,
        C::NotFound,
        C::AlreadyExists,
        C::PolicyInvalid,
        C::NotConfigured,
        C::NotRunning,
        C::Unauthorized,
        C::NotSignedIn,
        C::NotConnected,
        C::NeedsReconnect,
        C::ConsentDeclined,
        C::Timeout,
        C::Cancelled,
        C::Busy,
        C::ZoneUnreachable,
        C::ZoneSetup,
        C::ZoneRefused,
        C::BadRedirect,
        C::KeychainLocked,
        C::KeychainUnavailable,
        C::ConfigFile,
        C::DiskFull,
        C::Storage,
        C::PortInUse,
        C::AlreadyRunning,
        C::PortUnavailable,
        C::Internal,
    ];

    #[allow(dead_code)]
    fn all_is_complete(code: ErrorCode) {
        match code {
            C::InvalidInput
            | C::NotFound
            | C::AlreadyExists
            | C::NotConfigured
            | C::NotRunning
            | C::AlreadyRunning
            | C::Unauthorized
            | C::ConfigFile
            | C::PolicyInvalid
            | C::NotSignedIn
            | C::NotConnected
            | C::NeedsReconnect
            | C::ZoneUnreachable
            | C::ZoneSetup
            | C::ZoneRefused
            | C::ConsentDeclined
            | C::BadRedirect
            | C::Timeout
            | C::Cancelled
            | C::Busy
            | C::KeychainLocked
            | C::KeychainUnavailable
            | C::DiskFull
            | C::Storage
            | C::PortInUse
            | C::PortUnavailable
            | C::Internal => {}
        }
    }

    #[test]
    fn every_code_has_its_exit_code() {
        let table: Vec<(&str, u8)> = ALL.iter().map(|c| (c.as_str(), exit_code(*c))).collect();
        assert_eq!(
            table,
            [
                ("invalid_input", 1),
                ("not_found", 1),
                ("already_exists", 1),
                ("policy_invalid", 1),
                ("not_configured", 2),
                ("not_running", 2),
                ("unauthorized", 2),
                ("not_signed_in", 2),
                ("not_connected", 2),
                ("needs_reconnect", 2),
                ("consent_declined", 2),
                ("timeout", 2),
                ("cancelled", 2),
                ("busy", 2),
                ("zone_unreachable", 3),
                ("zone_setup", 3),
                ("zone_refused", 3),
                ("bad_redirect", 3),
                ("keychain_locked", 4),
                ("keychain_unavailable", 4),
                ("config_file", 5),
                ("disk_full", 5),
                ("storage", 5),
                ("port_in_use", 5),
                ("already_running", 5),
                ("port_unavailable", 5),
                ("internal", 5),
            ]
        );
        assert_eq!(USAGE, 1);
        // 0 is success; no failure may look like it, and none collides with a signal's 128+.
        assert!(ALL.iter().all(|c| (1..=5).contains(&exit_code(*c))));
    }

    #[test]
    fn hints_name_the_command_that_helps() {
        let general = Subject::General;
        let github = Subject::Resource("github".into());
        let cases: Vec<(ErrorCode, Option<&str>, Subject, Option<&str>)> = vec![
            (
                C::NotSignedIn,
                None,
                general.clone(),
                Some("Run `keycard-broker login`."),
            ),
            (
                C::NotSignedIn,
                None,
                github.clone(),
                Some("Run `keycard-broker login`."),
            ),
            (
                C::NeedsReconnect,
                Some("https://api.github.com"),
                github.clone(),
                Some("Run `keycard-broker reconnect github`."),
            ),
            (
                C::NeedsReconnect,
                Some("https://api.github.com"),
                general.clone(),
                Some("Run `keycard-broker reconnect https://api.github.com`."),
            ),
            (
                C::NotConnected,
                None,
                github.clone(),
                Some("Run `keycard-broker connect github`."),
            ),
            (
                C::NotConnected,
                None,
                general.clone(),
                Some("Run `keycard-broker connect RESOURCE`."),
            ),
            (
                C::NotConfigured,
                None,
                general.clone(),
                Some("Run `keycard-broker init --zone ZONE` (an issuer URL or zone id)."),
            ),
            (
                C::NotRunning,
                None,
                Subject::RunningBroker,
                Some("Start `keycard-broker serve` (or the tray app) first."),
            ),
            (
                C::Unauthorized,
                None,
                Subject::Bridge("desk".into()),
                Some(
                    "Run `keycard-broker clients config claude-desktop desk --write` to store its token.",
                ),
            ),
            (
                C::NotConfigured,
                None,
                Subject::Bridge("desk".into()),
                Some(
                    "Run `keycard-broker clients config claude-desktop desk --write` to store its token.",
                ),
            ),
            (
                C::NotFound,
                None,
                github.clone(),
                Some(
                    "See `keycard-broker resources list`, or add it with `keycard-broker resources add URL`.",
                ),
            ),
            (
                C::NotFound,
                None,
                Subject::Client("me".into()),
                Some("See `keycard-broker clients list`."),
            ),
            (C::NotFound, None, general.clone(), None),
            (
                C::AlreadyExists,
                None,
                Subject::Client("me".into()),
                Some(
                    "Choose another name, or give me a new token with `keycard-broker clients config KIND me`.",
                ),
            ),
            (
                C::PortInUse,
                None,
                Subject::Serve,
                Some("Stop the other Keycard Broker, or choose another port with --port."),
            ),
            (
                C::KeychainLocked,
                None,
                general.clone(),
                Some("Unlock the keychain (your login keyring), then run the command again."),
            ),
            (
                C::Timeout,
                None,
                general.clone(),
                Some("Run the command again and finish in the browser before --timeout runs out."),
            ),
            (C::InvalidInput, None, general.clone(), None),
            (C::Internal, None, general.clone(), None),
        ];
        for (code, resource, subject, want) in cases {
            assert_eq!(
                hint(code, resource, &subject).as_deref(),
                want,
                "{code} about {subject:?}"
            );
        }
    }

    #[test]
    fn every_hint_is_one_line_that_ends_a_sentence() {
        let subjects = [
            Subject::General,
            Subject::Init,
            Subject::Resource("github".into()),
            Subject::Resources,
            Subject::Client("me".into()),
            Subject::Clients,
            Subject::Serve,
            Subject::RunningBroker,
            Subject::Bridge("desk".into()),
        ];
        for code in ALL {
            for subject in &subjects {
                if let Some(h) = hint(code, Some("https://x.example"), subject) {
                    assert!(!h.contains('\n') && h.ends_with('.'), "{code}: {h}");
                    // Exit 2 means "do something": each of those codes says what.
                }
                if exit_code(code) == 2 {
                    assert!(
                        hint(code, None, subject).is_some(),
                        "{code} about {subject:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_error_document_has_the_documented_shape() {
        let mut failure = Failure::new(C::NeedsReconnect, "GitHub needs to be reconnected");
        let doc = serde_json::to_value(ErrorDocument { error: &failure }).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"error": {"code": "needs_reconnect", "message": "GitHub needs to be reconnected"}})
        );
        failure.resource = Some("https://api.github.com".into());
        let doc = serde_json::to_value(ErrorDocument { error: &failure }).unwrap();
        assert_eq!(doc["error"]["resource"], "https://api.github.com");
    }
}
