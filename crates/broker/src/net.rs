//! Loopback versus the network. Traffic to this machine (the bridge to the broker, a loopback
//! zone or API) never goes through a proxy: a proxy from the environment would otherwise see the
//! loopback bearer and tokens in clear text. Everything else keeps honouring the user's proxy
//! settings (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`), which corporate networks need.

use url::{Host, Url};

/// `127.0.0.0/8`, `::1` (and IPv4-mapped loopback), `localhost` and `*.localhost` (RFC 6761).
pub fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

pub fn is_loopback_url(url: &Url) -> bool {
    url.host().is_some_and(|h| is_loopback_host(&h))
}

/// The path of the MCP endpoint on the loopback listener.
pub const MCP_PATH: &str = "/mcp";

/// The URL agents use to reach the broker on `port` (the one place that spells it).
pub fn mcp_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}{MCP_PATH}")
}

/// The `Host` values the endpoint answers to: the loopback names of this port (the one list).
pub fn own_hosts(port: u16) -> Vec<String> {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .map(|host| format!("{host}:{port}"))
        .collect()
}

/// Our own origins, the only ones a browser-borne request may carry.
pub fn own_origins(port: u16) -> Vec<String> {
    own_hosts(port)
        .iter()
        .map(|host| format!("http://{host}"))
        .collect()
}

/// A client for traffic to one side: `loopback` clients ignore every proxy setting.
pub fn client_builder(loopback: bool) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("keycard-broker/", env!("CARGO_PKG_VERSION")));
    if loopback {
        builder.no_proxy()
    } else {
        builder
    }
}

/// Two clients built alike, one for loopback targets and one for the network.
#[derive(Debug, Clone)]
pub struct Clients {
    loopback: reqwest::Client,
    network: reqwest::Client,
}

impl Clients {
    /// Builds both from the same settings.
    pub fn build(
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Clients, reqwest::Error> {
        Ok(Clients {
            loopback: configure(client_builder(true)).build()?,
            network: configure(client_builder(false)).build()?,
        })
    }

    /// The client for a request to `url`.
    pub fn for_url(&self, url: &Url) -> &reqwest::Client {
        if is_loopback_url(url) {
            &self.loopback
        } else {
            &self.network
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for yes in [
            "http://127.0.0.1:1/",
            "http://127.9.8.7/",
            "http://[::1]:8/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
        ] {
            assert!(is_loopback_url(&Url::parse(yes).unwrap()), "{yes}");
        }
        for no in [
            "https://api.github.com/",
            "http://10.0.0.1/",
            "http://localhost.evil.example/",
            "http://[::2]/",
            "http://notlocalhost/",
        ] {
            assert!(!is_loopback_url(&Url::parse(no).unwrap()), "{no}");
        }
    }
}
