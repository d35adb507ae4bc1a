// View logic without any DOM or Tauri: wording, merging, filters, exports, chart buckets.

import type { AuditRecord, ConnectionStatus, GrantStatus, OverallState, Provider, Status } from './bindings';

// The engine's types, generated from Rust (bindings.ts); the views import them from here.
export type {
  AuditRecord,
  AgentView,
  ClientRecord,
  ConnectionStatus,
  GrantStatus,
  OverallState,
  Provider,
  Status,
} from './bindings';

export type RowStatus = GrantStatus | 'not_connected';

export interface Row {
  provider: Provider;
  status: RowStatus;
  scopes: string[];
  connected_at: string | null;
  last_used_at: string | null;
  reason: string | null;
}

/** Every provider with its connection, if any. Custom resources after the catalog. */
export function mergeRows(providers: Provider[], status: Status | null): Row[] {
  const byResource = new Map((status?.connections ?? []).map((c) => [c.resource, c]));
  const rows = providers.map((provider) => {
    const c = byResource.get(provider.resource);
    return {
      provider,
      status: (c?.status ?? 'not_connected') as RowStatus,
      scopes: c?.scopes ?? [],
      connected_at: c?.connected_at ?? null,
      last_used_at: c?.last_used_at ?? null,
      reason: c?.last_error ?? null,
    };
  });
  // Attention first, then connected, then the rest; catalog order otherwise.
  const rank: Record<RowStatus, number> = {
    needs_reconnect: 0,
    error: 1,
    connected: 2,
    revoked: 3,
    not_connected: 4,
  };
  return rows
    .map((r, i) => ({ r, i }))
    .sort((a, b) => rank[a.r.status] - rank[b.r.status] || a.i - b.i)
    .map(({ r }) => r);
}

/** The status label shown in the badge. */
/** What the zone granted, in words; a zone that named no scopes granted what it is configured to. */
export function scopeWords(scopes: string[]): string {
  const named = scopes.filter((s) => s.trim() !== '');
  return named.length ? named.join(' ') : 'as configured in the zone';
}

export function statusLabel(status: RowStatus): string {
  switch (status) {
    case 'connected':
      return 'Connected';
    case 'needs_reconnect':
      return 'Needs reconnect';
    case 'error':
      return 'Error';
    case 'revoked':
      return 'Revoked';
    default:
      return 'Not connected';
  }
}

/** The status in words, with the reason, as a person would say it. */
export function statusWords(status: RowStatus, reason: string | null): string {
  switch (status) {
    case 'connected':
      return 'Working: agents can use this connection.';
    case 'needs_reconnect':
      return `Agents are blocked until you reconnect${reason ? `: ${reason}` : ''}.`;
    case 'error':
      return `The zone or network is unreachable; retrying on its own${reason ? ` (${reason})` : ''}.`;
    case 'revoked':
      return 'Revoked: local credentials were forgotten. Connect again to use it.';
    default:
      return 'Not connected yet.';
  }
}

/** Which buttons a row offers. */
export function actionsFor(status: RowStatus): ('connect' | 'reconnect' | 'revoke')[] {
  switch (status) {
    case 'connected':
      return ['revoke'];
    case 'needs_reconnect':
    case 'error':
      return ['reconnect', 'revoke'];
    default:
      return ['connect'];
  }
}

/** "just now", "5 min ago", "3 h ago", "2 days ago", else a date; "never" for null. */
export function relativeTime(iso: string | null, now: Date = new Date()): string {
  if (!iso) return 'never';
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return 'unknown';
  const s = Math.round((now.getTime() - t) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.round(h / 24);
  if (d < 14) return `${d} day${d === 1 ? '' : 's'} ago`;
  return new Date(iso).toISOString().slice(0, 10);
}

export interface AuditFilterValues {
  client: string;
  provider: string;
  outcome: string;
}

export function filterAudit(records: AuditRecord[], f: AuditFilterValues): AuditRecord[] {
  return records.filter(
    (r) =>
      (!f.client || (r.client ?? '') === f.client) &&
      (!f.provider || (r.resource ?? '') === f.provider) &&
      (!f.outcome || r.outcome === f.outcome),
  );
}

/** Distinct non-empty values of a field, sorted, for filter menus. */
export function distinct(records: AuditRecord[], key: 'client' | 'resource' | 'outcome'): string[] {
  return [...new Set(records.map((r) => r[key]).filter((v): v is string => !!v))].sort();
}

export interface Series {
  key: string;
  counts: number[];
}

export interface Buckets {
  start: number;
  size: number;
  series: Series[];
  max: number;
}

const BUCKET_SIZES = [60e3, 5 * 60e3, 15 * 60e3, 3600e3, 6 * 3600e3, 86400e3];

/** Calls per provider over time, in at most `n` equal buckets of a round size. */
export function bucketize(records: AuditRecord[], n = 24, now: number = Date.now()): Buckets {
  const times = records.map((r) => new Date(r.at).getTime()).filter((t) => !Number.isNaN(t));
  const first = times.length ? Math.min(...times) : now;
  const span = Math.max(now - first, 1);
  const size = BUCKET_SIZES.find((s) => s * n >= span) ?? Math.ceil(span / n);
  const start = Math.floor((now - size * (n - 1)) / size) * size;
  const series = new Map<string, number[]>();
  for (const r of records) {
    const t = new Date(r.at).getTime();
    if (Number.isNaN(t) || t < start) continue;
    const i = Math.min(n - 1, Math.floor((t - start) / size));
    const key = r.resource ?? '(none)';
    const counts = series.get(key) ?? new Array(n).fill(0);
    counts[i] += 1;
    series.set(key, counts);
  }
  const list = [...series.entries()].map(([key, counts]) => ({ key, counts }));
  list.sort((a, b) => a.key.localeCompare(b.key));
  const max = Math.max(1, ...list.flatMap((s) => s.counts));
  return { start, size, series: list, max };
}

/** A short name for a resource: the catalog name when known, else the URL's host + path. */
export function resourceName(resource: string | null, providers: Provider[]): string {
  if (!resource) return '—';
  const p = providers.find((p) => p.resource === resource);
  if (p) return p.name;
  try {
    const u = new URL(resource);
    return u.host + (u.pathname === '/' ? '' : u.pathname);
  } catch {
    return resource;
  }
}


/** A default client name for a kind that is not taken yet. */
export function suggestClientName(kind: string, taken: string[]): string {
  if (!taken.includes(kind)) return kind;
  for (let i = 2; ; i++) if (!taken.includes(`${kind}-${i}`)) return `${kind}-${i}`;
}

/** The header's state: the engine's `overall`, the very field the tray icon is drawn from. */
export function overall(status: Status | null): OverallState {
  return status?.overall?.state ?? 'signed_out';
}

/** The access levels, in the order the window offers them. */
export const ACCESS_LEVELS = [
  { value: 'none', label: 'No access' },
  { value: 'read', label: 'Read only' },
  { value: 'ask', label: 'Read; ask me before writes' },
  { value: 'write', label: 'Read and write' },
] as const;

/** One line saying what an agent may use: "All providers: read; GitHub: read and write". */
export function accessSummary(access: [string, string][], providers: Provider[]): string {
  if (access.length === 0) return 'No access';
  const word = (level: string) => ACCESS_LEVELS.find((l) => l.value === level)?.label.toLowerCase() ?? level;
  return access
    .map(([resource, level]) => `${resource === '*' ? 'All providers' : resourceName(resource, providers)}: ${word(level)}`)
    .join('; ');
}
