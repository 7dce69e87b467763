# shellcheck shell=bash
# Helpers shared by the interop / overlay / PMTU end-to-end tests and the benchmark
# harness (sourced after lab/netns.sh, with $P set by the caller; interop_begin makes
# $TMPD). Addresses, MACs and the VXLAN parameters come from lab/topology.sh (sourced by
# lab/netns.sh).
#
#   start_psw N CONFIG CORE  podswitchd on node N (waits for its control socket); the
#                            command prefix $PSW_WRAP (e.g. taskset) is put in front
#   flannel_node N [ADDR]    node N configured as flannel's vxlan backend configures it
#   flannel_peer N PEER_N [PEER_ADDR]
#                            flannel's per-peer state (neighbour, FDB, onlink route)
#   kernel_pod N NAME IP MAC MTU   a pod on node N's cni0 bridge
#   topo_kernel_pod X MTU    the topology's static pod X on its node's cni0 bridge
#   cap_start NAME NS DEV FILTER [COUNT] / cap_stop NAME   tcpdump on an interface
#   frag_needed NS DST SIZE MTU   ping -M do must fail with mtu=MTU
#   results (check, pass, fail, finish), need_root, build_release, sock, psw_ctl/ctl:
#                            tests/e2e/lib/common.sh

# shellcheck source=tests/e2e/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
declare -A CAP_PID=()
declare -A PSW_PID=()

# The common start of these tests: root check, a temp dir and a cleanup trap (captures,
# namespaces, temp dir; also on failure or interrupt), release binaries.
interop_begin() {
  need_root
  TMPD=$(mktemp -d)
  trap interop_cleanup EXIT
  trap 'exit 130' INT TERM
  build_release
}

interop_cleanup() {
  cap_stop_all
  netns_cleanup
  common_cleanup
  rm -rf "$TMPD"
}

# start_psw N CONFIG CORES [extra podswitchd args...]
start_psw() {
  local n=$1 cfg=$2 cores=$3 log="$TMPD/podswitchd-node$1.log" i
  shift 3
  mkdir -p /run/podswitch
  # shellcheck disable=SC2086 # PSW_WRAP is a command prefix, e.g. "taskset -c 0"
  ip netns exec "$P-node$n" ${PSW_WRAP:-} "$BIN/podswitchd" run --config "$cfg" --socket "$(sock "$n")" \
    --cores "$cores" "$@" >"$log" 2>&1 &
  PSW_PID[$n]=$!
  for i in $(seq 1 100); do
    if [ -S "$(sock "$n")" ] && psw_ctl "$n" version >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "podswitchd on node$n did not start:"
  cat "$log"
  return 1
}

psw_pid() { echo "${PSW_PID[$1]:-}"; }

# stop_psw N: SIGTERM the daemon we started on node N and wait (bounded) for it.
stop_psw() {
  local n=$1 pid=${PSW_PID[$1]:-} i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PSW_PID[$n]"
  rm -f "$(sock "$n")"
}

# flannel_node N [ADDR]: the kernel side of flannel's vxlan backend (the topology's VNI
# and port, nolearning, MTU 1450, node N's VTEP MAC, the pod subnet's network address /32
# on flannel.1, its gateway on cni0). ADDR defaults to node N's address.
flannel_node() {
  local n=$1 addr=${2:-${TOPO_ADDR[$1]}} ns="$P-node$1" cidr=${TOPO_POD_CIDR[$1]}
  nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
  nsx "$ns" ip link add flannel.1 type vxlan id "$TOPO_VXLAN_VNI" dstport "$TOPO_VXLAN_PORT" \
    nolearning local "$addr" dev eth0
  nsx "$ns" ip link set flannel.1 mtu 1450 address "${TOPO_VTEP_MAC[$n]}"
  nsx "$ns" ip addr add "${cidr%/*}/32" dev flannel.1
  nsx "$ns" ip link set flannel.1 up
  nsx "$ns" ip link add cni0 type bridge
  nsx "$ns" ip link set cni0 mtu 1450
  nsx "$ns" ip addr add "${TOPO_GATEWAY[$n]}/${cidr#*/}" dev cni0
  nsx "$ns" ip link set cni0 up
}

# flannel_peer N PEER_N [PEER_ADDR]: what flanneld programs for one remote subnet (the
# peer's VTEP at its subnet's network address). PEER_ADDR defaults to node PEER_N's address.
flannel_peer() {
  local n=$1 pn=$2 paddr=${3:-${TOPO_ADDR[$2]}} ns="$P-node$1" pcidr=${TOPO_POD_CIDR[$2]}
  local vtep=${pcidr%/*} vmac=${TOPO_VTEP_MAC[$2]}
  nsx "$ns" ip neigh replace "$vtep" lladdr "$vmac" dev flannel.1 nud permanent
  nsx "$ns" bridge fdb append "$vmac" dst "$paddr" dev flannel.1
  nsx "$ns" ip route add "$pcidr" via "$vtep" dev flannel.1 onlink
}

# kernel_pod N NAME IP MAC MTU: a pod on the kernel node's cni0 (the CNI bridge plugin's
# veth with flannel's MTU).
kernel_pod() {
  local n=$1 name=$2 ip=$3 mac=$4 mtu=$5
  pod_up "$n" "$name" "$ip" "$mac" "${TOPO_GATEWAY[$n]}" "$mtu"
  nsx "$P-node$n" ip link set "veth-pod-$name" master cni0
}

# topo_kernel_pod X MTU: the topology's static pod X (lab/topology.sh) on its node's cni0.
topo_kernel_pod() {
  local x=$1 n=${TOPO_POD_NODE[$1]:?unknown static pod $1 (lab/topology.sh TOPO_PODS)}
  kernel_pod "$n" "$x" "${TOPO_POD_IP[$x]}" "${TOPO_POD_MAC[$x]}" "$2"
}

# cap_start NAME NS DEV FILTER [COUNT] [SNAPLEN]
cap_start() {
  local name=$1 ns=$2 dev=$3 filter=$4 count=${5:-20000} snap=${6:-0} i
  nsx "$ns" timeout 120 tcpdump -nn -U -i "$dev" -s "$snap" -c "$count" -w "$TMPD/$name.pcap" \
    "$filter" >"$TMPD/$name.tcpdump.log" 2>&1 &
  CAP_PID[$name]=$!
  for i in $(seq 1 50); do
    grep -q "listening on" "$TMPD/$name.tcpdump.log" 2>/dev/null && break
    sleep 0.1
  done
}

cap_stop() {
  local name=$1 pid=${CAP_PID[$1]:-} i
  [ -n "$pid" ] || return 0
  sleep 0.3
  kill -INT "$pid" 2>/dev/null || true
  for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "CAP_PID[$name]"
}

cap_stop_all() {
  local n
  for n in "${!CAP_PID[@]}"; do cap_stop "$n"; done
}

# tshark over a capture, with checksum validation on and VXLAN on its port (8472). The
# iperf3 test ports decode as plain data: their random payload must not reach heuristic
# dissectors (THRIFT took one for a malformed call under load).
tsh() {
  local file=$1
  shift
  tshark -r "$file" -n -d "udp.port==$TOPO_VXLAN_PORT,vxlan" -d tcp.port==5301,data -d udp.port==5302,data \
    -d tcp.port==5201,data -o ip.check_checksum:TRUE \
    -o udp.check_checksum:TRUE -o tcp.check_checksum:TRUE "$@" 2>/dev/null
}

# Frames in FILE matching FILTER.
tcount() { tsh "$1" -Y "$2" -T fields -e frame.number | grep -c . || true; }

# A tshark display filter for malformed frames and bad IP/UDP/TCP/ICMP checksums. A TCP
# checksum of 0xffff counts as good: it is the other ones'-complement zero, every stack
# accepts it, and Linux writes it itself when its software checksum (skb_checksum_help,
# e.g. tx offload off) comes out as 0 (CSUM_MANGLED_0); tshark flags it per RFC 1624, which
# failed about one capture in three of ~7,000 TCP frames.
BAD_FRAME="_ws.malformed || ip.checksum.status == 0 || udp.checksum.status == 0 || icmp.checksum.status == 0 || (tcp.checksum.status == 0 && !(tcp.checksum == 0xffff))"

# Malformed frames, bad checksums or expert errors among frames matching FILTER.
bad_frames() {
  tcount "$1" "($2) && ($BAD_FRAME || (_ws.expert.severity == error && !(tcp.checksum == 0xffff)))"
}

ping_ok() {
  local ns=$1 out
  shift
  out=$(nsx "$ns" ping -c 3 -i 0.2 -W 2 "$@" 2>&1) || { echo "$out" | tail -2; return 1; }
  echo "$out" | grep -o 'rtt.*' | cut -d/ -f5 | sed 's/$/ ms avg/'
}

# frag_needed SRC_NS DST PAYLOAD PATH_MTU: ping -M do must fail with mtu=PATH_MTU.
frag_needed() {
  local ns=$1 dst=$2 size=$3 mtu=$4 out
  nsx "$ns" ip route flush cache >/dev/null 2>&1 || true
  if out=$(nsx "$ns" ping -M do -s "$size" -c 2 -i 0.3 -W 2 "$dst" 2>&1); then
    echo "ping unexpectedly succeeded"
    return 1
  fi
  echo "$out" | grep -Eio "(frag needed.*|message too long.*)mtu ?= ?$mtu" | head -1 | grep . ||
    { echo "$out" | tail -3; return 1; }
}

# iperf_tcp CLIENT_NS SERVER_NS SERVER_IP [SECONDS|BYTES(K/M/G)] [extra iperf3 args]:
# prints Gbit/s and the bytes received.
iperf_tcp() {
  local cns=$1 sns=$2 sip=$3 t=${4:-3} js len spid
  shift 3
  [ $# -gt 0 ] && shift
  case $t in
    *[KMG]) len=(-n "$t") ;;
    *) len=(-t "$t") ;;
  esac
  nsx "$sns" timeout 40 iperf3 -s -1 -p 5301 >/dev/null 2>&1 &
  spid=$!
  sleep 0.3
  js=$(nsx "$cns" timeout 30 iperf3 -c "$sip" -p 5301 "${len[@]}" -J "$@") || {
    echo "$js" | grep -o '"error".*' | head -1; kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; return 1; }
  wait "$spid" 2>/dev/null || true
  echo "$js" | python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]; b=e["sum_received"]["bytes"]; print("%.2f Gbit/s, %d bytes" % (e["sum_received"]["bits_per_second"]/1e9, b)); sys.exit(0 if b > 0 else 1)'
}

# iperf_udp CLIENT_NS SERVER_NS SERVER_IP: 2 s at 50 Mbit/s, 1200-byte datagrams;
# passes when at least 95% arrive.
iperf_udp() {
  local cns=$1 sns=$2 sip=$3 js spid
  nsx "$sns" timeout 20 iperf3 -s -1 -p 5302 >/dev/null 2>&1 &
  spid=$!
  sleep 0.3
  js=$(nsx "$cns" timeout 15 iperf3 -c "$sip" -p 5302 -u -b 50M -l 1200 -t 2 -J) || {
    echo "$js" | grep -o '"error".*' | head -1; kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; return 1; }
  wait "$spid" 2>/dev/null || true
  echo "$js" | python3 -c '
import json, sys
e = json.load(sys.stdin)["end"]
s = e.get("sum_received") or e["sum"]
tot = e["sum"]["packets"]; lost = s.get("lost_packets", e["sum"]["lost_packets"])
print("%d datagrams sent, %d lost (%.1f%%)" % (tot, lost, 100.0 * lost / max(tot, 1)))
sys.exit(0 if tot > 0 and lost <= tot * 0.05 else 1)'
}

# Drop reasons with a non-zero count on node N (for diagnostics on failure).
psw_drops() {
  psw_ctl "$1" stats 2>/dev/null | grep -iA40 'drop' | grep -v ' 0$' | head -40 || true
}
