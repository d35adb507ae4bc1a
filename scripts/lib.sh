# shellcheck shell=bash
# Shell pieces the scripts share (bash). Source it: `source "$root/scripts/lib.sh"`.
# Defines functions and two variables, nothing else; runs nothing.
#   KCB_ROOT    the repository root
#   KCB_TARGET  Cargo's target directory (CARGO_TARGET_DIR, else target/ in the root)
# Messages go to stderr, so scripts whose stdout is read (tests/mcp/stack.sh) can use all of it.

KCB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034  # for the scripts that source this file
KCB_TARGET="${CARGO_TARGET_DIR:-$KCB_ROOT/target}"

# apt_install PACKAGE… — installs the Debian/Ubuntu packages that are not installed yet
# (`apt-get update` first; sudo unless root). Elsewhere it says what to install and returns 0.
apt_install() {
  [ $# -gt 0 ] && [ "$(uname)" = "Linux" ] || return 0
  if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    echo "not a Debian/Ubuntu system: install the equivalents of: $*" >&2
    return 0
  fi
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing system packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# python_venv DIR REQUIREMENTS — a virtualenv in DIR with REQUIREMENTS (a pip requirements
# file) installed; pip runs again only when that file's content changes. PYTHON picks the
# interpreter (default: python3 on PATH).
python_venv() {
  local dir="$1" requirements="$2" want
  want="$({ sha256sum "$requirements" 2>/dev/null || shasum -a 256 "$requirements"; } | cut -d' ' -f1)"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  echo "Installing $requirements into $dir" >&2
  "${PYTHON:-python3}" -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  echo "$want" > "$dir/.requirements.sha256"
}

# npm_ci DIR — installs DIR's node packages from its lockfile (npm ci) when node_modules is
# missing or older than package-lock.json. A node_modules that is a symbolic link (one install
# shared by several work trees) is left alone: npm ci would empty the directory it points to.
npm_ci() {
  local dir="$1"
  if [ -d "$dir/node_modules" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  if [ -L "$dir/node_modules" ]; then
    echo "$dir/node_modules is a link to a shared install; not reinstalling it (run npm ci where it points)" >&2
    return 0
  fi
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
}

# free_port — prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until PID LOG SECONDS COMMAND… — runs COMMAND (quietly) every 0.1 s until it succeeds.
# Fails at once when process PID has exited, and after SECONDS, printing the end of LOG to
# stderr (LOG `-`: the process writes to the terminal; nothing to print).
wait_until() {
  local pid="$1" log="$2" deadline=$((SECONDS + $3))
  shift 3
  until "$@" >/dev/null 2>&1; do
    local why=""
    if ! kill -0 "$pid" 2>/dev/null; then
      why="exited before it was ready"
    elif [ "$SECONDS" -ge "$deadline" ]; then
      why="was not ready in time"
    fi
    if [ -n "$why" ]; then
      echo "process $pid $why (waiting for: $*)" >&2
      if [ "$log" != "-" ]; then
        echo "--- last lines of $log:" >&2
        tail -n 40 "$log" >&2 2>/dev/null || true
      fi
      return 1
    fi
    sleep 0.1
  done
}

# wait_for_line PID FILE PATTERN LOG [SECONDS=60] — wait_until a line of FILE matches PATTERN.
wait_for_line() {
  wait_until "$1" "$4" "${5:-60}" grep -q "$3" "$2"
}
