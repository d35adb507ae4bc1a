#!/usr/bin/env bash
# Runs every real-MCP-client check in tests/mcp against a fresh local stack (stack.sh: zone
# emulator, upstream fixture, `keycard-broker serve`, signed in, fixture connected) inside a
# private keyring (scripts/with-keyring). Build first: cargo build -p keycard-broker-cli.
#
#   tests/mcp/run.sh
#
# Installs tests/mcp/.venv (pip -r requirements.txt) and tests/mcp/node_modules (npm ci) when
# missing. Runs all checks even after a failure; exits 1 if any failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ "${1:-}" = --in-keyring ] || exec "$root/scripts/with-keyring" "$0" --in-keyring
cd "$root"
source scripts/lib.sh

python_venv "$here/.venv" "$here/requirements.txt"
npm_ci "$here"
py="$here/.venv/bin/python"
bin="${KEYCARD_BROKER_BIN:-$KCB_TARGET/debug/keycard-broker}"

# The broker trusts a throwaway CA for client metadata documents; cimd_check.py creates it in
# this file (the broker reads it at each fetch), so nothing else on the machine trusts it.
cimd_dir="$(mktemp -d)"
export CIMD_CA="$cimd_dir/ca.pem"
eval "$("$here/stack.sh")"
trap 'kill $STACK_PIDS 2>/dev/null || true; rm -rf "$cimd_dir"' EXIT

failed=()
step() { # name, then command
  local name="$1"; shift
  echo "### $name"
  "$@" || failed+=("$name")
}
desktop_config="$(mktemp -d)/claude_desktop_config.json"
"$bin" clients config claude-desktop stdio-check --access write --write --file "$desktop_config" >/dev/null

step client-legacy "$py" "$here/client_check.py" --url "$MCP_URL" --token "$MCP_TOKEN" --fixture "$FIXTURE" --zone "$ZONE" --mode legacy
step client-auto "$py" "$here/client_check.py" --url "$MCP_URL" --token "$MCP_TOKEN" --fixture "$FIXTURE" --zone "$ZONE" --mode auto
step oauth "$py" "$here/oauth_check.py" --url "$MCP_URL" --fixture "$FIXTURE" --bin "$bin" --approval-timeout "$APPROVAL_TIMEOUT"
step cimd "$py" "$here/cimd_check.py" --url "$MCP_URL" --fixture "$FIXTURE" --bin "$bin" --ca "$CIMD_CA"
step stdio "$py" "$here/stdio_check.py" --bin "$bin" --client stdio-check --fixture "$FIXTURE"
step inspector "$here/inspector_check.sh" "$MCP_URL" "$MCP_TOKEN" "$FIXTURE"
step conformance "$here/conformance.sh" "$MCP_URL" "$MCP_TOKEN"

if [ ${#failed[@]} -gt 0 ]; then echo "FAILED: ${failed[*]}"; exit 1; fi
echo "ALL MCP CLIENT CHECKS PASSED"
