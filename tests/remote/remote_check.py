#!/usr/bin/env python3
"""The far side of a forwarded agent socket: the stock Python MCP client, run as the "remote" user.

    remote_check.py --bin PATH --socket PATH --fixture FIXTURE [--expect ok|unauthorized]

The client token comes from $KEYCARD_BROKER_TOKEN (the remote host has no keychain).

--expect ok (default): through the stdio bridge (`PATH stdio --socket S --token-env
KEYCARD_BROKER_TOKEN`, launched by the mcp stdio client) and through the HTTP bridge (`PATH bridge
--listen 127.0.0.1:0 --socket S`, the streamable HTTP client with its own bearer), tools/list lists
the three tools and call_api GET FIXTURE/items answers 200 with the fixture's items. On the HTTP
bridge: a foreign Host or Origin is refused (403, DNS rebinding), a request without a bearer gets the
broker's 401 challenge, a 6 MiB body gets 413 (the broker's cap, same answer as on its port), and
nothing but /mcp is relayed (404).
--expect unauthorized: the token was revoked on the laptop: the stdio bridge exits with code 2 and
says the token was refused; the HTTP bridge answers 401.
Prints one JSON summary line; exits 1 on the first failed assertion.
"""
import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request

import httpx2
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

TOKEN_VAR = "KEYCARD_BROKER_TOKEN"
# rmcp answers the session-ending DELETE with 202; mcp 2.3 logs a warning for anything but 200/204.
logging.getLogger("mcp.client.streamable_http").setLevel(logging.ERROR)


class CheckFailed(Exception):
    pass


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


async def exercise(client, fixture):
    tools = sorted(t.name for t in (await client.list_tools()).tools)
    check(tools == ["call_api", "connect", "list_connections"], f"tools/list gave {tools}")
    result = await client.call_tool("call_api", {"method": "GET", "url": f"{fixture}/items"})
    check(not result.is_error, f"call_api failed: {result.model_dump_json(by_alias=True)}")
    answer = result.structured_content or {}
    check(answer.get("status") == 200, f"call_api status: {answer}")
    check(isinstance(answer.get("body"), list) and len(answer["body"]) >= 2, f"call_api body is not the fixture's items: {answer}")
    return answer["status"]


def stdio_server(args):
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/"), TOKEN_VAR: os.environ[TOKEN_VAR]}
    return StdioServerParameters(
        command=args.bin, args=["stdio", "--socket", args.socket, "--token-env", TOKEN_VAR], env=env
    )


def start_http_bridge(args):
    proc = subprocess.Popen(
        [args.bin, "bridge", "--listen", "127.0.0.1:0", "--socket", args.socket],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline().strip()
    check(line.startswith("http://127.0.0.1:") and line.endswith("/mcp"),
          f"bridge did not print its URL: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}")
    return proc, line


def raw(url, method="POST", body=b"{}", headers=None):
    """One request with urllib (no MCP client), for the refusals; returns (status, text)."""
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                     headers=base | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as res:
            return res.status, res.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def probe_http_bridge(url, token):
    auth = {"Authorization": f"Bearer {token}"}
    port = url.split(":")[2].split("/")[0]
    status, text = raw(url, headers=auth | {"Host": f"evil.example:{port}"})
    check(status == 403 and "host" in text, f"foreign Host: {status} {text!r}")
    status, text = raw(url, headers=auth | {"Origin": "http://evil.example"})
    check(status == 403 and "origin" in text, f"foreign Origin: {status} {text!r}")
    status, text = raw(url)
    check(status == 401, f"no bearer: {status} {text!r}")
    status, _ = raw(url, body=b"x" * (6 * 1024 * 1024), headers=auth)
    check(status == 413, f"6 MiB body: {status}")
    status, _ = raw(url.replace("/mcp", "/oauth/register"), headers=auth)
    check(status == 404, f"a path other than /mcp was relayed: {status}")
    return ["foreign_host", "foreign_origin", "no_bearer", "huge_body", "other_path"]


async def expect_ok(args):
    token = os.environ[TOKEN_VAR]
    summary = {}
    async with Client(stdio_server(args), mode="legacy") as client:
        summary["stdio_call_api"] = await exercise(client, args.fixture)
    proc, url = start_http_bridge(args)
    try:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            summary["http_call_api"] = await exercise(client, args.fixture)
        summary["http_refusals"] = probe_http_bridge(url, token)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return summary


def expect_unauthorized(args):
    done = subprocess.run(
        [args.bin, "stdio", "--socket", args.socket, "--token-env", TOKEN_VAR],
        input='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
              '"capabilities":{},"clientInfo":{"name":"remote_check","version":"1"}}}\n',
        capture_output=True, text=True, timeout=60,
    )
    check(done.returncode == 2, f"stdio bridge with a revoked token exited {done.returncode}: {done.stderr!r}")
    check("refused the client token" in done.stderr, f"stdio bridge did not say why: {done.stderr!r}")
    proc, url = start_http_bridge(args)
    try:
        status, text = raw(url, headers={"Authorization": f"Bearer {os.environ[TOKEN_VAR]}"})
        check(status == 401, f"HTTP bridge with a revoked token: {status} {text!r}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"stdio_exit": done.returncode, "http_status": status}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--expect", choices=["ok", "unauthorized"], default="ok")
    args = p.parse_args()
    summary = {"check": "remote_check", "expect": args.expect, "uid": os.getuid(), "ok": False}
    try:
        check(os.environ.get(TOKEN_VAR), f"${TOKEN_VAR} is not set")
        if args.expect == "ok":
            summary |= asyncio.run(expect_ok(args))
        else:
            summary |= expect_unauthorized(args)
        summary["ok"] = True
    except Exception as e:  # anyio task groups wrap assertion errors: report the innermost one
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        summary["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(summary))
    if not summary["ok"]:
        print(f"remote_check FAILED: {summary['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
