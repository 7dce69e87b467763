# shellcheck shell=bash
# Shared by the end-to-end tests (tests/e2e/*.sh, root only): builds the release binaries
# with cargo (a no-op when they are up to date), sources lab/netns.sh and starts/stops the
# two-node cluster of the lab (vxlan overlay) under a prefix unique to this run, so several
# runs and other people's labs can coexist. Everything the run made is removed by a trap,
# also on failure.
#
#   source "$(dirname "$0")/lib.sh"
#   cluster_up                 # fabric, node1/node2, host ports, their static pods (a,c on
#                              # node1, b,d on node2: lab/topology.sh), podswitchd on both
#   check "name" cmd args...   # PASS/FAIL line, counts failures (lib/common.sh: results,
#   finish                     # build, control socket); finish: exit 1 if any check failed
#
# Environment: E2E_PREFIX (default pe<pid>), PODSWITCH_BIN (skip the build, use these
# binaries), E2E_IPV6=0 (switch IPv6 off in every namespace: no ND/MLD noise in counters),
# E2E_KEEP_LOGS=1 (keep the daemon logs).

set -uo pipefail

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "tests/e2e/lib.sh is sourced by the tests, not run"
  exit 0
fi
E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/e2e/lib/common.sh
source "$E2E_ROOT/tests/e2e/lib/common.sh"
need_root
cd "$E2E_ROOT" || exit 1
export PATH="$HOME/.cargo/bin:$PATH"
P=${E2E_PREFIX:-pe$$}
# Interface names built from the prefix ("$P-n1" in the fabric) must fit in 15 characters.
if [ ${#P} -gt 10 ]; then
  echo "FAIL  prefix $P is too long (interface names max 15 characters)"
  exit 1
fi
# shellcheck source=lab/netns.sh
source "$E2E_ROOT/lab/netns.sh" # and lab/topology.sh: every address below comes from there

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/$P-e2e.XXXXXX")
declare -a DPID=()

# ---------------------------------------------------------------------------------------
# Binaries and the control socket (build_release, sock, ctl: lib/common.sh)

nsx_t() {
  local ns=$1
  shift
  timeout 60 ip netns exec "$ns" "$@"
}

# raw_request SOCKET FILE: sends FILE's bytes as they are (no client-side validation) and
# prints the reply line. Reads while it sends, so a reply to an oversized request that
# the daemon cuts short is still seen.
raw_request() {
  timeout 60 python3 -c '
import socket, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
data = open(sys.argv[2], "rb").read()
def send():
    try:
        s.sendall(data)
    except OSError as e:
        sys.stderr.write("send stopped: %s\n" % e)
threading.Thread(target=send, daemon=True).start()
buf = b""
while b"\n" not in buf:
    try:
        chunk = s.recv(65536)
    except OSError as e:
        sys.stderr.write("recv: %s\n" % e)
        break
    if not chunk:
        break
    buf += chunk
sys.stdout.write(buf.decode("utf-8", "replace"))
sys.exit(0 if buf else 3)
' "$1" "$2"
}

# ctl_generation N: the table generation node N's daemon reports.
ctl_generation() {
  local f="$LOGDIR/version.req"
  printf '{"cmd":"version"}\n' >"$f"
  raw_request "$(sock "$1")" "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])'
}

# ---------------------------------------------------------------------------------------
# The cluster (the lab's two nodes, vxlan overlay)

cleanup() {
  local rc=$? n pid
  for n in "${!DPID[@]}"; do
    pid=${DPID[$n]}
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  done
  for n in "${!DPID[@]}"; do
    pid=${DPID[$n]}
    [ -n "$pid" ] && timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  done
  netns_cleanup >/dev/null 2>&1
  common_cleanup
  if [ "$FAILS" != 0 ] || [ "$rc" != 0 ]; then
    local f
    for f in "$LOGDIR"/node*.log; do
      [ -e "$f" ] || continue
      echo "--- $(basename "$f") (last lines)"
      tail -n 15 "$f"
    done
  fi
  if [ "${E2E_KEEP_LOGS:-0}" = 1 ]; then
    echo "logs kept in $LOGDIR"
  else
    rm -rf "$LOGDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The two nodes of these tests and their pods: node name ip mac, from the topology.
E2E_NODES="1 2"
PODS=()
NODE_IP=() # indexed by node number (tests write ${NODE_IP[n]})
for _n in $E2E_NODES; do
  NODE_IP[$_n]=${TOPO_ADDR[$_n]}
  for _x in $(topo_pods_on "$_n"); do
    PODS+=("$_n $_x ${TOPO_POD_IP[$_x]} ${TOPO_POD_MAC[$_x]}")
  done
done
unset _n _x

cluster_net_up() {
  netns_cleanup >/dev/null 2>&1
  fabric_up
  local p n name ip mac
  for n in $E2E_NODES; do
    node_up "$n"
    host_port "$n"
  done
  for p in "${PODS[@]}"; do
    read -r n name ip mac <<<"$p"
    pod_up "$n" "$name" "$ip" "$mac" "${TOPO_GATEWAY[$n]}"
  done
  if [ "${E2E_IPV6:-1}" = 0 ]; then
    local ns
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
      ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1
    done
  fi
}

# start_node N [CORE]: podswitchd in node N's namespace; waits (10 s max) for its socket.
start_node() {
  local n=$1 core=${2:-$(($1 - 1))} i
  ip netns exec "$P-node$n" "$BIN/podswitchd" run --config "$E2E_ROOT/config/node$n-vxlan.toml" \
    --socket "$(sock "$n")" --cores "$core" >>"$LOGDIR/node$n.log" 2>&1 &
  DPID[n]=$!
  for i in $(seq 1 100); do
    if ! kill -0 "${DPID[n]}" 2>/dev/null; then
      echo "podswitchd on node$n exited:"
      tail -n 20 "$LOGDIR/node$n.log"
      return 1
    fi
    [ -S "$(sock "$n")" ] && ctl "$n" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "podswitchd on node$n did not answer within 10 s:"
  tail -n 20 "$LOGDIR/node$n.log"
  return 1
}

# stop_node N [SIGNAL]: signals node N's podswitchd and waits (15 s max) for it to exit.
stop_node() {
  local n=$1 sig=${2:-TERM} pid=${DPID[$1]:-}
  [ -n "$pid" ] || return 1
  kill "-$sig" "$pid" 2>/dev/null || return 1
  timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null
  if kill -0 "$pid" 2>/dev/null; then
    echo "podswitchd $pid on node$n still running 15 s after SIG$sig"
    return 1
  fi
  { wait "$pid"; } 2>/dev/null
  DPID[n]=
  return 0
}

cluster_up() {
  build_release
  echo "$E2E_NAME: cluster prefix $P-"
  cluster_net_up >"$LOGDIR/net.log" 2>&1 || die "namespaces created" "$(tail -n 3 "$LOGDIR/net.log")"
  local n
  for n in $E2E_NODES; do start_node "$n" || die "podswitchd started on node$n"; done
  # First traffic: every path answers (ARP settles) before the checks start.
  wait_ping "$P-n1-a" "${TOPO_POD_IP[b]}" 10 || die "pod a -> pod b works after start"
}

# ---------------------------------------------------------------------------------------
# Traffic helpers

# loss_of "ping output": the packet loss figure ("0%").
loss_of() { grep -o '[0-9.]*% packet loss' <<<"$1" | cut -d' ' -f1; }

# proc_cpu_ticks PID: utime+stime of a process in clock ticks.
proc_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# xdp_attached NODE_NS: lists interfaces of the namespace with an XDP program attached.
xdp_attached() {
  ip netns exec "$1" ip -d -o link show 2>/dev/null | grep -E 'prog/xdp|xdpgeneric|xdpdrv| xdp ' |
    awk -F': ' '{print $2}' | cut -d@ -f1
}
