#!/usr/bin/env python3
"""An agent signs in to `keycard-broker serve` with a Client ID Metadata Document (CIMD).

    cimd_check.py --url URL --fixture FIXTURE --bin KEYCARD_BROKER --ca CA_PEM

The broker must run with KEYCARD_BROKER_CIMD_CA=CA_PEM (stack.sh passes CIMD_CA to `serve`).
It reads that file at each fetch, so this check writes it: a throwaway CA made here with Python
`cryptography` (no openssl), which signs a certificate for 127.0.0.1 and is trusted by nothing
but the broker under test. Python's own `ssl` + `http.server` then serve the documents over
https on 127.0.0.1:
  good          names itself, one loopback redirect URI, max-age=300 (cached)
  fresh         the same with Cache-Control: no-store (fetched every time)
  big, big-stream   > 8 KiB, with and without Content-Length
  slow, trickle     headers (or the body) only after more than the broker's 5 s
  redirect      302 to good (redirects are not followed)
  other         names another client_id
  evil-redirect     registers a plain-http redirect URI to another host
  untrusted     a good document behind a certificate of another CA
Checked: each bad document gets HTTP 400 with an HTML page (never a redirect) saying why, the
broker fetched it (or tried its TLS), stores nothing and keeps answering — also while a slow
fetch is still waiting. The good one: the consent page alone registers nothing; the stock
`mcp` 2.3 OAuthClientProvider with client_metadata_url signs in with the URL as client_id and no
registration (`clients list` shows it as `cimd` under that URL), the consent page says
verified and names the document's host and port, and `call_api` GET works with `read` while a
POST is refused. Prints one JSON summary line; exits 1 on the first failed assertion.
"""
import argparse
import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import re
import secrets
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from oauth_check import REDIRECT, CheckFailed, Memory, User, check, cli, text_of

AGENT_NAME = "CIMD Check Agent"
# Longer than the broker's 5 s fetch timeout.
SLOW_SECS = 7


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert):
    """A certificate for https://127.0.0.1 signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def write_ca(path, cert):
    """Replaces the file the broker reads at each fetch (atomically: it may be reading now)."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(pem(cert))
    os.replace(tmp, path)


class DocServer:
    """Client metadata documents over https on 127.0.0.1 (stdlib ssl + http.server, one thread
    per request so a slow answer holds nothing else up)."""

    def __init__(self, workdir, label, key, cert):
        certfile, keyfile = os.path.join(workdir, f"{label}.pem"), os.path.join(workdir, f"{label}.key")
        with open(certfile, "wb") as f:
            f.write(pem(cert))
        with open(keyfile, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(certfile, keyfile)
        self.hits = Counter()
        self.failed_handshakes = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.httpd.handle_error = lambda request, address: None
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name):
        return f"{self.base}/agent/{name}.json"

    def document(self, name, **changes):
        doc = {"client_id": self.url(name), "client_name": AGENT_NAME, "redirect_uris": [REDIRECT],
               "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
               "token_endpoint_auth_method": "none"}
        doc.update(changes)
        return doc

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self):
                try:
                    self.request.do_handshake()
                except (ssl.SSLError, OSError):
                    with server.lock:
                        server.failed_handshakes += 1
                    raise
                super().setup()

            def log_message(self, *_):
                pass

            def send(self, status, body, headers=(), length=True):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if length:
                    self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                name = self.path.removeprefix("/agent/").removesuffix(".json")
                with server.lock:
                    server.hits[name] += 1
                try:
                    server.answer(self, name)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the broker gave up first, as it should

        return Handler

    def answer(self, h, name):
        body = lambda doc: json.dumps(doc).encode()
        if name in ("good", "fresh"):
            cache = "max-age=300" if name == "good" else "no-store"
            h.send(200, body(self.document(name)), [("Cache-Control", cache)])
        elif name in ("big", "big-stream"):
            doc = body(self.document(name, client_uri="https://example.com/" + "a" * 9000))
            # big-stream: no Content-Length, the body ends when the connection closes.
            h.send(200, doc, length=name == "big")
        elif name == "slow":
            time.sleep(SLOW_SECS)
            h.send(200, body(self.document(name)))
        elif name == "trickle":
            doc = body(self.document(name))
            h.send_response(200)
            h.send_header("Content-Length", str(len(doc)))
            h.end_headers()
            h.wfile.write(doc[:10])
            h.wfile.flush()
            time.sleep(SLOW_SECS)
            h.wfile.write(doc[10:])
        elif name == "redirect":
            h.send(302, b"", [("Location", self.url("good"))])
        elif name == "other":
            h.send(200, body(self.document(name, client_id=self.url("good"))))
        elif name == "evil-redirect":
            h.send(200, body(self.document(name, redirect_uris=["http://evil.example/callback"])))
        else:
            h.send(404, b"{}")

    def close(self):
        self.httpd.shutdown()


def pkce_challenge():
    verifier = secrets.token_urlsafe(40)
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


async def authorize(http, args, client_id):
    """The authorization request a browser would carry, well-formed apart from the client."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "cimd-check",
              "code_challenge": pkce_challenge(), "code_challenge_method": "S256", "resource": args.url}
    return await http.get(f"{args.base}/oauth/authorize", params=params)


async def healthy(http, args, why):
    r = await http.get(f"{args.base}/.well-known/oauth-authorization-server")
    check(r.status_code == 200 and r.json().get("client_id_metadata_document_supported") is True,
          f"the broker is not answering after {why}: HTTP {r.status_code}")


def agent_keys(args):
    code, agents, err = cli(args, "clients", "list")
    check(code == 0, f"clients list: {err}")
    return {a["key"]: a for a in agents}


def refused_page(r, what, needle):
    check(r.status_code == 400, f"{what}: HTTP {r.status_code}, not 400: {r.text[:300]}")
    check("location" not in r.headers, f"{what}: redirected to {r.headers.get('location')}")
    check(r.headers.get("content-type", "").startswith("text/html"), f"{what}: not a page: {r.headers}")
    alert = re.search(r'<p role="alert">(.*?)</p>', r.text)
    check(alert, f"{what}: no explanation on the page: {r.text[:600]}")
    check(needle in alert.group(1), f"{what}: the page says {alert.group(1)!r}, not {needle!r}")


async def bad_documents(args, docs, untrusted, summary):
    cases = [  # name, URL, what the page must say
        ("big", docs.url("big"), "too large"),
        ("big-stream", docs.url("big-stream"), "too large"),
        ("trickle", docs.url("trickle"), "took too long"),
        ("redirect", docs.url("redirect"), "redirects are not followed"),
        ("other", docs.url("other"), "names another client_id"),
        ("evil-redirect", docs.url("evil-redirect"), "plain http is allowed only to a loopback address"),
        ("missing", docs.url("missing"), "HTTP 404"),
    ]
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        # The slow one first, while other requests go on: the broker waits for it, no one else does.
        slow = asyncio.create_task(authorize(http, args, docs.url("slow")))
        for _ in range(200):
            if docs.hits["slow"] or slow.done():
                break
            await asyncio.sleep(0.05)
        check(docs.hits["slow"] == 1, "the broker never fetched the slow document")
        await healthy(http, args, "a fetch that hangs")
        check(not slow.done(), "the slow document's request ended before the broker's other answers")
        refused_page(await slow, "slow", "took too long")
        for name, url, needle in cases:
            refused_page(await authorize(http, args, url), name, needle)
            check(docs.hits[name] == 1, f"{name}: fetched {docs.hits[name]} times, not once")
            await healthy(http, args, name)
        refused_page(await authorize(http, args, untrusted.url("good")), "untrusted", "certificate")
        # The server's thread notes the failed handshake when the broker's alert reaches it,
        # which may be just after the broker has answered.
        for _ in range(50):
            if untrusted.failed_handshakes >= 1:
                break
            await asyncio.sleep(0.1)
        check(untrusted.failed_handshakes >= 1 and not untrusted.hits,
              f"untrusted: handshakes failed {untrusted.failed_handshakes}, requests {dict(untrusted.hits)}")
        await healthy(http, args, "an untrusted certificate")
    stored = [k for k in agent_keys(args) if k.startswith(docs.base) or k.startswith(untrusted.base)]
    check(not stored, f"refused documents were stored as agents: {stored}")
    summary["refused"] = sorted(["slow", "untrusted"] + [c[0] for c in cases])


async def sign_in(args, docs, summary):
    good = docs.url("good")
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await authorize(http, args, good)
        check(page.status_code == 200 and 'data-testid="verified"' in page.text, f"consent page: {page.text[:400]}")
    check(good not in agent_keys(args), "showing the consent page registered the agent")

    storage, user = Memory(), User(args.fixture, "read")
    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(client_name=AGENT_NAME, redirect_uris=[REDIRECT],
                                            token_endpoint_auth_method="none"),
        storage=storage,
        redirect_handler=user.redirect,
        callback_handler=user.callback,
        client_metadata_url=good,
    )
    http = httpx2.AsyncClient(auth=provider, timeout=60)
    async with http, Client(streamable_http_client(args.url, http_client=http), mode="auto") as client:
        got = await client.call_tool("call_api", {"method": "GET", "url": f"{args.fixture}/items"})
        check(not got.is_error and got.structured_content["status"] == 200, f"GET with read: {text_of(got)}")
        post = await client.call_tool("call_api", {"method": "POST", "url": f"{args.fixture}/items", "body": {"n": 1}})
        check(post.is_error and "policy refused" in text_of(post), f"POST with read not refused: {text_of(post)}")
    sent = {k: v[0] for k, v in parse_qs(urlsplit(user.url).query).items()}
    check(sent.get("client_id") == good, f"the authorize request's client_id is {sent.get('client_id')}")
    check(storage.client.client_id == good, f"the agent holds client_id {storage.client.client_id}")
    host = urlsplit(good).netloc
    check('data-testid="verified"' in user.html and host in user.html,
          f"the consent page does not say verified by {host}: {user.html[:800]}")
    check(docs.hits["good"] == 1, f"the cached document was fetched {docs.hits['good']} times")
    agents = agent_keys(args)
    mine = agents.get(good)
    check(mine and mine["registration"] == "cimd" and mine["name"] == AGENT_NAME, f"clients list: {mine}")
    registered = [k for k, a in agents.items() if a["name"] == AGENT_NAME and k != good]
    check(not registered, f"the agent was registered besides its document: {registered}")
    summary["sign-in"] = "client_id is the URL, verified, no DCR, GET ok, POST refused"


async def no_store(args, docs, summary):
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        for _ in range(2):
            page = await authorize(http, args, docs.url("fresh"))
            check(page.status_code == 200, f"fresh: HTTP {page.status_code}: {page.text[:300]}")
    check(docs.hits["fresh"] == 2, f"a no-store document was fetched {docs.hits['fresh']} times for 2 requests")
    summary["cache"] = "max-age cached, no-store fetched each time"


async def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--fixture", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--ca", required=True, help="the KEYCARD_BROKER_CIMD_CA file of the broker under test")
    args = p.parse_args()
    args.fixture = args.fixture.rstrip("/")
    args.base = args.url.rsplit("/mcp", 1)[0]
    summary = {}
    workdir = tempfile.mkdtemp(prefix="cimd-check-")
    ca_key, ca = make_ca("cimd_check throwaway CA")
    other_key, other_ca = make_ca("cimd_check CA nobody trusts")
    docs = DocServer(workdir, "trusted", *make_server_cert(ca_key, ca))
    untrusted = DocServer(workdir, "untrusted", *make_server_cert(other_key, other_ca))
    write_ca(args.ca, ca)
    try:
        await bad_documents(args, docs, untrusted, summary)
        await sign_in(args, docs, summary)
        await no_store(args, docs, summary)
    except CheckFailed as e:
        print(f"cimd_check FAILED: {e}", file=sys.stderr)
        print(json.dumps(summary))
        sys.exit(1)
    finally:
        docs.close()
        untrusted.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
