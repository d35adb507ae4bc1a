# Sourced by tests/bench/run.sh and profile.sh (after `cd` to the repository root, inside
# scripts/with-keyring): builds the release binaries and stands up zone emulator + upstream
# fixture + `keycard-broker serve` (tests/mcp/stack.sh), killed on exit. Sets target,
# zone_pid, up_pid, serve_pid, the stack's variables (MCP_URL, MCP_TOKEN, FIXTURE, ZONE,
# KEYCARD_BROKER_HOME) and `pids` (append more to have them killed too). Sources scripts/lib.sh.
source scripts/lib.sh
target="$KCB_TARGET"
mkdir -p "$target/bench"

bench_build() {
  echo "bench: building release binaries (keycard-broker, keycard-bench) …" >&2
  cargo build --release -p keycard-broker-cli -p keycard-bench >&2
  npm_ci tests/zone
  npm_ci tests/mcp
}

# The tray app, release build as `tauri build` makes it (the page embedded, custom protocol),
# with what building and running it under Xvfb needs.
bench_build_tray() {
  echo "bench: building the release tray app (keycard-broker-app) …" >&2
  scripts/test-ui --install-only >&2
  npm --prefix ui run build >&2
  cargo build --release -p keycard-broker-app --features tauri/custom-protocol >&2
}

bench_stack() {
  export KEYCARD_BROKER_BIN="${KEYCARD_BROKER_BIN:-$target/release/keycard-broker}"
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
  echo "bench: standing up zone emulator + upstream fixture + keycard-broker serve (tests/mcp/stack.sh) …" >&2
  eval "$(tests/mcp/stack.sh)"
  read -r zone_pid up_pid serve_pid <<<"$STACK_PIDS"
  pids+=("$zone_pid" "$up_pid" "$serve_pid")
}
