//! Keycard zone client: RFC 8414 discovery, RFC 7591 registration, PKCE authorize rounds,
//! code / refresh / RFC 8693 exchange grants and RFC 7009 revocation.
//!
//! Errors are classified exactly as PROTOCOL.md §1 says, so the grant state machine can tell
//! "the user must act" (permanent) from "try again later" (transient).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Upper bound for any zone answer; a discovery or token document is a few KiB.
const MAX_BODY: usize = 256 * 1024;
/// Reason given when no connection was made (so the zone cannot have seen the request).
const CONNECT_FAILED: &str = "connection refused or unreachable";

/// Why a zone interaction failed, classified so callers can decide what the user must do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZoneError {
    #[error("cannot reach the Keycard zone ({url}): {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the Keycard zone is unavailable (HTTP {status}){}", retry_hint(*retry_after))]
    Unavailable {
        status: u16,
        retry_after: Option<u64>,
    },
    #[error(
        "the zone's discovery document names issuer {found:?}, but the configured zone is {expected:?}; check the zone URL"
    )]
    IssuerMismatch { expected: String, found: String },
    #[error("the zone's discovery document at {url} is unusable: {reason}")]
    BadMetadata { url: String, reason: String },
    #[error("the Keycard zone refused the request: {code}{}", describe(description.as_deref()))]
    Rejected {
        code: String,
        description: Option<String>,
    },
    #[error("the Keycard zone sent a malformed answer: {0}")]
    Malformed(String),
    #[error(
        "the zone does not offer dynamic client registration; the broker needs a client id registered in the Keycard console"
    )]
    RegistrationUnsupported,
}

fn retry_hint(retry_after: Option<u64>) -> String {
    retry_after
        .map(|s| format!("; retry after {s} s"))
        .unwrap_or_default()
}

fn describe(description: Option<&str>) -> String {
    description.map(|d| format!(" ({d})")).unwrap_or_default()
}

impl ZoneError {
    /// Transient failures are retried with backoff and never turn a grant into
    /// `needs_reconnect` by themselves (DESIGN.md, grant lifecycle).
    pub fn is_transient(&self) -> bool {
        match self {
            ZoneError::Unreachable { .. }
            | ZoneError::Unavailable { .. }
            | ZoneError::Malformed(_) => true,
            ZoneError::Rejected { code, .. } => {
                matches!(code.as_str(), "temporarily_unavailable" | "slow_down")
            }
            _ => false,
        }
    }

    /// Whether the zone may have carried out the request although no usable answer came back
    /// (timed out after sending, connection dropped mid-answer, unreadable success). Sending a
    /// refresh token again then could replay one the zone has already rotated.
    pub fn answer_lost(&self) -> bool {
        match self {
            ZoneError::Unreachable { reason, .. } => reason != CONNECT_FAILED,
            ZoneError::Malformed(_) => true,
            _ => false,
        }
    }

    /// The OAuth error code, when the zone gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ZoneError::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when the user has to connect / reconnect (or sign in) again to fix this.
    pub fn needs_user(&self) -> bool {
        matches!(
            self.code(),
            Some("insufficient_authorization" | "invalid_grant" | "access_denied")
        )
    }

    /// For answers that say the zone's set-up does not allow the request (permanent, fixed
    /// in the Keycard console or the broker's settings, never by retrying): what to change.
    pub fn setup_fix(&self, resource: &str) -> Option<String> {
        Some(match self.code()? {
            "invalid_target" => format!(
                "the zone does not accept the resource {resource} for this application; register it in the Keycard console as a Resource and add it to the application"
            ),
            "invalid_scope" => format!(
                "the zone refused the scopes asked for {resource}; change the scopes configured for it in Keycard Broker, or allow them for the application in the Keycard console"
            ),
            "unauthorized_client" => format!(
                "the zone does not let this application use this grant for {resource}; allow it (authorization code, refresh token, token exchange) for the application in the Keycard console, or change the upstream strategy"
            ),
            _ => return None,
        })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ZoneError::Unavailable {
                retry_after: Some(s),
                ..
            } => Some(Duration::from_secs(*s)),
            _ => None,
        }
    }
}

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

type ZoneTokenResponse = StandardTokenResponse<ZoneExtraFields, BasicTokenType>;
type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    ZoneTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointSet,
>;

/// Transport-level failure seen by the HTTP adapter handed to the `oauth2` crate.
#[derive(Debug, thiserror::Error)]
enum HttpFailure {
    #[error("{0}")]
    Network(String),
    #[error("HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
}

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

/// A client for one zone (one issuer). Cheap to clone.
#[derive(Clone)]
pub struct Zone {
    issuer: String,
    http: reqwest::Client,
    metadata: Metadata,
}

impl std::fmt::Debug for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zone")
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// The HTTP client for zone traffic: no redirects (an authorization server has no reason to
/// send the broker elsewhere with its tokens), bounded time per request, no proxy for a
/// loopback zone (the demo zone, a local emulator).
pub fn http_client(timeout: Duration, loopback: bool) -> Result<reqwest::Client, ZoneError> {
    crate::net::client_builder(loopback)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .build()
        .map_err(|e| ZoneError::Unreachable {
            url: String::new(),
            reason: e.to_string(),
        })
}

impl Zone {
    /// RFC 8414 discovery, falling back to OpenID discovery; the document's `issuer` must be
    /// the configured one.
    pub async fn discover(issuer: &str, timeout: Duration) -> Result<Zone, ZoneError> {
        let loopback = Url::parse(issuer).is_ok_and(|u| crate::net::is_loopback_url(&u));
        let http = http_client(timeout, loopback)?;
        let base = issuer.trim_end_matches('/');
        let mut last_error = None;
        for suffix in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            let url = format!("{base}{suffix}");
            match fetch_metadata(&http, &url).await {
                Ok(metadata) => {
                    if !same_issuer(&metadata.issuer, issuer) {
                        return Err(ZoneError::IssuerMismatch {
                            expected: issuer.to_string(),
                            found: metadata.issuer,
                        });
                    }
                    return Ok(Zone {
                        issuer: issuer.to_string(),
                        http,
                        metadata,
                    });
                }
                // A missing document (404) means "try the other well-known path".
                Err(e @ ZoneError::BadMetadata { .. }) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(ZoneError::Malformed("no discovery document".into())))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// RFC 7591 registration as a native public client.
    pub async fn register(&self, redirect_uri: &str) -> Result<Registration, ZoneError> {
        let endpoint = self
            .metadata
            .registration_endpoint
            .clone()
            .ok_or(ZoneError::RegistrationUnsupported)?;
        let body = serde_json::json!({
            "client_name": "Keycard Broker",
            "application_type": "native",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let request = self.http.post(endpoint.clone()).json(&body);
        let (status, bytes) = send(request, endpoint.as_str()).await?;
        if !(200..300).contains(&status) {
            return Err(rejection(&bytes, status));
        }
        #[derive(Deserialize)]
        struct Registered {
            client_id: String,
            #[serde(default)]
            client_secret: Option<String>,
        }
        let registered: Registered = serde_json::from_slice(&bytes)
            .map_err(|e| ZoneError::Malformed(format!("registration response: {e}")))?;
        Ok(Registration {
            client_id: registered.client_id,
            client_secret: registered.client_secret.map(SecretString::from),
        })
    }

    fn oauth_client(
        &self,
        client: &ClientIdentity,
        redirect_uri: Option<&str>,
    ) -> Result<OAuthClient, ZoneError> {
        let bad = |what: &str, e: String| ZoneError::BadMetadata {
            url: self.issuer.clone(),
            reason: format!("{what}: {e}"),
        };
        let mut oauth = oauth2::Client::new(ClientId::new(client.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(
                self.metadata.authorization_endpoint.clone(),
            ))
            .set_token_uri(TokenUrl::from_url(self.metadata.token_endpoint.clone()))
            .set_revocation_url_option(
                self.metadata
                    .revocation_endpoint
                    .clone()
                    .map(RevocationUrl::from_url),
            )
            // The application secret (if any) is added by our HTTP adapter as raw
            // `client_secret_basic`; the crate only ever sees the public client id.
            .set_auth_type(AuthType::RequestBody);
        if let Some(uri) = redirect_uri {
            oauth = oauth.set_redirect_uri(
                RedirectUrl::new(uri.to_string())
                    .map_err(|e| bad("redirect uri", e.to_string()))?,
            );
        }
        Ok(oauth)
    }

    /// Builds an authorize URL with PKCE S256, a fresh single-use `state` and RFC 8707
    /// `resource` indicators.
    pub fn authorize(
        &self,
        client: &ClientIdentity,
        redirect_uri: &str,
        resource: &str,
        scopes: &[String],
    ) -> Result<AuthorizeRequest, ZoneError> {
        let oauth = self.oauth_client(client, Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = oauth
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("resource", resource);
        for scope in scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.url();
        Ok(AuthorizeRequest {
            url,
            state: state.secret().clone(),
            verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        client: &ClientIdentity,
        redirect_uri: &str,
        code: &str,
        verifier: &SecretString,
        resource: &str,
    ) -> Result<TokenSet, ZoneError> {
        let oauth = self.oauth_client(client, Some(redirect_uri))?;
        let http = self.adapter(client);
        let response = oauth
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_string()))
            .add_extra_param("resource", resource)
            .request_async(&http)
            .await
            .map_err(map_request_error)?;
        Ok(token_set(response))
    }

    /// `refresh_token` grant, optionally narrowed to one resource (RFC 8707). A returned
    /// refresh token means rotation: the caller must persist it before using the access token.
    pub async fn refresh(
        &self,
        client: &ClientIdentity,
        refresh_token: &SecretString,
        resource: Option<&str>,
    ) -> Result<TokenSet, ZoneError> {
        let oauth = self.oauth_client(client, None)?;
        let http = self.adapter(client);
        let token = RefreshToken::new(refresh_token.expose_secret().to_string());
        let mut request = oauth.exchange_refresh_token(&token);
        if let Some(resource) = resource {
            request = request.add_extra_param("resource", resource);
        }
        let response = request
            .request_async(&http)
            .await
            .map_err(map_request_error)?;
        Ok(token_set(response))
    }

    /// RFC 8693 exchange of the session's access token for an upstream token, exactly the
    /// parameters the Keycard SDK's `@grant` sends.
    pub async fn exchange(
        &self,
        client: &ClientIdentity,
        subject_token: &SecretString,
        resource: &str,
        scopes: &[String],
    ) -> Result<TokenSet, ZoneError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", subject_token.expose_secret()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("resource", resource),
        ];
        let scope = scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let mut request = self.http.post(self.metadata.token_endpoint.clone());
        match &client.client_secret {
            Some(secret) => {
                request = request.basic_auth(&client.client_id, Some(secret.expose_secret()))
            }
            None => form.push(("client_id", &client.client_id)),
        }
        let request = request.form(&form);
        let (status, bytes) = send(request, self.metadata.token_endpoint.as_str()).await?;
        if !(200..300).contains(&status) {
            return Err(rejection(&bytes, status));
        }
        parse_token_response(&bytes)
    }

    /// RFC 7009 revocation of a refresh token. Best effort by design: local state is wiped
    /// whatever the zone answers, so the outcome is only reported for logging. Sent by hand:
    /// the `oauth2` crate refuses non-https revocation URLs, and the demo zone is loopback http.
    pub async fn revoke(
        &self,
        client: &ClientIdentity,
        refresh_token: &SecretString,
    ) -> Result<(), ZoneError> {
        let Some(endpoint) = self.metadata.revocation_endpoint.clone() else {
            return Ok(());
        };
        let mut form: Vec<(&str, &str)> = vec![
            ("token", refresh_token.expose_secret()),
            ("token_type_hint", "refresh_token"),
        ];
        let mut request = self.http.post(endpoint.clone());
        match &client.client_secret {
            Some(secret) => {
                request = request.basic_auth(&client.client_id, Some(secret.expose_secret()))
            }
            None => form.push(("client_id", &client.client_id)),
        }
        let (status, bytes) = send(request.form(&form), endpoint.as_str()).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(rejection(&bytes, status))
        }
    }

    fn adapter(&self, client: &ClientIdentity) -> ZoneHttp {
        ZoneHttp {
            http: self.http.clone(),
            basic: client
                .client_secret
                .clone()
                .map(|secret| (client.client_id.clone(), secret)),
        }
    }
}

/// The HTTP client handed to the `oauth2` crate: adds raw `client_secret_basic` when an
/// application secret is configured and turns 5xx/429 into typed transient failures (the
/// crate would otherwise hide the status and `Retry-After`). A struct rather than a closure
/// so the request futures are `Send` for every caller.
struct ZoneHttp {
    http: reqwest::Client,
    basic: Option<(String, SecretString)>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for ZoneHttp {
    type Error = HttpFailure;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpFailure>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut builder = self
                .http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body);
            if let Some((id, secret)) = &self.basic {
                builder = builder.basic_auth(id, Some(secret.expose_secret()));
            }
            let response = builder
                .send()
                .await
                .map_err(|e| HttpFailure::Network(network_reason(&e)))?;
            let status = response.status();
            if status.is_server_error() || status.as_u16() == 429 {
                return Err(HttpFailure::Status {
                    status: status.as_u16(),
                    retry_after: retry_after(response.headers()),
                });
            }
            let headers = response.headers().clone();
            let bytes = read_limited(response).await.map_err(HttpFailure::Network)?;
            let mut out = http::Response::builder().status(status);
            for (name, value) in headers.iter() {
                out = out.header(name, value);
            }
            out.body(bytes)
                .map_err(|e| HttpFailure::Network(e.to_string()))
        })
    }
}

async fn fetch_metadata(http: &reqwest::Client, url: &str) -> Result<Metadata, ZoneError> {
    let (status, bytes) = send(http.get(url), url).await?;
    if status != 200 {
        return Err(ZoneError::BadMetadata {
            url: url.to_string(),
            reason: format!("HTTP {status}"),
        });
    }
    parse_metadata(&bytes).map_err(|reason| ZoneError::BadMetadata {
        url: url.to_string(),
        reason,
    })
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

/// Sends a request and reads a bounded body, mapping transport failures and 5xx/429.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<(u16, Vec<u8>), ZoneError> {
    let response = request.send().await.map_err(|e| ZoneError::Unreachable {
        url: url.to_string(),
        reason: network_reason(&e),
    })?;
    let status = response.status().as_u16();
    if status >= 500 || status == 429 {
        return Err(ZoneError::Unavailable {
            status,
            retry_after: retry_after(response.headers()),
        });
    }
    let bytes = read_limited(response)
        .await
        .map_err(|reason| ZoneError::Unreachable {
            url: url.to_string(),
            reason,
        })?;
    Ok((status, bytes))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network_reason(&e))? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(format!("answer larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn network_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        CONNECT_FAILED.into()
    } else {
        // `without_url` keeps query strings (which may hold codes) out of the message.
        let mut reason = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(err) = source {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&err.to_string());
            source = err.source();
        }
        reason
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
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

fn map_request_error(
    e: RequestTokenError<
        HttpFailure,
        oauth2::StandardErrorResponse<impl oauth2::ErrorResponseType + std::fmt::Display>,
    >,
) -> ZoneError {
    match e {
        RequestTokenError::ServerResponse(body) => ZoneError::Rejected {
            code: body.error().to_string(),
            description: body.error_description().map(|d| truncate(d, 300)),
        },
        RequestTokenError::Request(HttpFailure::Network(reason)) => ZoneError::Unreachable {
            url: "token endpoint".into(),
            reason,
        },
        RequestTokenError::Request(HttpFailure::Status {
            status,
            retry_after,
        }) => ZoneError::Unavailable {
            status,
            retry_after,
        },
        // The unparsed body may contain tokens: report only where parsing failed.
        RequestTokenError::Parse(err, _body) => {
            ZoneError::Malformed(format!("token response does not parse at {}", err.path()))
        }
        RequestTokenError::Other(reason) => ZoneError::Malformed(truncate(&reason, 200)),
    }
}

fn token_set(response: ZoneTokenResponse) -> TokenSet {
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
fn granted_scopes<'a>(scopes: impl Iterator<Item = &'a str>) -> Option<Vec<String>> {
    let list: Vec<String> = scopes
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect();
    (!list.is_empty()).then_some(list)
}

pub fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_string).collect()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_comparison_ignores_one_trailing_slash() {
        assert!(same_issuer(
            "https://a.keycard.cloud",
            "https://a.keycard.cloud/"
        ));
        assert!(!same_issuer(
            "https://a.keycard.cloud",
            "https://b.keycard.cloud"
        ));
        assert!(!same_issuer(
            "https://a.keycard.cloud",
            "http://a.keycard.cloud"
        ));
    }

    #[test]
    fn empty_or_blank_scope_means_none_named() {
        assert_eq!(granted_scopes(["", " "].into_iter()), None);
        assert_eq!(
            granted_scopes(["read", "", "write"].into_iter()),
            Some(vec!["read".to_string(), "write".to_string()])
        );
        let answer = br#"{"access_token":"a","token_type":"Bearer","scope":""}"#;
        assert_eq!(parse_token_response(answer).unwrap().scopes, None);
    }

    #[test]
    fn setup_answers_are_permanent_with_a_fix() {
        for code in ["invalid_target", "invalid_scope", "unauthorized_client"] {
            let e = ZoneError::Rejected {
                code: code.into(),
                description: None,
            };
            assert!(!e.is_transient(), "{code}");
            assert!(!e.needs_user(), "{code}");
            let fix = e.setup_fix("http://localhost:1/mcp").unwrap();
            assert!(fix.contains("http://localhost:1/mcp"), "{fix}");
        }
        let other = ZoneError::Rejected {
            code: "invalid_grant".into(),
            description: None,
        };
        assert_eq!(other.setup_fix("x"), None);
    }

    #[test]
    fn classification_follows_protocol() {
        let rejected = |code: &str| ZoneError::Rejected {
            code: code.into(),
            description: None,
        };
        assert!(rejected("insufficient_authorization").needs_user());
        assert!(rejected("invalid_grant").needs_user());
        assert!(!rejected("insufficient_authorization").is_transient());
        assert!(rejected("temporarily_unavailable").is_transient());
        assert!(
            ZoneError::Unavailable {
                status: 503,
                retry_after: None
            }
            .is_transient()
        );
        assert!(
            !ZoneError::Unavailable {
                status: 429,
                retry_after: Some(2)
            }
            .needs_user()
        );
    }

    #[test]
    fn rejection_parses_oauth_errors_and_tolerates_garbage() {
        let e = rejection(
            br#"{"error":"insufficient_authorization","error_description":"no grant"}"#,
            400,
        );
        assert_eq!(e.code(), Some("insufficient_authorization"));
        let e = rejection(b"<html>oops</html>", 400);
        assert!(matches!(e, ZoneError::Malformed(_)));
    }

    #[test]
    fn id_claims_decode_and_reject_garbage() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"u1","email":"a@b.c"}"#);
        let claims = decode_id_claims(&format!("x.{payload}.y")).unwrap();
        assert_eq!(claims.account().as_deref(), Some("a@b.c"));
        assert!(decode_id_claims("not-a-jwt").is_none());
        assert!(decode_id_claims("a.!!!.b").is_none());
    }
}
