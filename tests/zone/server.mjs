// Keycard zone emulator: a real OAuth 2.1 authorization server (oidc-provider) that behaves like a
// Keycard zone as described in shared/PROTOCOL.md §1, plus a JSON control API for tests.
//
//   node tests/zone/server.mjs [--port N]      (or env ZONE_PORT; default 0 = random free port)
//
// Prints exactly one stdout line when ready: `ZONE_READY http://127.0.0.1:<port>` (= the issuer).
// Everything else goes to stderr. ZONE_INTERACTIVE=1 shows an Approve/Deny page instead of
// auto-approving. State lives in memory only; restart = fresh zone.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

// stdout carries only the ready line: oidc-provider prints notices with console.info.
console.log = console.info = console.debug = (...args) => console.error(...args);
const log = (...args) => console.error('[zone]', ...args);

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const OIDC_SCOPES = new Set(['openid', 'offline_access', 'email', 'profile']);
const STAND_IN_CLIENT = 'keycard-anonymous-exchange'; // names token exchanges sent with no client auth
const INTERACTIVE = process.env.ZONE_INTERACTIVE === '1';
const ROUTES = {
  authorization: '/oauth/authorize',
  token: '/oauth/token',
  registration: '/oauth/register',
  revocation: '/oauth/revoke',
  introspection: '/oauth/introspect',
  userinfo: '/oauth/userinfo',
  jwks: '/oauth/jwks',
  end_session: '/oauth/logout',
};
const DISCOVERY_PATHS = new Set(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']);

// ---------------------------------------------------------------------------------------------
// Emulator state (what the control API reads and writes)
// ---------------------------------------------------------------------------------------------
const state = {
  account: { sub: 'demo-user', email: 'demo@keycard.test', name: 'Demo User' },
  accounts: new Map(), // sub -> { email, name }: identities that have logged in
  policy: new Map(), // resource -> scopes the NEXT consent for it grants (default read write)
  delegated: new Map(), // `${account}\n${resource}` -> { account, resource, scopes, connected }
  rounds: new Map(), // oidc-provider grantId -> { account, resources }: one per authorize round
  ttl: { access: 3600, exchanged: 3600, refresh: 14 * 24 * 3600 },
  fail: { token: null, revocation: null, registration: null, discovery: null }, // { remaining, status, retryAfter }
  delay: null, // { remaining, ms, after } for the next token-endpoint requests
  // Seconds a rotated-out refresh token stays usable (the "reuse interval" / "grace period"
  // production authorization servers offer so a client that lost the answer to a refresh can
  // retry). 0 = strict rotation: a replay is invalid_grant and revokes the grant.
  refreshReuse: 0,
  deny: 0, // the next N authorize rounds are denied (access_denied) instead of approved
  scopeField: 'keep', // token answers' `scope`: keep, omit (RFC 6749 allows it) or empty ("")
  issuerOverride: null,
  issued: new Set(), // every secret value handed out, in order
  counters: null,
};
const resetCounters = () => {
  state.counters = {
    token: { authorization_code: 0, refresh_token: 0, token_exchange: 0 },
    token_by_resource: {},
    revocation: 0,
    registration: 0,
    authorize: 0,
    refresh_reused: 0, // rotated-out refresh tokens accepted inside the reuse interval
  };
};
resetCounters();
state.accounts.set(state.account.sub, { email: state.account.email, name: state.account.name });

const policyScopes = (resource) => state.policy.get(resource) ?? ['read', 'write'];
const grantKey = (account, resource) => `${account}\n${resource}`;

function isHttpUrl(value) {
  if (typeof value !== 'string') return false;
  const url = URL.parse(value);
  return !!url && (url.protocol === 'http:' || url.protocol === 'https:') && !url.hash;
}

// ---------------------------------------------------------------------------------------------
// Storage: an unbounded in-memory adapter (oidc-provider's own is an LRU capped at 1000 entries,
// which would silently drop tokens in long runs). Shared by all models, indexed by grantId.
// ---------------------------------------------------------------------------------------------
const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }
const byGrant = new Map(); // grantId -> Set(store keys)
const byUid = new Map(); // session uid -> session id

class ZoneAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    store.set(key, { payload, expiresAt });
    if (payload.grantId) {
      if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, new Set());
      byGrant.get(payload.grantId).add(key);
    }
    if (this.model === 'Session' && payload.uid) byUid.set(payload.uid, id);
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    const { consumed } = entry.payload;
    if (this.model === 'RefreshToken' && consumed && Date.now() / 1000 - consumed <= state.refreshReuse) {
      state.counters.refresh_reused += 1;
      return { ...entry.payload, consumed: undefined }; // inside the reuse interval: rotate again
    }
    return entry.payload;
  }

  async findByUid(uid) { const id = byUid.get(uid); return id ? this.find(id) : undefined; }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed ??= Math.floor(Date.now() / 1000); // the first use starts the interval
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of byGrant.get(grantId) ?? []) store.delete(key);
    byGrant.delete(grantId);
  }
}

setInterval(() => { // drop expired entries now and then
  const now = Date.now();
  for (const [key, { expiresAt }] of store) if (expiresAt !== undefined && expiresAt <= now) store.delete(key);
}, 60_000).unref();

function revokeRefreshTokensOfGrant(grantId) {
  for (const key of byGrant.get(grantId) ?? []) if (key.startsWith('RefreshToken:')) store.delete(key);
}

// ---------------------------------------------------------------------------------------------
// Provider configuration
// ---------------------------------------------------------------------------------------------
async function findAccount(_ctx, sub) {
  const known = state.accounts.get(sub) ?? {};
  return {
    accountId: sub,
    async claims() {
      return { sub, email: known.email, email_verified: known.email ? true : undefined, name: known.name };
    },
  };
}

// Every authorize round must reach our interaction (that is where the zone "runs R's consent" and
// records the delegated grant), so consent is always requested until our interaction answered it.
function makePolicy() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.add(new interactionPolicy.Check(
    'keycard_round',
    'every authorize round runs the resources\' consent',
    (ctx) => (ctx.oidc.result?.consent ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT),
  ));
  return policy;
}

function makeConfig() {
  // The key comes out of the generator as PEM and is exported as a JWK from a key object of its
  // own. Exporting the generated key object itself can deadlock Node 20 (seen with 20.20.2, the
  // emulator hung at start-up now and then): a garbage collection during the JWK export runs the
  // finalizer of the finished key-generation job, which locks the key's mutex the export holds
  // (gdb: ExportJWKRsaKey → GC → ~KeyGenJob → pthread_mutex_lock).
  const { privateKey: pem } = crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = { ...crypto.createPrivateKey(pem).export({ format: 'jwk' }), kid: 'zone-signing-1', use: 'sig', alg: 'RS256' };
  const redirectLoopback = ['http://127.0.0.1/callback', 'http://localhost/callback'];

  return {
    adapter: ZoneAdapter,
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    clients: [
      { // a fake upstream API introspects exchanged tokens with this
        client_id: 'upstream-fixture',
        client_secret: 'upstream-fixture-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
      { // optional confidential application path (KEYCARD_CLIENT_ID / KEYCARD_CLIENT_SECRET)
        client_id: 'confidential-app',
        client_secret: 'confidential-app-secret',
        token_endpoint_auth_method: 'client_secret_basic',
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
        response_types: ['code'],
        redirect_uris: redirectLoopback,
      },
      { // stand-in for token exchanges that carry no client authentication at all
        client_id: STAND_IN_CLIENT,
        token_endpoint_auth_method: 'none',
        grant_types: [TOKEN_EXCHANGE],
        response_types: [],
        redirect_uris: [],
      },
    ],
    findAccount,
    claims: {
      // email and name ride on `openid` so every id_token carries them (PROTOCOL: sub, email, name)
      openid: ['sub', 'email', 'email_verified', 'name'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    conformIdTokenClaims: false,
    scopes: [...OIDC_SCOPES],
    responseTypes: ['code'],
    pkce: { required: () => true },
    rotateRefreshToken: true,
    // Keycard issues refresh tokens whether or not offline_access survived oidc-provider's prompt rules.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    // A fresh Grant per round (never the session's previous one): rounds are independent
    // connections, so revoking or replaying one round's refresh token never touches the others.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId;
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}`, policy: makePolicy() },
    clientBasedCORS: () => true,
    renderError: async (ctx, out) => { ctx.type = 'json'; ctx.body = out; }, // JSON errors, never HTML
    routes: ROUTES,
    ttl: {
      AccessToken: (_ctx, token) => (String(token.gty ?? '').includes('token_exchange') ? state.ttl.exchanged : state.ttl.access),
      AuthorizationCode: 120,
      IdToken: 3600,
      RefreshToken: () => state.ttl.refresh,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      pushedAuthorizationRequests: { enabled: false }, // not part of the Keycard protocol
      registration: { enabled: true }, // open DCR, no initial access token
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      introspection: {
        enabled: true,
        // confidential clients (the upstream fixture) may introspect anything; public ones their own
        allowedPolicy: async (_ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // several resources in one round: tokens default to the first one
        defaultResource: async (_ctx, _client, oneOf) => (Array.isArray(oneOf) ? oneOf[0] : oneOf),
        // code exchange / refresh without `resource` target the round's resource, even with openid
        useGrantedResource: async () => true,
        // any absolute http(s) URL is a resource; tokens for it are opaque (introspectable)
        getResourceServerInfo: async (_ctx, resource) => {
          if (!isHttpUrl(resource)) throw new errors.InvalidTarget('resource must be an absolute http(s) URL without a fragment');
          const scopes = new Set(policyScopes(resource));
          for (const g of state.delegated.values()) if (g.resource === resource) g.scopes.forEach((s) => scopes.add(s));
          return { scope: [...scopes].join(' ') || 'read', accessTokenFormat: 'opaque' };
        },
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Provider customisation: scopes from delegated grants, token exchange, any client may exchange
// ---------------------------------------------------------------------------------------------
function customise(provider) {
  // Tokens for resource R carry the delegated grant's scopes for R, whatever `scope` was requested
  // (oidc-provider would otherwise filter the authorize-time scope, e.g. "openid offline_access").
  const AccessToken = provider.AccessToken;
  const save = AccessToken.prototype.save;
  AccessToken.prototype.save = function saveWithDelegatedScope(...args) {
    const g = typeof this.aud === 'string' && this.accountId ? state.delegated.get(grantKey(this.accountId, this.aud)) : undefined;
    if (g?.connected) this.scope = g.scopes.join(' ');
    return save.apply(this, args);
  };

  // The confidential app may redirect to any loopback URL (the broker picks its callback path).
  const redirectUriAllowed = provider.Client.prototype.redirectUriAllowed;
  provider.Client.prototype.redirectUriAllowed = function anyLoopbackForApp(value) {
    if (this.clientId === 'confidential-app') {
      const url = URL.parse(value);
      if (url?.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) return true;
    }
    return redirectUriAllowed.call(this, value);
  };

  // Any client may exchange: DCR'd public clients register only authorization_code + refresh_token.
  const grantTypeAllowed = provider.Client.prototype.grantTypeAllowed;
  provider.Client.prototype.grantTypeAllowed = function allowExchange(type) {
    return type === TOKEN_EXCHANGE || grantTypeAllowed.call(this, type);
  };

  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const { params, client } = ctx.oidc;
    const invalidGrant = (why) => new errors.CustomOIDCProviderError('invalid_grant', why); // with a useful description
    if (!params.subject_token) throw invalidGrant('subject_token is missing');
    if (!params.subject_token_type) throw new errors.InvalidRequest('missing required parameter(s) (subject_token_type)');
    if (params.subject_token_type !== AT_TYPE) throw new errors.InvalidRequest(`unsupported subject_token_type (only ${AT_TYPE})`);
    const resources = [params.resource ?? []].flat().filter(Boolean);
    if (resources.length === 0) throw new errors.InvalidRequest('missing required parameter(s) (resource)');
    if (resources.length > 1) throw new errors.InvalidTarget('exactly one resource per token exchange');
    const [resource] = resources;
    if (!isHttpUrl(resource)) throw new errors.InvalidTarget('resource must be an absolute http(s) URL without a fragment');

    let subject;
    try { subject = await provider.AccessToken.find(params.subject_token); } catch { subject = undefined; }
    if (!subject?.isValid || !subject.accountId) throw invalidGrant('subject_token is not an active access token issued by this zone');
    if (subject.grantId && !(await provider.Grant.find(subject.grantId))) throw invalidGrant('subject_token grant was revoked');

    const g = state.delegated.get(grantKey(subject.accountId, resource));
    if (!g?.connected) {
      throw new errors.CustomOIDCProviderError('insufficient_authorization',
        `no delegated grant for ${resource}: connect it with an authorize round (resource=${resource})`);
    }
    if (params.scope) {
      const missing = params.scope.split(' ').filter((s) => s && !g.scopes.includes(s));
      if (missing.length) {
        throw new errors.CustomOIDCProviderError('insufficient_authorization',
          `the delegated grant for ${resource} does not include: ${missing.join(' ')}`);
      }
    }

    const at = new provider.AccessToken({ accountId: subject.accountId, client, gty: 'token_exchange', scope: g.scopes.join(' ') });
    at.resourceServer = new provider.ResourceServer(resource, { scope: g.scopes.join(' '), accessTokenFormat: 'opaque' });
    ctx.oidc.entity('AccessToken', at);
    const value = await at.save();
    ctx.body = { access_token: value, issued_token_type: AT_TYPE, token_type: 'Bearer', expires_in: at.expiration, scope: at.scope };
  }, ['subject_token', 'subject_token_type', 'resource', 'audience', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'],
  ['resource', 'audience']);

  provider.on('grant.error', (ctx, err) => log(`token error ${err.error ?? err.message}: ${err.error_description ?? ''}${err.error_detail ? ` (${err.error_detail})` : ''}`));
  provider.on('server_error', (ctx, err) => log('server_error', ctx?.path, err));
  provider.on('error', (err) => log('koa error', err?.message ?? err));
}

// ---------------------------------------------------------------------------------------------
// Interaction: login + consent in one step (auto in tests, a tiny page in demo mode)
// ---------------------------------------------------------------------------------------------
const asList = (v) => [v ?? []].flat().filter((x) => typeof x === 'string' && x);

async function approve(provider, details) {
  const { params, session } = details;
  const accountId = state.account.sub;
  state.accounts.set(accountId, { email: state.account.email, name: state.account.name });

  // The browser session may belong to an earlier identity (control/account changed it): move the
  // session to the new one, or oidc-provider would answer with a logout confirmation form.
  if (session?.accountId && session.accountId !== accountId) {
    const s = await provider.Session.findByUid(session.uid);
    if (s) { s.accountId = accountId; await s.persist(); }
    details.session.accountId = accountId; // the interaction remembers the principal too
    await details.save(details.exp - Math.floor(Date.now() / 1000));
  }

  const requested = (typeof params.scope === 'string' ? params.scope : '').split(' ').filter(Boolean);
  const resources = asList(params.resource);
  const grant = new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(['openid', ...requested.filter((s) => OIDC_SCOPES.has(s))].join(' '));
  grant.addOIDCClaims(['sub', 'email', 'email_verified', 'name']);
  for (const resource of resources) {
    // grant whatever oidc-provider asks for; the real scopes come from the delegated grant below
    grant.addResourceScope(resource, [...new Set([...policyScopes(resource), ...requested.filter((s) => !OIDC_SCOPES.has(s))])].join(' '));
  }
  const grantId = await grant.save();

  // "The zone ran R's consent": record the delegated grant with R's policy scopes as of now.
  state.rounds.set(grantId, { account: accountId, resources });
  for (const resource of resources) {
    state.delegated.set(grantKey(accountId, resource), { account: accountId, resource, scopes: [...policyScopes(resource)], connected: true });
  }
  log(`authorize round approved for ${accountId}: ${resources.join(', ') || '(no resource)'}`);
  return { login: { accountId }, consent: { grantId } };
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function consentPage(uid, details) {
  const resources = asList(details.params.resource);
  const what = resources.length ? resources.map((r) => `<code>${esc(r)}</code>`).join(', ') : 'your account';
  return `<!doctype html><html><head><meta charset="utf-8"><title>Keycard demo zone</title>
<style>body{font:16px system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em}button{font-size:1em;padding:.5em 1.2em;margin-right:.5em}</style>
</head><body><h1>Keycard demo zone</h1>
<p>Keycard demo zone — sign in as <b>${esc(state.account.email)}</b> and allow access to ${what}</p>
<p>Requested by client <code>${esc(details.params.client_id)}</code>.</p>
<form method="post" action="/interaction/${esc(uid)}/approve" style="display:inline"><button type="submit">Approve</button></form>
<form method="post" action="/interaction/${esc(uid)}/deny" style="display:inline"><button type="submit">Deny</button></form>
</body></html>`;
}

async function handleInteraction(provider, ctx) {
  const m = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(approve|deny))?$/);
  if (!m) return jsonError(ctx, 404, 'not_found', 'no such interaction route');
  const [, uid, action] = m;
  let details;
  try {
    details = await provider.interactionDetails(ctx.req, ctx.res);
  } catch (err) {
    return jsonError(ctx, 400, 'invalid_request', `interaction not found or expired (${err.error_description ?? err.message})`);
  }
  if (details.uid !== uid) return jsonError(ctx, 400, 'invalid_request', 'interaction mismatch');

  let result;
  if (INTERACTIVE && !action) {
    if (ctx.method !== 'GET') return jsonError(ctx, 405, 'invalid_request', 'use GET');
    ctx.type = 'html';
    ctx.body = consentPage(uid, details);
    return undefined;
  }
  if (action && ctx.method !== 'POST') return jsonError(ctx, 405, 'invalid_request', 'use POST');
  const autoDeny = !action && state.deny > 0; // POST /__control/deny queued a refusal
  if (autoDeny) state.deny -= 1;
  if (action === 'deny' || autoDeny) {
    result = { error: 'access_denied', error_description: 'the user denied access' };
  } else {
    result = await approve(provider, details);
  }
  let returnTo;
  try {
    returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  } catch (err) {
    return jsonError(ctx, 400, 'invalid_request', `interaction cannot complete (${err.error_description ?? err.message})`);
  }
  ctx.redirect(returnTo);
  ctx.status = 303;
  return undefined;
}

// oidc-provider's userinfo refuses audience-bound tokens, but every Keycard token is bound to a
// resource; answer for any active access token of this zone instead.
async function handleUserinfo(provider, ctx) {
  const m = (ctx.get('authorization') ?? '').match(/^Bearer\s+(\S+)$/i);
  let token;
  try { token = m ? await provider.AccessToken.find(m[1]) : undefined; } catch { token = undefined; }
  if (!token?.isValid || !token.accountId) {
    ctx.set('WWW-Authenticate', 'Bearer error="invalid_token"');
    return jsonError(ctx, 401, 'invalid_token', 'no active access token of this zone in the Authorization header');
  }
  const known = state.accounts.get(token.accountId) ?? {};
  ctx.set('Cache-Control', 'no-store');
  ctx.body = { sub: token.accountId, email: known.email, email_verified: known.email ? true : undefined, name: known.name };
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Control API (/__control/*, loopback only)
// ---------------------------------------------------------------------------------------------
class ControlError extends Error {}
const need = (cond, msg) => { if (!cond) throw new ControlError(msg); };

function scopeList(value) {
  const list = typeof value === 'string' ? value.split(' ').filter(Boolean) : value;
  need(Array.isArray(list) && list.every((s) => typeof s === 'string' && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s)),
    'scopes must be an array of scope strings (or a space-separated string)');
  return [...new Set(list)];
}

function resourceOf(body) {
  need(isHttpUrl(body.resource), 'resource must be an absolute http(s) URL');
  return body.resource;
}

function nonNegInt(value, name, { min = 0, max = 1e9 } = {}) {
  need(Number.isInteger(value) && value >= min && value <= max, `${name} must be an integer in [${min}, ${max}]`);
  return value;
}

const controls = {
  'GET counters': () => state.counters,
  'POST reset': () => { resetCounters(); return { ok: true }; },
  'GET issued': () => ({ tokens: [...state.issued] }),
  'GET grants': () => [...state.delegated.values()],
  'POST resources': (b) => {
    const resource = resourceOf(b);
    state.policy.set(resource, scopeList(b.scopes));
    return { resource, scopes: state.policy.get(resource) };
  },
  'POST narrow': (b) => {
    const resource = resourceOf(b);
    const scopes = scopeList(b.scopes);
    let narrowed = 0;
    for (const g of state.delegated.values()) if (g.resource === resource && g.connected) { g.scopes = [...scopes]; narrowed += 1; }
    return { resource, scopes, narrowed };
  },
  'POST disconnect': (b) => {
    const resource = resourceOf(b);
    let disconnected = 0;
    for (const g of state.delegated.values()) if (g.resource === resource && g.connected) { g.connected = false; g.scopes = []; disconnected += 1; }
    for (const [grantId, round] of state.rounds) if (round.resources.includes(resource)) revokeRefreshTokensOfGrant(grantId);
    return { resource, disconnected };
  },
  'POST fail': (b) => {
    const endpoint = b.endpoint ?? 'token';
    need(Object.hasOwn(state.fail, endpoint), `endpoint must be one of ${Object.keys(state.fail).join(', ')}`);
    const count = nonNegInt(b.count ?? 1, 'count');
    const status = nonNegInt(b.status ?? 503, 'status', { min: 400, max: 599 });
    const retryAfter = b.retry_after === undefined || b.retry_after === null ? undefined : nonNegInt(b.retry_after, 'retry_after');
    // error: the OAuth error code to answer with (e.g. invalid_target, as a zone does for a
    // resource it does not know); default derived from the status.
    need(b.error === undefined || (typeof b.error === 'string' && /^[a-z_]{1,64}$/.test(b.error)), 'error must be an OAuth error code');
    state.fail[endpoint] = count ? { remaining: count, status, retryAfter, error: b.error } : null;
    return { endpoint, count, status, retry_after: retryAfter ?? null, error: b.error ?? null };
  },
  'POST delay': (b) => {
    const ms = nonNegInt(b.ms, 'ms', { max: 600_000 });
    const count = nonNegInt(b.count ?? 1, 'count');
    need(b.after === undefined || typeof b.after === 'boolean', 'after must be a boolean');
    // after: the zone does the work (a refresh has rotated) and then holds the answer back.
    state.delay = count ? { remaining: count, ms, after: b.after === true } : null;
    return { ms, count, after: b.after === true };
  },
  'POST rotation': (b) => {
    state.refreshReuse = nonNegInt(b.reuse_secs, 'reuse_secs', { max: 3600 });
    return { reuse_secs: state.refreshReuse };
  },
  'POST scope-field': (b) => {
    need(['keep', 'omit', 'empty'].includes(b.mode), 'mode must be keep, omit or empty');
    state.scopeField = b.mode;
    return { mode: state.scopeField };
  },
  'POST deny': (b) => { state.deny = nonNegInt(b.count ?? 1, 'count'); return { count: state.deny }; },
  'POST ttl': (b) => {
    need(b.access_token !== undefined || b.exchanged !== undefined || b.refresh_token !== undefined,
      'give access_token and/or exchanged (seconds)');
    if (b.access_token !== undefined) state.ttl.access = nonNegInt(b.access_token, 'access_token', { min: 1 });
    if (b.exchanged !== undefined) state.ttl.exchanged = nonNegInt(b.exchanged, 'exchanged', { min: 1 });
    if (b.refresh_token !== undefined) state.ttl.refresh = nonNegInt(b.refresh_token, 'refresh_token', { min: 1 });
    return { access_token: state.ttl.access, exchanged: state.ttl.exchanged, refresh_token: state.ttl.refresh };
  },
  'POST discovery': (b) => {
    need(Object.hasOwn(b, 'issuer') && (b.issuer === null || typeof b.issuer === 'string'), 'issuer must be a string or null');
    state.issuerOverride = b.issuer;
    return { issuer: state.issuerOverride };
  },
  'POST account': (b) => {
    need(typeof b.sub === 'string' && b.sub.length > 0 && b.sub.length <= 255, 'sub must be a non-empty string');
    need(b.email === undefined || typeof b.email === 'string', 'email must be a string');
    need(b.name === undefined || typeof b.name === 'string', 'name must be a string');
    state.account = { sub: b.sub, email: b.email ?? `${b.sub}@keycard.test`, name: b.name ?? b.sub };
    return state.account;
  },
};

async function handleControl(ctx) {
  const name = `${ctx.method} ${ctx.path.slice('/__control/'.length)}`;
  const handler = Object.hasOwn(controls, name) ? controls[name] : undefined;
  if (!handler) return jsonError(ctx, 404, 'unknown control endpoint');
  let body = {};
  if (ctx.method === 'POST') {
    let raw;
    try { raw = (await readBody(ctx.req, 64 * 1024)).toString('utf8').trim(); } catch { return jsonError(ctx, 413, 'body too large'); }
    if (raw) {
      try { body = JSON.parse(raw); } catch { return jsonError(ctx, 400, 'body is not valid JSON'); }
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) return jsonError(ctx, 400, 'body must be a JSON object');
  }
  try {
    ctx.body = handler(body);
    ctx.status = 200;
  } catch (err) {
    if (err instanceof ControlError) return jsonError(ctx, 400, err.message);
    throw err;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing: failure/delay injection, counters, token-body pre-processing, secret capture
// ---------------------------------------------------------------------------------------------
function jsonError(ctx, status, error, description) {
  ctx.status = status;
  ctx.type = 'json';
  ctx.body = description === undefined ? { error } : { error, error_description: description };
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

class BodyTooLarge extends Error {}
async function readBody(req, limit) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
    else if (size > 16 * limit) break; // stop draining absurd bodies (the connection is dropped)
  }
  if (size > limit) throw new BodyTooLarge(); // drained first, so the client reads our 413
  return Buffer.concat(chunks);
}

const isLoopback = (addr) => !!addr && (addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.'));

function endpointOf(ctx) {
  if (DISCOVERY_PATHS.has(ctx.path) && ctx.method === 'GET') return 'discovery';
  if (ctx.method !== 'POST') return ctx.path === ROUTES.authorization ? 'authorize' : undefined;
  return {
    [ROUTES.token]: 'token',
    [ROUTES.revocation]: 'revocation',
    [ROUTES.registration]: 'registration',
    [ROUTES.authorization]: 'authorize',
  }[ctx.path];
}

// One use of a queued injection ({ remaining, ... }); clears it when used up.
function take(holder, key) {
  const item = holder[key];
  item.remaining -= 1;
  if (item.remaining <= 0) holder[key] = null;
  return item;
}

function injectedFailure(ctx, { status, retryAfter, error: code }) {
  const error = code ?? (status === 429 ? 'slow_down' : status === 500 ? 'server_error' : status >= 500 ? 'temporarily_unavailable' : 'invalid_request');
  if (retryAfter !== undefined) ctx.set('Retry-After', String(retryAfter));
  ctx.set('Cache-Control', 'no-store');
  jsonError(ctx, status, error, `injected failure (zone emulator, HTTP ${status})`);
}

// The token endpoint body is read here (not by oidc-provider) so we can count per grant type and
// resource, name the stand-in client for unauthenticated exchanges, and drop `scope` from refresh
// requests (the issued scope comes from the delegated grant anyway). oidc-provider then
// parses the buffered body from req.body.
async function preprocessTokenRequest(ctx) {
  let raw;
  try {
    raw = await readBody(ctx.req, 56 * 1024);
  } catch (err) {
    if (err instanceof BodyTooLarge) { jsonError(ctx, 413, 'invalid_request', 'request body too large'); return false; }
    throw err;
  }
  if (!ctx.is('application/x-www-form-urlencoded')) { ctx.req.body = raw; return true; }
  const form = new URLSearchParams(raw.toString('utf8'));
  const grantType = form.get('grant_type');
  const kind = grantType === TOKEN_EXCHANGE ? 'token_exchange' : grantType;
  if (Object.hasOwn(state.counters.token, kind ?? '')) {
    state.counters.token[kind] += 1;
    if (kind !== 'authorization_code') {
      for (const resource of new Set(form.getAll('resource'))) {
        state.counters.token_by_resource[resource] ??= { refresh_token: 0, token_exchange: 0 };
        state.counters.token_by_resource[resource][kind] += 1;
      }
    }
  }
  let changed = false;
  if (kind === 'token_exchange' && !form.has('client_id') && !form.has('client_assertion') && !ctx.get('authorization')) {
    form.set('client_id', STAND_IN_CLIENT);
    changed = true;
  }
  if (kind === 'refresh_token' && form.has('scope')) {
    // The refreshed token's scope comes from the delegated grant; a requested scope (even
    // offline_access, which oidc-provider drops from rounds without prompt=consent) must not fail it.
    form.delete('scope');
    changed = true;
  }
  ctx.req.body = changed ? Buffer.from(form.toString()) : raw;
  return true;
}

const SECRET_FIELDS = ['access_token', 'refresh_token', 'id_token', 'registration_access_token', 'client_secret', 'code'];
function captureIssued(ctx) {
  const add = (v) => { if (typeof v === 'string' && v) state.issued.add(v); };
  const body = ctx.body;
  if (body && typeof body === 'object' && !Buffer.isBuffer(body) && typeof body.pipe !== 'function') {
    for (const f of SECRET_FIELDS) add(body[f]);
  } else if (typeof body === 'string' && body.includes('<form')) { // response_mode=form_post
    for (const m of body.matchAll(/name="(code|access_token|id_token)" value="([^"]+)"/g)) add(m[2]);
  }
  const location = ctx.response.get('Location');
  if (location) {
    const url = URL.parse(location, 'http://x');
    if (url) {
      for (const p of [url.searchParams, new URLSearchParams(url.hash.slice(1))]) {
        for (const f of ['code', 'access_token', 'id_token']) add(p.get(f));
      }
    }
  }
}

function zoneMiddleware(provider) {
  return async function zone(ctx, next) {
    const started = Date.now();
    try {
      if (ctx.path.startsWith('/__control/')) {
        if (!isLoopback(ctx.req.socket.remoteAddress)) return jsonError(ctx, 403, 'control API is loopback only');
        return await handleControl(ctx);
      }
      if (ctx.path.startsWith('/interaction/')) return await handleInteraction(provider, ctx);
      if (ctx.path === ROUTES.userinfo) return await handleUserinfo(provider, ctx);

      const endpoint = endpointOf(ctx);
      const delay = endpoint === 'token' && state.delay ? take(state, 'delay') : null;
      if (delay && !delay.after) await sleep(delay.ms);
      if (endpoint && state.fail[endpoint]) return injectedFailure(ctx, take(state.fail, endpoint));
      if (endpoint === 'token' && !(await preprocessTokenRequest(ctx))) return undefined;
      if (endpoint && endpoint !== 'token' && endpoint !== 'discovery') state.counters[endpoint] += 1;

      const discovery = endpoint === 'discovery';
      if (ctx.path === '/.well-known/oauth-authorization-server') ctx.path = '/.well-known/openid-configuration'; // RFC 8414: same metadata
      await next();
      if (discovery && ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && state.issuerOverride !== null) {
        ctx.body = { ...ctx.body, issuer: state.issuerOverride };
      }
      if (endpoint === 'token' && state.scopeField !== 'keep' && ctx.status === 200 && ctx.body?.access_token) {
        const { scope, ...rest } = ctx.body;
        ctx.body = state.scopeField === 'omit' ? rest : { ...rest, scope: '' };
      }
      captureIssued(ctx);
      if (ctx.status === 404 && !ctx.body) jsonError(ctx, 404, 'not_found');
      if (delay?.after) await sleep(delay.ms);
    } catch (err) {
      log('unexpected error on', ctx.method, ctx.path, err);
      jsonError(ctx, 500, 'server_error', 'unexpected emulator error');
    } finally {
      log(`${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)`); // path only: queries carry codes
    }
    return undefined;
  };
}

// ---------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------
function parsePort() {
  const args = process.argv.slice(2);
  let value = process.env.ZONE_PORT ?? '0';
  for (let i = 0; i < args.length; i += 1) {
    if (args[i] === '--port') value = args[i + 1] ?? '';
    else if (args[i].startsWith('--port=')) value = args[i].slice('--port='.length);
  }
  const port = Number(value);
  if (!/^\d+$/.test(String(value)) || port > 65535) {
    console.error(`invalid port ${JSON.stringify(value)} (use --port N or ZONE_PORT, 0 = random)`);
    process.exit(2);
  }
  return port;
}

process.on('uncaughtException', (err) => log('uncaught exception (kept running):', err));
process.on('unhandledRejection', (err) => log('unhandled rejection (kept running):', err));

let handler = (_req, res) => { res.statusCode = 503; res.end(); };
const server = http.createServer((req, res) => handler(req, res));
server.on('clientError', (_err, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); else socket.destroy(); });

// The issuer contains the port, and oidc-provider wants the issuer up front: listen first.
server.listen(parsePort(), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  try {
    const provider = new Provider(issuer, makeConfig());
    customise(provider);
    provider.use(zoneMiddleware(provider));
    handler = provider.callback();
  } catch (err) {
    console.error('zone emulator failed to start:', err);
    process.exit(1);
  }
  process.stdout.write(`ZONE_READY ${issuer}\n`);
  log(`issuer ${issuer}; ${INTERACTIVE ? 'interactive consent page' : 'auto-approving interactions'}`);
});
server.on('error', (err) => { console.error('zone emulator cannot listen:', err.message); process.exit(1); });

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log(`${signal}: shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
