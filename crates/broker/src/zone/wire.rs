//! What goes over the wire to and from the zone: the RFC 8414 document, client identity and
//! registration, token answers (as secrets), OAuth error bodies, id_token claims.

use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::BasicTokenType;
use oauth2::{ExtraTokenFields, StandardTokenResponse, TokenResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::ZoneError;

/// The parts of an RFC 8414 document the broker uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    #[serde(default)]
    pub registration_endpoint: Option<Url>,
    #[serde(default)]
    pub revocation_endpoint: Option<Url>,
    #[serde(default)]
    pub introspection_endpoint: Option<Url>,
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
    #[serde(default)]
    pub jwks_uri: Option<Url>,
    #[serde(default)]
    pub grant_types_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 9207: the zone puts `iss` on every authorization response, so one without it is
    /// refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Issuer comparison per PROTOCOL.md: exact, ignoring one trailing slash.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

/// The client identity the broker presents to the zone.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub client_id: String,
    /// Application secret (`client_secret_basic`), kept in the keychain, never on disk.
    pub client_secret: Option<SecretString>,
}

/// Result of RFC 7591 registration. A public native client gets no secret; if a zone hands
/// one out anyway it goes to the keychain.
#[derive(Debug)]
pub struct Registration {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
}

/// Identity claims read from the id_token, for display only. The token came straight from
/// the token endpoint over the zone's TLS, which OIDC Core §3.1.3.7 accepts in lieu of a
/// signature check; nothing is authorised on these claims.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IdClaims {
    pub sub: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

impl IdClaims {
    pub fn account(&self) -> Option<String> {
        self.email
            .clone()
            .or_else(|| self.name.clone())
            .or_else(|| self.sub.clone())
    }
}

/// What a token endpoint hands back, with every token held as a secret.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<Duration>,
    /// `None` when the zone did not say (then the requested / previous scopes apply).
    pub scopes: Option<Vec<String>>,
    pub id_claims: Option<IdClaims>,
}

/// An authorize round waiting for its redirect.
#[derive(Debug)]
pub struct AuthorizeRequest {
    pub url: Url,
    pub state: String,
    pub verifier: SecretString,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ZoneExtraFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<String>,
}
impl ExtraTokenFields for ZoneExtraFields {}

pub(super) type ZoneTokenResponse = StandardTokenResponse<ZoneExtraFields, BasicTokenType>;

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Token endpoint answer for the grants `oauth2` does not model (RFC 8693).
#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
}

/// Parses an RFC 8414 document (exposed for the fuzzers).
pub fn parse_metadata(bytes: &[u8]) -> Result<Metadata, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Parses a token endpoint answer for grants the `oauth2` crate does not model. The body holds
/// a token, so errors say only where parsing failed.
pub fn parse_token_response(bytes: &[u8]) -> Result<TokenSet, ZoneError> {
    let raw: RawTokenResponse = serde_json::from_slice(bytes).map_err(|e| {
        ZoneError::Malformed(format!(
            "token response is not a token response (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    Ok(TokenSet {
        access_token: SecretString::from(raw.access_token),
        refresh_token: raw.refresh_token.map(SecretString::from),
        expires_in: raw.expires_in.map(Duration::from_secs),
        scopes: raw.scope.and_then(|s| granted_scopes(s.split_whitespace())),
        id_claims: None,
    })
}

/// An RFC 6749 error body (or a non-OAuth 4xx) as a typed rejection.
pub fn rejection(bytes: &[u8], status: u16) -> ZoneError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ZoneError::Rejected {
            code: body.error,
            description: body.error_description.map(|d| truncate(&d, 300)),
        },
        Err(_) => ZoneError::Malformed(format!("HTTP {status} without an OAuth error body")),
    }
}

pub(super) fn token_set(response: ZoneTokenResponse) -> TokenSet {
    let id_claims = response
        .extra_fields()
        .id_token
        .as_deref()
        .and_then(decode_id_claims);
    TokenSet {
        access_token: SecretString::from(response.access_token().secret().clone()),
        refresh_token: response
            .refresh_token()
            .map(|t| SecretString::from(t.secret().clone())),
        expires_in: response.expires_in(),
        scopes: response
            .scopes()
            .and_then(|s| granted_scopes(s.iter().map(|s| s.as_str()))),
        id_claims,
    }
}

/// Reads the claims of a compact JWT without verifying it (display only, see [`IdClaims`]).
pub fn decode_id_claims(jwt: &str) -> Option<IdClaims> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The scopes a token answer names; `None` when it names none (absent, empty or blank): the
/// zone then granted what was asked for, as configured in the zone (RFC 6749 §5.1).
pub(super) fn granted_scopes<'a>(scopes: impl Iterator<Item = &'a str>) -> Option<Vec<String>> {
    let list: Vec<String> = scopes
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect();
    (!list.is_empty()).then_some(list)
}

pub fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_string).collect()
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
