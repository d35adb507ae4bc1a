#!/usr/bin/env python3
"""Drives the stdio bridge (`keycard-broker stdio --client NAME`) with the real Python MCP stdio client.

    stdio_check.py --bin PATH --client NAME [--fixture FIXTURE] [--mode legacy|auto]

Launches `PATH stdio --client NAME` with this process's whole environment (KEYCARD_BROKER_HOME,
the D-Bus session of the keychain, ...), the way Claude Desktop launches it. The caller must have
run `keycard-broker clients config claude-desktop NAME --write --file <tmp>` first, which stores
NAME's token in the keychain for the bridge, and `keycard-broker serve` must be running.
Asserts tools/list lists the three tools and list_connections shows a connected provider (the
fixture, when --fixture is given). Prints one JSON summary line; exits 1 on a failed assertion.
"""
import argparse
import asyncio
import json
import os
import sys

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters


async def run(args):
    server = StdioServerParameters(command=args.bin, args=["stdio", "--client", args.client], env=dict(os.environ))
    async with Client(server, mode=args.mode) as client:
        summary = {"protocol_version": client.protocol_version}
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        assert tools == ["call_api", "connect", "list_connections"], f"tools/list gave {tools}"
        result = await client.call_tool("list_connections", {})
        assert not result.is_error, f"list_connections failed: {result.model_dump_json(by_alias=True)}"
        conns = (result.structured_content or {}).get("connections", [])
        connected = [c["resource"] for c in conns if c["status"] == "connected"]
        want = args.fixture.rstrip("/") if args.fixture else None
        assert (want in connected) if want else connected, f"expected connected {want or 'provider'}: {conns}"
        return summary | {"tools": tools, "connected": connected}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="path to the keycard-broker binary")
    p.add_argument("--client", required=True, help="client name registered with `clients config`")
    p.add_argument("--fixture", help="resource that must show as connected")
    p.add_argument("--mode", choices=["legacy", "auto"], default="legacy")
    args = p.parse_args()
    summary = {"check": "stdio_check", "client": args.client, "ok": False}
    try:
        summary |= asyncio.run(run(args))
        summary["ok"] = True
    except Exception as e:  # anyio task groups wrap assertion errors: report the innermost one
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        summary["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(summary))
    if not summary["ok"]:
        print(f"stdio_check FAILED: {summary['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
