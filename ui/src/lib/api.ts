// The window's only way to the broker: Tauri commands (thin wrappers over the engine) and
// the events the shell forwards from it. No polling.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type {
  About,
  Access,
  AgentView,
  PendingCall,
  Verdict,
  AppInfo as RawAppInfo,
  ClientKind,
  ClientSetup,
  Event,
  ExportFormat,
  Failure,
  Outcome,
  Reply,
  Request,
  Status,
} from './bindings';

export type { Access, AgentView, ClientKind, Failure, PendingCall, Verdict };

/** What the window shows about the app (the shell's `AppInfo`, with `About` spread in). */
export interface AppInfo extends Partial<About> {
  running: boolean;
  error: string | null;
  error_code: string | null;
  demo_zone: string;
  last_auth_url: string | null;
}

/** A new client token and its config entry (`broker::api::ClientSetup`). */
export type AddedClient = ClientSetup;

/** What the engine announces (`broker::Event`). */
export type BrokerEvent = Event;

/** Errors from commands are the engine's `Failure`; this is its one-line message. */
export function message(e: unknown): string {
  if (typeof e === 'string') return e;
  if (e instanceof Error) return e.message;
  if (e && typeof e === 'object' && 'message' in e) return String((e as Failure).message);
  return JSON.stringify(e);
}

/** The stable code of a failure, when it is one. */
export function failureCode(e: unknown): string | null {
  return e && typeof e === 'object' && 'code' in e ? String((e as Failure).code) : null;
}

/** How long a browser round waits for the redirect (the CLI's default too). */
const ROUND_TIMEOUT_SECS = 300;

/** Sends one request to the engine and checks the answer is the kind expected. */
type ValueOf<K extends Reply['kind']> = Extract<Reply, { kind: K }> extends { value: infer V } ? V : undefined;

async function call<K extends Reply['kind']>(request: Request, kind: K): Promise<ValueOf<K>> {
  const reply = await invoke<Reply>('api', { request });
  if (reply.kind !== kind) throw { code: 'internal', message: `unexpected ${reply.kind} answer to ${request.op}` } as Failure;
  return ('value' in reply ? reply.value : undefined) as ValueOf<K>;
}

function words(text: string): string[] {
  return text.split(/[\s,]+/).filter((w) => w.length > 0);
}

export const api = {
  appInfo: async (): Promise<AppInfo> => {
    const raw = await invoke<RawAppInfo>('app_info');
    return {
      ...(raw.about ?? {}),
      running: raw.running,
      error: raw.error?.message ?? null,
      error_code: raw.error?.code ?? null,
      demo_zone: raw.demo_zone,
      last_auth_url: raw.last_auth_url,
    };
  },
  status: () => call({ op: 'status' }, 'status'),
  setZone: (zone: string) => invoke<Status>('configure_zone', { change: { zone } }),
  login: () => call({ op: 'login', timeout_secs: ROUND_TIMEOUT_SECS }, 'status'),
  connect: (resource: string) => call({ op: 'connect', resource, timeout_secs: ROUND_TIMEOUT_SECS }, 'provider'),
  revoke: (resource: string) => call({ op: 'revoke', resource }, 'provider'),
  logout: () => call({ op: 'logout' }, 'status'),
  pause: () => call({ op: 'pause' }, 'status'),
  resume: () => call({ op: 'resume' }, 'status'),
  resources: () => call({ op: 'resources_list' }, 'providers'),
  addResource: (resource: string, name: string, apiBase: string, scopes: string) =>
    call(
      {
        op: 'resources_add',
        resource,
        name: name.trim() || null,
        api_bases: apiBase.trim() ? [apiBase.trim()] : [],
        scopes: words(scopes),
      },
      'provider',
    ),
  removeResource: (resource: string) => call({ op: 'resources_remove', resource }, 'done'),
  clients: () => call({ op: 'clients_list' }, 'clients'),
  clientKinds: () => call({ op: 'client_kinds' }, 'client_kinds'),
  /** A new client (`replace` false) or a new token for one; the shell names its own CLI. */
  setupClient: (name: string, kind: string, write: boolean, replace: boolean, access: Access | null, staticToken: boolean) =>
    call(
      {
        op: 'client_setup',
        name,
        kind,
        stdio_command: '',
        write: write ? { to: 'default' } : null,
        replace,
        access,
        static_token: staticToken,
      },
      'client_setup',
    ),
  addClient: (name: string, kind: string, write: boolean, access: Access, staticToken: boolean) =>
    api.setupClient(name, kind, write, false, access, staticToken),
  issueClient: (name: string, kind: string, write: boolean) => api.setupClient(name, kind, write, true, null, true),
  /** Every agent, OAuth and static, with what each may use. */
  agents: () => call({ op: 'agents' }, 'agents'),
  setAccess: (client: string, choices: [string, Access][]) => call({ op: 'set_access', client, choices }, 'done'),
  signOutAgent: (client: string) => call({ op: 'agent_sign_out', client }, 'done'),
  approvals: () => call({ op: 'approvals' }, 'approvals'),
  decide: (id: string, verdict: Verdict) => call({ op: 'decide', id, verdict, by: 'window' }, 'decided'),
  removeClient: (name: string) => call({ op: 'clients_remove', name }, 'done'),
  audit: () => call({ op: 'audit', client: null, resource: null, outcome: null, since: null, limit: 1000 }, 'activity'),
  /** Every record the filter selects, written by the engine to the Downloads folder. */
  exportActivity: (format: ExportFormat, filter: { client: string; resource: string; outcome: string }) =>
    call(
      {
        op: 'export_activity',
        client: filter.client || null,
        resource: filter.resource || null,
        outcome: (filter.outcome || null) as Outcome | null,
        since: null,
        format,
        to: '',
      },
      'exported',
    ),
  autostart: (enabled?: boolean) => invoke<boolean>('autostart', { enabled }),
  quit: () => invoke<null>('quit_app'),
  /** Tells the shell the window has rendered its first view (it logs the open time). */
  windowShown: (view: string) => invoke<null>('window_shown', { view, pageMs: performance.now() }),
};

export function onBrokerEvent(f: (e: BrokerEvent) => void): Promise<UnlistenFn> {
  return listen<BrokerEvent>('broker-event', (e) => f(e.payload));
}
export function onAuthUrl(f: (url: string) => void): Promise<UnlistenFn> {
  return listen<string>('auth-url', (e) => f(e.payload));
}
export function onEngineChanged(f: () => void): Promise<UnlistenFn> {
  return listen('engine-changed', () => f());
}
