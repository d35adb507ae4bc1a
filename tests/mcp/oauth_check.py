#!/usr/bin/env python3
"""Agents sign in to `keycard-broker serve` with the stock Python MCP client's OAuth provider.

    oauth_check.py --url URL --fixture FIXTURE --bin KEYCARD_BROKER [--approval-timeout SECS]

`mcp` 2.3's OAuthClientProvider does everything a real agent does: the 401, protected-resource
and authorization-server discovery, Dynamic Client Registration, PKCE, the token exchange and
refresh. Its redirect handler plays the user: it loads the broker's consent page over HTTP,
chooses an access level for the fixture provider and submits the form; the callback handler
returns the code, state and iss from the broker's redirect. Checked, in both protocol
revisions (legacy = 2025-11-25 sessions, auto = 2026-07-28 stateless):
  read   — list_connections shows the fixture; GET works; POST is refused by the policy
  none   — list_connections shows nothing; GET is refused
  ask    — POST waits until `keycard-broker approve`; `deny` and the timeout refuse it
  refresh rotation; a replayed refresh token ends the sign-in (the next call is 401);
  `keycard-broker clients signout` makes the next call 401.
Prints one JSON summary line; exits 1 with a message on the first failed assertion.
"""
import argparse
import asyncio
import json
import logging
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import httpx2
import mcp_types as types
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

logging.getLogger("mcp.client.streamable_http").setLevel(logging.ERROR)
REDIRECT = "http://127.0.0.1:53682/callback"


class CheckFailed(Exception):
    pass


# Every agent credential the broker issued in this run: none may be in anything it wrote.
ISSUED = []


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


class Memory:
    """The agent's token storage (in memory, like a test double of its keychain)."""

    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        ISSUED.extend(t for t in (tokens.access_token, tokens.refresh_token) if t)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class User:
    """Answers the consent page the way a user would, with one level for the fixture."""

    def __init__(self, fixture, level):
        self.fixture = fixture
        self.level = level
        self.result = None
        self.pages = 0
        self.url = None
        self.html = None

    async def redirect(self, authorization_url):
        self.pages += 1
        self.url = str(authorization_url)
        async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
            page = await http.get(authorization_url)
            check(page.status_code == 200, f"consent page: HTTP {page.status_code}: {page.text[:300]}")
            check("frame-ancestors 'none'" in page.headers.get("content-security-policy", ""), "consent page can be framed")
            html = self.html = page.text
            fields = {name: value for name, value in re.findall(r'name="(request|csrf)" value="([^"]+)"', html)}
            check({"request", "csrf"} <= set(fields), f"consent form lacks request/csrf: {html[:500]}")
            selects = re.findall(r'<select[^>]*name="(access:[^"]+)"', html)
            check(f"access:{self.fixture}" in selects, f"the fixture is not offered: {selects}")
            form = dict(fields, decision="allow")
            for name in selects:
                form[name] = self.level if name == f"access:{self.fixture}" else "none"
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorization_url))
            answer = await http.post(str(page.url).split("?")[0], data=form, headers={"Origin": origin})
            check(answer.status_code == 303, f"decision: HTTP {answer.status_code}: {answer.text[:300]}")
            location = answer.headers["location"]
            check(location.startswith(REDIRECT), f"redirected elsewhere: {location}")
            q = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            self.result = AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))

    async def callback(self):
        return self.result


def agent(args, level, mode, name):
    storage = Memory()
    user = User(args.fixture, level)
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(client_name=name, redirect_uris=[REDIRECT], token_endpoint_auth_method="none"),
        storage=storage,
        redirect_handler=user.redirect,
        callback_handler=user.callback,
    )
    http = httpx2.AsyncClient(auth=provider, timeout=60)
    return http, Client(streamable_http_client(args.url, http_client=http), mode=mode), storage, user


def text_of(result):
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


def cli(args, *argv):
    out = subprocess.run([args.bin, *argv, "--json"], capture_output=True, text=True, timeout=60)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


async def raw_call(args, token):
    """An initialize with a bare bearer (no OAuth provider that would refresh): the HTTP status."""
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "oauth-check", "version": "1"}}
    async with httpx2.AsyncClient(timeout=30) as http:
        r = await http.post(args.url, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init},
                            headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                                     "MCP-Protocol-Version": "2025-11-25"})
        return r.status_code, r.headers.get("www-authenticate", "")


async def levels_check(args, mode, summary):
    fixture = args.fixture
    # read: GET works, a write is refused by the policy.
    http, client, storage, user = agent(args, "read", mode, f"reader-{mode}")
    async with http, client:
        conns = (await client.call_tool("list_connections", {})).structured_content["connections"]
        check([c["resource"] for c in conns] == [fixture], f"read agent sees {conns}")
        got = await client.call_tool("call_api", {"method": "GET", "url": f"{fixture}/items"})
        check(not got.is_error and got.structured_content["status"] == 200, f"read agent GET: {text_of(got)}")
        post = await client.call_tool("call_api", {"method": "POST", "url": f"{fixture}/items", "body": {"name": "no"}})
        check(post.is_error and "policy refused" in text_of(post), f"read agent POST not refused: {text_of(post)}")
        check(user.pages == 1, f"one consent page, saw {user.pages}")
        check(storage.tokens.access_token.startswith("kcba_"), "not a broker access token")
    summary[f"read-{mode}"] = "GET ok, POST refused"
    # none: nothing visible, nothing allowed.
    http, client, _, _ = agent(args, "none", mode, f"nothing-{mode}")
    async with http, client:
        conns = (await client.call_tool("list_connections", {})).structured_content["connections"]
        check(conns == [], f"an agent with no access sees {conns}")
        got = await client.call_tool("call_api", {"method": "GET", "url": f"{fixture}/items"})
        check(got.is_error and "policy refused" in text_of(got), f"no-access GET not refused: {text_of(got)}")
    summary[f"none-{mode}"] = "sees nothing, GET refused"


async def wait_pending(args, count):
    for _ in range(100):
        code, pending, err = cli(args, "approvals")
        check(code == 0, f"approvals: {err}")
        if len(pending) >= count:
            return pending
        await asyncio.sleep(0.2)
    raise CheckFailed("the write never showed up in `keycard-broker approvals`")


async def ask_check(args, summary):
    fixture = args.fixture
    http, client, _, _ = agent(args, "ask", "legacy", "asker")
    async with http, client:
        got = await client.call_tool("call_api", {"method": "GET", "url": f"{fixture}/items"})
        check(not got.is_error, f"ask agent GET: {text_of(got)}")
        write = asyncio.create_task(client.call_tool("call_api", {"method": "POST", "url": f"{fixture}/items", "body": {"name": "approved"}}))
        pending = await wait_pending(args, 1)
        call = pending[0]
        check(call["method"] == "POST" and call["client_name"] == "asker", f"pending: {call}")
        check("approved" in (call.get("body_preview") or ""), f"no body preview: {call}")
        check(not write.done(), "the write did not wait")
        code, _, err = cli(args, "approve", call["id"])
        check(code == 0, f"approve: {err}")
        done = await asyncio.wait_for(write, 30)
        check(not done.is_error and done.structured_content["status"] == 201, f"approved write: {text_of(done)}")

        write = asyncio.create_task(client.call_tool("call_api", {"method": "POST", "url": f"{fixture}/items", "body": {"name": "denied"}}))
        call = (await wait_pending(args, 1))[0]
        code, _, err = cli(args, "deny", call["id"])
        check(code == 0, f"deny: {err}")
        done = await asyncio.wait_for(write, 30)
        check(done.is_error and "denied" in text_of(done), f"denied write: {text_of(done)}")

        started = asyncio.get_running_loop().time()
        progress = []

        async def on_progress(value, total, message):
            progress.append(message or "")

        done = await client.call_tool("call_api", {"method": "POST", "url": f"{fixture}/items", "body": {"name": "late"}},
                                      progress_callback=on_progress)
        waited = asyncio.get_running_loop().time() - started
        check(done.is_error and "did not approve" in text_of(done), f"timed-out write: {text_of(done)}")
        check(waited >= args.approval_timeout - 1, f"gave up after {waited:.1f} s")
        # The broker says it is waiting (every 5 s) to a client that gave a progress token.
        if args.approval_timeout > 5:
            check(progress and "waiting for the user" in progress[0], f"no progress while waiting: {progress}")
    summary["ask"] = f"approve lets it through, deny and timeout refuse ({len(progress)} progress notes while waiting)"


async def tokens_check(args, summary):
    fixture = args.fixture
    http, client, storage, user = agent(args, "read", "legacy", "rotator")
    async with http, client:
        got = await client.call_tool("call_api", {"method": "GET", "url": f"{fixture}/items"})
        check(not got.is_error, text_of(got))
        client_id = storage.client.client_id
    first = storage.tokens
    async with httpx2.AsyncClient(timeout=30) as http:
        token_url = f"{args.url.rsplit('/mcp', 1)[0]}/oauth/token"
        rotated = await http.post(token_url, data={"grant_type": "refresh_token", "client_id": client_id,
                                                   "refresh_token": first.refresh_token})
        check(rotated.status_code == 200, f"refresh: {rotated.text}")
        new = rotated.json()
        ISSUED.extend([new["access_token"], new["refresh_token"]])
        check(new["refresh_token"] != first.refresh_token, "the refresh token did not rotate")
        status, _ = await raw_call(args, new["access_token"])
        check(status == 200, f"the rotated access token: HTTP {status}")
        replay = await http.post(token_url, data={"grant_type": "refresh_token", "client_id": client_id,
                                                  "refresh_token": first.refresh_token})
        check(replay.status_code == 400 and replay.json()["error"] == "invalid_grant", f"replay: {replay.text}")
    status, challenge = await raw_call(args, new["access_token"])
    check(status == 401, f"after a replayed refresh token the agent still gets HTTP {status}")
    check("resource_metadata=" in challenge, f"401 without resource_metadata: {challenge}")
    summary["refresh"] = "rotates; replay ends the sign-in"

    http, client, storage, user = agent(args, "read", "auto", "leaver")
    async with http, client:
        got = await client.call_tool("call_api", {"method": "GET", "url": f"{fixture}/items"})
        check(not got.is_error, text_of(got))
        code, _, err = cli(args, "clients", "signout", storage.client.client_id)
        check(code == 0, f"clients signout: {err}")
    status, _ = await raw_call(args, storage.tokens.access_token)
    check(status == 401, f"after sign-out the agent still gets HTTP {status}")
    code, agents, _ = cli(args, "clients", "list")
    mine = [a for a in agents if a["key"] == storage.client.client_id]
    check(mine and mine[0]["registration"] == "dcr", f"clients list: {agents}")
    summary["signout"] = "next call 401"


def secrets_check(summary):
    """Greps every file under the broker's home (database, WAL, logs, config) for the tokens."""
    import os
    home = os.environ["KEYCARD_BROKER_HOME"]
    check(len(ISSUED) >= 10, f"only {len(ISSUED)} tokens were collected")
    files = 0
    for root, _, names in os.walk(home):
        for name in names:
            path = os.path.join(root, name)
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            files += 1
            for token in ISSUED:
                check(token.encode() not in data, f"{path} holds an agent token the broker issued")
    summary["secrets"] = f"{len(ISSUED)} agent tokens in none of {files} files"


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--approval-timeout", type=float, default=120)
    args = p.parse_args()
    args.fixture = args.fixture.rstrip("/")
    summary = {}
    try:
        for mode in ("legacy", "auto"):
            await levels_check(args, mode, summary)
        await ask_check(args, summary)
        await tokens_check(args, summary)
        secrets_check(summary)
    except CheckFailed as e:
        print(f"oauth_check FAILED: {e}", file=sys.stderr)
        print(json.dumps(summary))
        sys.exit(1)
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
