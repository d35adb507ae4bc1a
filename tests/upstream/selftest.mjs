// Self-test of the upstream API fixture: `node --test tests/upstream/selftest.mjs`.
// Starts the zone emulator (tests/zone/server.mjs) and the fixture, obtains real exchanged tokens
// through the zone (DCR, authorize rounds, RFC 8693 exchange) and checks the fixture's contract.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ZONE_SERVER = path.join(HERE, '..', 'zone', 'server.mjs');
const SERVER = path.join(HERE, 'server.mjs');
const MCP = 'http://localhost:8937/mcp';
const OTHER = 'https://api.other.example';
const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const children = [];
async function start(script, args, readyRe) {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  child.stderrText = '';
  child.stderr.on('data', (d) => { child.stderrText += d; if (process.env.UPSTREAM_SELFTEST_STDERR) process.stderr.write(d); });
  let out = '';
  for await (const chunk of child.stdout) { out += chunk; if (out.includes('\n')) break; }
  const m = out.match(readyRe);
  assert.ok(m, `unexpected ready line ${JSON.stringify(out)}; stderr: ${child.stderrText}`);
  return { child, url: m[1] };
}

// --- HTTP helpers (as in tests/zone/selftest.mjs) -------------------------------------------------
class CookieJar {
  constructor() { this.cookies = new Map(); }

  store(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const pathAttr = attrs.find((a) => a.toLowerCase().startsWith('path='));
      const c = { name: pair.slice(0, eq), value: pair.slice(eq + 1), path: pathAttr ? pathAttr.slice(5) : '/' };
      const expired = attrs.some((a) => /^expires=/i.test(a) && Date.parse(a.slice(8)) < Date.now()) || c.value === '';
      if (expired) this.cookies.delete(`${c.name};${c.path}`); else this.cookies.set(`${c.name};${c.path}`, c);
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    return [...this.cookies.values()].filter((c) => p.startsWith(c.path)).map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

async function form(url, params) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) body.append(k, v);
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  return { status: res.status, json: await res.json() };
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
let zone;
let meta;
let up; // fixture base URL
let R; // fixture resource identifier

async function authorizeRound(client, resource, jar) {
  const verifier = b64url(crypto.randomBytes(32));
  const url = new URL(meta.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: 'code', client_id: client.client_id, redirect_uri: client.redirect_uris[0], scope: 'openid offline_access',
    code_challenge: b64url(crypto.createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256', state: 'st', resource,
  })) url.searchParams.set(k, v);
  let next = url.href;
  for (let hop = 0; hop < 10 && !next.startsWith(client.redirect_uris[0]); hop += 1) {
    const res = await fetch(next, { redirect: 'manual', headers: { cookie: jar.header(next) } });
    jar.store(res);
    assert.ok([302, 303].includes(res.status), `hop ${hop} ${next}: HTTP ${res.status} ${await res.text()}`);
    next = new URL(res.headers.get('location'), next).href;
  }
  const code = new URL(next).searchParams.get('code');
  assert.ok(code, `no code in ${next}`);
  const t = await form(meta.token_endpoint, {
    grant_type: 'authorization_code', code, redirect_uri: client.redirect_uris[0], code_verifier: verifier, client_id: client.client_id,
  });
  assert.equal(t.status, 200, JSON.stringify(t.json));
  return t.json;
}

async function exchange(subject, resource) {
  const ex = await form(meta.token_endpoint, { grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: AT_TYPE, resource });
  assert.equal(ex.status, 200, JSON.stringify(ex.json));
  return ex.json.access_token;
}

async function call(p, { token, method = 'GET', body, headers = {}, raw = false } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(`${up}${p}`, { method, headers: h, body: raw || body === undefined ? body : JSON.stringify(body), redirect: 'manual' });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

async function ctl(name, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const res = await fetch(`${up}/__control/${name}`, init);
  return { status: res.status, json: await res.json() };
}

function assertBadCredentials(r) {
  assert.equal(r.status, 401, r.text);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
  assert.deepEqual(r.json, { message: 'Bad credentials' });
}

// --- the walk -------------------------------------------------------------------------------------
describe('upstream API fixture', () => {
  let session; // zone session token (resource = MCP)
  let token; // exchanged token for the fixture's resource

  before(async () => {
    zone = (await start(ZONE_SERVER, ['--port', '0'], /^ZONE_READY (http:\/\/127\.0\.0\.1:\d+)\n$/)).url;
    up = (await start(SERVER, ['--zone', zone], /^UPSTREAM_READY (http:\/\/127\.0\.0\.1:\d+)\n$/)).url;
    R = `${up}/api`;
    meta = await (await fetch(`${zone}/.well-known/oauth-authorization-server`)).json();
    const reg = await fetch(meta.registration_endpoint, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'upstream-selftest', application_type: 'native', redirect_uris: ['http://127.0.0.1:53682/callback'],
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
      }),
    });
    assert.equal(reg.status, 201);
    const client = await reg.json();
    const jar = new CookieJar();
    session = (await authorizeRound(client, MCP, jar)).access_token; // login round (broker resource)
    await authorizeRound(client, R, jar); // connect the fixture
    await authorizeRound(client, OTHER, jar); // and some other resource
    token = await exchange(session, R);
  });

  after(async () => {
    for (const c of children.reverse()) if (c.exitCode === null) { c.kill('SIGTERM'); await once(c, 'exit'); }
  });

  it('whoami answers from introspection of the exchanged token', async () => {
    const r = await call('/api/whoami', { token });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.sub, 'demo-user');
    assert.equal(r.json.aud, R);
    assert.equal(r.json.scope, 'read write');
    assert.ok(r.json.client_id);
    assert.deepEqual(Object.keys(r.json).sort(), ['aud', 'client_id', 'scope', 'sub']);
  });

  it('refuses no token, garbage, the session token and another resource\'s token', async () => {
    assertBadCredentials(await call('/api/whoami'));
    assertBadCredentials(await call('/api/whoami', { headers: { authorization: `Basic ${token}` } }));
    assertBadCredentials(await call('/api/whoami', { token: 'not-a-zone-token' }));
    assertBadCredentials(await call('/api/whoami', { token: session }));
    assertBadCredentials(await call('/api/items', { token: await exchange(session, OTHER) }));
    assertBadCredentials(await call('/api/nope')); // auth before routing
  });

  it('serves items by scope and validates bodies', async () => {
    const list = await call('/api/items', { token });
    assert.equal(list.status, 200);
    assert.deepEqual(list.json, [{ id: 1, name: 'alpha' }, { id: 2, name: 'beta' }]);
    const created = await call('/api/items', { token, method: 'POST', body: { name: 'gamma', tags: ['x'] } });
    assert.equal(created.status, 201);
    assert.deepEqual(created.json, { id: 3, name: 'gamma', tags: ['x'] });
    const bad = await call('/api/items', { token, method: 'POST', body: '{"name":', raw: true });
    assert.equal(bad.status, 400);
    assert.ok(bad.json.message);
    const huge = await call('/api/items', { token, method: 'POST', body: `{"a":"${'y'.repeat(1024 * 1024 + 10)}"}`, raw: true });
    assert.equal(huge.status, 413);
    assert.equal((await call('/api/whoami', { token })).status, 200); // still alive
  });

  it('narrowed to read: a fresh exchange may GET but not POST items', async () => {
    assert.equal((await fetch(`${zone}/__control/narrow`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ resource: R, scopes: ['read'] }),
    })).status, 200);
    const narrow = await exchange(session, R);
    assert.equal((await call('/api/whoami', { token: narrow })).json.scope, 'read');
    assert.equal((await call('/api/items', { token: narrow })).status, 200);
    const post = await call('/api/items', { token: narrow, method: 'POST', body: { name: 'nope' } });
    assert.equal(post.status, 403);
    assert.equal(post.headers.get('www-authenticate'), 'Bearer error="insufficient_scope", scope="write"');
    assert.deepEqual(post.json, { message: 'insufficient scope', needed: 'write' });
  });

  it('reject-next refuses the next N requests even with a valid token', async () => {
    assert.deepEqual((await ctl('reject-next', { count: 2 })).json, { count: 2 });
    assertBadCredentials(await call('/api/whoami', { token }));
    assertBadCredentials(await call('/api/items', { token }));
    assert.equal((await call('/api/whoami', { token })).status, 200);
    assert.equal((await ctl('reject-next', { count: 'x' })).status, 400);
  });

  it('echoes the token, shows headers with the token redacted, redirects', async () => {
    const echo = await call('/api/echo-token', { token });
    assert.equal(echo.status, 200);
    assert.match(echo.headers.get('content-type'), /^text\/plain/);
    assert.equal(echo.text, `you sent: Bearer ${token}`);
    assert.equal(echo.headers.get('x-echo'), token);
    const h = await call('/api/headers', { token, headers: { 'x-custom': 'kept', cookie: 'a=b' } });
    assert.equal(h.json.authorization, `Bearer <redacted len=${token.length}>`);
    assert.equal(h.json['x-custom'], 'kept');
    assert.equal(h.json.cookie, 'a=b');
    assert.ok(!h.text.includes(token));
    const red = await call(`/api/redirect?to=${encodeURIComponent('https://example.com/x?y=1')}`, { token });
    assert.equal(red.status, 302);
    assert.equal(red.headers.get('location'), 'https://example.com/x?y=1');
    assertBadCredentials(await call('/api/redirect?to=https://example.com/'));
    assert.equal((await call('/api/redirect', { token })).status, 400);
  });

  it('sends the token back encoded, cut, in a Location, gzipped and as heavy escapes', async () => {
    for (const [form, decode] of [
      ['plain', (v) => v],
      ['escaped', (v) => v],
      ['escaped_upper', (v) => v],
      ['mixed', (v) => v],
      ['percent', decodeURIComponent],
      ['base64', (v) => Buffer.from(v, 'base64').toString().slice('Bearer '.length)],
      ['base64url', (v) => Buffer.from(v, 'base64url').toString().slice(1)],
    ]) {
      const r = await call(`/api/leak?form=${form}`, { token });
      assert.equal(r.status, 200, form);
      assert.equal(decode(r.json.you_sent), token, form); // JSON.parse undid the escapes
    }
    assert.ok((await call('/api/leak?form=escaped', { token })).text.includes('\\u00'));
    assert.equal((await call('/api/leak?form=rot13', { token })).status, 400);
    const cut = await call('/api/leak-cut?pad=10', { token });
    assert.equal(cut.text, `${token}${token}${'x'.repeat(10)}${token}${'y'.repeat(64)}`);
    const loc = await call('/api/leak-location?form=base64url', { token });
    assert.equal(loc.status, 201);
    assert.equal(Buffer.from(new URL(loc.headers.get('location'), up).searchParams.get('t'), 'base64url').toString(), `x${token}`);
    const gz = await fetch(`${up}/api/gzip`, { headers: { authorization: `Bearer ${token}`, 'accept-encoding': 'identity' } });
    assert.equal(gz.headers.get('content-encoding'), 'gzip');
    const esc = await call('/api/escapes?kb=1', { token });
    assert.equal(esc.text, '\u0001'.repeat(1024));
  });

  it('serves text, big bodies, any status, slow answers and 404s', async () => {
    const text = await call('/api/text', { token });
    assert.equal(text.text, 'plain words');
    assert.match(text.headers.get('content-type'), /^text\/plain/);
    const big = await call('/api/big?kb=64', { token });
    assert.equal(big.status, 200);
    assert.equal(Buffer.byteLength(big.text), 64 * 1024);
    assert.ok(Array.isArray(big.json) && big.json.length === 64);
    const dflt = await call('/api/big', { token });
    assert.equal(Buffer.byteLength(dflt.text), 2048 * 1024);
    assert.equal(JSON.parse(dflt.text).length, 2048);
    assert.equal((await call('/api/big?kb=1', { token })).text.length, 1024);
    assert.equal((await call('/api/big?kb=0', { token })).text, '[]');
    assert.equal((await call('/api/big?kb=-1', { token })).status, 400);
    for (const code of [200, 404, 418, 429, 500, 503]) {
      const s = await call(`/api/status/${code}`, { token });
      assert.equal(s.status, code);
      assert.deepEqual(s.json, { status: code });
    }
    const t0 = Date.now();
    assert.equal((await call('/api/slow?ms=300', { token })).status, 200);
    assert.ok(Date.now() - t0 >= 290);
    const nf = await call('/api/unknown', { token });
    assert.equal(nf.status, 404);
    assert.ok(nf.json.message);
    assert.equal((await call('/elsewhere')).status, 404);
  });

  it('counts requests and introspections (cached 5 s per token), and resets', async () => {
    assert.deepEqual((await ctl('reset', {})).json, { ok: true });
    assert.deepEqual((await ctl('stats')).json, { requests: 0, introspections: 0, by_path: {}, last_authorization_present: false });
    for (let i = 0; i < 3; i += 1) assert.equal((await call('/api/items', { token })).status, 200);
    await call('/api/whoami');
    let s = (await ctl('stats')).json;
    assert.equal(s.requests, 4);
    assert.equal(s.introspections, 1); // one introspection, then the cache
    assert.deepEqual(s.by_path, { '/api/items': 3, '/api/whoami': 1 });
    assert.equal(s.last_authorization_present, false);
    await call('/api/text', { token });
    assert.equal((await ctl('stats')).json.last_authorization_present, true);
    await new Promise((r) => setTimeout(r, 5100));
    await call('/api/text', { token });
    s = (await ctl('stats')).json;
    assert.equal(s.introspections, 2); // cache expired
  });

  it('survives malformed input and exits cleanly on SIGTERM', async () => {
    assert.equal((await fetch(`${up}/__control/reject-next`, { method: 'POST', body: '{{' })).status, 400);
    assert.equal((await fetch(`${up}//a:b`)).status, 404);
    assert.equal((await call('/api/whoami', { token })).status, 200);
    const fixture = children[1];
    fixture.kill('SIGTERM');
    const [code] = await once(fixture, 'exit');
    assert.equal(code, 0);
    assert.doesNotMatch(fixture.stderrText, /unexpected error|uncaught|unhandled/);
  });
});
