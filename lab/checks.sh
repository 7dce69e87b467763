# shellcheck shell=bash
# The lab's checks, run by lab/lab.sh up/check against the running cluster: pod addresses
# come from the API; pods are the namespaces $P-nN-POD the node agents made.
# Needs P, BIN, kctl (lab/cluster/common.sh), node_kind (lab/lab.sh), lab/topology.sh.

RESULTS=()
result() { RESULTS+=("$1|$2|$3"); printf '%-5s %-46s %s\n' "$2" "$1" "$3"; }

pod_ip() { kctl get pod "$1" -o 'jsonpath={.status.podIP}'; }
pod_ns() { echo "$P-n$(kctl get pod "$1" -o 'jsonpath={.spec.nodeName}' | tr -dc 0-9)-$1"; }

check_ping() {
  local name=$1 ns=$2 out
  shift 2
  if out=$(ip netns exec "$ns" ping -c 3 -i 0.2 -W 2 "$@" 2>&1); then
    result "$name" PASS "$(echo "$out" | grep -o 'rtt.*' | cut -d/ -f5 | sed 's/$/ ms avg/')"
  else
    result "$name" FAIL "$(echo "$out" | tail -2 | head -1)"
  fi
}

# check_http NAME NS URL N WANT...: N fresh connections; PASS when all answer and every
# WANT (a pod name) served at least one.
check_http() {
  local name=$1 ns=$2 url=$3 n=$4 out w ok=1
  shift 4
  out=$(ip netns exec "$ns" timeout 60 python3 - "$url" "$n" <<'PY' 2>&1
import sys, urllib.request, collections
url, n = sys.argv[1], int(sys.argv[2])
seen = collections.Counter()
for _ in range(n):
    try:
        seen[urllib.request.urlopen(url, timeout=3).read().decode().strip()] += 1
    except Exception as e:
        seen["error: %s" % e] += 1
print(" ".join("%s=%d" % kv for kv in sorted(seen.items())))
PY
) || out="error: client timed out ${out:-}"
  echo "$out" | grep -q error && ok=0
  for w in "$@"; do echo "$out" | grep -q "$w=" || ok=0; done
  if [ "$ok" = 1 ]; then result "$name" PASS "$out"; else result "$name" FAIL "$out"; fi
}

check() {
  echo
  echo "lab: checks"
  RESULTS=()
  local a b c d e k1 k2
  a=$(pod_ip pod-a) b=$(pod_ip pod-b) c=$(pod_ip pod-c) d=$(pod_ip pod-d) e=$(pod_ip pod-e)
  k1=$(node_kind 1) k2=$(node_kind 2)
  echo "pods: a=$a c=$c (node1, $k1)  b=$b d=$d (node2, $k2)  e=$e (node3, ${TOPO_KIND[3]})"
  check_ping "pod A -> pod C (same node)" "$(pod_ns pod-a)" "$c"
  local gw
  gw=$(kctl get node node1 -o 'jsonpath={.spec.podCIDR}' | sed 's|0/24$|1|')
  check_ping "pod A -> gateway $gw" "$(pod_ns pod-a)" "$gw"
  check_ping "pod A -> pod B (node1 -> node2, vxlan)" "$(pod_ns pod-a)" "$b"
  check_ping "pod D -> pod C (node2 -> node1, vxlan)" "$(pod_ns pod-d)" "$c"
  check_ping "node1 -> pod A" "$P-node1" "$a"
  check_ping "node1 -> pod B (vxlan)" "$P-node1" "$b"
  check_ping "pod B -> node1 ${TOPO_ADDR[1]}" "$(pod_ns pod-b)" "${TOPO_ADDR[1]}"
  check_ping "pod A -> fabric $TOPO_FABRIC_IP (masquerade)" "$(pod_ns pod-a)" "$TOPO_FABRIC_IP"
  check_ping "pod A -> flannel pod E (node1 -> node3)" "$(pod_ns pod-a)" "$e"
  check_ping "flannel pod E -> pod B (node3 -> node2)" "$(pod_ns pod-e)" "$b"
  check_http "HTTP pod A -> flannel pod E :8080" "$(pod_ns pod-a)" "http://$e:8080/whoami" 5 pod-e
  check_http "HTTP flannel pod E -> pod C :8080" "$(pod_ns pod-e)" "http://$c:8080/whoami" 5 pod-c
  if [ "$k1" = podswitch ] && [ "$k2" = podswitch ]; then
    # Path MTU: pods have MTU 1500, the VXLAN path 1450: podswitch answers frag-needed.
    local out
    out=$(ip netns exec "$(pod_ns pod-a)" ping -M do -s 1472 -c 1 -W 2 "$b" 2>&1 || true)
    if echo "$out" | grep -qi "mtu = 1450\|mtu=1450"; then
      result "ping -M do -s 1472 -> frag needed mtu 1450" PASS "$(echo "$out" | grep -io 'mtu.*1450' | head -1)"
    else
      result "ping -M do -s 1472 -> frag needed mtu 1450" FAIL "$(echo "$out" | tail -1)"
    fi
    # Services through podswitch: ClusterIP from a pod, NodePort from the fabric.
    local cip
    cip=$(kctl get svc web -o 'jsonpath={.spec.clusterIP}')
    check_http "ClusterIP $cip:80 from pod A (20 conns)" "$(pod_ns pod-a)" "http://$cip/whoami" 20 pod-b pod-c
    check_http "NodePort ${TOPO_ADDR[1]}:30080 from fabric" "$P-fab" "http://${TOPO_ADDR[1]}:30080/whoami" 20 pod-b pod-c
  else
    result "Services (ClusterIP, NodePort)" SKIP "node1/node2 are flannel nodes: no service proxy"
  fi
  # TCP throughput across nodes.
  ip netns exec "$(pod_ns pod-b)" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1 || true
  sleep 0.3
  local js bps
  if js=$(ip netns exec "$(pod_ns pod-a)" timeout 20 iperf3 -c "$b" -p 5201 -t 3 -J 2>/dev/null); then
    bps=$(echo "$js" | python3 -c 'import json,sys; print("%.2f Gbit/s" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
    result "iperf3 TCP pod A -> pod B (3 s)" PASS "$bps"
  else
    result "iperf3 TCP pod A -> pod B (3 s)" FAIL "iperf3 failed"
  fi
  echo
  echo "lab: results"
  printf '%-48s %-6s %s\n' CHECK RESULT DETAIL
  local r fails=0
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r n s d <<<"$r"
    printf '%-48s %-6s %s\n' "$n" "$s" "$d"
    [ "$s" = FAIL ] && fails=$((fails + 1))
  done
  [ "$fails" = 0 ] || { echo "lab: $fails check(s) failed"; return 1; }
}
