#!/usr/bin/env python3
"""End-to-end test of the real tray app through WebDriver (tauri-driver + WebKitWebDriver).

    e2e.py --app target/debug/keycard-broker-app --shots target/ui-screenshots

Run it inside Xvfb and a private D-Bus + unlocked gnome-keyring (scripts/test-ui does both).
It starts the zone emulator and the upstream API fixture, then drives the window like a user:
first run -> sign in (the authorize URL shown in the window is followed by an HTTP client with a
cookie jar, which lands on the broker's loopback callback) -> add the fixture as a custom resource
-> connect -> add an agent client -> an MCP call shows up in Activity -> the zone narrows scopes,
the zone no longer grants write -> the row needs reconnect -> Reconnect -> connected
-> Revoke -> revoked -> the window closed ends its web process, a second launch builds a new
one. A PNG of each main view goes to --shots.
"""
import argparse
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.support.ui import Select

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30


def log(*args):
    print("[e2e]", *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, ready_prefix, env=None):
    """Starts a fixture that prints `<READY> <url>` on stdout; returns (process, url). A fixture
    that hangs before its line fails after TIMEOUT instead of blocking a read forever; a thread
    keeps draining its stdout afterwards."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines = queue.Queue()

    def drain():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.time() + TIMEOUT
    while (left := deadline - time.time()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith(ready_prefix + " "):
            return proc, line.split()[1].rstrip("/")
    proc.kill()
    raise SystemExit(f"{cmd} never printed {ready_prefix}")


def wait_for(what, f, timeout=TIMEOUT):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            value = f()
            if value:
                return value
        except (WebDriverException, OSError) as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


class App:
    def __init__(self, driver, shots):
        self.d = driver
        self.shots = shots
        self.last_url = None

    def find(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def finds(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def click(self, css):
        wait_for(css, lambda: self.find(css).is_enabled() and self.find(css))
        self.find(css).click()

    def text(self):
        return self.find("body").text

    def shot(self, name):
        self.d.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)  # let the scroll and any transition settle
        path = self.shots / f"{name}.png"
        self.d.save_screenshot(str(path))
        log("screenshot", path)

    def tab(self, name):
        self.click(f"#tab-{name}")
        wait_for(f"{name} panel", lambda: self.finds(f"#panel-{name}"))

    def follow_auth_url(self):
        """Reads the authorize URL the window shows and acts as the browser."""

        def fresh():
            for el in self.finds("#auth-url"):
                v = el.get_attribute("value")
                if v and v != self.last_url:
                    return v
            return None

        url = wait_for("the authorize URL in the window", fresh)
        self.last_url = url
        with requests.Session() as browser:
            r = browser.get(url, timeout=TIMEOUT, allow_redirects=True)
        log("authorize round ended at", r.url.split("?")[0], r.status_code)
        assert r.status_code == 200, f"callback answered {r.status_code}: {r.text[:300]}"
        assert "/callback" in r.url, r.url

    def row(self, resource):
        return self.find(f'li[data-resource="{resource}"]')

    def wait_status(self, resource, status):
        wait_for(f"{resource} to be {status}", lambda: self.row(resource).get_attribute("data-status") == status)


class Mcp:
    """Minimal Streamable HTTP MCP client (2025-11-25, session), like crates/cli/tests/common Mcp."""

    def __init__(self, url, token):
        self.url = url
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"})
        self.next_id = 1
        init = self.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ui-e2e", "version": "1"}})
        assert init["result"]["protocolVersion"] == "2025-11-25", init
        r = self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=TIMEOUT)
        assert r.status_code == 202, r.status_code

    def rpc(self, method, params):
        rid = self.next_id
        self.next_id += 1
        r = self.http.post(self.url, json={"jsonrpc": "2.0", "id": rid, "method": method, "params": params}, timeout=TIMEOUT)
        assert r.status_code == 200, (method, r.status_code, r.text[:300])
        if "mcp-session-id" in r.headers:
            self.http.headers.update({"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"})
        messages = []
        for event in r.text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(l[5:].lstrip(" ") for l in event.splitlines() if l.startswith("data:"))
            if data.strip():
                messages.append(data)
        messages.append(r.text)
        for m in messages:
            try:
                msg = json.loads(m)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("id") == rid:
                return msg
        raise AssertionError(f"no response to {method}: {r.text[:300]}")

    def call_api(self, method, url, body=None):
        args = {"method": method, "url": url}
        if body is not None:
            args["body"] = body
        return self.rpc("tools/call", {"name": "call_api", "arguments": args})["result"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--cli", help="keycard-broker binary: also check that CLI admin commands reach the running app")
    ap.add_argument("--driver", default=shutil.which("tauri-driver") or str(Path.home() / ".cargo/bin/tauri-driver"))
    args = ap.parse_args()
    shots = Path(args.shots)
    shots.mkdir(parents=True, exist_ok=True)
    app_bin = str(Path(args.app).resolve())

    procs = []
    home = tempfile.mkdtemp(prefix="kb-ui-e2e-")
    try:
        zone, issuer = start(["node", "tests/zone/server.mjs", "--port", "0"], "ZONE_READY")
        procs.append(zone)
        upstream, fixture = start(["node", "tests/upstream/server.mjs", "--zone", issuer, "--port", "0"], "UPSTREAM_READY")
        procs.append(upstream)
        resource = fixture + "/api"
        port = free_port()
        log("zone", issuer, "fixture", resource, "broker port", port, "home", home)

        env = dict(os.environ, KEYCARD_BROKER_HOME=home, KEYCARD_BROKER_PORT=str(port), KEYCARD_BROKER_NO_BROWSER="1")
        env.pop("KEYCARD_ZONE", None)
        wd_port, native_port = free_port(), free_port()
        driver_proc = subprocess.Popen(
            [args.driver, "--port", str(wd_port), "--native-port", str(native_port)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(shots / "tauri-driver.log", "w"),
        )
        procs.append(driver_proc)
        wait_for("tauri-driver", lambda: socket.create_connection(("127.0.0.1", wd_port), timeout=1).close() or True)

        options = ArgOptions()
        options.set_capability("browserName", "wry")
        options.set_capability("tauri:options", {"application": app_bin})
        d = webdriver.Remote(command_executor=f"http://127.0.0.1:{wd_port}", options=options)
        try:
            run(App(d, shots), issuer, fixture, resource, port)
            if args.cli:
                cli_reaches_app(App(d, shots), args.cli, env)
            check_logs(Path(home) / "logs", issuer)
            # Late: it takes the WebView away from the app to the broker's own page.
            consent_page(App(d, shots), port, resource, args.cli, env)
            # Last: it destroys the window WebDriver drives.
            close_and_reopen(app_bin, driver_proc.pid, Path(home) / "logs", port, env)
        except BaseException:
            try:
                d.save_screenshot(str(shots / "failure.png"))
                (shots / "failure.txt").write_text(d.find_element(By.CSS_SELECTOR, "body").text)
            except WebDriverException:
                pass
            raise
        finally:
            d.quit()
        print(json.dumps({"ok": True, "screenshots": sorted(p.name for p in shots.glob("*.png"))}))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(home, ignore_errors=True)


def consent_page(app, port, resource, cli, env):
    """The page an agent's sign-in opens in the user's browser (here the app's WebView renders it):
    the agent's own name escaped, marked unverified, every connected provider at "No access"."""
    if cli:
        # The run above revoked the fixture: connect it again (through the app, by the CLI),
        # so the page has a provider to offer.
        proc = subprocess.Popen([cli, "connect", resource, "--no-browser"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = proc.stdout.readline().strip()
        assert url.startswith("http"), (url, proc.stderr.read() if proc.poll() is not None else "")
        with requests.Session() as browser:
            browser.get(url, timeout=TIMEOUT, allow_redirects=True)
        assert proc.wait(TIMEOUT) == 0, proc.stderr.read()
    import base64
    import hashlib
    import secrets
    from urllib.parse import urlencode

    base = f"http://127.0.0.1:{port}"
    redirect = "http://127.0.0.1:53682/callback"
    reg = requests.post(f"{base}/oauth/register", timeout=TIMEOUT,
                        json={"client_name": "Claude Code <b>e2e</b>", "redirect_uris": [redirect]})
    assert reg.status_code == 201, reg.text
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": reg.json()["client_id"], "redirect_uri": redirect,
                       "state": "e2e", "code_challenge": challenge, "code_challenge_method": "S256",
                       "resource": f"{base}/mcp"})
    app.d.get(f"{base}/oauth/authorize?{query}")
    wait_for("the consent page", lambda: "Allow Claude Code" in app.text())
    text = app.text()
    assert "Claude Code <b>e2e</b>" in text and "Unverified" in text, text
    if cli:
        selects = app.finds("select")
        assert selects and all(Select(s).first_selected_option.get_attribute("value") == "none" for s in selects), text
        assert resource in text, text
    # No scripted scroll here: the page's CSP allows no script, and it needs none.
    path = app.shots / "8-consent-page.png"
    app.d.save_screenshot(str(path))
    log("screenshot", path)


def children(pid):
    """Every descendant process of `pid` (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def exe_name(pid):
    try:
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
    except OSError:
        return None


def webkit_children(app_pid):
    """{pid: name} of the app's WebKit processes, zombies excluded."""
    out = {}
    for p in children(app_pid):
        name = exe_name(p)
        if name and name.startswith("WebKit"):
            out[p] = name
    return out


def shown_lines(log_dir):
    return "".join(f.read_text(errors="replace") for f in sorted(log_dir.glob("broker.log*"))).count("window shown")


def close_and_reopen(app_bin, driver_pid, log_dir, port, env):
    """Closing the window destroys it: its WebKit web process ends while the app (and the broker
    in it) keeps serving; a second launch, like the tray's Open, builds a new window that renders
    and reports back. A window that were merely hidden keeps its web process and fails here."""
    app_pid = next(p for p in children(driver_pid) if exe_name(p) == Path(app_bin).name)
    before = webkit_children(app_pid)
    web = {p for p, n in before.items() if n == "WebKitWebProcess"}
    assert web, f"no WebKitWebProcess under the app ({before})"
    shown = shown_lines(log_dir)
    xwindow = [sys.executable, str(ROOT / "ui/e2e/xwindow.py")]

    def on_display():
        out = subprocess.run(xwindow + ["count", "Keycard Broker"], capture_output=True, text=True, timeout=TIMEOUT)
        return int(out.stdout.strip())

    # Sent again while the window is still there: GTK busy with a just-built window can miss one.
    for _ in range(10):
        subprocess.run(xwindow + ["close", "Keycard Broker"], check=True, timeout=TIMEOUT)
        try:
            wait_for("the window to leave the display", lambda: on_display() == 0, timeout=1)
            break
        except AssertionError:
            continue
    assert on_display() == 0, "the window ignored ten close messages"
    wait_for("the window's web process to end", lambda: not (web & set(webkit_children(app_pid))))
    left = webkit_children(app_pid)
    assert "WebKitWebProcess" not in left.values(), left
    # The broker in the app still serves: the MCP endpoint answers (401 without a token).
    r = requests.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=TIMEOUT)
    assert r.status_code == 401, r.status_code
    log("window closed: web process", sorted(web), "ended; left:", left)

    second = subprocess.run([app_bin], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert second.returncode == 0, second.stderr[-2000:]
    assert exe_name(app_pid) == Path(app_bin).name, "the first instance went away"
    wait_for("a new web process", lambda: "WebKitWebProcess" in webkit_children(app_pid).values())
    wait_for("the new window's page to render and report", lambda: shown_lines(log_dir) > shown, timeout=60)
    new = {p for p, n in webkit_children(app_pid).items() if n == "WebKitWebProcess"}
    assert not (new & web), (new, web)
    log("second launch built a new window (web process", sorted(new), ") that rendered")


def check_logs(log_dir, issuer):
    """The app writes daily log files like the CLI, where Settings says, and no issued token."""
    files = sorted(log_dir.glob("broker.log*"))
    assert files, f"no log file in {log_dir}"
    text = "".join(f.read_text(errors="replace") for f in files)
    assert "listening" in text, text[-2000:]
    issued = requests.get(f"{issuer}/__control/issued", timeout=TIMEOUT).json()["tokens"]
    leaked = [t for t in issued if t in text]
    assert not leaked, f"{len(leaked)} issued secrets in the app's log"
    log("log files", [f.name for f in files], "no issued secret in them")


def run(app, issuer, fixture, resource, port):
    # First run: empty home, so the zone form shows.
    wait_for("the first-run form", lambda: app.finds("#zone"))
    app.click("#use-demo")
    assert app.find("#zone").get_attribute("value") == "http://127.0.0.1:8940"
    app.shot("1-first-run")
    z = app.find("#zone")
    z.clear()
    z.send_keys(issuer)
    app.click("#sign-in")
    app.follow_auth_url()
    wait_for("signed in", lambda: app.finds("#tab-connections"))
    assert "demo@keycard.test" in app.find("[data-testid=account]").text, app.find("[data-testid=account]").text

    # Connect the fixture as a custom resource.
    app.click("button[aria-controls=add-resource]")
    app.find("#resource-url").send_keys(resource)
    app.find("#resource-name").send_keys("Fixture API")
    app.find("#resource-scopes").send_keys("read write")
    app.click("#resource-add")
    wait_for("the custom resource row", lambda: app.finds(f'li[data-resource="{resource}"]'))
    app.row(resource).find_element(By.CSS_SELECTOR, "button[data-action=connect]").click()
    app.follow_auth_url()
    app.wait_status(resource, "connected")
    assert "Connected" in app.row(resource).text
    app.shot("2-connections")

    # An agent client and a call through the MCP endpoint.
    app.tab("clients")
    assert "No agent clients yet" in app.text()
    app.click("#add-client")
    app.click("input[value=cursor]")
    name = app.find("#client-name")
    name.clear()
    name.send_keys("e2e-agent")
    app.click("#client-static")
    Select(app.find("#client-access")).select_by_value("write")
    app.click("#client-snippet")
    token = wait_for("the client token", lambda: app.finds("#client-token") and app.find("#client-token").get_attribute("value"))
    app.shot("3-clients")
    mcp = Mcp(f"http://127.0.0.1:{port}/mcp", token)
    result = mcp.call_api("GET", f"{fixture}/api/items")
    assert not result.get("isError"), result

    app.tab("activity")
    wait_for("the call in Activity", lambda: "e2e-agent" in app.find("[data-testid=activity-table]").text)
    assert "/api/items" in app.find("[data-testid=activity-table]").text
    app.shot("4-activity")
    # Export: the engine writes the file (Downloads folder) and the window says where.
    app.click("#export-csv")
    wait_for("the export", lambda: app.finds("[data-testid=export-result]"))
    saved = app.find("[data-testid=export-result]").text
    m = re.match(r"Saved (\d+) records to (.+\.csv)$", saved.strip())
    assert m and int(m.group(1)) >= 1, saved
    with open(m.group(2), encoding="utf-8") as f:
        csv_text = f.read()
    os.remove(m.group(2))
    assert csv_text.startswith("at,client,kind,resource,"), csv_text[:200]
    assert "e2e-agent" in csv_text and "/api/items" in csv_text, csv_text

    # The zone narrows the grant below what the consent asks for (read write): needs reconnect.
    requests.post(f"{issuer}/__control/narrow", json={"resource": resource, "scopes": ["read"]}, timeout=TIMEOUT).raise_for_status()
    requests.post(f"{fixture}/__control/reject-next", json={"count": 1}, timeout=TIMEOUT).raise_for_status()
    result = mcp.call_api("POST", f"{fixture}/api/items", body=json.dumps({"name": "x"}))
    assert result.get("isError"), result
    app.tab("connections")
    app.wait_status(resource, "needs_reconnect")
    assert "Needs reconnect" in app.row(resource).text
    wait_for("the tab badge", lambda: app.finds("#tab-connections .count"))
    app.shot("5-needs-reconnect")
    app.row(resource).find_element(By.CSS_SELECTOR, "button[data-action=reconnect]").click()
    app.follow_auth_url()
    app.wait_status(resource, "connected")
    result = mcp.call_api("POST", f"{fixture}/api/items", body=json.dumps({"name": "y"}))
    assert not result.get("isError"), result

    # The user narrows the agent to "ask me before writes": its next write waits in Requests
    # until the user clicks Allow once in the window.
    app.tab("clients")
    app.find("[data-testid=client-e2e-agent] button[data-action=edit-access]").click()
    wait_for("the access editor", lambda: app.finds("form.access select"))
    Select(app.find("form.access select")).select_by_value("ask")
    app.click("form.access button[type=submit]")
    wait_for("the new access", lambda: "ask me" in app.find("[data-testid=access-e2e-agent]").text.lower())
    box = {}
    writer = threading.Thread(target=lambda: box.update(result=mcp.call_api("POST", f"{fixture}/api/items", body=json.dumps({"name": "asked"}))))
    writer.start()
    app.tab("requests")
    wait_for("the waiting request", lambda: app.finds("[data-testid^=request-]"))
    request = app.find("[data-testid^=request-]")
    assert "e2e-agent" in request.text and "POST" in request.text and "asked" in request.text, request.text
    app.shot("6a-request-waiting")
    request.find_element(By.CSS_SELECTOR, "button[data-action=allow-once]").click()
    writer.join(TIMEOUT)
    assert "result" in box and not box["result"].get("isError"), box
    wait_for("the request to leave", lambda: app.finds("[data-testid=no-requests]"))
    app.tab("connections")

    # Revoke, through the confirm dialog.
    app.row(resource).find_element(By.CSS_SELECTOR, "button[data-action=revoke]").click()
    wait_for("the confirm dialog", lambda: app.finds("[role=alertdialog]"))
    dialog = app.find("[role=alertdialog]").text
    assert "Keycard console" in dialog and "forgets" in dialog, dialog
    app.shot("6-revoke-confirm")
    app.click("#confirm-ok")
    app.wait_status(resource, "revoked")

    app.tab("settings")
    assert issuer in app.find("[data-testid=settings-zone]").text
    assert app.find("[data-testid=settings-keychain]").text.strip() != "unavailable"
    app.shot("7-settings")


def cli_reaches_app(app, cli, env):
    """The CLI's admin commands go to the running app (control socket); the window updates at once."""
    app.tab("clients")
    out = subprocess.run([cli, "clients", "add", "cli-agent"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    wait_for("the CLI's client in the window", lambda: app.finds("[data-testid=client-cli-agent]"))
    out = subprocess.run([cli, "status", "--json"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and json.loads(out.stdout)["session"] == "signed_in", out.stdout + out.stderr
    log("CLI admin commands reach the running app")
    # Pause from the CLI: the window shows it (the engine's pause_changed event) with the same
    # state the tray icon is drawn from, and its Resume button resumes for everyone.
    out = subprocess.run([cli, "pause", "--json"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["overall"]["state"] == "paused", out.stdout
    wait_for("the paused banner", lambda: app.finds("[data-testid=paused]"))
    app.click("#resume")
    wait_for("the banner gone after Resume", lambda: not app.finds("[data-testid=paused]"))
    out = subprocess.run([cli, "status", "--json"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert json.loads(out.stdout)["paused"] is False, out.stdout
    log("pause from the CLI shows in the window; Resume in the window resumes")


if __name__ == "__main__":
    main()
