#!/usr/bin/env bash
# Remote agents over a real sshd (issue 13): the laptop's broker serves a remote user through a
# forwarded agent socket, the way ssh-agent forwarding serves keys.
#
#   sudo tests/remote/run.sh      # root: it creates two local users and runs sshd on loopback
#
# One machine plays both ends. The "laptop" is this user (root) with the stack of
# tests/mcp/stack.sh (zone emulator, upstream fixture, `keycard-broker serve` in a temp home).
# The "remote" is the local user kbremote, reached by a real OpenSSH sshd on a free loopback port
# with key authentication; `ssh -R` (the `RemoteForward` that `keycard-broker remote ssh --write`
# puts in the ssh config, checked by `ssh -G` first) forwards the broker's agent socket to a path
# in kbremote's home. As kbremote, with a clean environment (no keychain, no broker home):
# remote_check.py drives the stock Python MCP client through the stdio bridge and the HTTP bridge
# (call_api answers 200), and the HTTP bridge's refusals. Then, as another local user (kbother):
# the remote-side socket refuses a connection by its file mode, and the laptop-side socket refuses
# one by peer credentials even with its modes opened up. A revoked client's token is refused on
# both bridges, and the activity log shows the remote client's calls as `via: socket`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ "$(id -u)" != 0 ]; then
  echo "tests/remote needs root (it creates the local users kbremote and kbother and runs sshd); run it with sudo" >&2
  exit 1
fi
[ "${1:-}" = --in-keyring ] || exec "$root/scripts/with-keyring" "$0" --in-keyring
cd "$root"
source scripts/lib.sh
bin="${KEYCARD_BROKER_BIN:-$KCB_TARGET/debug/keycard-broker}"
sshd=/usr/sbin/sshd
[ -x "$sshd" ] || { echo "no $sshd: scripts/bootstrap installs openssh-server" >&2; exit 1; }

fail() { echo "remote: FAILED: $*" >&2; exit 1; }
pass() { echo "remote: ok — $*"; }

for user in kbremote kbother; do
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
done
# No password at all rather than a locked one ("!"): sshd refuses locked accounts even for keys.
usermod -p '*' kbremote
remote_home="$(getent passwd kbremote | cut -d: -f6)"
chmod 711 "$remote_home"   # others may pass through; only the socket's own mode guards it

# What the remote user runs must be readable by it: the broker binary, the check and a venv of
# the stock MCP client on the distribution's Python (this user's may live under /root).
tools=/opt/keycard-broker-remote-test
mkdir -p "$tools"; chmod 755 "$tools"
install -m 755 "$bin" "$tools/keycard-broker"
install -m 644 "$here/remote_check.py" "$tools/remote_check.py"
PYTHON=/usr/bin/python3 python_venv "$tools/venv" "$root/tests/mcp/requirements.txt"
chmod -R a+rX "$tools"

# Not under /tmp: sshd (StrictModes) refuses key files below a world-writable folder.
work="$(mktemp -d "$tools/run.XXXXXX")"; chmod 755 "$work"
pids=()
cleanup() {
  kill "${pids[@]}" $STACK_PIDS 2>/dev/null || true
  rm -rf "$work"
}
STACK_PIDS=""
trap cleanup EXIT
eval "$("$root/tests/mcp/stack.sh")"
log="$KEYCARD_BROKER_HOME/stack.log"
sock="$("$bin" about --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["agent_socket"])')"
sock_dir="$(dirname "$sock")"

[ -S "$sock" ] || fail "serve did not create the agent socket $sock"
[ "$(stat -c %a "$sock")" = 600 ] || fail "agent socket mode $(stat -c %a "$sock"), want 600"
[ "$(stat -c %a "$sock_dir")" = 700 ] || fail "agent socket folder mode $(stat -c %a "$sock_dir"), want 700"
pass "agent socket $sock is 0600 in a 0700 folder"

# --- sshd on loopback, key authentication only, as a remote host would run it.
port="$(free_port)"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
mkdir -m 755 "$work/authorized_keys"
install -m 644 "$work/client_key.pub" "$work/authorized_keys/kbremote"
mkdir -p /run/sshd
cat > "$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys/%u
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers kbremote
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
LogLevel VERBOSE
EOF
"$sshd" -t -f "$work/sshd_config" || fail "sshd_config does not validate"
"$sshd" -D -f "$work/sshd_config" -E "$work/sshd.log" &
pids+=($!)
wait_until "${pids[-1]}" "$work/sshd.log" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"

# --- the laptop's ssh config: how to reach the host (the user's own lines), then what
# `keycard-broker remote ssh HOST --write` adds; `ssh -G` must read it back.
cat > "$work/ssh_config" <<EOF
Host kbtest
  HostName 127.0.0.1
  Port $port
  User kbremote
  IdentityFile $work/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
EOF
# The set-up command: its own client for the host, the RemoteForward block in the ssh config.
setup="$("$bin" remote ssh kbtest --file "$work/ssh_config" --json)"
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" <<<"$setup"; }
token="$(field token)"; remote_sock="$(field remote_socket)"
[ "$(field client)" = ssh-kbtest ] || fail "remote ssh made client $(field client)"
[ "$remote_sock" = "$remote_home/.keycard-broker-agent.sock" ] || fail "remote socket $remote_sock"
resolved="$(ssh -G -F "$work/ssh_config" kbtest)"
grep -qx "remoteforward $remote_sock $sock" <<<"$resolved" \
  || fail "ssh -G does not show the RemoteForward: $(grep -i remoteforward <<<"$resolved")"
grep -qx "user kbremote" <<<"$resolved" || fail "the user's own lines for kbtest were lost"
pass "remote ssh --write: ssh -G reads RemoteForward $remote_sock → $sock"

ssh -N -F "$work/ssh_config" -o ExitOnForwardFailure=yes kbtest 2>>"$work/ssh.log" &
pids+=($!)
wait_until "${pids[-1]}" "$work/ssh.log" 20 test -S "$remote_sock" || fail "no forwarded socket; sshd said: $(tail -5 "$work/sshd.log")"
pass "ssh -R forwards the agent socket to $remote_sock ($(stat -c '%U %a' "$remote_sock"))"

as_remote() { # a login-like clean environment: no D-Bus, no keychain, no broker home
  runuser -u kbremote -- env -i HOME="$remote_home" PATH=/usr/bin:/bin LANG=C.UTF-8 \
    KEYCARD_BROKER_TOKEN="$1" "${@:2}"
}
as_remote "$token" "$tools/venv/bin/python" "$tools/remote_check.py" --bin "$tools/keycard-broker" \
  --socket "$remote_sock" --fixture "$FIXTURE" || fail "the remote user's MCP client through the forwarded socket"
pass "stdio and HTTP bridges on the remote call call_api through the forwarded socket"

# --- another user on the remote host: the forwarded socket's file mode keeps it out (the
# home folder lets others pass through, so only the socket's own mode stands in the way).
out="$(runuser -u kbother -- /usr/bin/python3 -c \
  'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$remote_sock" 2>&1)" \
  && fail "kbother connected to the remote-side socket"
grep -q "Permission denied" <<<"$out" || fail "kbother's connect failed for another reason: $out"
pass "another remote user cannot open the forwarded socket (mode $(stat -c %a "$remote_sock"))"

# --- another user on the laptop, with the file modes opened up: peer credentials refuse it.
request='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
curl_mcp() { # curl over the agent socket; prints the HTTP status (000: no answer at all)
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$sock" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -d "$request" http://localhost/mcp || true
}
chmod 711 "$KEYCARD_BROKER_HOME" "$sock_dir"; chmod 666 "$sock"
other="$(runuser -u kbother -- bash -c "$(declare -f curl_mcp); sock='$sock' token='$token' request='$request'; curl_mcp")"
mine="$(curl_mcp)"
chmod 700 "$KEYCARD_BROKER_HOME" "$sock_dir"; chmod 600 "$sock"
[ "$other" = 000 ] || fail "another laptop user got HTTP $other from the agent socket"
[ "$mine" = 200 ] || fail "the socket's owner got HTTP $mine (want 200) with the same modes"
grep -q "refused a connection from another user" "$log" || fail "the refusal is not in the broker's log"
pass "another laptop user is refused by peer credentials (the owner, same modes: HTTP $mine)"

# --- a local agent on the loopback port, for the activity log's comparison.
python_venv "$root/tests/mcp/.venv" "$root/tests/mcp/requirements.txt"
"$root/tests/mcp/.venv/bin/python" "$root/tests/mcp/client_check.py" --url "$MCP_URL" --token "$MCP_TOKEN" \
  --fixture "$FIXTURE" --mode legacy --elicit skip >/dev/null || fail "the loopback client"

# --- the activity log says where the remote client's calls came from.
"$bin" audit --client ssh-kbtest --json | python3 -c '
import json, sys
records = [r for r in json.load(sys.stdin) if r["kind"] == "call_api"]
assert len(records) >= 2, f"want the stdio and HTTP bridge calls, got {records}"
assert all(r["via"] == "socket" for r in records), records
' || fail "activity records of ssh-kbtest"
"$bin" audit --client stack-client --json | python3 -c '
import json, sys
records = [r for r in json.load(sys.stdin) if r["kind"] == "call_api"]
assert records and all(r["via"] == "loopback" for r in records), records
' || fail "activity records of the loopback client"
pass "activity shows the remote client via socket, the local one via loopback"

# --- the user revokes the remote client on the laptop: both bridges are refused.
"$bin" clients remove ssh-kbtest >/dev/null
as_remote "$token" "$tools/venv/bin/python" "$tools/remote_check.py" --bin "$tools/keycard-broker" \
  --socket "$remote_sock" --fixture "$FIXTURE" --expect unauthorized || fail "revoked token"
pass "a removed client's token is refused through the forwarded socket"

if grep -rqF "$token" "$KEYCARD_BROKER_HOME" "$work/sshd.log" "$work/ssh.log"; then
  fail "the client token appears in a file the broker or ssh wrote"
fi
echo "ALL REMOTE CHECKS PASSED"
