#!/usr/bin/env bash
# Stands up a whole local stack for manual and scripted MCP checks: zone emulator, upstream
# fixture, `keycard-broker serve` in a temp home, signed in, fixture connected, one client.
# Prints shell assignments (eval them): MCP_URL, MCP_TOKEN, FIXTURE, KEYCARD_BROKER_HOME, PIDS.
# CIMD_CA=PATH (optional): `serve` trusts the CA in that PEM file, besides the system's, for the
# client metadata documents it fetches (KEYCARD_BROKER_CIMD_CA; read at each fetch, so the file
# may be written later — cimd_check.py does).
# Needs a Secret Service: run under scripts/with-keyring. A component that dies or hangs while
# starting fails it at once with the end of stack.log, and what it started is stopped.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/scripts/lib.sh"
bin="${KEYCARD_BROKER_BIN:-$KCB_TARGET/debug/keycard-broker}"
home="$(mktemp -d)"; export KEYCARD_BROKER_HOME="$home" KEYCARD_BROKER_NO_BROWSER=1
log="$home/stack.log"
started=()
trap '[ $? -eq 0 ] || kill "${started[@]}" 2>/dev/null || true' EXIT

node "$root/tests/zone/server.mjs" --port 0 > "$home/zone.out" 2>>"$log" &
zone_pid=$!; started+=("$zone_pid")
wait_for_line "$zone_pid" "$home/zone.out" ZONE_READY "$log"
issuer="$(sed -n 's/^ZONE_READY //p' "$home/zone.out")"
node "$root/tests/upstream/server.mjs" --zone "$issuer" --port 0 > "$home/up.out" 2>>"$log" &
up_pid=$!; started+=("$up_pid")
wait_for_line "$up_pid" "$home/up.out" UPSTREAM_READY "$log"
fixture="$(sed -n 's/^UPSTREAM_READY //p' "$home/up.out")/api"
port="$(free_port)"

"$bin" init --zone "$issuer" --port "$port" >>"$log" 2>&1
# Writes a policy marks "ask" give up after APPROVAL_TIMEOUT seconds here (120 by default), so
# oauth_check.py can see the timeout without waiting two minutes.
python3 - "$home/config.toml" "${APPROVAL_TIMEOUT:-8}" <<'PY'
import re, sys
path, secs = sys.argv[1], sys.argv[2]
text = open(path).read()
if re.search(r"^approval_timeout_secs *=", text, re.M):
    text = re.sub(r"^approval_timeout_secs *=.*$", f"approval_timeout_secs = {secs}", text, count=1, flags=re.M)
elif re.search(r"^\[broker\]", text, re.M):
    text = re.sub(r"^\[broker\]\n", f"[broker]\napproval_timeout_secs = {secs}\n", text, count=1, flags=re.M)
else:
    text += f"\n[broker]\napproval_timeout_secs = {secs}\n"
open(path, "w").write(text)
PY
serve_env=()
[ -z "${CIMD_CA:-}" ] || serve_env=(KEYCARD_BROKER_CIMD_CA="$CIMD_CA")
env "${serve_env[@]}" "$bin" serve >"$home/serve.out" 2>>"$log" &
serve_pid=$!; started+=("$serve_pid")
wait_for_line "$serve_pid" "$home/serve.out" "serving MCP" "$log"

# A browser stand-in: curl follows the zone's redirects (cookie jar) to the broker's callback.
round() {
  rm -f "$home/round.out"
  "$bin" "$@" --no-browser > "$home/round.out" 2>>"$log" &
  local pid=$!
  wait_until "$pid" "$log" 60 test -s "$home/round.out"
  curl -s -L -c "$home/jar" -b "$home/jar" "$(head -1 "$home/round.out")" >/dev/null
  wait "$pid"
}
round login
"$bin" resources add "$fixture" --name "Fixture API" --scopes "read write" >>"$log" 2>&1
round connect "$fixture"
token="$("$bin" clients add stack-client --access write --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

cat <<OUT
export MCP_URL='http://127.0.0.1:$port/mcp' MCP_TOKEN='$token' FIXTURE='$fixture' ZONE='$issuer' KEYCARD_BROKER_HOME='$home' STACK_PIDS='$zone_pid $up_pid $serve_pid' APPROVAL_TIMEOUT='${APPROVAL_TIMEOUT:-8}'
OUT
