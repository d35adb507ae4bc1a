import { describe, expect, it } from 'vitest';
import {
  actionsFor,
  bucketize,
  distinct,
  filterAudit,
  mergeRows,
  overall,
  relativeTime,
  resourceName,
  scopeWords,
  statusLabel,
  statusWords,
  suggestClientName,
  type AuditRecord,
  type Provider,
  type Status,
} from './format';

const provider = (name: string, resource: string, custom = false): Provider => ({
  slug: name.toLowerCase(),
  name,
  resource,
  api_bases: [resource],
  scopes: [],
  docs_url: null,
  custom,
});

const record = (over: Partial<AuditRecord>): AuditRecord => ({
  at: '2026-01-01T10:00:00Z',
  client: 'cursor',
  via: 'loopback',
  kind: 'call_api',
  resource: 'https://api.github.com',
  method: 'GET',
  host: 'api.github.com',
  path: '/user',
  status: 200,
  latency_ms: 12,
  outcome: 'ok',
  detail: null,
  ...over,
});

describe('connections', () => {
  const providers = [
    provider('GitHub', 'https://api.github.com'),
    provider('Slack', 'https://slack.com/api'),
    provider('Mine', 'http://127.0.0.1:9/api', true),
  ];
  const status: Status = {
    zone: 'http://127.0.0.1:8940',
    account: 'me@example.com',
    session: 'signed_in',
    resource: 'http://localhost:8937/mcp',
    paused: false,
    keychain_pending: 0,
    overall: { state: 'attention', text: 'attention needed: Mine' },
    connections: [
      {
        resource: 'http://127.0.0.1:9/api',
        name: 'Mine',
        status: 'needs_reconnect',
        scopes: ['read'],
        connected_at: '2026-01-01T00:00:00Z',
        last_used_at: null,
        last_error: 'the API answered 403 insufficient_scope',
      },
      {
        resource: 'https://api.github.com',
        name: 'GitHub',
        status: 'connected',
        scopes: ['repo'],
        connected_at: null,
        last_used_at: null,
        last_error: null,
      },
    ],
  };

  it('merges providers with their grants, attention first', () => {
    const rows = mergeRows(providers, status);
    expect(rows.map((r) => [r.provider.name, r.status])).toEqual([
      ['Mine', 'needs_reconnect'],
      ['GitHub', 'connected'],
      ['Slack', 'not_connected'],
    ]);
    expect(rows[0].reason).toContain('insufficient_scope');
    expect(mergeRows(providers, null).every((r) => r.status === 'not_connected')).toBe(true);
  });

  it('says each status in words with the reason', () => {
    expect(statusLabel('needs_reconnect')).toBe('Needs reconnect');
    expect(statusLabel('not_connected')).toBe('Not connected');
    expect(statusWords('needs_reconnect', 'scopes narrowed')).toBe(
      'Agents are blocked until you reconnect: scopes narrowed.',
    );
    expect(statusWords('error', null)).toContain('retrying');
    expect(statusWords('revoked', null)).toContain('forgotten');
  });

  it('offers the right buttons', () => {
    expect(actionsFor('not_connected')).toEqual(['connect']);
    expect(actionsFor('revoked')).toEqual(['connect']);
    expect(actionsFor('connected')).toEqual(['revoke']);
    expect(actionsFor('needs_reconnect')).toEqual(['reconnect', 'revoke']);
  });

  it('shows the state the engine computed for the tray, paused included', () => {
    expect(overall(null)).toBe('signed_out');
    expect(overall({ ...status, overall: { state: 'paused', text: 'agent access paused' } })).toBe('paused');
    expect(overall({ ...status, overall: { state: 'attention', text: 'x' } })).toBe('attention');
  });

  it('says what the zone granted, or that it named no scopes', () => {
    expect(scopeWords(['read', 'write'])).toBe('read write');
    expect(scopeWords([])).toBe('as configured in the zone');
    expect(scopeWords([''])).toBe('as configured in the zone');
  });

  it('names resources', () => {
    expect(resourceName('https://api.github.com', providers)).toBe('GitHub');
    expect(resourceName('http://10.0.0.1:8080/x', providers)).toBe('10.0.0.1:8080/x');
    expect(resourceName(null, providers)).toBe('—');
  });
});

describe('time', () => {
  const now = new Date('2026-01-10T12:00:00Z');
  it('is relative and human', () => {
    expect(relativeTime(null, now)).toBe('never');
    expect(relativeTime('2026-01-10T11:59:50Z', now)).toBe('just now');
    expect(relativeTime('2026-01-10T11:55:00Z', now)).toBe('5 min ago');
    expect(relativeTime('2026-01-10T09:00:00Z', now)).toBe('3 h ago');
    expect(relativeTime('2026-01-09T12:00:00Z', now)).toBe('1 day ago');
    expect(relativeTime('2025-01-01T00:00:00Z', now)).toBe('2025-01-01');
    expect(relativeTime('garbage', now)).toBe('unknown');
  });
});

describe('activity', () => {
  const records = [
    record({}),
    record({ client: 'codex', outcome: 'needs_reconnect', status: 403 }),
    record({ client: null, kind: 'token', resource: 'https://slack.com/api', outcome: 'error' }),
  ];

  it('filters by client, provider and outcome', () => {
    const none = { client: '', provider: '', outcome: '' };
    expect(filterAudit(records, none)).toHaveLength(3);
    expect(filterAudit(records, { ...none, client: 'codex' })).toHaveLength(1);
    expect(filterAudit(records, { ...none, provider: 'https://slack.com/api' })).toHaveLength(1);
    expect(filterAudit(records, { ...none, outcome: 'ok' })).toHaveLength(1);
    expect(filterAudit(records, { client: 'cursor', provider: '', outcome: 'error' })).toHaveLength(0);
    expect(distinct(records, 'client')).toEqual(['codex', 'cursor']);
    expect(distinct(records, 'outcome')).toEqual(['error', 'needs_reconnect', 'ok']);
  });

  it('buckets calls per provider over time', () => {
    const now = new Date('2026-01-01T10:30:00Z').getTime();
    const b = bucketize(
      [
        record({ at: '2026-01-01T10:29:30Z' }),
        record({ at: '2026-01-01T10:29:40Z' }),
        record({ at: '2026-01-01T10:10:00Z', resource: 'https://slack.com/api' }),
      ],
      24,
      now,
    );
    expect(b.size).toBe(60e3); // 20 min of history fits 24 one-minute buckets
    expect(b.series.map((s) => s.key)).toEqual(['https://api.github.com', 'https://slack.com/api']);
    expect(b.series[0].counts.reduce((a, c) => a + c, 0)).toBe(2);
    expect(b.series[0].counts[22]).toBe(2); // 10:29 bucket; the last one (23) is the current minute
    expect(b.max).toBe(2);
    expect(bucketize([], 24, now).series).toEqual([]);
  });
});

describe('clients', () => {
  it('suggests a free name', () => {
    expect(suggestClientName('cursor', [])).toBe('cursor');
    expect(suggestClientName('cursor', ['cursor', 'cursor-2'])).toBe('cursor-3');
  });
});
