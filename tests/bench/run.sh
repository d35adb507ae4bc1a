#!/usr/bin/env bash
# Benchmark: Direct vs Keycard Broker (`call_api` through `keycard-broker serve`, release build)
# vs the Keycard reference server (Python MCP server + keycardai-mcp's grant decorator), on this
# machine, in one run, against one zone emulator and one upstream fixture; then the broker's CPU
# per call for an OAuth agent under a ten-rule policy.cedar vs the static client.
#
#   tests/bench/run.sh
#
# Then the tray app (release) under Xvfb on the same home: PSS with the window open and closed,
# open time, launch → serving, idle wake-ups.
#
# Prints a markdown table and writes ${CARGO_TARGET_DIR:-target}/bench/{results.md,chart.svg,
# tray.svg,results.json}.
# Knobs (environment): BENCH_SECS (measured seconds per cell, default 8), BENCH_WARMUP (1),
# BENCH_READY_TRIALS (5), BENCH_LIFETIME_SECS (16), BENCH_POLICY_ROUNDS (12; 0 skips the OAuth and
# policy cells), BENCH_POLICY_SECS (4), BENCH_POLICY_CALLS (200000), BENCH_TRAY (1; 0 skips the
# tray app), BENCH_TRAY_CYCLES (5 close/open cycles), BENCH_TRAY_IDLE_SECS (10). The whole run takes
# about 10 minutes after the builds. Needs what scripts/bootstrap installs (node, gnome-keyring,
# dbus) and PyPI access for the reference server's pinned packages (tests/bench/requirements.txt).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${KEYCARD_BENCH_IN_KEYRING:-}" ]; then
  export KEYCARD_BENCH_IN_KEYRING=1
  exec "$root/scripts/with-keyring" "$0" "$@"
fi
cd "$root"
source tests/bench/common.sh
out="${BENCH_OUT:-$target/bench}"
mkdir -p "$out"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
bench_build
tray=()
if [ "${BENCH_TRAY:-1}" != 0 ]; then
  bench_build_tray
  # The tray app runs under its own Xvfb for the whole keycard-bench run (its figures come last).
  tray=(xvfb-run -a -s "-screen 0 1280x800x24")
  export KEYCARD_TRAY_APP="$target/release/keycard-broker-app"
fi

venv="$target/bench/venv"
python_venv "$venv" tests/bench/requirements.txt

bench_stack

ref_port="$(free_port)"
"$venv/bin/python" tests/bench/reference_server.py --zone "$ZONE" --resource "$FIXTURE" --port "$ref_port" \
  > "$KEYCARD_BROKER_HOME/reference.out" 2> "$KEYCARD_BROKER_HOME/reference.log" &
ref_pid=$!
pids+=("$ref_pid")
wait_for_line "$ref_pid" "$KEYCARD_BROKER_HOME/reference.out" REFERENCE_READY \
  "$KEYCARD_BROKER_HOME/reference.log" 30
ref_url="$(sed -n 's/^REFERENCE_READY //p' "$KEYCARD_BROKER_HOME/reference.out")"

cores="$(nproc)"
export BENCH_MACHINE="$(uname -m), $cores cores shared with other work on this machine (load average before the run: $load_before), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
export BENCH_REFERENCE_NOTE="Deviation forced by the emulator: its access tokens are opaque, so the reference server's inbound JWT check (the SDK's TokenVerifier) is replaced by a pass-through; that only removes work from the reference. The outbound side (grant decorator, DCR, discovery, exchange through keycardai-oauth's AsyncClient) is the SDK's own code, pointed at the emulator with AuthProvider(zone_url=…)."
export BENCH_PYTHON="$venv/bin/python"
export BENCH_OUT="$out" REF_URL="$ref_url" REF_PID="$ref_pid" BROKER_PID="$serve_pid" \
  ZONE_PID="$zone_pid" UPSTREAM_PID="$up_pid" MCP_URL MCP_TOKEN FIXTURE ZONE KEYCARD_BROKER_HOME
"${tray[@]}" "$target/release/keycard-bench"
echo "bench: logs in $KEYCARD_BROKER_HOME (stack.log, serve.out, reference.log)" >&2
