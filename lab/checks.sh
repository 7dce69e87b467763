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

# iperf3 checked by tshark on the underlay. The capture is taken on the fabric side of the
# sending node's uplink veth ($P-nN in $P-fab): the node's eth0 has every offload off
# (lab/netns.sh no_offload), so what crosses it is what a wire would carry, with complete
# checksums and at most 1514 bytes, whether podswitch wrote it (AF_XDP; with LAB_GSO=1 the
# segments podswitch cut from a pod's 64 KB super-frames) or the kernel did (a flannel node's
# vxlan GSO packets are segmented and checksummed in software before a device without
# TSO/GSO/tx checksum). A frame over 1514 bytes there could not cross a 1500-byte wire and
# would carry partial checksums: it is counted as oversize, fails the check, and its
# checksums are not judged. Pod-side veths keep offloads on (partial checksums by design):
# nothing is checked there.
#
# Retransmissions may be at most IPERF_RETRANS_MAX_PCT % of the captured data segments. The
# veths lose nothing by themselves; a healthy lab loses a segment only when an rx ring
# overflows while the thread that drains it (a podswitchd worker, the kernel's softirq)
# waits for one of the 2 cores the machine shares with other work (the capture itself
# included): up to 1.07 % was seen on a healthy lab under the whole test suite. A bad
# checksum or a wrong segmentation makes the receiver drop, and the sender resends far more
# (3 % loss put on purpose at a pod's ingress fails).
IPERF_RETRANS_MAX_PCT=${IPERF_RETRANS_MAX_PCT:-2}
# Whole frames (TCP checksums need them), bounded in count and time.
IPERF_CAPTURE_FRAMES=30000
# Out-of-order counts as a resend: the underlay does not reorder, and tshark calls a resend
# out-of-order when it follows the highest segment within 3 ms (the lab's RTT is ~0.1 ms).
TCP_RESENT="tcp.analysis.retransmission || tcp.analysis.fast_retransmission || tcp.analysis.spurious_retransmission || tcp.analysis.out_of_order"

# tcp_pcap_counts FILE: one line "frames segments resent bad_ip bad_udp bad_tcp malformed
# oversize" over a capture, VXLAN decoded on its port, IP/UDP/TCP checksums validated.
# Segments and resends are the iperf3 port's; checksums are judged on every wire-sized
# frame. A TCP checksum 0xffff is good: Linux writes it when its software sum is 0
# (CSUM_MANGLED_0) and tshark flags it per RFC 1624 (see tests/e2e/lib/interop.sh).
tcp_pcap_counts() {
  local wire="frame.len <= 1514" iperf="tcp.port == 5201 && tcp.len > 0"
  tshark -r "$1" -n -d "udp.port==$TOPO_VXLAN_PORT,vxlan" -d tcp.port==5201,data \
    -o ip.check_checksum:TRUE -o udp.check_checksum:TRUE -o tcp.check_checksum:TRUE -q \
    -z "io,stat,0,frame,$iperf,$iperf && ($TCP_RESENT),$wire && ip.checksum.status == 0,$wire && udp.checksum.status == 0,$wire && tcp.checksum.status == 0 && !(tcp.checksum == 0xffff),_ws.malformed,frame.len > 1514" \
    2>/dev/null | awk -F'|' '/<>/ { for (i = 3; i < NF; i += 2) { gsub(/ /, "", $i); printf "%s ", $i }; print "" }'
}

# tcp_pcap_verdict FILE: "PASS|detail" or "FAIL|detail" for a capture of iperf3 traffic.
tcp_pcap_verdict() {
  local frames segs resent bip budp btcp malformed over pct detail
  read -r frames segs resent bip budp btcp malformed over <<<"$(tcp_pcap_counts "$1")"
  [ -n "$over" ] || { echo "FAIL|tshark could not read the capture"; return; }
  pct=$(awk -v r="$resent" -v s="$segs" 'BEGIN { printf "%.2f", s ? 100 * r / s : 0 }')
  detail="$segs segments, $resent resent ($pct %), bad checksums ip $bip udp $budp tcp $btcp"
  [ "$malformed" = 0 ] || detail+=", $malformed malformed"
  [ "$over" = 0 ] || detail+=", $over frames > 1514 B"
  if [ $((bip + budp + btcp + malformed + over)) != 0 ]; then
    echo "FAIL|$detail"
  elif [ "$segs" = 0 ]; then
    echo "FAIL|no iperf3 segment captured ($frames frames)"
  elif awk -v p="$pct" -v m="$IPERF_RETRANS_MAX_PCT" 'BEGIN { exit !(p > m) }'; then
    echo "FAIL|$detail: over $IPERF_RETRANS_MAX_PCT %"
  else
    echo "PASS|$detail"
  fi
}

# check_iperf_tcp NAME CLIENT_NS SERVER_NS SERVER_IP CAPTURE_NS CAPTURE_DEV: iperf3 for 3 s,
# its first IPERF_CAPTURE_FRAMES underlay frames (from the handshake on, which tshark's
# analysis uses; ~0.4 s at 1 Gbit/s) captured on CAPTURE_DEV and judged by
# tcp_pcap_verdict. The capture lives in a temporary folder of the lab's state folder
# (CLUSTER_DIR, else TMPDIR), removed afterwards.
check_iperf_tcp() {
  local name=$1 cns=$2 sns=$3 sip=$4 capns=$5 capdev=$6 dir ipid cpid="" rate verdict i
  dir=$(mktemp -d "${CLUSTER_DIR:-${TMPDIR:-/tmp}}/$P-iperf.XXXXXX")
  ip netns exec "$sns" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1 || true
  if command -v tshark >/dev/null 2>&1; then
    ip netns exec "$capns" timeout 20 tshark -i "$capdev" -B 64 -c "$IPERF_CAPTURE_FRAMES" \
      -a duration:8 -f "udp port $TOPO_VXLAN_PORT or ip proto 4 or tcp port 5201" \
      -w "$dir/underlay.pcap" >/dev/null 2>"$dir/capture.log" &
    cpid=$!
    # tshark says "Capturing on" once dumpcap captures (its start-up takes a second or more
    # on a loaded machine).
    for ((i = 0; i < 100; i++)); do
      grep -q "Capturing on" "$dir/capture.log" 2>/dev/null && break
      sleep 0.1
    done
  fi
  sleep 0.3
  ip netns exec "$cns" timeout 20 iperf3 -c "$sip" -p 5201 -t 3 -J >"$dir/iperf.json" 2>/dev/null &
  ipid=$!
  [ -z "$cpid" ] || wait "$cpid" || true
  if ! wait "$ipid"; then
    result "$name" FAIL "iperf3 failed"
    rm -rf "$dir"
    return
  fi
  rate=$(python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]; print("%.2f Gbit/s, iperf3 retr %d" % (e["sum_received"]["bits_per_second"]/1e9, e["sum_sent"].get("retransmits", 0)))' <"$dir/iperf.json")
  if ! command -v tshark >/dev/null 2>&1; then
    result "$name" SKIP "$rate; not verified: tshark missing (Debian package tshark)"
  else
    verdict=$(tcp_pcap_verdict "$dir/underlay.pcap")
    result "$name" "${verdict%%|*}" "$rate; underlay: ${verdict#*|}"
  fi
  rm -rf "$dir"
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
  gw=$(cidr_gateway "$(kctl get node node1 -o 'jsonpath={.spec.podCIDR}')")
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
  # TCP across nodes, verified on the underlay: podswitch's frames (node1), then the
  # kernel's VXLAN (flannel node3).
  check_iperf_tcp "iperf3 TCP pod A -> pod B (3 s)" "$(pod_ns pod-a)" "$(pod_ns pod-b)" "$b" \
    "$P-fab" "$P-n1"
  check_iperf_tcp "iperf3 TCP flannel pod E -> pod B (3 s)" "$(pod_ns pod-e)" "$(pod_ns pod-b)" \
    "$b" "$P-fab" "$P-n3"
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
