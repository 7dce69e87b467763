#!/usr/bin/env bash
# Clean shutdown: SIGTERM (and SIGINT) make podswitchd detach its XDP programs from every
# interface it used (ip -d link and bpftool net show none), remove its control socket and
# exit 0; the node's kernel then handles everything on the uplink again.
source "$(dirname "$0")/lib.sh"

cluster_up

bpf_xdp() { ip netns exec "$1" bpftool net show 2>&1 | sed -n '/^xdp:/,/^$/p' | grep '(' | cut -d'(' -f1; }
declare -A PODS_OF=([1]="veth-pod-a veth-pod-c" [2]="veth-pod-b veth-pod-d")
for n in 1 2; do
  want="eth0 psw-host ${PODS_OF[$n]} "
  progs=$(xdp_attached "$P-node$n" | sort | tr '\n' ' ')
  bt=$(bpf_xdp "$P-node$n" | sort | tr '\n' ' ')
  if [ "$progs" = "$want" ] && [ "$bt" = "$want" ]; then
    pass "running: node$n has XDP on uplink, host port and pods (ip link, bpftool)" "$progs"
  else
    fail "running: node$n has XDP on uplink, host port and pods (ip link, bpftool)" "ip: $progs bpftool: $bt"
  fi
done

# Traffic in flight while node1 stops.
ip netns exec "$P-n1-a" timeout 20 ping -q -i 0.01 10.244.2.20 >/dev/null 2>&1 &
sleep 1

# node1 stops on SIGTERM (with a ping flood going through it), node2 on SIGINT.
for n in 1 2; do
  sig=$([ "$n" = 1 ] && echo TERM || echo INT)
  pid=${DPID[$n]}
  kill "-$sig" "$pid"
  timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null
  if kill -0 "$pid" 2>/dev/null; then
    fail "node$n: podswitchd exits within 15 s of SIG$sig" "still running"
    continue
  fi
  wait "$pid"
  rc=$?
  DPID[n]=
  if [ "$rc" = 0 ]; then
    pass "node$n: podswitchd exits with status 0 on SIG$sig"
  else
    fail "node$n: podswitchd exits with status 0 on SIG$sig" "status $rc"
  fi
  left=$(xdp_attached "$P-node$n" | tr '\n' ' ')
  if [ -z "$left" ]; then
    pass "node$n: no XDP program left (ip -d link show)"
  else
    fail "node$n: no XDP program left (ip -d link show)" "still on: $left"
  fi
  bt=$(bpf_xdp "$P-node$n" | tr '\n' ' ')
  if [ -z "$bt" ]; then
    pass "node$n: no XDP program left (bpftool net show)"
  else
    fail "node$n: no XDP program left (bpftool net show)" "still on: $bt"
  fi
  check_fails "node$n: control socket file removed" test -e "$(sock "$n")"
done

# With podswitchd gone the kernel owns the uplinks again: node <-> node still works.
check "after shutdown: node1 -> node2 192.168.1.11 (ping)" ping1 "$P-node1" 192.168.1.11
check "after shutdown: fabric -> node1 192.168.1.10 (ping)" ping1 "$P-fab" 192.168.1.10
finish
