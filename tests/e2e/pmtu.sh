#!/usr/bin/env bash
# Path MTU end to end over a VXLAN path between two podswitch nodes, pods with MTU 1500.
#
# For the house configuration (uplink MTU 1500, VXLAN path 1450) and for a variant with a
# 1400-byte underlay (path 1350, generated from the same config files):
#   * ping -M do with a payload one byte over the path fails with "mtu=<path>" from
#     podswitch's ICMP fragmentation-needed (seen on the pod veth, from the gateway);
#   * ping -M do with the largest payload that fits succeeds;
#   * TCP SYN and SYN-ACK arriving at each pod carry an MSS <= path - 40 (both directions;
#     captured on the pod end of the veths);
#   * no IPv4 fragment on the fabric during an iperf3 TCP run each way
#     (capture filter `ip[6:2] & 0x3fff != 0` counts 0 while VXLAN frames flowed).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
P=${E2E_PREFIX:-pm$$}
# shellcheck source=lab/netns.sh
source lab/netns.sh
# shellcheck source=tests/e2e/lib/interop.sh
source tests/e2e/lib/interop.sh
interop_begin

echo "== pmtu: podswitch <-> podswitch over VXLAN, pods MTU 1500, prefix $P"
# The topology's nodes 1 and 2 with their static pods (lab/topology.sh).
fabric_up
for n in 1 2; do node_up "$n"; done
for n in 1 2; do host_port "$n"; done
for x in a c b d; do topo_pod_up "$x" 1500; done
A=$P-n1-a B=$P-n2-b

# mss_check FILE LOCAL_POD_IP MAX: SYNs and SYN-ACKs that arrived at the local pod from
# a remote pod (captured on its veth) all carry MSS <= MAX; at least one of each.
mss_check() {
  local file=$1 ip=$2 max=$3 syn synack bad
  local base="ip.dst == $ip && !(ip.src == $ip) && tcp.flags.syn == 1"
  syn=$(tcount "$file" "$base && tcp.flags.ack == 0")
  synack=$(tcount "$file" "$base && tcp.flags.ack == 1")
  bad=$(tcount "$file" "$base && !(tcp.options.mss_val <= $max)")
  local vals
  vals=$(tsh "$file" -Y "$base" -T fields -e tcp.options.mss_val | sort -u | tr '\n' ' ')
  echo "SYN $syn, SYN-ACK $synack received, MSS values: $vals"
  [ "$syn" -gt 0 ] && [ "$synack" -gt 0 ] && [ "$bad" = 0 ]
}

run_case() {
  local label=$1 umtu=$2 path=$((${2} - 50)) n
  echo "-- $label: underlay MTU $umtu, VXLAN path MTU $path"
  for n in 1 2; do
    sed "/^\[uplink\]/,/^\[/ s/^mtu = .*/mtu = $umtu/" "config/node$n-vxlan.toml" >"$TMPD/node$n.toml"
    nsx "$P-node$n" ip link set eth0 mtu "$umtu"
    nsx "$P-fab" ip link set "$P-n$n" mtu "$umtu"
  done
  start_psw 1 "$TMPD/node1.toml" 0
  start_psw 2 "$TMPD/node2.toml" 1
  check "$label: warm-up ping pod A -> pod B" ping_ok "$A" 10.244.2.20

  # Captures are taken on the pod end of the veths: frames podswitch receives/sends on the
  # switch end go through AF_XDP and bypass the kernel's packet taps there.
  cap_start "icmp-$label" "$A" eth0 "icmp[0] == 3 and icmp[1] == 4" 100
  check "$label: ping -M do -s 1472 A -> B fails, mtu=$path" frag_needed "$A" 10.244.2.20 1472 "$path"
  check "$label: ping -M do -s 1472 B -> A fails, mtu=$path" frag_needed "$B" 10.244.1.10 1472 "$path"
  check "$label: ping -M do -s $((path - 27)) A -> B fails, mtu=$path" frag_needed "$A" 10.244.2.20 $((path - 27)) "$path"
  cap_stop "icmp-$label"
  local f=$TMPD/icmp-$label.pcap got
  got=$(tsh "$f" -Y "icmp.type == 3 && icmp.code == 4" -T fields -e ip.src -e icmp.mtu | sort -u | tr '\t\n' '  ')
  if [ "$(tcount "$f" "icmp.type == 3 && icmp.code == 4 && icmp.mtu == $path && ip.src == 10.244.1.1 && ip.dst == 10.244.1.10 && ip.dst#2 == 10.244.2.20")" -gt 0 ]; then
    pass "$label: frag-needed at pod A from podswitch's gateway" "src/mtu: $got"
  else
    fail "$label: frag-needed at pod A from podswitch's gateway" "src/mtu: $got"
  fi
  local ex
  ex=$(psw_ctl 1 -o json stats | python3 -c '
import json, sys
d = json.load(sys.stdin)
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in ("mtu_exceeded",) and isinstance(v, int): yield v
            if isinstance(v, dict) and v.get("reason") == "mtu_exceeded": yield v.get("count", 0)
            yield from walk(v)
    elif isinstance(o, list):
        for v in o: yield from walk(v)
print(sum(walk(d)))' 2>/dev/null || echo "?")
  if [ "$ex" != "?" ] && [ "$ex" -gt 0 ]; then
    pass "$label: podswitch node1 counted mtu_exceeded" "$ex"
  else
    fail "$label: podswitch node1 counted mtu_exceeded" "$ex"
  fi
  check "$label: ping -M do -s $((path - 28)) A -> B succeeds" ping_ok "$A" -M do -s $((path - 28)) 10.244.2.20
  check "$label: ping -M do -s $((path - 28)) B -> A succeeds" ping_ok "$B" -M do -s $((path - 28)) 10.244.1.10

  for n in a b; do nsx "$P-n$([ $n = a ] && echo 1 || echo 2)-$n" ip route flush cache >/dev/null 2>&1 || true; done
  cap_start "syn-a-$label" "$A" eth0 "tcp[tcpflags] & tcp-syn != 0" 100
  cap_start "syn-b-$label" "$B" eth0 "tcp[tcpflags] & tcp-syn != 0" 100
  cap_start "frag-$label" "$P-fab" br0 "ip[6:2] & 0x3fff != 0" 1000
  cap_start "vx-$label" "$P-fab" br0 "udp port 8472" 2000000 64
  check "$label: iperf3 TCP A -> B (3 s)" iperf_tcp "$A" "$B" 10.244.2.20 3
  check "$label: iperf3 TCP B -> A (3 s)" iperf_tcp "$B" "$A" 10.244.1.10 3
  cap_stop "frag-$label"
  cap_stop "vx-$label"
  cap_stop "syn-a-$label"
  cap_stop "syn-b-$label"
  check "$label: SYN/SYN-ACK arriving at pod B: MSS <= $((path - 40))" mss_check "$TMPD/syn-b-$label.pcap" 10.244.2.20 $((path - 40))
  check "$label: SYN/SYN-ACK arriving at pod A: MSS <= $((path - 40))" mss_check "$TMPD/syn-a-$label.pcap" 10.244.1.10 $((path - 40))
  local nfrag nvx
  nfrag=$(tcount "$TMPD/frag-$label.pcap" frame)
  nvx=$(tcount "$TMPD/vx-$label.pcap" frame)
  if [ "$nfrag" = 0 ] && [ "$nvx" -gt 10000 ]; then
    pass "$label: no IPv4 fragment on the fabric during iperf3" "0 fragments, $nvx VXLAN frames"
  else
    fail "$label: no IPv4 fragment on the fabric during iperf3" "$nfrag fragments, $nvx VXLAN frames"
  fi
  local big
  big=$(tsh "$TMPD/vx-$label.pcap" -T fields -e ip.len | sort -n | tail -1)
  if [ -n "$big" ] && [ "$big" -le "$umtu" ]; then
    pass "$label: largest outer IPv4 packet fits the underlay" "$big <= $umtu"
  else
    fail "$label: largest outer IPv4 packet fits the underlay" "${big:-none} > $umtu"
  fi
  if [ "$FAILS" != 0 ]; then psw_ctl 1 stats | tail -20 || true; fi
  stop_psw 1
  stop_psw 2
}

run_case house 1500
run_case underlay1400 1400

if [ "$FAILS" != 0 ]; then
  echo "pmtu: $FAILS check(s) FAILED"
  exit 1
fi
echo "pmtu: all checks passed"
