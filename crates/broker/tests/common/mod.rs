//! Shared set-up for the engine suites: a broker home configured for a zone emulator, signed
//! in, a resource connected, with the session's real Secret Service.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use broker::config::{Config, UpstreamStrategy, ZoneSettings};
use broker::{Broker, BrokerError};
use testkit::{ZoneEmulator, authorize, callback_prefix, free_port};

pub struct Setup {
    pub home: tempfile::TempDir,
    pub port: u16,
    pub config: Config,
}

/// A broker home for `zone`; `edit` adjusts the zone settings before they are saved.
pub fn setup_with(
    zone: &ZoneEmulator,
    strategy: UpstreamStrategy,
    home: tempfile::TempDir,
    edit: impl FnOnce(&mut ZoneSettings),
) -> Setup {
    let port = free_port();
    let mut config = Config::load(Some(home.path())).unwrap();
    let mut settings = ZoneSettings::new(zone.issuer.clone());
    settings.upstream_strategy = strategy;
    edit(&mut settings);
    config.settings.zone = Some(settings);
    config.settings.broker.port = port;
    config.save().unwrap();
    Setup { home, port, config }
}

pub fn setup(zone: &ZoneEmulator, strategy: UpstreamStrategy) -> Setup {
    setup_with(zone, strategy, tempfile::tempdir().unwrap(), |_| {})
}

pub async fn open(s: &Setup) -> Broker {
    Broker::open(s.config.clone())
        .await
        .expect("open broker with the real keychain")
}

pub async fn login(broker: &Broker, port: u16) {
    let round = broker.begin_login().await.unwrap();
    let url = round.url.to_string();
    let prefix = callback_prefix(port);
    let (done, (status, page)) = tokio::join!(
        broker.complete(round, Duration::from_secs(30)),
        authorize(&url, &prefix)
    );
    assert_eq!(status, 200, "callback page: {page}");
    done.unwrap();
}

pub async fn connect(broker: &Broker, port: u16, key: &str) -> Result<(), BrokerError> {
    let round = broker.begin_connect(key).await?;
    let url = round.url.to_string();
    let prefix = callback_prefix(port);
    let (done, _) = tokio::join!(
        broker.complete(round, Duration::from_secs(30)),
        authorize(&url, &prefix)
    );
    done
}

/// Signs in on `s`, adds `api` as a resource (requires `read write`) and connects it.
pub async fn sign_in_and_connect(s: &Setup, api: &str) -> Broker {
    let broker = open(s).await;
    login(&broker, s.port).await;
    broker
        .add_resource(
            api,
            Some("Fixture API"),
            &[],
            &["read".into(), "write".into()],
        )
        .unwrap();
    connect(&broker, s.port, api).await.unwrap();
    broker
}

pub async fn assert_clean(zone: &ZoneEmulator, s: &Setup) {
    testkit::assert_no_leak(&zone.issued().await, s.home.path(), &[]);
}
