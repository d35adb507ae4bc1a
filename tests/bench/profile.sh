#!/usr/bin/env bash
# Profiles `keycard-broker serve` (release) under `call_api` load: a flamegraph of where the
# broker's CPU goes and the system calls it makes per call. How the hot-path findings in README
# were made; not part of the test run.
#
#   tests/bench/profile.sh [concurrency=1] [seconds=5]
#
# Writes ${CARGO_TARGET_DIR:-target}/bench/{flamegraph.svg,perf-report.txt,syscalls.txt}. Needs
# perf (Debian linux-perf), strace, and inferno (cargo install inferno --version 0.12.3 --locked);
# missing ones are installed. Software sampling (cpu-clock) works where hardware counters do not.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${KEYCARD_BENCH_IN_KEYRING:-}" ]; then
  export KEYCARD_BENCH_IN_KEYRING=1
  exec "$root/scripts/with-keyring" "$0" "$@"
fi
cd "$root"
source tests/bench/common.sh
conc="${1:-1}"
secs="${2:-5}"
out="$target/bench"

need_apt=()
command -v perf >/dev/null || need_apt+=(linux-perf)
command -v strace >/dev/null || need_apt+=(strace)
apt_install "${need_apt[@]}"
command -v inferno-flamegraph >/dev/null || cargo install inferno --version 0.12.3 --locked >&2

bench_build
bench_stack
load() { "$target/release/keycard-bench" load "$MCP_URL" "$MCP_TOKEN" "$FIXTURE/items" "$conc" "$1"; }

load 2 >/dev/null # warm: session, exchange, connections
echo "profile: perf record of the broker, concurrency $conc, $secs s …" >&2
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$serve_pid" -o "$out/perf.data" \
  -- sleep "$secs" 2>/dev/null &
perf_pid=$!
under_perf="$(load "$secs")"
wait "$perf_pid" || true
perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph \
  --title "keycard-broker serve, call_api at concurrency $conc" > "$out/flamegraph.svg"
perf report -i "$out/perf.data" --no-children --sort sym --stdio 2>/dev/null \
  | grep -v '^#' | grep '%' | head -60 > "$out/perf-report.txt" || true

echo "profile: strace -c of the broker, same load …" >&2
strace -c -f -p "$serve_pid" -o "$out/strace.raw" &
strace_pid=$!
sleep 0.5
under_strace="$(load "$secs")"
kill -INT "$strace_pid"
wait "$strace_pid" 2>/dev/null || true
calls="$(printf '%s\n' "$under_strace" | awk '{print $2}')"
{
  echo "load under strace: $under_strace"
  echo "system calls per call_api (all broker threads):"
  awk -v n="$calls" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ { printf "  %-16s %6.2f\n", $NF, $4 / n }' "$out/strace.raw" \
    | sort -k2 -nr | head -12 || true
} > "$out/syscalls.txt"

echo "load under perf: $under_perf"
cat "$out/syscalls.txt"
echo "top of the profile (self time):"
head -25 "$out/perf-report.txt" || true
echo "profile: wrote $out/flamegraph.svg, $out/perf-report.txt, $out/syscalls.txt" >&2
