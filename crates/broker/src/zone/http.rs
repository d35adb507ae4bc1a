//! Zone traffic on the wire: bounded bodies, transport failures and 5xx/429 as typed
//! transient errors, and the HTTP adapter handed to the `oauth2` crate.

use std::future::Future;
use std::pin::Pin;

use oauth2::RequestTokenError;
use secrecy::{ExposeSecret, SecretString};

use super::error::{CONNECT_FAILED, ZoneError};
use super::wire::truncate;

/// Upper bound for any zone answer; a discovery or token document is a few KiB.
const MAX_BODY: usize = 256 * 1024;

/// Transport-level failure seen by the HTTP adapter handed to the `oauth2` crate.
#[derive(Debug, thiserror::Error)]
pub(super) enum HttpFailure {
    #[error("{0}")]
    Network(String),
    #[error("HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
}

/// The HTTP client handed to the `oauth2` crate: adds raw `client_secret_basic` when an
/// application secret is configured and turns 5xx/429 into typed transient failures (the
/// crate would otherwise hide the status and `Retry-After`). A struct rather than a closure
/// so the request futures are `Send` for every caller.
pub(super) struct ZoneHttp {
    pub(super) http: reqwest::Client,
    pub(super) basic: Option<(String, SecretString)>,
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

/// Sends a request and reads a bounded body, mapping transport failures and 5xx/429.
pub(super) async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<(u16, Vec<u8>), ZoneError> {
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

pub(super) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network_reason(&e))? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(format!("answer larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

pub(super) fn network_reason(e: &reqwest::Error) -> String {
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

pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn map_request_error(
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
