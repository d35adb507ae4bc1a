// Generated from the Rust types by src-tauri/src/tests.rs (ts-rs); do not edit.
// After changing a type: UPDATE_BINDINGS=1 cargo test -p keycard-broker-app bindings

export type Request = { "op": "status" } | { "op": "pause" } | { "op": "resume" } | { "op": "login", timeout_secs: number, } | { "op": "connect", resource: string, timeout_secs: number, } | { "op": "check", resource: string, } | { "op": "revoke", resource: string, } | { "op": "logout" } | { "op": "resources_add", resource: string, name: string | null, api_bases: Array<string>, scopes: Array<string>, } | { "op": "resources_list" } | { "op": "resources_remove", resource: string, } | { "op": "clients_add", name: string, access: Access | null, } | { "op": "clients_issue", name: string, } | { "op": "clients_list" } | { "op": "clients_remove", name: string, } | { "op": "client_setup", name: string, kind: string, 
/**
 * The command stdio-only clients start (`keycard-broker` next to the shell).
 */
stdio_command: string, write: WriteTo | null, 
/**
 * False: a new client (the name must be free). True: a new token for this name,
 * whether or not it exists (the old token stops working at once).
 */
replace: boolean, 
/**
 * A new client's access to every provider (read and ask before writes unless given).
 */
access: Access | null, 
/**
 * A static token even for a client that can sign in with OAuth.
 */
static_token: boolean, } | { "op": "client_kinds" } | { "op": "remote_setup", target: RemoteTarget, 
/**
 * The client's name (`ssh-<host>`, `devcontainer-<folder>` unless given).
 */
client: string | null, write: WriteTo | null, new_token: boolean, 
/**
 * A new client's access to every provider (ask unless given).
 */
access: Access | null, } | { "op": "set_access", client: string, choices: Array<[string, Access]>, } | { "op": "agents" } | { "op": "agent_sign_out", client: string, } | { "op": "approvals" } | { "op": "decide", id: string, verdict: Verdict, by: DecidedBy, } | { "op": "policy_check" } | { "op": "policy_show", client: string | null, } | { "op": "audit", client: string | null, resource: string | null, outcome: Outcome | null, since: string | null, limit: number | null, } | { "op": "export_activity", client: string | null, resource: string | null, outcome: Outcome | null, since: string | null, format: ExportFormat, 
/**
 * A folder (the file gets a dated name in it) or a new file's path. The tray app
 * sets its own (the Downloads folder).
 */
to: string, } | { "op": "about" };

export type Reply = { "kind": "status", "value": Status } | { "kind": "provider", "value": Provider } | { "kind": "providers", "value": Array<Provider> } | { "kind": "token", "value": TokenInfo } | { "kind": "issued", "value": Issued } | { "kind": "clients", "value": Array<ClientRecord> } | { "kind": "client_setup", "value": ClientSetup } | { "kind": "client_kinds", "value": Array<ClientKind> } | { "kind": "remote_setup", "value": RemoteSetup } | { "kind": "activity", "value": Array<AuditRecord> } | { "kind": "exported", "value": Exported } | { "kind": "agents", "value": Array<AgentView> } | { "kind": "approvals", "value": Array<PendingCall> } | { "kind": "decided", "value": PendingCall } | { "kind": "policy", "value": PolicyReport } | { "kind": "rules", "value": Array<RuleView> } | { "kind": "about", "value": About } | { "kind": "done" };

export type Failure = { code: ErrorCode, message: string, 
/**
 * The provider the failure is about (reconnect it, connect it).
 */
resource?: string | null, };

export type ErrorCode = "invalid_input" | "not_found" | "already_exists" | "not_configured" | "not_running" | "already_running" | "unauthorized" | "config_file" | "policy_invalid" | "not_signed_in" | "not_connected" | "needs_reconnect" | "zone_unreachable" | "zone_setup" | "zone_refused" | "consent_declined" | "bad_redirect" | "timeout" | "cancelled" | "busy" | "keychain_locked" | "keychain_unavailable" | "disk_full" | "storage" | "port_in_use" | "port_unavailable" | "internal";

export type Issued = { name: string, token: string, };

export type WriteTo = { "to": "default" } | { "to": "file", "path": string };

export type ClientKind = { 
/**
 * `claude-code`, `cursor`, …
 */
kind: string, label: string, 
/**
 * Where its config file usually is, when the home directory is known.
 */
path: string | null, 
/**
 * Reached through the stdio bridge (token in the keychain, not in the file).
 */
stdio: boolean, 
/**
 * Signs in with OAuth (its entry holds no token) unless a static token is asked for.
 */
oauth: boolean, };

export type ClientSetup = { 
/**
 * The client's name (a static client's, or the entry's for an OAuth one).
 */
name: string, 
/**
 * The static token, shown this once; `None` when the client signs in with OAuth.
 */
token: string | null, 
/**
 * The entry holds no credential: the client signs in through the consent page.
 */
oauth: boolean, kind: string, 
/**
 * The entry to paste into the client's config (holds the token unless `stdio`).
 */
snippet: string, note: string | null, written: string | null, backup: string | null, 
/**
 * The file lies in a git work tree: a token in it could be committed.
 */
warning: string | null, 
/**
 * Writing failed; the token and snippet above are still valid, so nothing is lost.
 */
write_error: Failure | null, };

export type RemoteTarget = { "via": "ssh", host: string, remote_user: string | null, remote_home: string | null, } | { "via": "devcontainer", folder: string, };

export type RemoteSetup = { 
/**
 * The agent client for that machine.
 */
client: string, 
/**
 * Its token, shown this once; `None` when an existing client was kept.
 */
token: string | null, 
/**
 * The client existed and keeps its token.
 */
reused: boolean, 
/**
 * `ssh` or `devcontainer`.
 */
via: string, 
/**
 * The `Host` block for ~/.ssh/config, or the devcontainer.json entries.
 */
snippet: string, 
/**
 * This broker's agent socket.
 */
local_socket: string, 
/**
 * The socket's path on the remote end.
 */
remote_socket: string, 
/**
 * The remote agent's MCP entry (stdio clients).
 */
mcp_config: string, 
/**
 * For HTTP-only clients: run this there…
 */
bridge_command: string, 
/**
 * …and use this entry.
 */
bridge_config: string, 
/**
 * What else the user has to do.
 */
notes: Array<string>, written: string | null, backup: string | null, 
/**
 * Writing failed; the token and snippet above are still valid.
 */
write_error: Failure | null, };

export type ZoneChange = { 
/**
 * Issuer URL or bare zone id.
 */
zone: string, client_id: string | null, resource: string | null, port: number | null, strategy: UpstreamStrategy | null, };

export type ZoneConfigured = { issuer: string, 
/**
 * The previous zone's session was ended first (switching zones).
 */
signed_out_previous: boolean, 
/**
 * The session stays pinned to this identifier until the next sign-in, because the
 * broker's resource identifier changed.
 */
signed_in_for_other_resource: string | null, };

export type About = { version: string, zone: string | null, port: number, mcp_url: string, 
/**
 * The agent socket remote agents reach through a forwarded socket (none when off).
 */
agent_socket: string | null, 
/**
 * The broker's resource identifier at the zone.
 */
resource: string, keychain: string | null, logs_dir: string, data_dir: string, config_file: string, };

export type UpstreamStrategy = "exchange" | "refresh_with_resource";

export type Status = { zone: string | null, account: string | null, session: Session, 
/**
 * The broker's resource identifier the session was signed in for; every refresh presents
 * it, whatever the port is now.
 */
resource: string | null, 
/**
 * Agent access paused by the user (the MCP endpoint answers 503).
 */
paused: boolean, 
/**
 * Renewed refresh tokens the keychain refused (locked), held in memory until it accepts.
 */
keychain_pending: number, connections: Array<ConnectionStatus>, 
/**
 * The state at a glance: the tray icon and the window's banner both show this.
 */
overall: Overall, };

export type ConnectionStatus = { resource: string, name: string, status: GrantStatus, scopes: Array<string>, connected_at: string | null, last_used_at: string | null, last_error: string | null, };

export type Session = "signed_in" | "needs_login" | "signed_out";

export type Overall = { state: OverallState, 
/**
 * One line for the tray tooltip and the window's banner.
 */
text: string, };

export type OverallState = "ok" | "paused" | "attention" | "signed_out";

export type TokenInfo = { resource: string, name: string, scopes: Array<string>, expires_in_secs: number, };

export type ConnectionInfo = { resource: string, name: string, status: string, scopes: Array<string>, api_bases: Array<string>, last_used_at: string | null, last_error: string | null, };

export type GrantStatus = "connected" | "needs_reconnect" | "revoked" | "error";

export type Provider = { 
/**
 * Short handle for the CLI (`github`); custom resources use their host.
 */
slug: string, name: string, 
/**
 * Resource identifier at the Keycard zone (RFC 8707 `resource`).
 */
resource: string, 
/**
 * URL prefixes the provider's token may be sent to. Defaults to the identifier.
 */
api_bases: Array<string>, 
/**
 * Scopes a connection needs; empty means "whatever the zone grants".
 */
scopes: Array<string>, docs_url: string | null, custom: boolean, };

export type Event = { "type": "session_changed", signed_in: boolean, account: string | null, } | { "type": "grant_changed", resource: string, status: GrantStatus, reason: string | null, } | { "type": "token_issued", resource: string, } | { "type": "resources_changed" } | { "type": "clients_changed" } | { "type": "pause_changed", paused: boolean, } | { "type": "keychain_pending", count: number, } | { "type": "agent_changed", client: string, change: AgentChange, } | { "type": "agent_asks", client: string, name: string, } | { "type": "activity", record: AuditRecord, } | { "type": "approval_requested", call: PendingCall, } | { "type": "approval_resolved", id: string, outcome: string, };

export type PendingCall = { 
/**
 * Short, random and URL-safe (96 bits), unique among the waiting calls.
 */
id: string, 
/**
 * The agent client's key (opaque).
 */
client: string, 
/**
 * The agent's name as the user sees it.
 */
client_name: string, 
/**
 * The provider's resource identifier.
 */
resource: string, method: string, 
/**
 * Without query values, fragment or user info.
 */
url: string, 
/**
 * The start of the body as the user should read it; `None` for an empty body.
 */
body_preview: string | null, 
/**
 * The policy rule that asked.
 */
rule: string, asked_at: string, expires_at: string, };

export type ClientRecord = { name: string, created_at: string, last_seen_at: string | null, };

export type AuditRecord = { at: string, client: string | null, 
/**
 * How the agent reached the broker (none for the broker's own token records).
 */
via: Via | null, kind: ActivityKind, resource: string | null, method: string | null, host: string | null, path: string | null, status: number | null, 
/**
 * How long the action took, measured by [`audited`].
 */
latency_ms: number, outcome: Outcome, detail: string | null, };

export type ActivityKind = "call_api" | "list_connections" | "connect" | "token";

export type Outcome = "ok" | "upstream_error" | "needs_reconnect" | "refused" | "declined" | "error";

export type Via = "loopback" | "socket";

export type ExportFormat = "csv" | "json";

export type Exported = { path: string, records: number, };

export type Access = "none" | "read" | "ask" | "write";

export type AgentAccess = { client: string, resource: string, access: Access, };

export type RuleView = { 
/**
 * `consent/<n>`, the rule's `@id`, or `policy.cedar:<line>`.
 */
id: string, effect: RuleEffect, 
/**
 * Carries `@itl`: a human approves each call it allows.
 */
asks: boolean, 
/**
 * The rule as Cedar text.
 */
source: string, 
/**
 * The agent a consent rule is about (`None` for the user's rules).
 */
client: string | null, 
/**
 * The provider a consent rule is about (`None` for the user's rules).
 */
resource: string | null, };

export type RuleEffect = "permit" | "forbid";

export type Verdict = "allow_once" | "allow_for_an_hour" | "deny";

export type DecidedBy = "window" | "tray" | "cli";

export type AgentRecord = { client_id: string, name: string, registration: Registration, redirect_uris: Array<string>, created_at: string, last_seen_at: string | null, };

export type Registration = "dcr" | "cimd";

export type AgentChange = "registered" | "signed_in" | "signed_out" | "access_changed";

export type AgentView = { 
/**
 * The policy's principal: a static client's name or an OAuth client id.
 */
key: string, name: string, 
/**
 * `None` for a static client (a bearer token pasted into a config file).
 */
registration: Registration | null, 
/**
 * Access per provider (`*`: every provider).
 */
access: Array<[string, Access]>, created_at: string, last_seen_at: string | null, 
/**
 * How it last reached the broker: `socket` for a remote agent (forwarded socket).
 */
last_via: Via | null, };

export type PolicyReport = { file: string, 
/**
 * Whether `policy.cedar` exists (absent: only the consent choices apply).
 */
file_exists: boolean, rules: number, };

export type AppInfo = { running: boolean, 
/**
 * Why the engine is not running.
 */
error: Failure | null, 
/**
 * The engine's facts, from the running broker or, when it failed, from the config.
 */
about: About | null, demo_zone: string, last_auth_url: string | null, };
