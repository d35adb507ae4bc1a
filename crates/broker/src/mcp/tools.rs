//! The tools local agents call. Names and argument shapes are part of the product's contract:
//! `list_connections`, `call_api {method, url, headers?, body?, resource?}`, `connect {resource}`.
//! No tool result ever carries a token.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{InputResponses, RequestState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, ElicitRequest, ElicitRequestParams,
    ElicitationAction, Implementation, InputRequest, InputRequiredResult,
    ProgressNotificationParam, ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

use super::guard::AgentClient;
use crate::Broker;
use crate::audit::{ActivityKind, AuditRecord, Outcome, audited};
use crate::upstream::{ApiRequest, ApiResponse};

/// How long a consent round started by an agent waits for the user.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a client may take to answer a URL elicitation before the broker opens the browser.
const ELICITATION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ConnectArgs {
    /// Resource identifier (e.g. https://api.github.com) or catalog name (e.g. github).
    pub resource: String,
}

/// Key of the consent elicitation inside an `input_required` result.
const CONSENT_KEY: &str = "consent";

#[derive(Clone)]
pub struct BrokerTools {
    broker: Arc<Broker>,
    tool_router: ToolRouter<Self>,
}

/// The authenticated agent client of the current request (set by the guard).
fn client_of(context: &RequestContext<RoleServer>) -> Option<AgentClient> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AgentClient>())
        .cloned()
}

fn text_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// `call_api`'s structured content, built by moving the response's parts into a JSON object
/// (field names as `ApiResponse` serialises them).
fn structured(response: ApiResponse) -> serde_json::Value {
    let headers = response
        .headers
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect::<serde_json::Map<_, _>>();
    json!({
        "status": response.status,
        "headers": headers,
        "body": response.body,
        "truncated": response.truncated,
    })
}

#[tool_router]
impl BrokerTools {
    pub fn new(broker: Arc<Broker>) -> BrokerTools {
        BrokerTools {
            broker,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "List the user's connected providers in Keycard Broker: resource identifier, name, status (connected | needs_reconnect | error), granted scopes, the API base URLs call_api accepts for it, and when it was last used. Contains no secrets."
    )]
    async fn list_connections(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let client = client_of(&context);
        let sink = |record| self.broker.record(record);
        audited(ActivityKind::ListConnections, client.as_ref().map(|c| c.name.as_str()), sink, async |record: &mut AuditRecord| {
        record.via = client.as_ref().map(|c| c.via);
        // An agent sees only the providers its policy lets it use at all.
        let visible = self.broker.connections().map(|all| match &client {
            Some(agent) => all
                .into_iter()
                .filter(|c| self.broker.may_use(&agent.key, &c.resource))
                .collect(),
            None => Vec::new(),
        });
        let result = match visible {
            Ok(connections) => {
                let text = if connections.is_empty() {
                    "No providers are connected. Ask the user to connect one in Keycard Broker, or call `connect`.".to_string()
                } else {
                    connections
                        .iter()
                        .map(|c| {
                            format!(
                                "{} ({}): {}; API base {}",
                                c.name,
                                c.resource,
                                c.status,
                                c.api_bases.join(", ")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let mut result = CallToolResult::structured(json!({ "connections": connections }));
                result.content = vec![ContentBlock::text(text)];
                result
            }
            Err(e) => {
                record.failed(Outcome::Error, &e);
                text_error(e.to_string())
            }
        };
        Ok(result)
        })
        .await
    }

    #[tool(
        description = "Call a connected provider's HTTP API as the user. Keycard Broker picks the connection whose API base is the longest prefix of `url` (or the one named by `resource`), adds the user's credentials itself, and returns {status, headers, body}. Do not send Authorization or Cookie headers. JSON bodies are sent as JSON, strings as-is. Bodies over 512 KiB are truncated (truncated: true)."
    )]
    async fn call_api(
        &self,
        Parameters(request): Parameters<ApiRequest>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(agent) = client_of(&context) else {
            return Ok(text_error("no authenticated agent"));
        };
        // While a write waits for the user, tell a client that asked for progress.
        let progress_token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let on_wait = move |waited: std::time::Duration| {
            if let Some(token) = progress_token.clone() {
                let peer = peer.clone();
                let note = ProgressNotificationParam::new(token, waited.as_secs_f64())
                    .with_message(format!(
                        "waiting for the user to approve in Keycard Broker ({} s)",
                        waited.as_secs()
                    ));
                tokio::spawn(async move {
                    let _ = peer.notify_progress(note).await;
                });
            }
        };
        match self.broker.call_api(&agent, request, Some(&on_wait)).await {
            Ok(response) => {
                let summary = format!(
                    "HTTP {}{}",
                    response.status,
                    if response.truncated {
                        " (body truncated)"
                    } else {
                        ""
                    }
                );
                // One serialisation for the text copy (the spec's SHOULD for structured
                // results); the structured copy takes the parsed body as it is, not a clone.
                let text = serde_json::to_string(&response)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                let mut result = CallToolResult::success(vec![
                    ContentBlock::text(summary),
                    ContentBlock::text(text),
                ]);
                result.structured_content = Some(structured(response));
                Ok(result)
            }
            Err(e) => Ok(text_error(e.to_string())),
        }
    }

    #[tool(
        description = "Start connecting (or reconnecting) a provider for the user: Keycard Broker runs the provider's consent through the user's Keycard zone in the browser. Use when call_api says a provider is not connected or needs reconnect."
    )]
    async fn connect(
        &self,
        Parameters(args): Parameters<ConnectArgs>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let client = client_of(&context);
        let sink = |record| self.broker.record(record);
        audited(ActivityKind::Connect, client.as_ref().map(|c| c.name.as_str()), sink, async |record: &mut AuditRecord| {
        record.via = client.as_ref().map(|c| c.via);
        // 2026-07-28 second leg: the client answers the `input_required` we returned; the
        // request state is the round's opaque id.
        if let Some(round_id) = state {
            let action = responses
                .as_ref()
                .and_then(|r| r.get(CONSENT_KEY))
                .and_then(|v| v["action"].as_str())
                .unwrap_or("cancel")
                .to_string();
            let text = if action == "accept" {
                "The user accepted; the connection completes in Keycard Broker once they approve in the browser. Call list_connections to see it.".to_string()
            } else {
                self.broker.cancel_agent_connect(&round_id);
                record.outcome = Outcome::Declined;
                format!(
                    "The user {}; nothing was changed.",
                    if action == "decline" {
                        "declined"
                    } else {
                        "cancelled"
                    }
                )
            };
            return Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into());
        }
        let round = match self
            .broker
            .begin_agent_connect(&args.resource, CONNECT_TIMEOUT)
            .await
        {
            Ok(round) => round,
            Err(e) => {
                record.failed(Outcome::Error, &e);
                return Ok(text_error(e.to_string()).into());
            }
        };
        record.resource = Some(round.resource.clone());
        let name = round.name.clone();
        // The link is the broker's own page, which redirects to the zone: no `state` or PKCE
        // value passes through the agent.
        let url = round.link.clone();
        let message =
            format!("Connect {name} to Keycard Broker: approve access in your Keycard zone.");
        let modern = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let url_capable = context
            .peer
            .supported_elicitation_modes()
            .contains(&rmcp::service::ElicitationMode::Url)
            || context
                .client_capabilities()
                .and_then(|c| c.elicitation)
                .is_some_and(|e| e.url.is_some());
        if modern && url_capable {
            // 2026-07-28 has no server-to-client requests: ask through `input_required`; the
            // client retries with the user's answer and this round's id as request state.
            let request = ElicitRequest::new(ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message,
                url: url.clone(),
                elicitation_id: format!("keycard-connect-{}", round.id),
            });
            let mut requests = rmcp::model::InputRequests::new();
            requests.insert(CONSENT_KEY.to_string(), InputRequest::Elicitation(request));
            return Ok(InputRequiredResult::new(Some(requests), Some(round.id)).into());
        }
        // URL elicitation when the client declared it (2025-11-25); otherwise — or when the
        // client does not answer — the broker opens the system browser itself (rate-limited).
        let via_client = if url_capable {
            tokio::time::timeout(
                ELICITATION_TIMEOUT,
                context.peer.elicit_url(
                    message.clone(),
                    url.parse::<url::Url>().map_err(|_| {
                        ErrorData::internal_error("connect link is not a URL", None)
                    })?,
                    format!("keycard-connect-{}", round.id),
                ),
            )
            .await
            .ok()
            .and_then(Result::ok)
        } else {
            None
        };
        let again = if round.reused {
            " (a request for it was already waiting; this is the same link)"
        } else {
            ""
        };
        let text = match via_client {
            Some(ElicitationAction::Accept) => format!(
                "The user accepted connecting {name}; it completes in Keycard Broker once they approve in the browser. Call list_connections to see it."
            ),
            Some(action) => {
                // Declined or cancelled: forget the round so its link stops working.
                self.broker.cancel_agent_connect(&round.id);
                record.outcome = Outcome::Declined;
                let word = if action == ElicitationAction::Decline {
                    "declined"
                } else {
                    "cancelled"
                };
                format!("The user {word} connecting {name}; nothing was changed.")
            }
            None => {
                if self.broker.open_agent_connect(&round) {
                    format!(
                        "Opened the user's browser to connect {name}{again}. It completes once they approve; call list_connections to see it. If no browser appeared, the user can open: {url}"
                    )
                } else {
                    format!("Ask the user to open this link to connect {name}{again}: {url}")
                }
            }
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for BrokerTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("keycard-broker", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Keycard Broker calls third-party APIs as the user. Use list_connections to see what is connected, call_api to make requests (never send credentials yourself), and connect when a provider is missing or needs reconnect.",
            )
    }
}
