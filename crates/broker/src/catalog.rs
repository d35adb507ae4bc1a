//! The provider catalog as data: the seed providers plus resources the user added.
//! A provider is identified by its resource identifier at the zone; its API base URLs say
//! which request URLs the broker may send that provider's token to.

use serde::{Deserialize, Serialize};

use crate::db::ResourceRecord;

/// One provider the user can connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct Provider {
    /// Short handle for the CLI (`github`); custom resources use their host.
    pub slug: String,
    pub name: String,
    /// Resource identifier at the Keycard zone (RFC 8707 `resource`).
    pub resource: String,
    /// URL prefixes the provider's token may be sent to. Defaults to the identifier.
    pub api_bases: Vec<String>,
    /// Scopes a connection needs; empty means "whatever the zone grants".
    pub scopes: Vec<String>,
    pub docs_url: Option<String>,
    pub custom: bool,
}

struct Seed {
    slug: &'static str,
    name: &'static str,
    resource: &'static str,
    api_bases: &'static [&'static str],
    docs: &'static str,
}

/// The seed list from the product's design card.
const SEED: &[Seed] = &[
    Seed {
        slug: "github",
        name: "GitHub",
        resource: "https://api.github.com",
        api_bases: &["https://api.github.com"],
        docs: "https://docs.github.com/rest",
    },
    Seed {
        slug: "gmail",
        name: "Gmail",
        resource: "https://gmail.googleapis.com",
        api_bases: &["https://gmail.googleapis.com"],
        docs: "https://developers.google.com/gmail/api",
    },
    Seed {
        slug: "google-calendar",
        name: "Google Calendar",
        resource: "https://www.googleapis.com/calendar/v3",
        api_bases: &["https://www.googleapis.com/calendar/v3"],
        docs: "https://developers.google.com/calendar/api",
    },
    Seed {
        slug: "google-drive",
        name: "Google Drive",
        resource: "https://www.googleapis.com/drive/v3",
        api_bases: &[
            "https://www.googleapis.com/drive/v3",
            "https://www.googleapis.com/upload/drive/v3",
        ],
        docs: "https://developers.google.com/drive/api",
    },
    Seed {
        slug: "jira",
        name: "Jira",
        resource: "https://api.atlassian.com/ex/jira",
        api_bases: &["https://api.atlassian.com/ex/jira"],
        docs: "https://developer.atlassian.com/cloud/jira/platform/rest/v3/",
    },
    Seed {
        slug: "confluence",
        name: "Confluence",
        resource: "https://api.atlassian.com/ex/confluence",
        api_bases: &["https://api.atlassian.com/ex/confluence"],
        docs: "https://developer.atlassian.com/cloud/confluence/rest/v2/",
    },
    Seed {
        slug: "linear",
        name: "Linear",
        resource: "https://api.linear.app",
        api_bases: &["https://api.linear.app"],
        docs: "https://linear.app/developers",
    },
    Seed {
        slug: "sentry",
        name: "Sentry",
        resource: "https://sentry.io/api",
        api_bases: &["https://sentry.io/api"],
        docs: "https://docs.sentry.io/api/",
    },
    Seed {
        slug: "slack",
        name: "Slack",
        resource: "https://slack.com/api",
        api_bases: &["https://slack.com/api"],
        docs: "https://api.slack.com/methods",
    },
    Seed {
        slug: "attio",
        name: "Attio",
        resource: "https://api.attio.com",
        api_bases: &["https://api.attio.com"],
        docs: "https://developers.attio.com",
    },
];

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("{0:?} is not a provider in the catalog")]
    Unknown(String),
    #[error("invalid resource {value:?}: {reason}")]
    Invalid { value: String, reason: String },
    #[error("{0} is a built-in provider and cannot be removed")]
    BuiltIn(String),
}

/// Seed providers followed by custom ones (a custom entry with a seed's identifier wins).
pub fn providers(custom: &[ResourceRecord]) -> Vec<Provider> {
    let mut out: Vec<Provider> = SEED
        .iter()
        .filter(|s| !custom.iter().any(|c| c.resource == s.resource))
        .map(|s| Provider {
            slug: s.slug.into(),
            name: s.name.into(),
            resource: s.resource.into(),
            api_bases: s.api_bases.iter().map(|b| b.to_string()).collect(),
            scopes: Vec::new(),
            docs_url: Some(s.docs.into()),
            custom: false,
        })
        .collect();
    out.extend(custom.iter().map(|c| Provider {
        slug: slug_for(&c.resource),
        name: c.name.clone(),
        resource: c.resource.clone(),
        api_bases: if c.api_bases.is_empty() {
            vec![c.resource.clone()]
        } else {
            c.api_bases.clone()
        },
        scopes: c.scopes.clone(),
        docs_url: c.docs_url.clone(),
        custom: true,
    }));
    out
}

pub fn is_seed(resource: &str) -> bool {
    SEED.iter().any(|s| s.resource == resource)
}

/// Finds a provider by resource identifier (trailing slash ignored) or slug.
pub fn find<'a>(providers: &'a [Provider], key: &str) -> Result<&'a Provider, CatalogError> {
    let trimmed = key.trim().trim_end_matches('/');
    providers
        .iter()
        .find(|p| p.resource.trim_end_matches('/') == trimmed)
        .or_else(|| {
            providers
                .iter()
                .find(|p| p.slug.eq_ignore_ascii_case(trimmed))
        })
        .ok_or_else(|| CatalogError::Unknown(key.to_string()))
}

/// Validates a resource identifier or API base: absolute http(s), no query, fragment or
/// user info (those would make prefix matching ambiguous).
pub fn validate_url(value: &str) -> Result<String, CatalogError> {
    let bad = |reason: &str| CatalogError::Invalid {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(value.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http(s) URL"));
    }
    if url.host_str().is_none() {
        return Err(bad("must name a host"));
    }
    if url.scheme() == "http" && !crate::net::is_loopback_url(&url) {
        // Tokens for it would travel in clear text.
        return Err(bad(
            "must use https (plain http is allowed only for loopback hosts such as 127.0.0.1)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain user info"));
    }
    let text = url.as_str();
    // `Url` adds "/" to a bare origin; keep the identifier as the user wrote it.
    Ok(if value.trim().ends_with('/') {
        text.to_string()
    } else {
        text.trim_end_matches('/').to_string()
    })
}

fn slug_for(resource: &str) -> String {
    url::Url::parse(resource)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| resource.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn seed_has_the_ten_providers() {
        let all = providers(&[]);
        assert_eq!(all.len(), 10);
        assert_eq!(
            find(&all, "github").unwrap().resource,
            "https://api.github.com"
        );
        assert_eq!(
            find(&all, "https://api.github.com/").unwrap().slug,
            "github"
        );
        assert!(find(&all, "nope").is_err());
    }

    #[test]
    fn custom_resources_default_their_api_base() {
        let custom = ResourceRecord {
            resource: "http://127.0.0.1:9000/api".into(),
            name: "Fixture".into(),
            api_bases: vec![],
            scopes: vec!["read".into()],
            docs_url: None,
            added_at: Utc::now(),
        };
        let all = providers(&[custom]);
        let p = find(&all, "http://127.0.0.1:9000/api").unwrap();
        assert_eq!(p.api_bases, vec!["http://127.0.0.1:9000/api".to_string()]);
        assert!(p.custom);
    }

    #[test]
    fn validation_rejects_ambiguous_urls() {
        assert!(validate_url("http://127.0.0.1:9000/api").is_ok());
        assert_eq!(
            validate_url("https://api.x.com").unwrap(),
            "https://api.x.com"
        );
        assert!(validate_url("https://u:p@api.x.com").is_err());
        assert!(validate_url("https://api.x.com/?a=1").is_err());
        assert!(validate_url("file:///etc/passwd").is_err());
        assert!(validate_url("not a url").is_err());
        let clear = validate_url("http://api.example.com")
            .unwrap_err()
            .to_string();
        assert!(clear.contains("https"), "{clear}");
        assert!(validate_url("http://10.1.2.3:8080/api").is_err());
        assert!(validate_url("http://127.0.0.1:9000/api").is_ok());
        assert!(validate_url("http://localhost:9000/api").is_ok());
    }
}
