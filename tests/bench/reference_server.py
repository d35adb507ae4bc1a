"""Reference MCP server for the benchmark: the pattern the Keycard docs teach.

A Python MCP server (mcp 2.x `MCPServer`, formerly FastMCP) protected by the published
`keycardai-mcp` SDK: `AuthProvider(zone_url=...)`, `auth_provider.app(mcp)` and the
`@auth_provider.grant(resource)` decorator, which runs one RFC 8693 token exchange per tool call
(the caller's zone access token as subject_token) through the SDK's `keycardai-oauth` AsyncClient
against the zone, then the tool calls the upstream with the exchanged token.

One deviation, forced by the emulator: the SDK's inbound TokenVerifier verifies JWT access tokens
against the zone's JWKS, while the zone emulator issues opaque (introspectable) tokens. The
verifier below therefore accepts the bearer without checking a signature. That removes work
from every reference call (a JWT signature check in Python), so it can only flatter the
reference's figures. Everything on the outbound side (the grant decorator, DCR of the SDK's
client, discovery, the exchange request) is the SDK's own code.

    python reference_server.py --zone ISSUER --resource UPSTREAM_API_BASE --port N
Prints `REFERENCE_READY http://127.0.0.1:N/mcp` once listening.
"""

import argparse
import asyncio
import logging
import sys

import httpx
import uvicorn
from keycardai.mcp.server.auth import AccessContext, AuthProvider
from keycardai.oauth.server.verifier import AccessToken, TokenVerifier
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel


class OpaqueTokenVerifier(TokenVerifier):
    """Stand-in for the SDK's local JWT check (see the module docstring)."""

    async def verify_token(self, token: str) -> AccessToken:  # noqa: D401
        return AccessToken(token=token, client_id="bench-caller", scopes=[])


class UpstreamAnswer(BaseModel):
    """The tool's structured result, shaped like the broker's call_api result."""

    status: int
    body: str


class EmulatorAuthProvider(AuthProvider):
    def get_token_verifier(self, enable_multi_zone=None):
        return OpaqueTokenVerifier(issuer=self.issuer, audience=self.audience)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zone", required=True)
    ap.add_argument("--resource", required=True, help="upstream API base = its resource identifier")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    upstream = args.resource.rstrip("/")
    mcp_url = f"http://127.0.0.1:{args.port}/mcp"

    mcp = MCPServer("Keycard reference server", log_level="WARNING")
    auth_provider = EmulatorAuthProvider(
        zone_url=args.zone,
        mcp_server_name="Keycard reference server",
        mcp_server_url=mcp_url,
        audience=mcp_url,
    )
    http = httpx.AsyncClient(timeout=30)

    @mcp.tool()
    @auth_provider.grant(upstream)
    async def get_items(access_ctx: AccessContext, ctx: Context) -> UpstreamAnswer:
        """GET <upstream>/items with a freshly exchanged token."""
        if access_ctx.has_errors():
            return UpstreamAnswer(status=0, body=str(access_ctx.get_errors()))
        token = access_ctx.access(upstream).access_token
        r = await http.get(f"{upstream}/items", headers={"Authorization": f"Bearer {token}"})
        return UpstreamAnswer(status=r.status_code, body=r.text)

    app = auth_provider.app(mcp)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        print(f"REFERENCE_READY {mcp_url}", flush=True)
        await task

    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
