#!/usr/bin/env bash
# Would a tap pod port (virtio-net headers, as VPP and Calico/VPP give pods) beat the AF_XDP
# super-frame port? Its upper bound, measured: two pods on tap devices whose frames (64 KB
# GSO frames with their virtio-net header) are relayed untouched by `bench.py tap-relay`,
# against two pods on a kernel bridge (veth, offloads on), iperf3 -t 8 between them, the
# relay on core 0 and iperf3 on core 1 as the harness places podswitchd and its tools.
# Usage: bench/tap_probe.sh [ROUNDS] (default 3). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
P=ptap$$
TMPD=$(mktemp -d)
cleanup() {
  for n in node a c bn ba bc; do ip netns del "$P-$n" 2>/dev/null || true; done
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
gbit() { sed -n 's/.* \([0-9.]*\) Gbits\/sec .*receiver/\1/p'; }

for r in $(seq 1 "$ROUNDS"); do
  for n in node a c bn ba bc; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
  # tap pods: the relay opens both taps in the node namespace, then they move to the pods
  ip netns exec "$P-node" taskset -c 0 python3 bench/bench.py tap-relay tapa tapc 12 >"$TMPD/relay.out" 2>&1 &
  rp=$!
  for _ in $(seq 50); do grep -q ready "$TMPD/relay.out" 2>/dev/null && break; sleep 0.1; done
  for x in a c; do ip -n "$P-node" link set "tap$x" netns "$P-$x"; done
  ip -n "$P-a" addr add 10.9.0.1/24 dev tapa
  ip -n "$P-c" addr add 10.9.0.2/24 dev tapc
  for x in a c; do ip -n "$P-$x" link set "tap$x" up; done
  sleep 0.5
  ip netns exec "$P-c" taskset -c 1 timeout 30 iperf3 -s -1 -p 5999 >/dev/null 2>&1 &
  sleep 0.3
  tap=$(ip netns exec "$P-a" taskset -c 1 timeout 30 iperf3 -c 10.9.0.2 -p 5999 -t 8 | gbit)
  wait "$rp"
  relay=$(tail -1 "$TMPD/relay.out")
  # the kernel: a bridge and two veths, offloads on (as cni0)
  ip -n "$P-bn" link add br0 type bridge
  ip -n "$P-bn" link set br0 up
  for x in a c; do
    ip link add "v$x" netns "$P-bn" type veth peer name eth0 netns "$P-b$x"
    ip -n "$P-bn" link set "v$x" master br0 up
    ip -n "$P-b$x" link set eth0 up
  done
  ip -n "$P-ba" addr add 10.9.1.1/24 dev eth0
  ip -n "$P-bc" addr add 10.9.1.2/24 dev eth0
  sleep 0.5
  ip netns exec "$P-bc" taskset -c 1 timeout 30 iperf3 -s -1 -p 5998 >/dev/null 2>&1 &
  sleep 0.3
  kern=$(ip netns exec "$P-ba" taskset -c 1 timeout 30 iperf3 -c 10.9.1.2 -p 5998 -t 8 | gbit)
  echo "round $r: tap relay $tap Gbit/s (relay $relay), kernel bridge $kern Gbit/s"
  for n in node a c bn ba bc; do ip netns del "$P-$n" 2>/dev/null || true; done
done
