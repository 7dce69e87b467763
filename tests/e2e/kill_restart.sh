#!/usr/bin/env bash
# kill -9 of podswitchd on node1: the node's own address (192.168.1.10) stays reachable from
# the fabric (ping, TCP) because the uplink's XDP program passes non-podswitch traffic to
# the kernel and falls back to XDP_PASS when no socket is bound; pod traffic through node1
# stops; a podswitchd started over the leftovers (XDP programs still attached, stale socket
# file) restores pod<->pod forwarding within a few seconds.
source "$(dirname "$0")/lib.sh"

RESTORE_MAX=5 # seconds

cluster_up

check "before: pod a -> pod c (node1, same node)" ping1 "$P-n1-a" 10.244.1.11
check "before: pod b -> pod a (node2 -> node1, vxlan)" ping1 "$P-n2-b" 10.244.1.10
check "before: fabric -> node1 192.168.1.10 (ping)" ping1 "$P-fab" 192.168.1.10

# A TCP listener of the node's own stack (think sshd/kubelet). -k: accept again and again.
ip netns exec "$P-node1" nc -k -l 192.168.1.10 7022 >/dev/null 2>&1 &
for _ in $(seq 1 50); do
  ip netns exec "$P-node1" ss -ltn 2>/dev/null | grep -q ':7022 ' && break
  sleep 0.1
done
tcp_connect() { timeout 10 ip netns exec "$P-fab" nc -z -w 3 192.168.1.10 7022; }
check "before: fabric -> node1 TCP 7022 (nc)" tcp_connect

old_pid=${DPID[1]}
kill -KILL "$old_pid"
timeout 10 tail --pid="$old_pid" -f /dev/null 2>/dev/null
{ wait "$old_pid"; } 2>/dev/null
DPID[1]=
if kill -0 "$old_pid" 2>/dev/null; then
  die "podswitchd on node1 killed with SIGKILL" "pid $old_pid still alive"
fi
pass "podswitchd on node1 killed with SIGKILL" "pid $old_pid"

# The leftovers the restart has to cope with.
left=$(xdp_attached "$P-node1" | sort | tr '\n' ' ')
if [ -n "$left" ]; then
  pass "after kill: XDP programs still attached on node1" "$left"
else
  fail "after kill: XDP programs still attached on node1" "none (the restart-over-leftovers check would prove nothing)"
fi
check "after kill: stale socket file left" test -S "$(sock 1)"

# The node itself does not depend on podswitchd.
check "after kill: fabric -> node1 192.168.1.10 (ping)" \
  timeout 20 ip netns exec "$P-fab" ping -c 3 -i 0.2 -W 2 192.168.1.10
check "after kill: fabric -> node1 TCP 7022 (nc)" tcp_connect
check "after kill: node2 -> node1 192.168.1.10 (ping)" ping1 "$P-node2" 192.168.1.10

# Pod traffic through node1 stops.
check_fails "after kill: pod a -> pod c stops" \
  timeout 10 ip netns exec "$P-n1-a" ping -c 2 -i 0.3 -W 1 10.244.1.11
check_fails "after kill: pod b -> pod a (via node1) stops" \
  timeout 10 ip netns exec "$P-n2-b" ping -c 2 -i 0.3 -W 1 10.244.1.10
check_fails "after kill: node1 -> pod a (host port) stops" \
  timeout 10 ip netns exec "$P-node1" ping -c 2 -i 0.3 -W 1 10.244.1.10
check "after kill: pod b -> pod d (node2 only) still works" ping1 "$P-n2-b" 10.244.2.21

# Restart over the leftovers.
t0=$(now_ms)
if start_node 1; then
  pass "restart: podswitchd starts over the leftovers" "$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f s", ms / 1000 }')"
else
  die "restart: podswitchd starts over the leftovers"
fi
for path in "pod a -> pod c|$P-n1-a|10.244.1.11" "pod a -> pod b|$P-n1-a|10.244.2.20" \
  "pod b -> pod a|$P-n2-b|10.244.1.10" "pod d -> pod c|$P-n2-d|10.244.1.11" \
  "node1 -> pod a|$P-node1|10.244.1.10"; do
  IFS='|' read -r name ns dst <<<"$path"
  if wait_ping "$ns" "$dst" "$RESTORE_MAX"; then
    pass "restart: $name forwards again" "$(awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f", ms / 1000 }') s after the restart command"
  else
    fail "restart: $name forwards again" "not within $RESTORE_MAX s"
  fi
done
check "restart: steady a -> b afterwards (20 pings, 0% loss)" \
  sh -c "out=\$(timeout 30 ip netns exec $P-n1-a ping -c 20 -i 0.05 -W 1 10.244.2.20); echo \"\$out\" | tail -2; echo \"\$out\" | grep -q ' 0% packet loss'"
check "restart: fabric -> node1 TCP 7022 (nc)" tcp_connect
finish
