#!/usr/bin/env bash
# VXLAN interoperability, the other way round and with a node added at runtime.
#
# node2 runs podswitchd (config/node2-vxlan.toml); node1 and node3 are Linux kernels set up
# as flannel's vxlan backend sets them up (see flannel_node in tests/e2e/lib/interop.sh),
# and they keep the kernel's default veth offloads (TSO/GSO/GRO, checksum offload) on
# their own interfaces, as a flannel node would. node3 (192.168.1.12, 10.244.3.0/24,
# VTEP MAC 0e:00:00:00:00:03) is not in podswitch's configuration: it is added with
# `podswitchctl program add-peer` while podswitchd runs, and removed again.
#
# Checks: ping, TCP and UDP pod<->pod with node1 both ways (pods of MTU 1500 and 1450 on the
# podswitch side), node-originated traffic both ways, frag-needed 1450 from podswitch,
# pod<->pod with node3 once it is a peer, and no path to node3 after remove-peer.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
P=${E2E_PREFIX:-pr$$}
# shellcheck source=lab/netns.sh
source lab/netns.sh
# shellcheck source=tests/e2e/lib/interop.sh
source tests/e2e/lib/interop.sh
interop_begin

echo "== interop_flannel_reverse: flannel kernel nodes 1 and 3 <-> podswitch (node2), prefix $P"
# The topology's nodes 1 to 3 with their static pods (lab/topology.sh).
fabric_up
for n in 1 2 3; do node_up "$n"; done
host_port 2
topo_pod_up b 1500
topo_pod_up d 1450
for n in 1 3; do
  flannel_node "$n"
  flannel_peer "$n" 2
done
flannel_peer 1 3
flannel_peer 3 1
topo_kernel_pod a 1450
topo_kernel_pod e 1450
# The kernel nodes keep the kernel's defaults (node_up/pod_up switch offloads off).
for n in 1 3; do
  nsx "$P-node$n" ethtool -K eth0 tx on rx on sg on tso on gso on gro on >/dev/null 2>&1 || true
done
nsx "$P-node1" ethtool -K veth-pod-a tx on rx on sg on tso on gso on gro on >/dev/null 2>&1 || true
nsx "$P-n1-a" ethtool -K eth0 tx on rx on sg on tso on gso on gro on >/dev/null 2>&1 || true
nsx "$P-node3" ethtool -K veth-pod-e tx on rx on sg on tso on gso on gro on >/dev/null 2>&1 || true
nsx "$P-n3-e" ethtool -K eth0 tx on rx on sg on tso on gso on gro on >/dev/null 2>&1 || true
start_psw 2 config/node2-vxlan.toml 0

A=$P-n1-a B=$P-n2-b D=$P-n2-d E=$P-n3-e
check "ping pod A (flannel node1) -> pod B (podswitch)" ping_ok "$A" 10.244.2.20
check "ping pod B -> pod A" ping_ok "$B" 10.244.1.10
check "ping pod D (MTU 1450) -> pod A" ping_ok "$D" 10.244.1.10
check "ping flannel node1 (src 10.244.1.0) -> pod B" ping_ok "$P-node1" 10.244.2.20
check "ping podswitch node2 -> pod A" ping_ok "$P-node2" 10.244.1.10
check "ping -M do -s 1422 pod B -> pod A" ping_ok "$B" -M do -s 1422 10.244.1.10
check "ping -M do -s 1472 B (MTU 1500) -> A fails, mtu=1450" frag_needed "$B" 10.244.1.10 1472 1450
check "iperf3 TCP pod A -> pod B (3 s)" iperf_tcp "$A" "$B" 10.244.2.20 3
check "iperf3 TCP pod B -> pod A (3 s)" iperf_tcp "$B" "$A" 10.244.1.10 3
check "iperf3 UDP pod A -> pod D" iperf_udp "$A" "$D" 10.244.2.21
check "iperf3 UDP pod D -> pod A" iperf_udp "$D" "$A" 10.244.1.10

# node3 joins: before add-peer podswitch has no route to 10.244.3.0/24.
check_fails "ping pod B -> pod E before add-peer" ping_ok "$B" 10.244.3.30
psw_ctl 2 program add-peer --name node3 --address 192.168.1.12 --pod-cidr 10.244.3.0/24 \
  --vtep-mac 0e:00:00:00:00:03 >/dev/null
# podswitch has no MAC for 192.168.1.12: it resolves it through the kernel's ARP.
check "pod B reaches pod E (node3, added at runtime) within 2 s" wait_ping "$B" 10.244.3.30 2
pass "  ... after" "${WAITED} s"
check "dump neighbours shows 192.168.1.12 learned from the kernel" \
  sh -c "'$BIN/podswitchctl' --socket '$(sock 2)' dump neighbours | grep -E '192.168.1.12 +02:00:c0:a8:01:12 +kernel-arp'"
check "ping pod B -> pod E" ping_ok "$B" 10.244.3.30
check "ping pod E -> pod D" ping_ok "$E" 10.244.2.21
check "iperf3 TCP pod E -> pod B (3 s)" iperf_tcp "$E" "$B" 10.244.2.20 3
check "pod A (node1) still reaches pod B" ping_ok "$A" 10.244.2.20
psw_ctl 2 program remove-peer node3 >/dev/null
check_fails "ping pod B -> pod E after remove-peer" ping_ok "$B" 10.244.3.30
check_fails "192.168.1.12 no longer in dump neighbours" \
  sh -c "'$BIN/podswitchctl' --socket '$(sock 2)' dump neighbours | grep 192.168.1.12"
check "pod A (node1) still reaches pod B after remove-peer" ping_ok "$A" 10.244.2.20

if [ "$FAILS" != 0 ]; then
  echo "--- podswitchd node2 stats (drops)"
  psw_ctl 2 stats || true
  tail -20 "$TMPD/podswitchd-node2.log" || true
  echo "interop_flannel_reverse: $FAILS check(s) FAILED"
  exit 1
fi
echo "interop_flannel_reverse: all checks passed"
