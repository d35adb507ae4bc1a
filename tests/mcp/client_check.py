#!/usr/bin/env python3
"""Drives `keycard-broker serve` with the real Python MCP client (PyPI `mcp`, tests/mcp/requirements.txt).

    client_check.py --url URL --token TOKEN --fixture FIXTURE --mode legacy|auto
                    [--zone ISSUER] [--elicit accept|decline|skip]

--mode legacy negotiates 2025-11-25 (initialize + session), --mode auto 2026-07-28 (server/discover,
stateless); the negotiated version is asserted. Checks tools/list, list_connections, call_api
(GET/POST items, token scrubbing on echo-token, foreign URL, caller Authorization header).
A second session declares URL elicitation and calls connect: the broker must ask for the URL
(legacy: `elicitation/create`; auto/2026-07-28: an `input_required` result) with mode url with the zone's /authorize URL and no secret in it (--elicit skip
turns that off; decline answers decline). --zone (the zone emulator's issuer) adds a stronger
scrubbing check: no secret the zone ever issued may appear in any tool result.
Prints one JSON summary line; exits 1 with a message on the first failed assertion.
"""
import argparse
import asyncio
import json
import logging
import sys
import urllib.request
from urllib.parse import parse_qs, urlsplit

import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

EXPECTED_VERSION = {"legacy": "2025-11-25", "auto": "2026-07-28"}
# rmcp answers the session-ending DELETE with 202; mcp 2.3 logs a warning for anything but 200/204.
logging.getLogger("mcp.client.streamable_http").setLevel(logging.ERROR)
SECRET_PARAMS = {"access_token", "refresh_token", "id_token", "token", "code", "client_secret", "assertion"}


class CheckFailed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def dump(result):
    return result.model_dump_json(by_alias=True, exclude_none=True)


def connect(args, **kwargs):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.token}"}, timeout=60)
    return http, Client(streamable_http_client(args.url, http_client=http), **kwargs)


def zone_secrets(zone):
    if not zone:
        return []
    with urllib.request.urlopen(f"{zone.rstrip('/')}/__control/issued", timeout=10) as res:
        return [t for t in json.load(res)["tokens"] if len(t) >= 16]


async def call_ok(client, tool, arguments):
    result = await client.call_tool(tool, arguments)
    check(not result.is_error, f"{tool} {json.dumps(arguments)} failed: {dump(result)}")
    check(isinstance(result.structured_content, dict), f"{tool}: no structuredContent: {dump(result)}")
    return result


async def call_err(client, arguments, needle):
    result = await client.call_tool("call_api", arguments)
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    check(result.is_error, f"call_api {json.dumps(arguments)} should be an isError result: {dump(result)}")
    check(needle.lower() in text.lower(), f"call_api {json.dumps(arguments)}: error text lacks {needle!r}: {text!r}")
    return text


async def main_checks(args, summary):
    fixture = args.fixture.rstrip("/")
    http, client = connect(args, mode=args.mode)
    async with http, client:
        summary["protocol_version"] = client.protocol_version
        check(client.protocol_version == EXPECTED_VERSION[args.mode],
              f"mode={args.mode} negotiated {client.protocol_version}, expected {EXPECTED_VERSION[args.mode]}")

        tools = {t.name: t for t in (await client.list_tools()).tools}
        check(sorted(tools) == ["call_api", "connect", "list_connections"], f"tools/list gave {sorted(tools)}")
        for tool in tools.values():
            check(tool.input_schema.get("type") == "object", f"{tool.name}: inputSchema is not an object schema")
        check(set(tools["call_api"].input_schema.get("required", [])) >= {"method", "url"},
              f"call_api must require method and url: {tools['call_api'].input_schema}")
        summary["tools"] = sorted(tools)

        conns = (await call_ok(client, "list_connections", {})).structured_content["connections"]
        mine = [c for c in conns if c["resource"] == fixture]
        check(mine and mine[0]["status"] == "connected", f"fixture {fixture} not connected: {conns}")

        items = (await call_ok(client, "call_api", {"method": "GET", "url": f"{fixture}/items"})).structured_content
        check(items["status"] == 200 and isinstance(items["body"], list) and len(items["body"]) == 2,
              f"GET items: {items}")
        created = (await call_ok(client, "call_api",
                                 {"method": "POST", "url": f"{fixture}/items", "body": {"name": "gamma"}})).structured_content
        check(created["status"] == 201, f"POST items: {created}")

        echo = await call_ok(client, "call_api", {"method": "GET", "url": f"{fixture}/echo-token"})
        raw = dump(echo)
        check(echo.structured_content["status"] == 200, f"echo-token: {raw}")
        check("[REDACTED]" in raw, f"echo-token result is not redacted: {raw}")
        check("Bearer [REDACTED]" in str(echo.structured_content["body"]), f"echo-token body: {raw}")
        leaked = [s for s in zone_secrets(args.zone) if s in raw]
        check(not leaked, f"echo-token result contains a zone-issued secret: {raw}")
        check(args.token not in raw, "echo-token result contains the MCP client token")
        summary["scrub"] = "zone-secrets" if args.zone else "pattern"

        # The largest results the broker can produce: a JSON body just under the body limit and
        # text that escapes to six times its size. Each must fit one SSE event this client
        # accepts (1 MiB), and the session must live on.
        for path in ("/big?kb=511", "/escapes?kb=600"):
            big = (await call_ok(client, "call_api", {"method": "GET", "url": f"{fixture}{path}"})).structured_content
            check(big["status"] == 200, f"GET {path}: status {big['status']}")
            body = big["body"]
            size = len(body) if isinstance(body, str) else len(json.dumps(body))
            check(size > 64 * 1024, f"GET {path}: body cut to {size} bytes")
            summary.setdefault("largest", {})[path] = {"body_bytes": size, "truncated": big["truncated"]}
        await call_ok(client, "list_connections", {})

        summary["foreign_url"] = await call_err(
            client, {"method": "GET", "url": "https://example.com/"}, "not under any connected provider")
        summary["caller_auth"] = await call_err(
            client, {"method": "GET", "url": f"{fixture}/items", "headers": {"Authorization": "Bearer mine"}},
            "authorization")


async def elicitation_check(args, summary):
    seen = []

    async def on_elicit(_ctx, params):
        seen.append(params.model_dump(by_alias=True, exclude_none=True))
        return types.ElicitResult(action=args.elicit)

    http, client = connect(args, mode=args.mode, elicitation_callback=on_elicit)
    want = "2025-11-25" if args.mode == "legacy" else "2026-07-28"
    async with http, client:
        # 2025-11-25: `elicitation/create` on the open stream; 2026-07-28: an `input_required`
        # result the client fulfils and retries.
        check(client.protocol_version == want, f"elicitation session negotiated {client.protocol_version}")
        result = await client.call_tool("connect", {"resource": args.fixture})
    check(len(seen) == 1, f"connect sent {len(seen)} elicitation requests (expected 1); result {dump(result)}")
    req = seen[0]
    url = req.get("url", "")
    check(req.get("mode") == "url", f"elicitation mode is not url: {req}")
    check(req.get("elicitationId"), f"url elicitation without elicitationId: {req}")
    parts = urlsplit(url)
    broker = urlsplit(args.url)
    # The agent gets the broker's own link; state and the PKCE challenge stay out of its hands.
    check(parts.netloc == broker.netloc and parts.path.startswith("/connect/"),
          f"elicitation url is not a broker connect link: {url}")
    check(not parts.query, f"elicitation url carries a query: {url}")
    status, location = follow_once(url)
    if args.elicit == "accept":
        check(status == 303 and urlsplit(location).path.endswith("/authorize"),
              f"connect link does not lead to the zone's authorize endpoint: {status} {location}")
        if args.zone:
            check(location.startswith(args.zone.rstrip("/") + "/"), f"connect link leads off zone {args.zone}: {location}")
    else:
        check(status == 404, f"a declined round's link still works: {status}")
    params = set(parse_qs(parts.query))
    check(not params & SECRET_PARAMS, f"elicitation url carries secret parameters {params & SECRET_PARAMS}: {url}")
    check(args.token not in url, "elicitation url contains the MCP client token")
    check(not [s for s in zone_secrets(args.zone) if s in url], f"elicitation url contains a zone-issued secret: {url}")
    check(not result.is_error, f"connect after {args.elicit}: {dump(result)}")
    summary["elicitation"] = {"action": args.elicit, "url": f"{parts.scheme}://{parts.netloc}{parts.path}",
                              "result": " ".join(c.text for c in result.content if isinstance(c, types.TextContent))}


def follow_once(url):
    """GET without following redirects: (status, Location)."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=10) as r:
            return r.status, r.headers.get("Location", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", "")


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--mode", choices=["legacy", "auto"], required=True)
    p.add_argument("--zone", help="zone emulator issuer: check no issued secret leaks")
    p.add_argument("--elicit", choices=["accept", "decline", "skip"], default="accept")
    args = p.parse_args()
    summary = {"check": "client_check", "mode": args.mode, "ok": False}
    try:
        await main_checks(args, summary)
        if args.elicit != "skip":
            await elicitation_check(args, summary)
        summary["ok"] = True
    except Exception as e:  # anyio task groups wrap what the checks raise: report the innermost error
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        summary["error"] = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
    print(json.dumps(summary))
    if not summary["ok"]:
        print(f"client_check FAILED ({args.mode}): {summary['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
