#!/usr/bin/env bash
# podswitch <-> podswitch in every overlay mode, with the wire format checked in fabric
# captures decoded by tshark:
#
#   vxlan    config/node{1,2}-vxlan.toml    UDP 8472, VNI 1, inner VTEP MACs + pod addresses
#   ipip     config/node{1,2}-ipip.toml     IPv4 protocol 4, outer node->node, inner pods
#            (this kernel has no ipip module: only the capture can check the wire)
#   host-gw  config/node{1,2}-host-gw.toml  plain pod->pod IPv4 between the node MACs
#   mixed    config/node{1,2,3}-mixed.toml  node1<->node2 on one segment host-gw, node3 in
#            another subnet behind a router, reached over VXLAN (per-peer overrides)
#
# Each mode: ping both ways and a short TCP transfer (iperf3 -t 1) both ways.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
P=${E2E_PREFIX:-po$$}
# shellcheck source=lab/netns.sh
source lab/netns.sh
# shellcheck source=tests/e2e/lib/interop.sh
source tests/e2e/lib/interop.sh
interop_begin

echo "== overlay_modes: podswitch <-> podswitch, prefix $P"
# Fabric: br0 192.168.1.0/24 (node1, node2) routed to br1 192.168.2.0/24 (node3).
# The topology's mixed-overlay layout (lab/topology.sh, TOPO_ROUTED_*): node3 routed.
fabric_up
rn=$TOPO_ROUTED_NODE
nsx "$P-fab" ip link add br1 type bridge
nsx "$P-fab" ip link set br1 address "$TOPO_ROUTED_ROUTER_MAC"
nsx "$P-fab" ip addr add "$TOPO_ROUTED_ROUTER_IP/${TOPO_ROUTED_NET#*/}" dev br1
nsx "$P-fab" ip link set br1 up
nsx "$P-fab" sysctl -qw net.ipv4.ip_forward=1
node_up 1
node_up 2
node_up "$rn" "$TOPO_ROUTED_ADDR" "$TOPO_ROUTED_UPLINK_MAC"
nsx "$P-fab" ip link set "$P-n$rn" nomaster
nsx "$P-fab" ip link set "$P-n$rn" master br1
nsx "$P-node$rn" ip addr flush dev eth0
nsx "$P-node$rn" ip addr add "$TOPO_ROUTED_ADDR/${TOPO_ROUTED_NET#*/}" dev eth0
for n in 1 2; do nsx "$P-node$n" ip route add "$TOPO_ROUTED_NET" via "$TOPO_FABRIC_IP"; done
nsx "$P-node$rn" ip route add "$TOPO_FABRIC_NET" via "$TOPO_ROUTED_ROUTER_IP"
for n in 1 2 3; do host_port "$n"; done
for x in a c b d e; do topo_pod_up "$x"; done
A=$P-n1-a B=$P-n2-b E=$P-n3-e
M1=02:00:c0:a8:01:10 M2=02:00:c0:a8:01:11 MR=02:00:c0:a8:01:01

# expect_count NAME FILE FILTER OP N: frames matching FILTER compared with N.
expect_count() {
  local name=$1 file=$2 filter=$3 op=$4 want=$5 got
  got=$(tcount "$file" "$filter")
  if [ "$got" "$op" "$want" ]; then pass "$name" "$got frames"; else
    fail "$name" "$got frames (want $op $want)"
    # Which frames (the first few), for a failure that does not reproduce.
    tsh "$file" -Y "$filter" -T fields -e frame.number -e frame.len -e ip.src -e ip.dst \
      -e _ws.col.Protocol -e _ws.expert.message -e _ws.col.Info 2>/dev/null | head -3 | cut -c1-300
  fi
}

# traffic MODE SRC_NS SRC_IP DST_NS DST_IP: ping and a 4 MB TCP transfer both ways.
traffic() {
  local mode=$1 sns=$2 sip=$3 dns=$4 dip=$5
  check "$mode: ping $sip -> $dip" ping_ok "$sns" "$dip"
  check "$mode: ping $dip -> $sip" ping_ok "$dns" "$sip"
  check "$mode: TCP $sip -> $dip (4 MB)" iperf_tcp "$sns" "$dns" "$dip" 4M
  check "$mode: TCP $dip -> $sip (4 MB)" iperf_tcp "$dns" "$sns" "$sip" 4M
}

# Frames whose fields (all occurrences) fail the awk condition COND on columns
# $1 eth.src  $2 eth.dst  $3 ip.src  $4 ip.dst  $5 ip.proto (comma-joined per layer).
wire_mismatch() {
  local file=$1 filter=$2 cond=$3
  tsh "$file" -Y "$filter" -T fields -E occurrence=a -E aggregator=, -e eth.src -e eth.dst \
    -e ip.src -e ip.dst -e ip.proto | awk -F'\t' "
    { split(\$1, es, \",\"); split(\$2, ed, \",\"); split(\$3, is, \",\"); split(\$4, id, \",\");
      split(\$5, pr, \",\"); n++; if (!($cond)) { bad++; if (bad <= 3) print \"bad:\", \$0 > \"/dev/stderr\" } }
    END { print bad + 0, n + 0 }"
}

# expect_zero NAME "BAD TOTAL": passes when frames were checked and none was wrong.
expect_zero() {
  local name=$1 bad total
  read -r bad total <<<"$2"
  if [ "$bad" = 0 ] && [ "$total" -gt 0 ]; then
    pass "$name" "$total frames checked"
  else
    fail "$name" "$bad of $total frames wrong"
  fi
}

# ---- two-node modes -------------------------------------------------------------------
for mode in vxlan ipip host-gw; do
  echo "-- $mode"
  start_psw 1 "config/node1-$mode.toml" 0
  start_psw 2 "config/node2-$mode.toml" 1
  cap_start "$mode" "$P-fab" br0 "ip and not arp" 30000
  traffic "$mode" "$A" 10.244.1.10 "$B" 10.244.2.20
  cap_stop "$mode"
  F=$TMPD/$mode.pcap
  NODES="(ip.src == 192.168.1.10 && ip.dst == 192.168.1.11) || (ip.src == 192.168.1.11 && ip.dst == 192.168.1.10)"
  case $mode in
    vxlan)
      expect_count "vxlan: frames on the wire are VXLAN VNI 1 (both ways)" "$F" \
        "udp.dstport == 8472 && vxlan.vni == 1 && vxlan.flag_i == 1 && ($NODES)" -gt 100
      expect_count "vxlan: every pod packet on the wire is encapsulated" "$F" \
        "ip.src == 10.244.0.0/16 && !vxlan" -eq 0
      expect_zero "vxlan: outer node MACs/addresses, inner VTEP MACs + pod addresses" \
        "$(wire_mismatch "$F" "vxlan" '(es[1] == "'$M1'" && ed[1] == "'$M2'" && is[1] == "192.168.1.10" && id[1] == "192.168.1.11" && es[2] == "0e:00:00:00:00:01" && ed[2] == "0e:00:00:00:00:02" && is[2] == "10.244.1.10" && id[2] == "10.244.2.20") || (es[1] == "'$M2'" && ed[1] == "'$M1'" && is[1] == "192.168.1.11" && id[1] == "192.168.1.10" && es[2] == "0e:00:00:00:00:02" && ed[2] == "0e:00:00:00:00:01" && is[2] == "10.244.2.20" && id[2] == "10.244.1.10")')"
      ;;
    ipip)
      expect_count "ipip: frames on the wire are IPv4 protocol 4 (both ways)" "$F" \
        "ip.proto == 4 && ($NODES)" -gt 100
      expect_count "ipip: no VXLAN, every pod packet encapsulated" "$F" \
        "udp.port == 8472 || (ip.src == 10.244.0.0/16 && !(ip.proto == 4))" -eq 0
      expect_zero "ipip: outer node->node proto 4, inner pod addresses, no Ethernet inside" \
        "$(wire_mismatch "$F" "ip" '(es[1] == "'$M1'" && ed[1] == "'$M2'" && is[1] == "192.168.1.10" && id[1] == "192.168.1.11" && pr[1] == 4 && is[2] == "10.244.1.10" && id[2] == "10.244.2.20" && es[2] == "") || (es[1] == "'$M2'" && ed[1] == "'$M1'" && is[1] == "192.168.1.11" && id[1] == "192.168.1.10" && pr[1] == 4 && is[2] == "10.244.2.20" && id[2] == "10.244.1.10" && es[2] == "")')"
      ;;
    host-gw)
      expect_count "host-gw: pod packets on the wire unencapsulated" "$F" \
        "(ip.src == 10.244.1.10 && ip.dst == 10.244.2.20) || (ip.src == 10.244.2.20 && ip.dst == 10.244.1.10)" -gt 100
      expect_count "host-gw: no VXLAN or IP-in-IP" "$F" "udp.port == 8472 || ip.proto == 4" -eq 0
      expect_zero "host-gw: between the node MACs, pod addresses, TTL 63" \
        "$(wire_mismatch "$F" "ip.src == 10.244.0.0/16" '(es[1] == "'$M1'" && ed[1] == "'$M2'" && is[1] == "10.244.1.10" && id[1] == "10.244.2.20" && is[2] == "") || (es[1] == "'$M2'" && ed[1] == "'$M1'" && is[1] == "10.244.2.20" && id[1] == "10.244.1.10" && is[2] == "")')"
      expect_count "host-gw: forwarded once (TTL 63)" "$F" "ip.src == 10.244.0.0/16 && ip.ttl != 63" -eq 0
      ;;
  esac
  case $mode in vxlan) ENC="vxlan" ;; ipip) ENC="ip.proto == 4" ;; *) ENC="!(vxlan || ip.proto == 4)" ;; esac
  for pair in "10.244.1.10 10.244.2.20" "10.244.2.20 10.244.1.10"; do
    read -r s d <<<"$pair"
    expect_count "$mode: TCP data and ICMP echo $s -> $d on the wire" "$F" \
      "($ENC) && ip.src == $s && ip.dst == $d && (tcp.len > 1000 || icmp.type == 8)" -gt 1000
  done
  expect_count "$mode: no malformed frame or bad checksum" "$F" \
    "$BAD_FRAME" -eq 0
  if [ "$FAILS" != 0 ]; then psw_ctl 1 stats | tail -15 || true; fi
  stop_psw 1
  stop_psw 2
done

# ---- mixed: host-gw on the segment, VXLAN across the router ---------------------------
echo "-- mixed"
start_psw 1 config/node1-mixed.toml 0
start_psw 2 config/node2-mixed.toml 1
start_psw 3 config/node3-mixed.toml 0
cap_start mixed "$P-fab" br0 "ip and not arp" 60000
traffic "mixed" "$A" 10.244.1.10 "$B" 10.244.2.20
traffic "mixed" "$A" 10.244.1.10 "$E" 10.244.3.30
traffic "mixed" "$B" 10.244.2.20 "$E" 10.244.3.30
cap_stop mixed
F=$TMPD/mixed.pcap
expect_count "mixed: node1<->node2 pods unencapsulated" "$F" \
  "!vxlan && ((ip.src == 10.244.1.10 && ip.dst == 10.244.2.20) || (ip.src == 10.244.2.20 && ip.dst == 10.244.1.10))" -gt 50
expect_zero "mixed: node1<->node2 direct between node MACs" \
  "$(wire_mismatch "$F" "!vxlan && ip.src == 10.244.0.0/16 && ip.dst == 10.244.0.0/16" '(es[1] == "'$M1'" && ed[1] == "'$M2'" && is[1] == "10.244.1.10" && id[1] == "10.244.2.20") || (es[1] == "'$M2'" && ed[1] == "'$M1'" && is[1] == "10.244.2.20" && id[1] == "10.244.1.10")')"
expect_count "mixed: no pod packet to/from node3 unencapsulated" "$F" \
  "!vxlan && (ip.src == 10.244.3.0/24 || ip.dst == 10.244.3.0/24)" -eq 0
expect_count "mixed: node1/node2 <-> node3 is VXLAN VNI 1 (all four directions)" "$F" \
  "vxlan.vni == 1 && (ip.src == 192.168.2.12 || ip.dst == 192.168.2.12)" -gt 100
for pair in "1 10.244.1.10 192.168.1.10 $M1" "2 10.244.2.20 192.168.1.11 $M2"; do
  read -r n pip naddr nmac <<<"$pair"
  expect_count "mixed: TCP data $pip -> 10.244.3.30 in VXLAN" "$F" \
    "vxlan && ip.src == $pip && ip.dst == 10.244.3.30 && tcp.len > 1000" -gt 1000
  expect_count "mixed: TCP data 10.244.3.30 -> $pip in VXLAN" "$F" \
    "vxlan && ip.src == 10.244.3.30 && ip.dst == $pip && tcp.len > 1000" -gt 1000
  expect_zero "mixed: node$n -> node3 via router MAC, VTEP 0e..0$n -> 0e..03" \
    "$(wire_mismatch "$F" "vxlan && ip.src == $naddr" 'es[1] == "'$nmac'" && ed[1] == "'$MR'" && id[1] == "192.168.2.12" && es[2] == "0e:00:00:00:00:0'$n'" && ed[2] == "0e:00:00:00:00:03" && is[2] == "'$pip'" && id[2] == "10.244.3.30"')"
  expect_zero "mixed: node3 -> node$n routed, VTEP 0e..03 -> 0e..0$n" \
    "$(wire_mismatch "$F" "vxlan && ip.dst == $naddr" 'es[1] == "'$MR'" && ed[1] == "'$nmac'" && is[1] == "192.168.2.12" && es[2] == "0e:00:00:00:00:03" && ed[2] == "0e:00:00:00:00:0'$n'" && is[2] == "10.244.3.30" && id[2] == "'$pip'"')"
done
expect_count "mixed: no malformed frame or bad checksum" "$F" \
  "$BAD_FRAME" -eq 0

if [ "$FAILS" != 0 ]; then
  for n in 1 2 3; do echo "--- node$n stats"; psw_ctl "$n" stats | tail -12 || true; done
  echo "overlay_modes: $FAILS check(s) FAILED"
  exit 1
fi
echo "overlay_modes: all checks passed"
