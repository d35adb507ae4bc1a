// The window's only way to the broker: Tauri commands (thin wrappers over the engine) and
// the events the shell forwards from it. No polling.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type { AuditRecord, ClientRecord, Provider, Status } from './format';

/** The engine's facts (`broker::api::About`). */
export interface About {
  version: string;
  zone: string | null;
  port: number;
  mcp_url: string;
  resource: string;
  keychain: string | null;
  logs_dir: string;
  data_dir: string;
  config_file: string;
}

/** Every failure: a stable code (the button to offer depends on it) and a plain message. */
export interface Failure {
  code: string;
  message: string;
  resource?: string;
}

/** What the window shows about the app (the shell's `AppInfo`, with `About` spread in). */
export interface AppInfo extends Partial<About> {
  running: boolean;
  error: string | null;
  error_code: string | null;
  demo_zone: string;
  last_auth_url: string | null;
}

interface RawAppInfo {
  running: boolean;
  error: Failure | null;
  about: About | null;
  demo_zone: string;
  last_auth_url: string | null;
}

export interface AddedClient {
  name: string;
  token: string;
  kind: string;
  snippet: string;
  note: string | null;
  written: string | null;
  backup: string | null;
  /** Set when the file lies in a git work tree: the token could be committed. */
  warning: string | null;
  write_error: Failure | null;
}

export interface ClientKind {
  kind: string;
  label: string;
  path: string | null;
  /** Reached through the stdio bridge: the token goes to the keychain, not the file. */
  stdio: boolean;
}

export type BrokerEvent =
  | { type: 'session_changed'; signed_in: boolean; account: string | null }
  | { type: 'grant_changed'; resource: string; status: string; reason: string | null }
  | { type: 'token_issued'; resource: string }
  | { type: 'resources_changed' }
  | { type: 'clients_changed' }
  | { type: 'pause_changed'; paused: boolean }
  | { type: 'keychain_pending'; count: number }
  | { type: 'activity'; record: AuditRecord };

/** The engine's operations (`broker::api::Request`), tagged by `op`. */
export type Request =
  | { op: 'status' | 'pause' | 'resume' | 'logout' | 'resources_list' | 'clients_list' | 'client_kinds' | 'about' }
  | { op: 'login'; timeout_secs: number }
  | { op: 'connect'; resource: string; timeout_secs: number }
  | { op: 'check' | 'revoke' | 'resources_remove'; resource: string }
  | { op: 'resources_add'; resource: string; name: string | null; api_bases: string[]; scopes: string[] }
  | { op: 'clients_add' | 'clients_issue' | 'clients_remove'; name: string }
  | { op: 'client_setup'; name: string; kind: string; stdio_command: string; write: { to: 'default' } | null; replace: boolean }
  | { op: 'audit'; client: string | null; resource: string | null; since: string | null; limit: number | null };

/** The engine's answers (`broker::api::Reply`), tagged by `kind`. */
export type Reply =
  | { kind: 'status'; value: Status }
  | { kind: 'provider'; value: Provider }
  | { kind: 'providers'; value: Provider[] }
  | { kind: 'clients'; value: ClientRecord[] }
  | { kind: 'client_setup'; value: AddedClient }
  | { kind: 'client_kinds'; value: ClientKind[] }
  | { kind: 'activity'; value: AuditRecord[] }
  | { kind: 'about'; value: About }
  | { kind: 'done'; value?: undefined };

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
type ValueOf<K extends Reply['kind']> = Extract<Reply, { kind: K }>['value'];

async function call<K extends Reply['kind']>(request: Request, kind: K): Promise<ValueOf<K>> {
  const reply = await invoke<Reply>('api', { request });
  if (reply.kind !== kind) throw { code: 'internal', message: `unexpected ${reply.kind} answer to ${request.op}` } as Failure;
  return reply.value as ValueOf<K>;
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
  setupClient: (name: string, kind: string, write: boolean, replace: boolean) =>
    call(
      { op: 'client_setup', name, kind, stdio_command: '', write: write ? { to: 'default' } : null, replace },
      'client_setup',
    ),
  addClient: (name: string, kind: string, write: boolean) => api.setupClient(name, kind, write, false),
  issueClient: (name: string, kind: string, write: boolean) => api.setupClient(name, kind, write, true),
  removeClient: (name: string) => call({ op: 'clients_remove', name }, 'done'),
  audit: () => call({ op: 'audit', client: null, resource: null, since: null, limit: 1000 }, 'activity'),
  saveExport: (format: 'csv' | 'json', content: string) =>
    invoke<string>('save_export', { format, content }),
  autostart: (enabled?: boolean) => invoke<boolean>('autostart', { enabled }),
  quit: () => invoke<null>('quit_app'),
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
