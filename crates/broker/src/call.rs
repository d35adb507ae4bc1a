//! One `call_api`, step by step (DESIGN.md `upstream`): pick the grant → policy → approval
//! → token → send → 401 retry with a fresh token → 403 `insufficient_scope` → shape for the
//! agent, with one audit record per call. The HTTP rules live in `upstream`, the rules in
//! `policy`, the waiting in `approvals`; this is the orchestration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::approvals::{Answer, Ask};
use crate::audit::{ActivityKind, AuditRecord, Outcome, audited};
use crate::authz::Agent;
use crate::catalog::{self, Provider};
use crate::policy::{CallFacts, Decision};
use crate::upstream::{self, ApiRequest, ApiResponse, CallError};
use crate::{Broker, BrokerError, GrantStatus};

/// How often a waiting call tells the agent it is still waiting (MCP progress).
const WAIT_TICK: Duration = Duration::from_secs(5);

/// Called while a call waits for the user, with the time waited so far.
pub type OnWait<'a> = &'a (dyn Fn(Duration) + Send + Sync);

/// Why an agent's `call_api` was not carried out; every message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(
        "{url} is not under any connected provider's API base. Connected: {connected}. Ask the user to connect the provider in Keycard Broker, or pass `resource`."
    )]
    NoGrant { url: String, connected: String },
    #[error("{url} is not under the API base of {resource} ({bases})")]
    OutsideResource {
        url: String,
        resource: String,
        bases: String,
    },
    #[error(
        "{name} refused the token for lack of scope (403 insufficient_scope); the user must reconnect {name} ({resource}) in Keycard Broker"
    )]
    InsufficientScope { name: String, resource: String },
    #[error(
        "{name} refused this call: it needs {needed} (403 insufficient_scope), which the user's connection does not include (granted: {granted}). Reconnecting would not add it; make a call these scopes allow, or ask the user to change what Keycard Broker requests for {name}."
    )]
    ScopeNotGranted {
        name: String,
        needed: String,
        granted: String,
    },
    #[error(
        "Keycard Broker's policy refused this call: {reason}{}. Tell the user; only they can change this agent's access, in Keycard Broker.",
        rule.as_deref().map(|r| format!(" (rule {r})")).unwrap_or_default()
    )]
    Refused {
        reason: String,
        rule: Option<String>,
    },
    #[error("{0} Tell the user if the call is still needed; they decide in Keycard Broker.")]
    NotApproved(String),
}

impl ApiError {
    /// Short outcome word for the audit log.
    fn outcome(&self) -> Outcome {
        match self {
            ApiError::InsufficientScope { .. }
            | ApiError::Broker(BrokerError::NeedsReconnect { .. }) => Outcome::NeedsReconnect,
            ApiError::Call(CallError::Unreachable(_)) | ApiError::Broker(_) => Outcome::Error,
            ApiError::NotApproved(_) => Outcome::Declined,
            _ => Outcome::Refused,
        }
    }
}

impl Broker {
    /// Providers with a live grant; rebuilt only when grants or resources changed.
    fn connected_providers(&self) -> Result<Arc<Vec<Provider>>, BrokerError> {
        let generation = self.db.generation();
        if let Ok(cache) = self.connected.lock()
            && let Some((g, providers)) = cache.as_ref()
            && *g == generation
        {
            return Ok(providers.clone());
        }
        let providers = self.providers()?;
        let connected: Arc<Vec<Provider>> = Arc::new(
            self.db
                .grants()?
                .into_iter()
                .filter(|g| g.status != GrantStatus::Revoked)
                .filter_map(|g| catalog::find(&providers, &g.resource).ok().cloned())
                .collect(),
        );
        if let Ok(mut cache) = self.connected.lock() {
            *cache = Some((generation, connected.clone()));
        }
        Ok(connected)
    }

    /// Calls a provider API as the user: picks the grant, injects its token, retries once on
    /// 401 with a fresh token, turns 403 `insufficient_scope` into `needs_reconnect`, and
    /// records the call in the audit log.
    pub async fn call_api(
        &self,
        agent: &Agent,
        request: ApiRequest,
        on_wait: Option<OnWait<'_>>,
    ) -> Result<ApiResponse, ApiError> {
        let sink = |record| self.record(record);
        audited(
            ActivityKind::CallApi,
            Some(agent.name.as_str()),
            sink,
            async |record: &mut AuditRecord| {
                record.via = Some(agent.via);
                record.method = Some(
                    request
                        .method
                        .to_ascii_uppercase()
                        .chars()
                        .take(16)
                        .collect(),
                );
                let result = self.call_api_inner(agent, &request, record, on_wait).await;
                match &result {
                    Ok(response) => {
                        record.status = Some(response.status);
                        if response.status >= 400 {
                            record.outcome = Outcome::UpstreamError;
                        }
                    }
                    Err(e) => record.failed(e.outcome(), e),
                }
                result
            },
        )
        .await
    }

    async fn call_api_inner(
        &self,
        agent: &Agent,
        request: &ApiRequest,
        record: &mut AuditRecord,
        on_wait: Option<OnWait<'_>>,
    ) -> Result<ApiResponse, ApiError> {
        let target = upstream::parse_target(&request.url)?;
        record.host = target.host_str().map(str::to_string);
        record.path = Some(target.path().chars().take(500).collect());
        let prepared = upstream::prepare(request)?;
        let connected = self.connected_providers()?;
        let provider = match &request.resource {
            Some(key) => {
                let provider =
                    catalog::find(&connected, key).map_err(|_| BrokerError::NotConnected {
                        name: key.clone(),
                        resource: key.clone(),
                    })?;
                if !upstream::covers(provider, &target) {
                    return Err(ApiError::OutsideResource {
                        url: upstream::display_url(&request.url),
                        resource: provider.resource.clone(),
                        bases: provider.api_bases.join(", "),
                    });
                }
                provider
            }
            None => upstream::pick(&connected, &target).ok_or_else(|| ApiError::NoGrant {
                url: upstream::display_url(&request.url),
                connected: if connected.is_empty() {
                    "none".into()
                } else {
                    connected
                        .iter()
                        .map(|p| format!("{} ({})", p.name, p.api_bases.join(", ")))
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            })?,
        };
        record.resource = Some(provider.resource.clone());
        self.permit(
            agent, provider, request, &target, &prepared, record, on_wait,
        )
        .await?;
        let bases: Vec<url::Url> = provider
            .api_bases
            .iter()
            .filter_map(|b| url::Url::parse(b).ok())
            .collect();
        let mut token = self.grants.upstream_token(provider).await?;
        let mut raw = upstream::send(&self.http, &prepared, &target, &token.token, &bases).await?;
        if raw.status == 401 {
            // The upstream no longer takes the cached token: get a fresh one, retry once.
            self.grants.invalidate(&provider.resource);
            token = self.grants.upstream_token(provider).await?;
            raw = upstream::send(&self.http, &prepared, &target, &token.token, &bases).await?;
        }
        if let Some(needed) = raw.insufficient_scope() {
            // Only a scope the provider's consent asks for (which this token evidently lacks)
            // is a reason to reconnect; anything else is this call's problem, not every agent's.
            let consentable = needed.iter().any(|s| provider.scopes.contains(s));
            if consentable {
                self.grants.require_reconnect(
                    &provider.resource,
                    &format!(
                        "the API answered 403 insufficient_scope for {}",
                        needed.join(" ")
                    ),
                )?;
                return Err(ApiError::InsufficientScope {
                    name: provider.name.clone(),
                    resource: provider.resource.clone(),
                });
            }
            return Err(ApiError::ScopeNotGranted {
                name: provider.name.clone(),
                needed: if needed.is_empty() {
                    "a scope it did not name".into()
                } else {
                    needed.join(" ")
                },
                granted: if token.scopes.is_empty() {
                    "as configured in the zone".into()
                } else {
                    token.scopes.join(" ")
                },
            });
        }
        Ok(upstream::shape(raw, &token.token))
    }

    /// The policy's decision for this call; an "ask" waits for the user here. What decided
    /// (the rule, who approved and after how long) goes into the activity record.
    #[allow(clippy::too_many_arguments)]
    async fn permit(
        &self,
        agent: &Agent,
        provider: &Provider,
        request: &ApiRequest,
        target: &url::Url,
        prepared: &upstream::Prepared,
        record: &mut AuditRecord,
        on_wait: Option<OnWait<'_>>,
    ) -> Result<(), ApiError> {
        let method = request.method.to_ascii_uppercase();
        let facts = CallFacts {
            client: &agent.key,
            resource: &provider.resource,
            method: &method,
            host: target.host_str().unwrap_or_default(),
            path: target.path(),
        };
        let rule = match self.decide(&facts) {
            Decision::Allow { rule } => {
                record.detail = Some(format!("allowed by {rule}"));
                return Ok(());
            }
            Decision::Deny { rule, reason } => {
                return Err(ApiError::Refused { reason, rule });
            }
            Decision::Ask { rule } => rule,
        };
        let body = prepared.body_bytes();
        let ask = self.approvals.ask(Ask {
            client: &agent.key,
            client_name: &agent.name,
            resource: &provider.resource,
            method: &method,
            url: &request.url,
            body,
            rule: &rule,
        });
        tokio::pin!(ask);
        let started = Instant::now();
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + WAIT_TICK, WAIT_TICK);
        let answer = loop {
            tokio::select! {
                answer = &mut ask => break answer,
                _ = ticks.tick() => {
                    if let Some(on_wait) = on_wait {
                        on_wait(started.elapsed());
                    }
                }
            }
        };
        let secs = |d: Duration| d.as_secs();
        match answer {
            Answer::Approved { by, waited, standing } => {
                record.detail = Some(if standing {
                    format!("asked by {rule}; allowed for the hour by the user ({by:?})")
                } else {
                    format!("asked by {rule}; approved in the {by:?} after {} s", secs(waited))
                });
                Ok(())
            }
            Answer::Denied { by, waited } => Err(ApiError::NotApproved(format!(
                "The user denied this call in Keycard Broker ({by:?}, after {} s; rule {rule}).",
                secs(waited)
            ))),
            Answer::TimedOut { waited } => Err(ApiError::NotApproved(format!(
                "The user did not approve this call within {} s (rule {rule}), so it was not made.",
                secs(waited)
            ))),
            Answer::Cancelled { .. } => Err(ApiError::NotApproved(
                "The call was cancelled while it waited for the user (agent access was paused or the broker stopped).".into(),
            )),
            Answer::Refused { reason } => Err(ApiError::NotApproved(format!(
                "The call could not wait for the user: {reason}."
            ))),
        }
    }
}
