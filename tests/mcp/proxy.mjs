// Header-injecting reverse proxy for MCP clients that cannot send a bearer token (the conformance
// suite). node:http only.
//
//   node tests/mcp/proxy.mjs --target http://127.0.0.1:PORT/mcp --token TOKEN [--port N]
//
// Listens on 127.0.0.1 (port 0 = random) and prints one stdout line when ready:
// `PROXY_READY http://127.0.0.1:<port>/mcp`. Every request goes to the target's host:port with the
// same method, path and body, plus `Authorization: Bearer TOKEN` (replacing any the client sent).
// `Host` and `Origin` are rewritten only when they name the proxy itself (its host:port, as
// 127.0.0.1 or localhost); any other value, e.g. a DNS-rebinding probe's evil.example.com, passes
// verbatim, as does every other header. Responses (SSE included) stream through unbuffered.
import http from 'node:http';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.target || !args.token) {
  console.error('usage: proxy.mjs --target URL --token TOKEN [--port N]');
  process.exit(2);
}
const target = new URL(args.target);

const server = http.createServer((req, res) => {
  const own = server.address().port;
  const self = new Set([`127.0.0.1:${own}`, `localhost:${own}`]);
  const headers = { ...req.headers, authorization: `Bearer ${args.token}` };
  if (self.has(String(req.headers.host).toLowerCase())) headers.host = target.host;
  const origin = URL.parse(req.headers.origin ?? '');
  if (origin?.protocol === 'http:' && self.has(origin.host)) headers.origin = target.origin;

  const upstream = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode, up.statusMessage, up.rawHeaders);
      res.flushHeaders(); // SSE: the client sees the stream open before the first event
      up.pipe(res);
    },
  );
  upstream.on('error', (err) => {
    console.error('[proxy] upstream error:', err.message);
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end();
  });
  res.on('close', () => upstream.destroy()); // the client went away: end the upstream stream too
  req.pipe(upstream);
});

server.listen(Number(args.port ?? 0), '127.0.0.1', () => {
  console.log(`PROXY_READY http://127.0.0.1:${server.address().port}${target.pathname}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
