// The window's state, kept current by engine events (see App.svelte).
import { api, message, type AgentView, type AppInfo, type ClientKind, type PendingCall } from './api';
import type { AuditRecord, Provider, Status } from './format';

export const store = $state({
  info: null as AppInfo | null,
  status: null as Status | null,
  providers: [] as Provider[],
  /** Every agent, OAuth and static, with its access. */
  clients: [] as AgentView[],
  /** Calls waiting for the user's approval, oldest first. */
  approvals: [] as PendingCall[],
  /** The kinds of agent client the engine can set up (its list, not a copy). */
  kinds: [] as ClientKind[],
  audit: [] as AuditRecord[],
  /** Authorize URL of the browser round under way, if any. */
  authUrl: null as string | null,
  /** What the round under way is for: 'login' or a resource. */
  pending: null as string | null,
  loadError: null as string | null,
});

async function guard<T>(f: () => Promise<T>, set: (v: T) => void) {
  try {
    set(await f());
  } catch (e) {
    store.loadError = message(e);
  }
}

export async function loadInfo() {
  await guard(api.appInfo, (v) => (store.info = v));
}
export async function loadStatus() {
  await guard(api.status, (v) => (store.status = v));
}
export async function loadProviders() {
  await guard(api.resources, (v) => (store.providers = v));
}
export async function loadClients() {
  await guard(api.agents, (v) => (store.clients = v));
}
export async function loadKinds() {
  await guard(api.clientKinds, (v) => (store.kinds = v));
}
export async function loadApprovals() {
  await guard(api.approvals, (v) => (store.approvals = v));
}
export async function loadAudit() {
  await guard(api.audit, (v) => (store.audit = v));
}

export async function loadAll() {
  store.loadError = null;
  await loadInfo();
  if (!store.info?.running) return;
  await Promise.all([loadStatus(), loadProviders(), loadClients(), loadKinds(), loadAudit(), loadApprovals()]);
}

/** Runs a browser round (login / connect / reconnect); the URL arrives as an event. */
export async function round<T>(what: string, f: () => Promise<T>): Promise<T> {
  store.pending = what;
  store.authUrl = null;
  try {
    return await f();
  } finally {
    store.pending = null;
    store.authUrl = null;
  }
}
