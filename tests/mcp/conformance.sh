#!/usr/bin/env bash
# Runs the MCP conformance suite's server scenarios against `keycard-broker serve`.
#
#   tests/mcp/conformance.sh URL TOKEN
#
# The suite sends no Authorization header, so it talks to proxy.mjs, which adds the bearer token
# and maps its own host:port to the endpoint's in Host/Origin (DNS-rebinding probes with a foreign
# Host/Origin still arrive foreign). Three runs, each with an expected-failures baseline of exactly
# the scenarios/checks that need the suite's fixture tools/resources/prompts:
#   1. @modelcontextprotocol/conformance 0.1.16, active suite      (conformance-baseline.yml)
#   2. 0.2.0-alpha.12 --requirements 2025-11-25                     (conformance-baseline-next.yml)
#   3. 0.2.0-alpha.12 --requirements 2026-07-28 (stateless, header validation, wire schema)
# Exits 0 exactly when every run has nothing unexpected: no failure outside the baseline and no
# stale baseline entry. Results (checks.json per scenario) go to $CONFORMANCE_OUT or a temp dir.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 URL TOKEN" >&2; exit 2; }
url="$1" token="$2"
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../scripts/lib.sh"
npm_ci "$here"
export PATH="$here/node_modules/.bin:$PATH"   # Node 22 (npm `node`): the suite needs >= 22.19
out="${CONFORMANCE_OUT:-$(mktemp -d)}"; mkdir -p "$out"

node "$here/proxy.mjs" --target "$url" --token "$token" > "$out/proxy.out" 2> "$out/proxy.err" &
proxy_pid=$!
trap 'kill "$proxy_pid" 2>/dev/null || true' EXIT
wait_for_line "$proxy_pid" "$out/proxy.out" PROXY_READY "$out/proxy.err" 30
proxy_url="$(sed -n 's/^PROXY_READY //p' "$out/proxy.out")"

stable="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
next="$here/node_modules/conformance-next/dist/index.js"
status=0
run() { # label, then suite arguments
  local label="$1"; shift
  echo "=== conformance $label (log: $out/$label.log)"
  if "$@" --url "$proxy_url" -o "$out/$label" > "$out/$label.log" 2>&1; then
    echo "PASS  $label"
  else
    status=1; echo "FAIL  $label"
  fi
  sed -n '/^=== SUMMARY/,$p' "$out/$label.log" | sed 's/\x1b\[[0-9;]*m//g'
}
run 0.1.16 node "$stable" server --expected-failures "$here/conformance-baseline.yml"
for rev in 2025-11-25 2026-07-28; do
  run "next-$rev" node "$next" server --requirements "$rev" --expected-failures "$here/conformance-baseline-next.yml"
done
echo "results: $out"
exit "$status"
