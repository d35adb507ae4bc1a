// Upstream API fixture: a fake third-party API (think api.github.com) that accepts only access
// tokens the Keycard zone (emulator) issued for it, checked by RFC 7662 introspection.
//
//   node tests/upstream/server.mjs --zone <issuer> [--port N]     (default port 0 = random)
//
// Binds 127.0.0.1. Prints exactly one stdout line when listening: `UPSTREAM_READY http://127.0.0.1:<port>`.
// Its resource identifier and API base is `http://127.0.0.1:<port>/api`. Logs go to stderr.
// Introspects as the zone's confidential client `upstream-fixture` (client_secret_basic); results are
// cached 5 s per token hash. Auth failures: 401 `Bearer error="invalid_token"` {"message":"Bad credentials"};
// missing scope: 403 `Bearer error="insufficient_scope", scope="<s>"` {"message":"insufficient scope","needed":"<s>"}.
// Zone unreachable / introspection error: 502 {"message":"introspection failed"} (never cached).
//
// API (every route needs a valid token):  GET whoami | GET items (read) | POST items (write) | GET headers
//   | GET echo-token | GET redirect?to=URL | GET text | GET big?kb=N | GET status/<code> | GET slow?ms=N
// Control (no auth):  POST /__control/reject-next {"count":N} | GET /__control/stats | POST /__control/reset
import crypto from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';

const log = (...args) => console.error('[upstream]', ...args);
const MAX_BODY = 1024 * 1024;
const CACHE_MS = 5000;

function parseArgs() {
  const args = process.argv.slice(2);
  const opts = { port: '0', zone: undefined };
  for (let i = 0; i < args.length; i += 1) {
    const m = args[i].match(/^--(port|zone)(?:=(.*))?$/);
    if (!m) { console.error(`unknown argument ${args[i]}`); process.exit(2); }
    opts[m[1]] = m[2] ?? args[(i += 1)];
  }
  const port = Number(opts.port);
  if (!/^\d+$/.test(String(opts.port)) || port > 65535) { console.error(`invalid --port ${opts.port}`); process.exit(2); }
  const zone = URL.parse(opts.zone ?? '');
  if (!zone || !/^https?:$/.test(zone.protocol)) { console.error('usage: server.mjs --zone <issuer URL> [--port N]'); process.exit(2); }
  return { port, issuer: zone.href.replace(/\/$/, '') };
}
const { port: PORT, issuer: ISSUER } = parseArgs();
let RESOURCE; // http://127.0.0.1:<port>/api, known once listening

// --- state ---------------------------------------------------------------------------------------
const stats = { requests: 0, introspections: 0, by_path: {}, last_authorization_present: false };
let rejectNext = 0;
const cache = new Map(); // sha256(token) -> { at, result }
let introspectionEndpoint;

function reset() {
  Object.assign(stats, { requests: 0, introspections: 0, by_path: {}, last_authorization_present: false });
  rejectNext = 0;
  cache.clear();
}

// --- introspection -------------------------------------------------------------------------------
async function introspect(token) {
  const key = crypto.createHash('sha256').update(token).digest('hex');
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < CACHE_MS) return hit.result;
  if (!introspectionEndpoint) {
    const res = await fetch(`${ISSUER}/.well-known/oauth-authorization-server`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`discovery HTTP ${res.status}`);
    const meta = await res.json();
    if (typeof meta.introspection_endpoint !== 'string') throw new Error('zone advertises no introspection_endpoint');
    introspectionEndpoint = meta.introspection_endpoint;
  }
  stats.introspections += 1;
  const res = await fetch(introspectionEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      authorization: `Basic ${Buffer.from('upstream-fixture:upstream-fixture-secret').toString('base64')}`,
    },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`introspection HTTP ${res.status}`);
  const result = await res.json();
  if (!result || typeof result !== 'object') throw new Error('introspection answered no JSON object');
  if (cache.size > 1000) for (const [k, v] of cache) if (Date.now() - v.at >= CACHE_MS) cache.delete(k);
  cache.set(key, { at: Date.now(), result });
  return result;
}

// --- HTTP helpers --------------------------------------------------------------------------------
class HttpError extends Error {
  constructor(status, body, headers = {}) { super(body.message); Object.assign(this, { status, body, headers }); }
}
const badCredentials = () => new HttpError(401, { message: 'Bad credentials' }, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

// Reads at most MAX_BODY bytes; drains (up to 16x) beyond that so the client reads our 413.
async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
    else if (size > 16 * MAX_BODY) break;
  }
  if (size > MAX_BODY) throw new HttpError(413, { message: 'request body too large (max 1 MiB)' }, { connection: 'close' });
  return Buffer.concat(chunks);
}

function intParam(value, name, { def, min, max }) {
  if (value === null || value === undefined) return def;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw new HttpError(400, { message: `${name} must be an integer in [${min}, ${max}]` });
  return n;
}

function parseJson(buf) {
  try { return JSON.parse(buf.toString('utf8')); } catch { throw new HttpError(400, { message: 'Problems parsing JSON' }); }
}

// --- the API -------------------------------------------------------------------------------------
async function authenticate(req) {
  const m = (req.headers.authorization ?? '').match(/^Bearer +([\x21-\x7E]+) *$/i);
  if (!m) throw badCredentials();
  let info;
  try { info = await introspect(m[1]); } catch (err) {
    log('introspection failed:', err.message);
    throw new HttpError(502, { message: 'introspection failed' });
  }
  const aud = [info.aud ?? []].flat();
  if (info.active !== true || !aud.includes(RESOURCE)) throw badCredentials();
  return { token: m[1], info, scopes: new Set(String(info.scope ?? '').split(' ').filter(Boolean)) };
}

function needScope(auth, scope) {
  if (!auth.scopes.has(scope)) {
    throw new HttpError(403, { message: 'insufficient scope', needed: scope },
      { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${scope}"` });
  }
}

async function bigBody(res, kb) { // a JSON array of exactly kb KiB: one 1 KiB element per KiB
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': kb === 0 ? 2 : kb * 1024 });
  if (kb === 0) { res.end('[]'); return; }
  for (let i = 0; i < kb; i += 1) {
    const last = i === kb - 1;
    const pad = 'x'.repeat(1024 - (last ? 2 : 1) - `{"i":${i},"pad":""}`.length);
    const item = `${i ? ',' : '['}{"i":${i},"pad":"${pad}"}${last ? ']' : ''}`;
    if (!res.write(item)) await new Promise((r) => { res.once('drain', r); res.once('close', r); });
    if (res.destroyed) return;
  }
  res.end();
}

// The token in the forms a hostile or careless API could send it back in (the broker's
// scrubber must catch every one). Each form is applied to the whole token.
const LEAK_FORMS = {
  plain: (t) => t,
  escaped: (t) => [...t].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
  escaped_upper: (t) => [...t].map((c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`).join(''),
  mixed: (t) => [...t].map((c, i) => (c === '/' ? '\\/' : i % 2 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).join(''),
  percent: (t) => [...Buffer.from(t)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  base64: (t) => Buffer.from(`Bearer ${t}`).toString('base64'),
  base64url: (t) => Buffer.from(`x${t}`).toString('base64url'),
};

async function api(req, res, url, body) {
  const route = `${req.method} ${url.pathname.slice('/api'.length)}`;
  const auth = await authenticate(req);
  const q = url.searchParams;
  switch (route) {
    case 'GET /whoami': {
      const { sub, scope, aud, client_id: clientId } = auth.info;
      return send(res, 200, { sub, scope, aud, client_id: clientId });
    }
    case 'GET /items':
      needScope(auth, 'read');
      return send(res, 200, [{ id: 1, name: 'alpha' }, { id: 2, name: 'beta' }]);
    case 'POST /items': {
      needScope(auth, 'write');
      const item = parseJson(body);
      if (!item || typeof item !== 'object' || Array.isArray(item)) throw new HttpError(400, { message: 'body must be a JSON object' });
      return send(res, 201, { id: 3, ...item });
    }
    case 'GET /headers': {
      const headers = { ...req.headers, authorization: `Bearer <redacted len=${auth.token.length}>` };
      return send(res, 200, headers);
    }
    case 'GET /echo-token':
      return send(res, 200, `you sent: ${req.headers.authorization}`, { 'X-Echo': auth.token });
    case 'GET /redirect': {
      const to = q.get('to');
      if (!to || /[^\x20-\x7E]/.test(to)) throw new HttpError(400, { message: 'to must be a printable URL' });
      return send(res, 302, { location: to }, { location: to });
    }
    case 'GET /leak': { // {"you_sent":"<token in the asked form>"} written raw, so escapes stay escapes
      const form = LEAK_FORMS[q.get('form') ?? 'plain'];
      if (!form) throw new HttpError(400, { message: `form must be one of ${Object.keys(LEAK_FORMS).join(', ')}` });
      const text = `{"you_sent":"${form(auth.token)}"}`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      return res.end(text);
    }
    case 'GET /leak-cut': { // token‖token‖padding‖token, the third copy straddling the broker's read limit
      const pad = intParam(q.get('pad'), 'pad', { def: 0, min: 0, max: 4 * MAX_BODY });
      const t = auth.token;
      return send(res, 200, `${t}${t}${'x'.repeat(pad)}${t}${'y'.repeat(64)}`);
    }
    case 'GET /leak-location': { // 201 whose Location carries the token percent- or base64url-encoded
      const form = LEAK_FORMS[q.get('form') ?? 'percent'];
      if (!form) throw new HttpError(400, { message: 'unknown form' });
      return send(res, 201, { created: true }, { location: `/api/items/1?t=${form(auth.token)}` });
    }
    case 'GET /gzip': { // gzip whatever the client asked for: a body the broker cannot read as sent
      const text = zlib.gzipSync(Buffer.from(`{"you_sent":"${auth.token}"}`));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': text.length });
      return res.end(text);
    }
    case 'GET /escapes': { // kb KiB of text that JSON-escapes to six times its size
      const kb = intParam(q.get('kb'), 'kb', { def: 600, min: 1, max: 4096 });
      return send(res, 200, '\u0001'.repeat(kb * 1024));
    }
    case 'GET /text':
      return send(res, 200, 'plain words');
    case 'GET /big':
      return bigBody(res, intParam(q.get('kb'), 'kb', { def: 2048, min: 0, max: 65536 }));
    case 'GET /slow': {
      const ms = intParam(q.get('ms'), 'ms', { def: 1000, min: 0, max: 600000 });
      await new Promise((r) => { const t = setTimeout(r, ms); res.once('close', () => { clearTimeout(t); r(); }); });
      if (res.destroyed) return undefined;
      return send(res, 200, { slept_ms: ms });
    }
    default: {
      const status = route.match(/^GET \/status\/(\d{3})$/);
      if (status && Number(status[1]) >= 200 && Number(status[1]) <= 599) {
        return send(res, Number(status[1]), { status: Number(status[1]) });
      }
      throw new HttpError(404, { message: 'Not Found' });
    }
  }
}

function control(req, res, url, body) {
  const route = `${req.method} ${url.pathname}`;
  if (route === 'GET /__control/stats') return send(res, 200, stats);
  if (route === 'POST /__control/reset') { reset(); return send(res, 200, { ok: true }); }
  if (route === 'POST /__control/reject-next') {
    const b = body.length ? parseJson(body) : {};
    const count = b?.count ?? 1;
    if (!Number.isInteger(count) || count < 0 || count > 1e6) throw new HttpError(400, { message: 'count must be a non-negative integer' });
    rejectNext = count;
    return send(res, 200, { count });
  }
  throw new HttpError(404, { message: 'unknown control endpoint' });
}

async function handle(req, res) {
  const started = Date.now();
  const url = URL.parse(req.url.startsWith('/') ? `http://127.0.0.1${req.url}` : '') ?? new URL('http://127.0.0.1/invalid');
  res.once('finish', () => log(`${req.method} ${url.pathname} -> ${res.statusCode} (${Date.now() - started} ms)`));
  try {
    const isApi = url.pathname === '/api' || url.pathname.startsWith('/api/');
    if (isApi) {
      stats.requests += 1;
      stats.by_path[url.pathname] = (stats.by_path[url.pathname] ?? 0) + 1;
      stats.last_authorization_present = req.headers.authorization !== undefined;
    }
    const body = await readBody(req);
    if (url.pathname.startsWith('/__control/')) return control(req, res, url, body);
    if (!isApi) throw new HttpError(404, { message: 'Not Found' });
    if (rejectNext > 0) { rejectNext -= 1; throw badCredentials(); }
    return await api(req, res, url, body);
  } catch (err) {
    if (!(err instanceof HttpError)) { log('unexpected error:', err); err = new HttpError(500, { message: 'internal error' }); }
    if (!res.headersSent) send(res, err.status, err.body, err.headers);
    else res.destroy();
    return undefined;
  }
}

process.on('uncaughtException', (err) => log('uncaught exception (kept running):', err));
process.on('unhandledRejection', (err) => log('unhandled rejection (kept running):', err));

const server = http.createServer((req, res) => { handle(req, res); });
server.on('clientError', (_err, socket) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); else socket.destroy(); });
server.on('error', (err) => { console.error('upstream fixture cannot listen:', err.message); process.exit(1); });
server.listen(PORT, '127.0.0.1', () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  RESOURCE = `${base}/api`;
  process.stdout.write(`UPSTREAM_READY ${base}\n`);
  log(`resource ${RESOURCE}; zone ${ISSUER}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    log(`${signal}: shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
