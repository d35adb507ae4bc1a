#!/usr/bin/env bash
# Drives `keycard-broker serve` with the MCP Inspector CLI (npm @modelcontextprotocol/inspector,
# pinned in tests/mcp/package.json), in both protocol eras (legacy = 2025-11-25, modern = 2026-07-28):
# tools/list must list exactly call_api, connect, list_connections (call_api requiring method, url);
# tools/call call_api GET FIXTURE/items must answer status 200 with the fixture's two items.
#
#   tests/mcp/inspector_check.sh URL TOKEN FIXTURE
#
# Installs tests/mcp/node_modules (npm ci) when missing. Prints one JSON line per check.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 URL TOKEN FIXTURE" >&2; exit 2; }
url="$1" token="$2" fixture="${3%/}"
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../scripts/lib.sh"
npm_ci "$here"
export PATH="$here/node_modules/.bin:$PATH"   # Node 22 from npm `node`, then the inspector

inspect() { # era, then inspector arguments; the JSON result on stdout
  local era="$1"; shift
  mcp-inspector --cli "$url" --transport http --protocol-era "$era" --header "Authorization: Bearer $token" \
    --format json --quiet "$@"
}

for era in legacy modern; do
  inspect "$era" --method tools/list | python3 -c '
import json, sys
era, tools = sys.argv[1], json.load(sys.stdin)["result"]["tools"]
names = sorted(t["name"] for t in tools)
assert names == ["call_api", "connect", "list_connections"], f"tools/list ({era}): {names}"
call_api = next(t for t in tools if t["name"] == "call_api")
assert {"method", "url"} <= set(call_api["inputSchema"].get("required", [])), f"call_api schema: {call_api}"
print(json.dumps({"check": "inspector tools/list", "era": era, "ok": True, "tools": names}))
' "$era"

  inspect "$era" --method tools/call --tool-name call_api --tool-arg method=GET "url=$fixture/items" | python3 -c '
import json, sys
era, result = sys.argv[1], json.load(sys.stdin)["result"]
assert not result.get("isError"), f"call_api ({era}) failed: {result}"
sc = result["structuredContent"]
assert sc["status"] == 200 and isinstance(sc["body"], list) and len(sc["body"]) == 2, f"GET items ({era}): {sc}"
print(json.dumps({"check": "inspector tools/call call_api GET items", "era": era, "ok": True, "status": sc["status"]}))
' "$era"
done
