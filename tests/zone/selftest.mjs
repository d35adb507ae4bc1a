// Self-test of the Keycard zone emulator: `node --test tests/zone/selftest.mjs`.
// Spawns server.mjs and walks PROTOCOL.md §1 end to end with a plain HTTP client.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'server.mjs');
const MCP = 'http://localhost:8937/mcp';
const GITHUB = 'https://api.github.com';
const UNCONNECTED = 'https://api.unconnected.example';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

let child;
let issuer;
let meta;
let stderr = '';

// --- tiny HTTP helpers ------------------------------------------------------------------------
class CookieJar { // just enough for oidc-provider's interaction cookies (name + path)
  constructor() { this.cookies = new Map(); }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const pathAttr = attrs.find((a) => a.toLowerCase().startsWith('path='));
      const cookiePath = pathAttr ? pathAttr.slice(5) : '/';
      const expired = attrs.some((a) => /^expires=/i.test(a) && Date.parse(a.slice(8)) < Date.now()) || value === '';
      const key = `${name};${cookiePath}`;
      if (expired) this.cookies.delete(key); else this.cookies.set(key, { name, value, path: cookiePath });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    return [...this.cookies.values()].filter((c) => p.startsWith(c.path)).map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

async function form(url, params, { auth, headers = {} } = {}) {
  const h = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers };
  if (auth) h.authorization = `Basic ${Buffer.from(`${auth[0]}:${auth[1]}`).toString('base64')}`;
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const x of [v].flat()) if (x !== undefined) body.append(k, x);
  const res = await fetch(url, { method: 'POST', headers: h, body });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json, text };
}

async function control(name, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(`${issuer}/__control/${name}`, init);
  return { status: res.status, json: await res.json() };
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const jwtPayload = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

// Runs an authorize round the way a browser would and returns what lands on the redirect URI.
async function authorizeRound(client, resources, { jar = new CookieJar(), scope = 'openid offline_access' } = {}) {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  const state = b64url(crypto.randomBytes(12));
  const url = new URL(meta.authorization_endpoint);
  const q = {
    response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0],
    code_challenge: challenge, code_challenge_method: 'S256', state, scope,
  };
  for (const [k, v] of Object.entries(q)) url.searchParams.set(k, v);
  for (const r of resources) url.searchParams.append('resource', r);

  let next = url.href;
  for (let hop = 0; hop < 10; hop += 1) {
    if (next.startsWith(client.redirect_uris[0])) {
      const cb = new URL(next).searchParams;
      return { code: cb.get('code'), state: cb.get('state'), iss: cb.get('iss'), error: cb.get('error'), sentState: state, verifier, jar };
    }
    const res = await fetch(next, { redirect: 'manual', headers: { cookie: jar.header(next) } });
    jar.store(res);
    assert.ok([302, 303].includes(res.status), `hop ${hop} ${next}: HTTP ${res.status} ${await res.text()}`);
    next = new URL(res.headers.get('location'), next).href;
  }
  throw new Error('too many redirects');
}

async function codeExchange(client, round, extra = {}) {
  return form(meta.token_endpoint, {
    grant_type: 'authorization_code', code: round.code, redirect_uri: client.redirect_uris[0],
    code_verifier: round.verifier, client_id: client.client_id, ...extra,
  });
}

const exchange = (subject, resource, extra = {}) => form(meta.token_endpoint, {
  grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: AT_TYPE, resource, ...extra,
});

const introspect = (token) => form(meta.introspection_endpoint, { token }, { auth: ['upstream-fixture', 'upstream-fixture-secret'] });

// --- the walk ---------------------------------------------------------------------------------
describe('keycard zone emulator', () => {
  let client; // DCR native public client
  let session; // tokens of the login round (resource = MCP)
  let github; // tokens of the github round
  let sharedJar;

  before(async () => {
    child = spawn(process.execPath, [SERVER, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr.on('data', (d) => { stderr += d; if (process.env.ZONE_SELFTEST_STDERR) process.stderr.write(d); });
    let out = '';
    for await (const chunk of child.stdout) {
      out += chunk;
      if (out.includes('\n')) break;
    }
    const m = out.match(/^ZONE_READY (http:\/\/127\.0\.0\.1:\d+)\n$/);
    assert.ok(m, `unexpected ready line ${JSON.stringify(out)}; stderr: ${stderr}`);
    [, issuer] = m;
  });

  after(async () => {
    if (child.exitCode === null) { child.kill('SIGTERM'); await once(child, 'exit'); }
  });

  it('serves discovery on both well-known paths', async () => {
    const a = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
    const b = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
    assert.deepEqual(a, b);
    assert.equal(a.issuer, issuer);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'revocation_endpoint',
      'introspection_endpoint', 'userinfo_endpoint', 'jwks_uri']) assert.match(a[k], /^http:\/\/127\.0\.0\.1:\d+\//, k);
    assert.ok(a.grant_types_supported.includes(TOKEN_EXCHANGE));
    assert.deepEqual(a.code_challenge_methods_supported, ['S256']);
    assert.equal(a.authorization_response_iss_parameter_supported, true);
    meta = a;
  });

  it('registers a native public client dynamically', async () => {
    const res = await fetch(meta.registration_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'selftest', application_type: 'native', redirect_uris: ['http://127.0.0.1:53682/callback'],
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
      }),
    });
    assert.equal(res.status, 201);
    client = await res.json();
    assert.ok(client.client_id);
    assert.equal(client.client_secret, undefined);
    assert.ok(client.registration_access_token);
  });

  it('runs a PKCE authorize round for the broker resource and exchanges the code', async () => {
    sharedJar = new CookieJar();
    const round = await authorizeRound(client, [MCP], { jar: sharedJar });
    assert.ok(round.code, `no code: ${round.error}`);
    assert.equal(round.state, round.sentState);
    assert.equal(round.iss, issuer);
    const res = await codeExchange(client, round);
    assert.equal(res.status, 200, res.text);
    session = { ...res.json, code: round.code };
    assert.ok(session.access_token.length >= 32);
    assert.ok(session.refresh_token);
    assert.equal(session.token_type, 'Bearer');
    assert.equal(session.expires_in, 3600);
    assert.equal(session.scope, 'read write');
    const idt = jwtPayload(session.id_token);
    assert.equal(idt.email, 'demo@keycard.test');
    assert.equal(idt.sub, 'demo-user');
    assert.equal(idt.name, 'Demo User');
    assert.equal(idt.iss, issuer);
    const intro = (await introspect(session.access_token)).json;
    assert.equal(intro.active, true);
    assert.equal(intro.aud, MCP);
    const ui = await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${session.access_token}` } });
    assert.equal(ui.status, 200);
    assert.equal((await ui.json()).email, 'demo@keycard.test');
    assert.equal((await fetch(meta.userinfo_endpoint, { headers: { authorization: 'Bearer nope' } })).status, 401);
  });

  it('rejects an authorize request without PKCE', async () => {
    const url = new URL(meta.authorization_endpoint);
    for (const [k, v] of Object.entries({ response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0], state: 's' })) url.searchParams.set(k, v);
    const res = await fetch(url, { redirect: 'manual' });
    const loc = new URL(res.headers.get('location'));
    assert.equal(loc.searchParams.get('error'), 'invalid_request');
  });

  it('connects a provider with a second round and exchanges the session token for it', async () => {
    const round = await authorizeRound(client, [GITHUB], { jar: sharedJar }); // same browser session
    const res = await codeExchange(client, round);
    assert.equal(res.status, 200, res.text);
    github = res.json;
    const ex = await exchange(session.access_token, GITHUB, { client_id: client.client_id });
    assert.equal(ex.status, 200, ex.text);
    assert.equal(ex.json.issued_token_type, AT_TYPE);
    assert.equal(ex.json.token_type, 'Bearer');
    assert.equal(ex.json.scope, 'read write');
    assert.equal(ex.json.expires_in, 3600);
    const intro = await introspect(ex.json.access_token);
    assert.equal(intro.status, 200);
    assert.equal(intro.json.active, true);
    assert.equal(intro.json.aud, GITHUB);
    assert.equal(intro.json.scope, 'read write');
    assert.equal(intro.json.sub, 'demo-user');
    github.exchanged = ex.json.access_token;
  });

  it('exchanges without any client authentication, and as the confidential app', async () => {
    const anon = await exchange(session.access_token, GITHUB);
    assert.equal(anon.status, 200, anon.text);
    const conf = await form(meta.token_endpoint, {
      grant_type: TOKEN_EXCHANGE, subject_token: session.access_token, subject_token_type: AT_TYPE, resource: GITHUB,
    }, { auth: ['confidential-app', 'confidential-app-secret'] });
    assert.equal(conf.status, 200, conf.text);
    const bad = await form(meta.token_endpoint, {
      grant_type: TOKEN_EXCHANGE, subject_token: session.access_token, subject_token_type: AT_TYPE, resource: GITHUB,
    }, { auth: ['confidential-app', 'wrong'] });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.error, 'invalid_client');
  });

  it('serves the confidential app (any loopback redirect, client_secret_basic)', async () => {
    const app = { client_id: 'confidential-app', redirect_uris: ['http://127.0.0.1:61234/some/broker/callback'] };
    const round = await authorizeRound(app, [MCP]);
    assert.ok(round.code, round.error);
    const auth = ['confidential-app', 'confidential-app-secret'];
    const t = await form(meta.token_endpoint, {
      grant_type: 'authorization_code', code: round.code, redirect_uri: app.redirect_uris[0], code_verifier: round.verifier,
    }, { auth });
    assert.equal(t.status, 200, t.text);
    assert.ok(t.json.refresh_token);
    const r = await form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: t.json.refresh_token, scope: 'openid offline_access' }, { auth });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.id_token);
    assert.equal(r.json.scope, 'read write');
    const foreign = await authorizeRound({ client_id: 'confidential-app', redirect_uris: ['https://evil.example/cb'] }, [MCP]).catch((e) => e);
    assert.ok(foreign instanceof Error); // not a loopback redirect: refused with a JSON error, no redirect
  });

  it('registers a confidential client and reports its secret as issued', async () => {
    const res = await fetch(meta.registration_endpoint, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:5555/cb'], token_endpoint_auth_method: 'client_secret_basic' }),
    });
    const reg = await res.json();
    assert.ok(reg.client_secret);
    const { tokens } = (await control('issued')).json;
    assert.ok(tokens.includes(reg.client_secret));
    assert.ok(tokens.includes(reg.registration_access_token));
  });

  it('answers insufficient_authorization for an unconnected resource', async () => {
    const ex = await exchange(session.access_token, UNCONNECTED, { client_id: client.client_id });
    assert.equal(ex.status, 400);
    assert.equal(ex.json.error, 'insufficient_authorization');
    assert.ok(ex.json.error_description);
  });

  it('validates exchange parameters', async () => {
    assert.equal((await exchange(session.access_token, undefined)).json.error, 'invalid_request');
    assert.equal((await exchange(undefined, GITHUB)).json.error, 'invalid_grant');
    assert.equal((await exchange('not-a-token', GITHUB)).json.error, 'invalid_grant');
    assert.equal((await exchange(session.refresh_token, GITHUB)).json.error, 'invalid_grant');
    assert.equal((await exchange(session.access_token, 'not a url')).json.error, 'invalid_target');
    assert.equal((await exchange(session.access_token, GITHUB, { subject_token_type: 'urn:x' })).json.error, 'invalid_request');
  });

  it('narrows a delegated grant', async () => {
    assert.equal((await control('narrow', { resource: GITHUB, scopes: ['read'] })).status, 200);
    const ex = await exchange(session.access_token, GITHUB);
    assert.equal(ex.json.scope, 'read');
    const over = await exchange(session.access_token, GITHUB, { scope: 'read write' });
    assert.equal(over.status, 400);
    assert.equal(over.json.error, 'insufficient_authorization');
    const sub = await exchange(session.access_token, GITHUB, { scope: 'read' });
    assert.equal(sub.status, 200);
  });

  it('answers an injected failure with a chosen OAuth error code', async () => {
    assert.equal((await control('fail', { endpoint: 'token', status: 400, error: 'invalid_target' })).status, 200);
    const res = await exchange(session.access_token, GITHUB);
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_target');
    assert.equal((await exchange(session.access_token, GITHUB)).status, 200, 'one use only');
    assert.equal((await control('fail', { error: 'Bad Code!' })).status, 400);
  });

  it('omits or empties the scope of token answers on request', async () => {
    for (const [mode, want] of [['omit', undefined], ['empty', ''], ['keep', 'read']]) {
      assert.equal((await control('scope-field', { mode })).status, 200);
      const ex = await exchange(session.access_token, GITHUB);
      assert.equal(ex.status, 200, ex.text);
      assert.equal(ex.json.scope, want, mode);
    }
    assert.equal((await control('scope-field', { mode: 'sometimes' })).status, 400);
  });

  it('refreshes with resource= for the provider (refresh_with_resource) and rotates', async () => {
    const res = await form(meta.token_endpoint, {
      grant_type: 'refresh_token', refresh_token: github.refresh_token, client_id: client.client_id, resource: GITHUB, scope: 'read write',
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.scope, 'read'); // narrowed grant, whatever was asked
    assert.notEqual(res.json.refresh_token, github.refresh_token);
    const intro = (await introspect(res.json.access_token)).json;
    assert.equal(intro.aud, GITHUB);
    assert.equal(intro.scope, 'read');
    github.refresh_token = res.json.refresh_token;
  });

  it('restores policy scopes on a new consent, honouring control/resources', async () => {
    await control('resources', { resource: GITHUB, scopes: ['repo', 'read:user'] });
    const round = await authorizeRound(client, [GITHUB]);
    const res = await codeExchange(client, round);
    assert.equal(res.json.scope, 'repo read:user');
    const grants = (await control('grants')).json;
    const g = grants.find((x) => x.resource === GITHUB);
    assert.deepEqual(g, { account: 'demo-user', resource: GITHUB, scopes: ['repo', 'read:user'], connected: true });
    await control('resources', { resource: GITHUB, scopes: ['read', 'write'] });
  });

  it('disconnects a resource: exchange is refused, its refresh tokens die', async () => {
    assert.equal((await control('disconnect', { resource: GITHUB })).status, 200);
    const ex = await exchange(session.access_token, GITHUB);
    assert.equal(ex.status, 400);
    assert.equal(ex.json.error, 'insufficient_authorization');
    const rf = await form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: github.refresh_token, client_id: client.client_id, resource: GITHUB });
    assert.equal(rf.status, 400);
    assert.equal(rf.json.error, 'invalid_grant');
    const g = (await control('grants')).json.find((x) => x.resource === GITHUB);
    assert.equal(g.connected, false);
    // the session is untouched
    assert.equal((await introspect(session.access_token)).json.active, true);
  });

  it('denies the next round on request', async () => {
    await control('deny', { count: 1 });
    const denied = await authorizeRound(client, [GITHUB]);
    assert.equal(denied.error, 'access_denied');
    assert.equal(denied.state, denied.sentState);
    assert.equal(denied.iss, issuer);
    assert.ok((await authorizeRound(client, [UNCONNECTED])).code); // only one
    await control('disconnect', { resource: UNCONNECTED });
  });

  it('injects failures and delays', async () => {
    await control('fail', { count: 1, status: 503 });
    const f = await exchange(session.access_token, UNCONNECTED);
    assert.equal(f.status, 503);
    assert.equal(f.json.error, 'temporarily_unavailable');
    assert.equal((await exchange(session.access_token, UNCONNECTED)).status, 400); // next one is real
    await control('fail', { count: 1, status: 429, retry_after: 7 });
    const s = await exchange(session.access_token, UNCONNECTED);
    assert.equal(s.status, 429);
    assert.equal(s.headers.get('retry-after'), '7');
    await control('fail', { count: 1, status: 500, endpoint: 'discovery' });
    assert.equal((await fetch(`${issuer}/.well-known/oauth-authorization-server`)).status, 500);
    assert.equal((await fetch(`${issuer}/.well-known/oauth-authorization-server`)).status, 200);
    await control('fail', { count: 1, status: 503, endpoint: 'registration' });
    assert.equal((await fetch(meta.registration_endpoint, { method: 'POST', body: '{}' })).status, 503);
    await control('delay', { ms: 300, count: 1 });
    const t0 = Date.now();
    await exchange(session.access_token, UNCONNECTED);
    assert.ok(Date.now() - t0 >= 290);
  });

  it('counts token, revocation, registration and authorize requests', async () => {
    await control('reset', {});
    await control('resources', { resource: GITHUB, scopes: ['read', 'write'] });
    const round = await authorizeRound(client, [GITHUB]);
    const gh = (await codeExchange(client, round)).json;
    await exchange(session.access_token, GITHUB);
    await exchange(session.access_token, UNCONNECTED);
    await form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: gh.refresh_token, client_id: client.client_id, resource: GITHUB });
    await control('fail', { count: 1, status: 503 });
    await exchange(session.access_token, GITHUB); // short-circuited: not counted
    const c = (await control('counters')).json;
    assert.deepEqual(c.token, { authorization_code: 1, refresh_token: 1, token_exchange: 2 });
    assert.deepEqual(c.token_by_resource, {
      [GITHUB]: { refresh_token: 1, token_exchange: 1 },
      [UNCONNECTED]: { refresh_token: 0, token_exchange: 1 },
    });
    assert.equal(c.authorize, 1);
    assert.equal(c.revocation, 0);
    assert.equal(c.registration, 0);
  });

  it('revokes refresh tokens (RFC 7009) and refresh replay is invalid_grant', async () => {
    const round = await authorizeRound(client, [GITHUB]);
    const t = (await codeExchange(client, round)).json;
    const rot = await form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: client.client_id });
    assert.equal(rot.status, 200);
    const replay = await form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: client.client_id });
    assert.equal(replay.status, 400);
    assert.equal(replay.json.error, 'invalid_grant');

    const round2 = await authorizeRound(client, [GITHUB]);
    const t2 = (await codeExchange(client, round2)).json;
    const rv = await form(meta.revocation_endpoint, { token: t2.refresh_token, token_type_hint: 'refresh_token', client_id: client.client_id });
    assert.equal(rv.status, 200);
    const after = await form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: t2.refresh_token, client_id: client.client_id });
    assert.equal(after.json.error, 'invalid_grant');
    const rva = await form(meta.revocation_endpoint, { token: github.exchanged, client_id: client.client_id });
    assert.equal(rva.status, 200);
    assert.equal((await introspect(github.exchanged)).json.active, false);
    assert.equal((await control('counters')).json.revocation, 2);
    assert.equal((await introspect(session.access_token)).json.active, true); // other rounds untouched
  });

  it('accepts a rotated-out refresh token inside the reuse interval, and only there', async () => {
    const round = await authorizeRound(client, [GITHUB]);
    const t = (await codeExchange(client, round)).json;
    const refresh = (token) => form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: token, client_id: client.client_id });
    assert.equal((await control('rotation', { reuse_secs: 30 })).json.reuse_secs, 30);
    const before = (await control('counters')).json.refresh_reused;
    const first = await refresh(t.refresh_token);
    assert.equal(first.status, 200);
    const again = await refresh(t.refresh_token); // the answer to `first` was "lost"
    assert.equal(again.status, 200, again.text);
    assert.notEqual(again.json.refresh_token, first.json.refresh_token);
    assert.equal((await refresh(again.json.refresh_token)).status, 200); // the chain goes on
    assert.equal((await control('counters')).json.refresh_reused, before + 1);
    await control('rotation', { reuse_secs: 0 });
    const strict = await refresh(t.refresh_token);
    assert.equal(strict.json.error, 'invalid_grant');
    assert.equal((await control('rotation', { reuse_secs: -1 })).status, 400);
  });

  it('holds the answer back after the work with delay { after: true }', async () => {
    const round = await authorizeRound(client, [GITHUB]);
    const t = (await codeExchange(client, round)).json;
    await control('delay', { ms: 600, after: true });
    const pending = form(meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: client.client_id });
    await new Promise((r) => { setTimeout(r, 300); });
    assert.equal((await introspect(t.refresh_token)).json.active, false, 'rotated before the answer left');
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal((await introspect(res.json.refresh_token)).json.active, true);
  });

  it('lists every issued secret', async () => {
    const { tokens } = (await control('issued')).json;
    for (const v of [session.code, session.access_token, session.refresh_token, session.id_token, github.access_token,
      github.refresh_token, github.exchanged, client.registration_access_token]) {
      assert.ok(tokens.includes(v), `missing ${v.slice(0, 12)}…`);
    }
  });

  it('switches identity for the next login and ttl for the next tokens', async () => {
    await control('account', { sub: 'alice', email: 'alice@keycard.test' });
    await control('ttl', { access_token: 120, exchanged: 60 });
    const round = await authorizeRound(client, [MCP], { jar: sharedJar }); // same browser session as demo-user
    const t = (await codeExchange(client, round)).json;
    assert.equal(jwtPayload(t.id_token).sub, 'alice');
    assert.equal(jwtPayload(t.id_token).email, 'alice@keycard.test');
    assert.equal(t.expires_in, 120);
    const noGrant = await exchange(t.access_token, GITHUB); // alice never connected github
    assert.equal(noGrant.json.error, 'insufficient_authorization');
    await authorizeRound(client, [GITHUB], { jar: sharedJar });
    const ex = await exchange(t.access_token, GITHUB);
    assert.equal(ex.json.expires_in, 60);
    assert.equal((await introspect(ex.json.access_token)).json.sub, 'alice');
    await control('account', { sub: 'demo-user', email: 'demo@keycard.test', name: 'Demo User' });
    await control('ttl', { access_token: 3600, exchanged: 3600 });
  });

  it('advertises a wrong issuer on request', async () => {
    await control('discovery', { issuer: 'http://elsewhere.example' });
    assert.equal((await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()).issuer, 'http://elsewhere.example');
    assert.equal((await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()).issuer, 'http://elsewhere.example');
    await control('discovery', { issuer: null });
    assert.equal((await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()).issuer, issuer);
  });

  it('survives malformed input', async () => {
    const raw = (p, init) => fetch(`${issuer}${p}`, init);
    assert.equal((await raw('/__control/narrow', { method: 'POST', body: '{not json' })).status, 400);
    assert.equal((await raw('/__control/narrow', { method: 'POST', body: '[1]' })).status, 400);
    assert.equal((await raw('/__control/narrow', { method: 'POST', body: '{"resource":"x"}' })).status, 400);
    assert.equal((await raw('/__control/fail', { method: 'POST', body: '{"status":"x"}' })).status, 400);
    assert.equal((await raw('/__control/fail', { method: 'POST', body: '{"endpoint":"nope"}' })).status, 400);
    assert.equal((await raw('/__control/ttl', { method: 'POST', body: '{"access_token":-1}' })).status, 400);
    assert.equal((await raw('/__control/account', { method: 'POST', body: '{}' })).status, 400);
    assert.equal((await raw('/__control/nope')).status, 404);
    const garbage = await raw('/oauth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '%%%&&&==' });
    assert.equal(garbage.status, 400);
    assert.ok((await garbage.json()).error);
    const unknown = await form(meta.token_endpoint, { grant_type: 'urn:nope', client_id: client.client_id });
    assert.equal(unknown.json.error, 'unsupported_grant_type');
    const jsonBody = await raw('/oauth/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"x"}' });
    assert.equal(jsonBody.status, 400);
    const big = await raw('/oauth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a='.padEnd(200_000, 'x') });
    assert.ok(big.status >= 400);
    const badCode = await form(meta.token_endpoint, { grant_type: 'authorization_code', code: 'nope', redirect_uri: 'http://127.0.0.1/x', code_verifier: 'x'.repeat(43), client_id: client.client_id });
    assert.equal(badCode.json.error, 'invalid_grant');
    const badClient = await raw('/oauth/authorize?client_id=nope&response_type=code', { headers: { accept: 'text/html' } });
    assert.equal(badClient.status, 400);
    assert.equal((await badClient.json()).error, 'invalid_client');
    assert.equal((await raw('/interaction/abc')).status, 400);
    assert.equal((await raw('/oauth/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"redirect_uris":"x"}' })).status, 400);
    assert.equal((await raw('/nowhere')).status, 404);
    const intro = await form(meta.introspection_endpoint, { token: 'x' }, { auth: ['upstream-fixture', 'upstream-fixture-secret'] });
    assert.deepEqual(intro.json, { active: false });
    assert.equal((await raw('/__control/fail', { method: 'POST', body: '{"count":1000000000,"status":503,"endpoint":"revocation"}' })).status, 200);
    assert.equal((await raw('/__control/fail', { method: 'POST', body: '{"count":0,"endpoint":"revocation"}' })).status, 200);
    assert.equal((await raw('/__control/discovery', { method: 'POST', body: '{"issuer":5}' })).status, 400);
    assert.equal((await raw('/__control/resources', { method: 'POST', body: '{"resource":"https://x.example","scopes":[1]}' })).status, 400);
    assert.equal((await raw('/__control/delay', { method: 'POST', body: '{"ms":"x"}' })).status, 400);
    assert.equal((await raw('/__control/counters', { method: 'POST', body: '{}' })).status, 404);
    const dupes = await form(meta.token_endpoint, { grant_type: TOKEN_EXCHANGE, subject_token: 'x', subject_token_type: AT_TYPE, resource: [GITHUB, MCP] });
    assert.equal(dupes.json.error, 'invalid_target');
    const twoGrants = await form(meta.token_endpoint, { grant_type: ['refresh_token', 'authorization_code'], client_id: client.client_id });
    assert.equal(twoGrants.json.error, 'invalid_request');
    assert.equal((await raw('/oauth/token')).status, 404); // GET
    assert.equal((await form(meta.revocation_endpoint, { token: 'x'.repeat(5000), client_id: client.client_id })).status, 200);
    assert.equal((await form(meta.revocation_endpoint, {})).status, 400);
    assert.equal((await raw('/oauth/register', { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'nope' })).status, 400);
    assert.equal((await raw('/oauth/authorize?' + 'a=b&'.repeat(2000))).status, 400);
    assert.equal((await raw('/interaction/abc/approve', { method: 'POST' })).status, 400);
    assert.equal((await raw('/.well-known/oauth-authorization-server')).status, 200);
    assert.equal(child.exitCode, null);
  });

  it('shows a consent page in interactive mode', async () => {
    const demo = spawn(process.execPath, [SERVER], { env: { ...process.env, ZONE_INTERACTIVE: '1' }, stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      let out = '';
      for await (const chunk of demo.stdout) { out += chunk; if (out.includes('\n')) break; }
      const url = out.trim().split(' ')[1];
      const m2 = await (await fetch(`${url}/.well-known/oauth-authorization-server`)).json();
      const reg = await (await fetch(m2.registration_endpoint, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ application_type: 'native', redirect_uris: ['http://127.0.0.1/cb'], grant_types: ['authorization_code', 'refresh_token'], token_endpoint_auth_method: 'none' }),
      })).json();
      const a = new URL(m2.authorization_endpoint);
      for (const [k, v] of Object.entries({ response_type: 'code', client_id: reg.client_id, redirect_uri: 'http://127.0.0.1:4444/cb', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256', state: 'st', scope: 'openid offline_access', resource: GITHUB })) a.searchParams.set(k, v);
      const jar = new CookieJar();
      let res = await fetch(a, { redirect: 'manual' });
      jar.store(res);
      const interaction = new URL(res.headers.get('location'), url).href;
      res = await fetch(interaction, { headers: { cookie: jar.header(interaction) } });
      const html = await res.text();
      assert.match(html, /Keycard demo zone — sign in as <b>demo@keycard\.test<\/b> and allow access to <code>https:\/\/api\.github\.com<\/code>/);
      assert.match(html, /Approve/);
      assert.match(html, /Deny/);
      res = await fetch(`${interaction}/deny`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(`${interaction}/deny`) } });
      jar.store(res);
      const resume = new URL(res.headers.get('location'), url).href;
      res = await fetch(resume, { redirect: 'manual', headers: { cookie: jar.header(resume) } });
      const cb = new URL(res.headers.get('location'));
      assert.equal(cb.searchParams.get('error'), 'access_denied');
      assert.equal(cb.searchParams.get('state'), 'st');
      assert.equal(cb.searchParams.get('iss'), url);

      res = await fetch(a, { redirect: 'manual', headers: { cookie: jar.header(a.href) } }); // again, and approve
      jar.store(res);
      const second = new URL(res.headers.get('location'), url).href;
      res = await fetch(`${second}/approve`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(`${second}/approve`) } });
      jar.store(res);
      const resume2 = new URL(res.headers.get('location'), url).href;
      res = await fetch(resume2, { redirect: 'manual', headers: { cookie: jar.header(resume2) } });
      const cb2 = new URL(res.headers.get('location'));
      assert.ok(cb2.searchParams.get('code'));
      assert.equal(cb2.searchParams.get('iss'), url);
    } finally {
      demo.kill('SIGTERM');
      await once(demo, 'exit');
    }
  });

  it('exits cleanly on SIGTERM', async () => {
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.doesNotMatch(stderr, /uncaught exception|unhandled rejection|server_error/);
  });
});
