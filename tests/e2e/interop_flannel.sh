#!/usr/bin/env bash
# VXLAN interoperability with a flannel node.
#
# node1 runs podswitchd (config/node1-vxlan.toml); node2 is the Linux kernel configured
# exactly as flannel's vxlan backend configures it: flannel.1 (VNI 1, dstport 8472,
# nolearning, MTU 1450, MAC 0e:00:00:00:00:02, 10.244.2.0/32), the cni0 bridge
# 10.244.2.1/24 with the pods (veth MTU 1450), and per remote subnet a permanent neighbour
# for 10.244.1.0 -> node1's VTEP MAC, an FDB entry for that MAC -> 192.168.1.10 and an
# onlink route 10.244.1.0/24 via 10.244.1.0 dev flannel.1.
#
# Checks: ping, TCP and UDP (iperf3) pod<->pod both ways, flannel node-originated traffic
# (source 10.244.2.0), and a fabric capture decoded by tshark: podswitch's frames are VXLAN
# VNI 1 with the right inner frame, and no frame is malformed or has a bad checksum.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
P=${E2E_PREFIX:-pf$$}
# shellcheck source=lab/netns.sh
source lab/netns.sh
# shellcheck source=tests/e2e/lib/interop.sh
source tests/e2e/lib/interop.sh
interop_begin

echo "== interop_flannel: podswitch (node1) <-> flannel vxlan kernel node (node2), prefix $P"
# The topology's nodes 1 and 2 with their static pods (lab/topology.sh).
fabric_up
node_up 1
node_up 2
host_port 1
topo_pod_up a
topo_pod_up c
flannel_node 2
flannel_peer 2 1
topo_kernel_pod b 1450
topo_kernel_pod d 1450
start_psw 1 config/node1-vxlan.toml 0

A=$P-n1-a C=$P-n1-c B=$P-n2-b D=$P-n2-d
# Two fabric captures: everything of the ping and UDP checks, then the first frames of
# the TCP transfers (full frames, so checksums can be verified).
cap_start fab "$P-fab" br0 "udp port 8472" 20000
check "ping pod A (podswitch) -> pod B (flannel)" ping_ok "$A" 10.244.2.20
check "ping pod D (flannel) -> pod C (podswitch)" ping_ok "$D" 10.244.1.11
check "ping flannel node2 (src 10.244.2.0) -> pod A" ping_ok "$P-node2" 10.244.1.10
check "ping pod A -> flannel node2's flannel.1 10.244.2.0" ping_ok "$A" 10.244.2.0
check "ping pod A -> cni0 gateway 10.244.2.1" ping_ok "$A" 10.244.2.1
check "ping 1400 bytes -M do pod B -> pod A" ping_ok "$B" -M do -s 1400 10.244.1.10
check "ping -M do -s 1472 A (MTU 1500) -> B fails, mtu=1450" frag_needed "$A" 10.244.2.20 1472 1450
check "iperf3 UDP pod C -> pod D" iperf_udp "$C" "$D" 10.244.2.21
check "iperf3 UDP pod D -> pod C" iperf_udp "$D" "$C" 10.244.1.11
cap_stop fab
cap_start fabtcp "$P-fab" br0 "udp port 8472" 6000
check "iperf3 TCP pod A -> pod B (3 s)" iperf_tcp "$A" "$B" 10.244.2.20 3
check "iperf3 TCP pod B -> pod A (3 s)" iperf_tcp "$B" "$A" 10.244.1.10 3
cap_stop fabtcp
mergecap -w "$TMPD/all.pcap" "$TMPD/fab.pcap" "$TMPD/fabtcp.pcap"

# Wire format of podswitch's frames (outer source 192.168.1.10).
F=$TMPD/all.pcap
PSW="ip.src == 192.168.1.10 && udp.dstport == 8472"
n_psw=$(tcount "$F" "$PSW")
n_vx=$(tcount "$F" "$PSW && vxlan.vni == 1 && vxlan.flag_i == 1")
if [ "$n_psw" -gt 0 ] && [ "$n_psw" = "$n_vx" ]; then
  pass "podswitch frames decode as VXLAN VNI 1" "$n_vx of $n_psw"
else
  fail "podswitch frames decode as VXLAN VNI 1" "$n_vx of $n_psw"
fi
# Inner frame: Ethernet 0e:..:01 -> 0e:..:02, IPv4 from a node1 pod or node1's 10.244.1.0
# to node2's pod subnet; outer eth/ip addressed node to node. Fields with occurrence 1 are
# the outer headers, 2 the inner ones.
inner_bad=$(tsh "$F" -Y "$PSW" -T fields -E occurrence=a -E aggregator=, -e eth.src -e eth.dst \
  -e ip.src -e ip.dst -e ip.ttl -e udp.length -e ip.len | awk -F'\t' '
  { split($1, s, ","); split($2, d, ","); split($3, is, ","); split($4, id, ",");
    ok = s[1] == "02:00:c0:a8:01:10" && d[1] == "02:00:c0:a8:01:11" &&
         s[2] == "0e:00:00:00:00:01" && d[2] == "0e:00:00:00:00:02" &&
         is[1] == "192.168.1.10" && id[1] == "192.168.1.11" &&
         is[2] ~ /^10\.244\.1\./ && id[2] ~ /^10\.244\.2\./
    if (!ok) { bad++; if (bad <= 3) print "bad frame:", $0 > "/dev/stderr" } }
  END { print bad + 0 }')
if [ "$inner_bad" = 0 ]; then
  pass "podswitch frames: outer node->node, inner VTEP MACs + pod addresses" "$n_psw frames"
else
  fail "podswitch frames: outer node->node, inner VTEP MACs + pod addresses" "$inner_bad wrong"
fi
n_inner_tcp=$(tcount "$F" "$PSW && tcp")
n_inner_udp=$(tcount "$F" "$PSW && udp.dstport == 5302")
n_inner_icmp=$(tcount "$F" "$PSW && icmp")
if [ "$n_inner_tcp" -gt 0 ] && [ "$n_inner_udp" -gt 0 ] && [ "$n_inner_icmp" -gt 0 ]; then
  pass "inner TCP, UDP and ICMP seen from podswitch" "tcp $n_inner_tcp udp $n_inner_udp icmp $n_inner_icmp"
else
  fail "inner TCP, UDP and ICMP seen from podswitch" "tcp $n_inner_tcp udp $n_inner_udp icmp $n_inner_icmp"
fi
nbad=$(bad_frames "$F" "udp.port == 8472")
if [ "$nbad" = 0 ]; then
  pass "no malformed frame / bad IP, UDP, TCP, ICMP checksum (both sides)" "$(tcount "$F" frame) frames"
else
  fail "no malformed frame / bad IP, UDP, TCP, ICMP checksum (both sides)" "$nbad bad"
  tsh "$F" -Y "(udp.port == 8472) && ($BAD_FRAME || (_ws.expert.severity == error && !(tcp.checksum == 0xffff)))" \
    -T fields -e frame.number -e ip.src -e ip.dst -e _ws.col.Protocol -e _ws.expert.message -e _ws.col.Info | head -5
fi
# The checksum check is not vacuous: tshark verified inner checksums as good.
n_good=$(tcount "$F" "$PSW && ip.checksum.status == 1 && (tcp.checksum.status == 1 || icmp.checksum.status == 1)")
if [ "$n_good" -gt 0 ]; then
  pass "tshark verified podswitch frames' checksums as good" "$n_good frames"
else
  fail "tshark verified podswitch frames' checksums as good" 0
fi
# The kernel's frames decode the same way (sanity check of the capture itself).
n_k=$(tcount "$F" "ip.src == 192.168.1.11 && vxlan.vni == 1")
if [ "$n_k" -gt 0 ]; then pass "flannel kernel frames seen (VNI 1)" "$n_k"; else fail "flannel kernel frames seen (VNI 1)" 0; fi

if [ "$FAILS" != 0 ]; then
  echo "--- podswitchd node1 stats (drops)"
  psw_ctl 1 stats || true
  echo "--- podswitchd log"
  tail -20 "$TMPD/podswitchd-node1.log" || true
  echo "interop_flannel: $FAILS check(s) FAILED"
  exit 1
fi
echo "interop_flannel: all checks passed"
