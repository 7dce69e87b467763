#!/usr/bin/env bash
# The static podswitch lab (no Kubernetes; lab/lab.sh is the cluster lab): a two-node
# cluster in network namespaces, hand-written node TOMLs, all pod traffic going
# through podswitchd (one per node, AF_XDP on veth, adaptive polling).
#
#   lab/static-lab.sh [up]   build, create the lab, start podswitchd on both nodes, run the checks,
#                     print the flow dump and a result table; the lab stays up
#   lab/static-lab.sh down   remove everything
#   lab/static-lab.sh check  rerun the checks against a running lab
#
# Prints the binaries it built and where the daemons log (/tmp/$LAB_PREFIX-nodeN.log).
# LAB_PREFIX (default psw) names everything, so several labs can coexist.
# Overlay: OVERLAY=vxlan (default), ipip or host-gw (uses config/node{1,2}-$OVERLAY.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
P=${LAB_PREFIX:-psw}
OVERLAY=${OVERLAY:-vxlan}
# shellcheck source=lab/netns.sh
source lab/netns.sh
# shellcheck source=scripts/preflight.sh
source scripts/preflight.sh
BIN=${PODSWITCH_BIN:-$ROOT/target/release}
sock() { echo "/run/podswitch/$P-node$1.sock"; }
log() { echo "/tmp/$P-node$1.log"; }
ctl() { local n=$1; shift; "$BIN/podswitchctl" --socket "$(sock "$n")" "$@"; }
# rel PATH: PATH relative to the repository when it is inside it.
rel() { echo "${1#"$ROOT"/}"; }

build() {
  ./scripts/deps.sh
  export PATH="$HOME/.cargo/bin:$PATH"
  preflight lab
  if [ -n "${PODSWITCH_BIN:-}" ]; then
    echo "lab: using the binaries in $(rel "$BIN") (PODSWITCH_BIN)"
  else
    echo "lab: building podswitch (cargo build --release)"
    cargo build --release --bins -q
  fi
  echo "lab: binaries: $(rel "$BIN/podswitchd") (the switch), $(rel "$BIN/podswitchctl") (its CLI)"
}

# lab_is_up: the namespaces and both daemons' control sockets are there.
lab_is_up() {
  local ns have
  have=$(ip netns list 2>/dev/null | awk '{print $1}')
  for ns in "$P-fab" "$P-node1" "$P-node2" "$P-n1-a" "$P-n1-c" "$P-n2-b" "$P-n2-d"; do
    grep -qx -- "$ns" <<<"$have" || return 1
  done
  [ -S "$(sock 1)" ] && [ -S "$(sock 2)" ]
}

start_node() {
  local n=$1 core=$2 log
  log=$(log "$n")
  ip netns exec "$P-node$n" "$BIN/podswitchd" run --config "config/node$n-$OVERLAY.toml" \
    --socket "$(sock "$n")" --cores "$core" >"$log" 2>&1 &
  local i
  for i in $(seq 1 100); do
    [ -S "$(sock "$n")" ] && ctl "$n" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "lab: podswitchd on node$n did not start:"; cat "$log"; return 1
}

up() {
  build
  netns_cleanup
  echo "lab: creating namespaces (prefix $P-)"
  # The topology's nodes 1 and 2 with their static pods (lab/topology.sh).
  fabric_up
  local n x
  for n in 1 2; do node_up "$n"; done
  for n in 1 2; do host_port "$n"; done
  for x in a c b d; do topo_pod_up "$x"; done
  echo "lab: starting podswitchd on node1 (core 0) and node2 (core 1), overlay $OVERLAY;" \
    "logs: $(log 1), $(log 2)"
  start_node 1 0
  start_node 2 1
  for n in 1 2; do
    # The Service, and the way back to the fabric (192.168.1.1) for NodePort replies.
    ctl "$n" program add-service config/lab-services.toml >/dev/null
    ctl "$n" program add-neighbour --ip "$TOPO_FABRIC_IP" --mac "$TOPO_FABRIC_MAC" >/dev/null
    ctl "$n" program add-route --prefix "$TOPO_FABRIC_IP/32" --via "$TOPO_FABRIC_IP" >/dev/null
  done
  web_servers
  check
  echo
  echo "lab is up (prefix $P). Binaries: $(rel "$BIN")/{podswitchd,podswitchctl};" \
    "daemon logs: $(log 1), $(log 2). Try:"
  echo "  ip netns exec $P-n1-a ping 10.244.2.20"
  echo "  $(rel "$BIN")/podswitchctl --socket $(sock 1) dump flows"
  echo "  $(rel "$BIN")/podswitchctl --socket $(sock 1) stats"
  echo "  $(down_cmd)"
}

# The command line that reaches this lab again (the prefix, when not the default).
lab_cmd() { if [ "$P" = psw ]; then echo "lab/static-lab.sh $1"; else echo "LAB_PREFIX=$P lab/static-lab.sh $1"; fi; }
down_cmd() { lab_cmd down; }

# A small HTTP server in pod c (node1) and pod b (node2) answering with the pod's name.
web_servers() {
  local pod
  for pod in 1-c 2-b; do
    mkdir -p "/tmp/$P-www-$pod"
    echo "pod-${pod#*-}" >"/tmp/$P-www-$pod/whoami"
    ip netns exec "$P-n$pod" python3 -m http.server 8080 --bind 0.0.0.0 \
      --directory "/tmp/$P-www-$pod" >/dev/null 2>&1 &
  done
  sleep 0.5
}

# result, check_ping, check_http and check_iperf_tcp: shared with the cluster lab.
# shellcheck source=lab/checks.sh
source lab/checks.sh

check() {
  echo
  echo "lab: checks"
  RESULTS=()
  check_ping "pod A -> pod C (same node, L2)" "$P-n1-a" 10.244.1.11
  check_ping "pod A -> gateway 10.244.1.1" "$P-n1-a" 10.244.1.1
  check_ping "pod A -> pod B (node1 -> node2, $OVERLAY)" "$P-n1-a" 10.244.2.20
  check_ping "pod D -> pod C (node2 -> node1, $OVERLAY)" "$P-n2-d" 10.244.1.11
  check_ping "node1 -> pod A (host port)" "$P-node1" 10.244.1.10
  check_ping "node1 -> pod B (host port + $OVERLAY)" "$P-node1" 10.244.2.20
  check_ping "pod B -> node1 192.168.1.10" "$P-n2-b" 192.168.1.10
  check_ping "pod A -> fabric 192.168.1.1 (masquerade)" "$P-n1-a" 192.168.1.1
  # Path MTU: pods have MTU 1500, the VXLAN path 1450: podswitch answers frag-needed.
  if [ "$OVERLAY" = vxlan ]; then
    local out
    out=$(ip netns exec "$P-n1-a" ping -M do -s 1472 -c 1 -W 2 10.244.2.20 2>&1 || true)
    if echo "$out" | grep -qi "mtu = 1450\|mtu=1450"; then
      result "ping -M do -s 1472 -> frag needed mtu 1450" PASS "$(echo "$out" | grep -io 'mtu.*1450' | head -1)"
    else
      result "ping -M do -s 1472 -> frag needed mtu 1450" FAIL "$(echo "$out" | tail -1)"
    fi
    check_ping "ping -M do -s 1422 pod A -> pod B" "$P-n1-a" -M do -s 1422 10.244.2.20
  fi
  # Service NAT: ClusterIP from a pod, NodePort from outside the cluster (the fabric).
  check_http "ClusterIP 10.96.0.10:80 from pod A (20 conns)" "$P-n1-a" http://10.96.0.10/whoami 20 pod-b pod-c
  check_http "NodePort 192.168.1.10:30080 from fabric" "$P-fab" http://192.168.1.10:30080/whoami 20 pod-b pod-c
  # TCP across nodes, verified on the underlay by tshark (lab/checks.sh).
  check_iperf_tcp "iperf3 TCP pod A -> pod B (3 s)" "$P-n1-a" "$P-n2-b" 10.244.2.20 "$P-fab" "$P-n1"
  echo
  echo "lab: flow dump of node1 (podswitchctl dump flows)"
  ctl 1 dump flows | grep -v 'packets:0 ' || true
  echo
  echo "lab: services of node1 (podswitchctl dump services)"
  ctl 1 dump services
  echo
  echo "lab: results"
  # The CHECK column is as wide as the longest check name.
  local r n s d w=5 fails=0
  for r in "${RESULTS[@]}"; do
    n=${r%%|*}
    [ ${#n} -le "$w" ] || w=${#n}
  done
  printf '%-*s  %-6s %s\n' "$w" CHECK RESULT DETAIL
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r n s d <<<"$r"
    printf '%-*s  %-6s %s\n' "$w" "$n" "$s" "$d"
    [ "$s" = PASS ] || fails=$((fails + 1))
  done
  [ "$fails" = 0 ] || { echo "lab: $fails check(s) failed"; return 1; }
}

case "${1:-up}" in
  up) up ;;
  down) netns_cleanup; echo "lab: removed" ;;
  check)
    preflight lab
    if ! lab_is_up; then
      echo "lab: the lab (prefix $P) is not up: start it with $(lab_cmd up)" >&2
      exit 1
    fi
    check
    ;;
  *) echo "usage: $0 [up|down|check]"; exit 2 ;;
esac
