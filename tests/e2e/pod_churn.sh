#!/usr/bin/env bash
# Pods added and removed at runtime (podswitchctl program add-pod / remove-pod) while steady
# flows run between other pods: the flows lose nothing (ping 0% loss, iperf3 UDP 0 lost
# datagrams), and each new pod is reachable (same node, across nodes, from the node) while
# it exists and unreachable once removed. Two removal orders: remove-pod then delete the
# veth (graceful) and delete the pod's namespace first, then remove-pod (the veth vanished
# under an open AF_XDP socket, as when a pod's namespace goes away before the CNI DEL).
source "$(dirname "$0")/lib.sh"

FLOW_SECONDS=9
COUNT=$((FLOW_SECONDS * 100))

cluster_up
check "warm-up: pod c -> pod a" ping1 "$P-n1-c" 10.244.1.10
check "warm-up: pod d -> pod c" ping1 "$P-n2-d" 10.244.1.11

# Steady flows: F1 pod a -> pod b (node1 -> node2, vxlan), F2 pod c -> pod a (node1, L2),
# F3 iperf3 UDP pod d -> pod c (node2 -> node1), 20 Mbit/s of 1000-byte datagrams. The
# receiving socket gets a 2 MiB buffer (-w): with the default one, a receiver starved of
# CPU on a busy machine drops datagrams the switch did deliver (UDP RcvbufErrors).
ip netns exec "$P-n1-c" iperf3 -s -1 -p 5301 -D >/dev/null 2>&1
for _ in $(seq 1 50); do
  ip netns exec "$P-n1-c" ss -ltn 2>/dev/null | grep -q ':5301 ' && break
  sleep 0.1
done
ip netns exec "$P-n1-a" timeout $((FLOW_SECONDS + 20)) ping -q -i 0.01 -c "$COUNT" -W 2 10.244.2.20 \
  >"$LOGDIR/f1.out" 2>&1 &
f1=$!
ip netns exec "$P-n1-c" timeout $((FLOW_SECONDS + 20)) ping -q -i 0.01 -c "$COUNT" -W 2 10.244.1.10 \
  >"$LOGDIR/f2.out" 2>&1 &
f2=$!
ip netns exec "$P-n2-d" timeout $((FLOW_SECONDS + 30)) iperf3 -c 10.244.1.11 -p 5301 -u -b 20M -l 1000 -w 2M \
  -t "$FLOW_SECONDS" -J >"$LOGDIR/f3.json" 2>"$LOGDIR/f3.err" &
f3=$!
t0=$(now_ms)
udp_errs() { ip netns exec "$P-n1-c" awk '/^Udp:/ { if (h) { print $4, $6 } else h = 1 }' /proc/net/snmp; }
udp0=$(udp_errs)
sleep 1

# new_pod N NAME IP MAC: namespace + veth, then add-pod; checks it is reachable.
new_pod() {
  local n=$1 name=$2 ip=$3 mac=$4 other_node=$((3 - $1))
  pod_up "$n" "$name" "$ip" "$mac" "10.244.$n.1" >>"$LOGDIR/net.log" 2>&1
  check "node$n: add-pod pod-$name ($ip)" \
    ctl "$n" program add-pod --name "default/pod-$name" --port "veth-pod-$name" --ip "$ip" --mac "$mac"
  if wait_ping "$P-n$n-$name" "10.244.$n.1" 3; then
    pass "pod-$name -> its gateway 10.244.$n.1" "${WAITED} s after add-pod"
  else
    fail "pod-$name -> its gateway 10.244.$n.1" "not within 3 s"
  fi
  local same=$([ "$n" = 1 ] && echo 10.244.1.11 || echo 10.244.2.21)
  check "pod-$name -> pod on the same node ($same)" ping1 "$P-n$n-$name" "$same"
  local far=$([ "$n" = 1 ] && echo "$P-n2-b" || echo "$P-n1-c")
  check "pod on node$other_node -> pod-$name (vxlan)" ping1 "$far" "$ip"
  check "node$n -> pod-$name (host port)" ping1 "$P-node$n" "$ip"
  check "pod-$name listed in dump ports" sh -c "timeout 10 '$BIN/podswitchctl' --socket '$(sock "$n")' dump ports | grep -q 'veth-pod-$name '"
}

# gone N NAME IP [veth-kept]: after remove-pod, the pod is unreachable and forgotten.
gone() {
  local n=$1 name=$2 ip=$3 kept=${4:-}
  local far=$([ "$n" = 1 ] && echo "$P-n2-b" || echo "$P-n1-c")
  check_fails "pod-$name unreachable after removal" \
    timeout 10 ip netns exec "$far" ping -c 1 -W 1 "$ip"
  check_fails "pod-$name gone from dump ports" sh -c "timeout 10 '$BIN/podswitchctl' --socket '$(sock "$n")' dump ports | grep -q 'veth-pod-$name '"
  if [ -n "$kept" ]; then
    check "node$n: veth-pod-$name still exists" ip netns exec "$P-node$n" ip link show veth-pod-$name
    check_fails "node$n: XDP program detached from veth-pod-$name" \
      sh -c "ip netns exec $P-node$n ip -d -o link show veth-pod-$name | grep -qE 'prog/xdp|xdpgeneric|xdpdrv'"
  fi
}

# Cycle 1: pod e on node1 and pod f on node2 added; removed gracefully (remove-pod, then veth).
new_pod 1 e 10.244.1.12 0a:58:0a:f4:01:0c
new_pod 2 f 10.244.2.22 0a:58:0a:f4:02:16
check "node1: remove-pod default/pod-e" ctl 1 program remove-pod default/pod-e
check "node2: remove-pod default/pod-f" ctl 2 program remove-pod default/pod-f
gone 1 e 10.244.1.12 veth-kept
gone 2 f 10.244.2.22 veth-kept
pod_down 1 e
pod_down 2 f

# Cycle 2: pod g on node1 added; its namespace (and veth) deleted first, then remove-pod.
new_pod 1 g 10.244.1.13 0a:58:0a:f4:01:0d
pod_down 1 g
sleep 0.3
check "node1: remove-pod default/pod-g after its veth vanished" ctl 1 program remove-pod default/pod-g
gone 1 g 10.244.1.13
churn_ms=$(($(now_ms) - t0))
if [ "$churn_ms" -lt $((FLOW_SECONDS * 1000 - 500)) ]; then
  pass "all pod changes happened while the flows ran" "$((churn_ms)) ms of ${FLOW_SECONDS} s"
else
  fail "all pod changes happened while the flows ran" "churn took $churn_ms ms, flows ${FLOW_SECONDS} s: make FLOW_SECONDS larger"
fi

timeout $((FLOW_SECONDS + 40)) tail --pid="$f3" -f /dev/null 2>/dev/null
wait "$f1"
wait "$f2"
wait "$f3"
for f in "f1|pod a -> pod b (vxlan)" "f2|pod c -> pod a (same node)"; do
  IFS='|' read -r id name <<<"$f"
  out=$(cat "$LOGDIR/$id.out")
  stats=$(grep 'packets transmitted' <<<"$out")
  if grep -q "^$COUNT packets transmitted, $COUNT received" <<<"$out"; then
    pass "flow $name: no loss during the changes" "$stats"
  else
    fail "flow $name: no loss during the changes" "${stats:-$(tail -n 2 <<<"$out")}"
  fi
done
lost=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
s = d["end"]["sum"]
print(s["packets"], s["lost_packets"])
' "$LOGDIR/f3.json" 2>/dev/null)
read -r pk lo <<<"${lost:-x x}"
if [ "$lo" = 0 ] && [ "$pk" -gt 1000 ] 2>/dev/null; then
  pass "flow iperf3 UDP pod d -> pod c: 0 lost datagrams" "$pk datagrams, $lo lost"
else
  fail "flow iperf3 UDP pod d -> pod c: 0 lost datagrams" "${lost:+$pk datagrams, $lo lost; pod c UDP InErrors/RcvbufErrors $udp0 -> $(udp_errs)}${lost:-no result: $(tail -c 300 "$LOGDIR/f3.err" "$LOGDIR/f3.json" | tr '\n' ' ')}"
fi

# Where frames went missing, if any: the daemons' own counters, the kernel's on the way.
if [ "$FAILS" != 0 ]; then
  echo "--- pod c UDP InErrors RcvbufErrors: before $udp0, after $(udp_errs)"
  for l in "$P-n2-d eth0" "$P-node2 veth-pod-d" "$P-node1 veth-pod-c" "$P-n1-c eth0"; do
    read -r ns dev <<<"$l"
    echo "--- $dev in ${ns#"$P"-}: $(ip netns exec "$ns" ip -s -o link show "$dev" | sed -E 's/.*RX: *//; s/\\ +/ /g')"
  done
  for n in 1 2; do
    echo "--- node$n podswitchctl stats (ports, worker, drops)"
    ctl "$n" stats | grep -E 'port |handoff|sleeps|busy|_[a-z]+ +[0-9]+$' | sed 's/^/    /'
  done
fi

check "after the churn: pod a -> pod c" ping1 "$P-n1-a" 10.244.1.11
check "after the churn: pod b -> pod a" ping1 "$P-n2-b" 10.244.1.10
finish
