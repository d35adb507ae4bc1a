// The window's only way to the broker: Tauri commands (thin wrappers over the engine) and
// the events the shell forwards from it. No polling.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type { AuditRecord, ClientRecord, Provider, Status } from './format';

export interface AppInfo {
  version: string;
  running: boolean;
  error: string | null;
  zone: string | null;
  port: number | null;
  mcp_url: string | null;
  keychain: string | null;
  logs_dir: string | null;
  data_dir: string | null;
  config_file: string | null;
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
  write_error: string | null;
}

export type BrokerEvent =
  | { type: 'session_changed'; signed_in: boolean; account: string | null }
  | { type: 'grant_changed'; resource: string; status: string; reason: string | null }
  | { type: 'token_issued'; resource: string }
  | { type: 'resources_changed' }
  | { type: 'clients_changed' }
  | { type: 'keychain_pending'; count: number }
  | { type: 'activity'; record: AuditRecord };

/** Errors from commands are the engine's one-line message. */
export function message(e: unknown): string {
  if (typeof e === 'string') return e;
  if (e instanceof Error) return e.message;
  return JSON.stringify(e);
}

export const api = {
  appInfo: () => invoke<AppInfo>('app_info'),
  status: () => invoke<Status>('status'),
  setZone: (zone: string) => invoke<Status>('set_zone', { zone }),
  login: () => invoke<Status>('login'),
  connect: (resource: string) => invoke<Provider>('connect', { resource }),
  revoke: (resource: string) => invoke<Provider>('revoke', { resource }),
  logout: () => invoke<null>('logout'),
  resources: () => invoke<Provider[]>('resources_list'),
  addResource: (resource: string, name: string, apiBase: string, scopes: string) =>
    invoke<Provider>('resources_add', { resource, name, apiBase, scopes }),
  removeResource: (resource: string) => invoke<null>('resources_remove', { resource }),
  clients: () => invoke<ClientRecord[]>('clients_list'),
  addClient: (name: string, kind: string, write: boolean) =>
    invoke<AddedClient>('clients_add', { name, kind, write }),
  issueClient: (name: string, kind: string, write: boolean) =>
    invoke<AddedClient>('clients_issue', { name, kind, write }),
  removeClient: (name: string) => invoke<null>('clients_remove', { name }),
  audit: () => invoke<AuditRecord[]>('audit', { limit: 1000 }),
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
