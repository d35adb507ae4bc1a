//! The zone client: RFC 8414 discovery, RFC 7591 registration, PKCE authorize rounds,
//! code / refresh / RFC 8693 exchange grants and RFC 7009 revocation.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RevocationUrl,
    Scope, StandardRevocableToken, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::error::ZoneError;
use super::http::{ZoneHttp, map_request_error, send};
use super::wire::{
    AuthorizeRequest, ClientIdentity, Metadata, Registration, TokenSet, ZoneTokenResponse,
    parse_metadata, parse_token_response, rejection, same_issuer, token_set,
};

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

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
