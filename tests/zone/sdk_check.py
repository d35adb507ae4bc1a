"""Check the zone emulator against the published Keycard Python SDK.

    python3 -m venv /tmp/kcvenv && /tmp/kcvenv/bin/pip install 'keycardai-oauth==0.33.*'
    /tmp/kcvenv/bin/python tests/zone/sdk_check.py

Spawns tests/zone/server.mjs, then drives it only through the SDK (plus httpx, which the SDK ships
with, to play the browser): discovery, dynamic registration, begin/complete authorization,
exchange_tokens_for_resources, refresh_authorization(resources=...), and an unconnected resource
coming back as insufficient_authorization, not retryable. Exits non-zero on the first failure.
"""

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
from keycardai.oauth import AsyncClient, BasicAuth, NoneAuth, TokenExchangeRequest
from keycardai.oauth.exceptions import RefreshGrantError
from keycardai.oauth.pkce import begin_authorization, complete_authorization, refresh_authorization
from keycardai.oauth.server import AccessContext, exchange_tokens_for_resources
from keycardai.oauth.types.models import ClientConfig

SERVER = Path(__file__).with_name("server.mjs")
MCP = "http://localhost:8937/mcp"
GITHUB = "https://api.github.com"
UNCONNECTED = "https://api.unconnected.example"
REDIRECT = "http://127.0.0.1:53999/callback"


def step(msg: str) -> None:
    print(f"ok - {msg}", flush=True)


async def browser(url: str, cookies: httpx.Cookies) -> dict[str, str]:
    """Follow the authorize URL like a browser until it lands on REDIRECT; return its query."""
    async with httpx.AsyncClient(follow_redirects=False, cookies=cookies) as http:
        for _ in range(10):
            if url.startswith(REDIRECT):
                return dict(parse_qsl(urlsplit(url).query))
            res = await http.get(url)
            assert res.status_code in (302, 303), f"{res.status_code} {res.text[:300]}"
            url = urljoin(url, res.headers["location"])
    raise AssertionError("too many redirects")


async def round_trip(issuer: str, client_id: str, resources: list[str], cookies: httpx.Cookies):
    redirect = await begin_authorization(
        client_id=client_id, redirect_uri=REDIRECT, resources=resources, issuer=issuer,
        scopes=["openid", "offline_access"],
    )
    params = await browser(redirect.url, cookies)
    assert params.get("iss") == issuer, params
    return await complete_authorization(
        callback_params=params, state=redirect.state, code_verifier=redirect.code_verifier,
        client_id=client_id, redirect_uri=REDIRECT, issuer=issuer,
    )


async def main(issuer: str) -> None:
    config = ClientConfig(enable_metadata_discovery=True, auto_register_client=False)
    async with AsyncClient(issuer, auth=NoneAuth(), config=config) as client:
        meta = await client.discover_server_metadata()
        assert meta.issuer == issuer, meta.issuer
        assert meta.registration_endpoint and meta.token_endpoint and meta.introspection_endpoint
        step(f"discovery ({meta.token_endpoint})")

        reg = await client.register_client(
            client_name="sdk-check", redirect_uris=[REDIRECT], token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"],
            response_types=["code"],
        )
        assert reg.client_id and not reg.client_secret
        step(f"dynamic registration ({reg.client_id})")

        cookies = httpx.Cookies()  # one browser session for both rounds
        session = await round_trip(issuer, reg.client_id, [MCP], cookies)
        assert session.access_token and session.refresh_token and session.id_token, session
        assert session.scope == ["read", "write"], session.scope
        step("begin/complete authorization for the broker resource (access, refresh, id_token)")

        github = await round_trip(issuer, reg.client_id, [GITHUB], cookies)
        step("second authorization round connects https://api.github.com")

        ctx = await exchange_tokens_for_resources(
            client=client, resources=[GITHUB, UNCONNECTED], subject_token=session.access_token,
            access_context=AccessContext(),
        )
        token = ctx.access(GITHUB)
        assert token.access_token and token.scope == ["read", "write"], token
        assert str(token.issued_token_type.value if hasattr(token.issued_token_type, "value") else token.issued_token_type) \
            == "urn:ietf:params:oauth:token-type:access_token"
        assert ctx.has_errors() and ctx.get_status() == "partial_error"
        err = ctx.get_resource_error(UNCONNECTED)
        assert err["code"] == "insufficient_authorization", err
        assert err["retryable"] is False, err
        step("exchange_tokens_for_resources: github token; unconnected -> insufficient_authorization, not retryable")

        narrowed = await exchange_tokens_for_resources(
            client=client, resources=[GITHUB], subject_token=session.access_token,
            access_context=AccessContext(), request_scopes={GITHUB: ["admin"]},
        )
        assert narrowed.get_resource_error(GITHUB)["code"] == "insufficient_authorization"
        step("exchange asking for a scope beyond the grant -> insufficient_authorization")

        refreshed = await refresh_authorization(
            refresh_token=github.refresh_token, client_id=reg.client_id, issuer=issuer, resources=[GITHUB],
        )
        assert refreshed.access_token and refreshed.refresh_token and refreshed.refresh_token != github.refresh_token
        assert refreshed.scope == ["read", "write"], refreshed.scope
        step("refresh_authorization(resources=[github]) rotates and returns a github token")

        try:
            await refresh_authorization(
                refresh_token=github.refresh_token, client_id=reg.client_id, issuer=issuer, resources=[GITHUB],
            )
            raise AssertionError("replayed refresh token was accepted")
        except RefreshGrantError as e:
            assert e.error == "invalid_grant" and e.retryable is False, e
        step("replayed refresh token -> invalid_grant, not retryable")

    async with AsyncClient(issuer, auth=BasicAuth("confidential-app", "confidential-app-secret"), config=config) as app:
        res = await app.exchange_token(TokenExchangeRequest(
            subject_token=session.access_token, resource=GITHUB,
            subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        ))
        assert res.access_token
        step("exchange_token as the confidential application (client_secret_basic)")


def run() -> int:
    proc = subprocess.Popen(["node", str(SERVER)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                            if not os.environ.get("ZONE_SDK_STDERR") else None, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("ZONE_READY "), line
        asyncio.run(main(line.split(" ", 1)[1]))
        print("sdk check: all steps passed")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(run())
