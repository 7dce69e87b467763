#!/usr/bin/env bash
# The podswitch benchmark harness (`make bench`): on the two-node namespace topology,
# in one run, podswitch against the kernel path it replaces (flannel's vxlan backend:
# cni0 bridge + flannel.1 kernel VXLAN, set up exactly as flanneld does).
#
#   TCP pod -> pod across nodes, 1 and 4 streams   iperf3 -J, with the CPU seconds used
#   TCP pod -> pod on one node (tcplocal)          iperf3 -J, pod A -> pod C on node1
#                                                  (kernel: through the cni0 bridge)
#   64-byte UDP pod -> pod across nodes            trafgen at full rate, received pps at
#                                                  the pod, CPU s per million packets
#   request/response latency p50/p99               bench/bench.py rr-client/rr-server
#                                                  (64-byte messages, one TCP connection);
#                                                  rr across nodes, rrlocal pod A -> pod C
#   busy cycles per packet                         podswitchctl -o json stats (per node)
#   new TCP connections/s through a ClusterIP      bench/bench.py cc-client/cc-server, with
#   with 1, 1,000 and 10,000 Services defined      1k/10k Services (target: the last one);
#                                                  podswitch: `program replace` on both
#                                                  nodes; kernel: kube-proxy's iptables
#                                                  rules (nat table) in both node namespaces
#   new TCP connections/s to a pod selected by     bench/bench.py cc-client/cc-server;
#   0, 1 and 1,000 NetworkPolicies (10 rules each) podswitch: pod policies in node2's
#                                                  config; kernel: Calico's iptables form
#                                                  (ipsets + per-pod/per-policy chains)
#
# Placement (2 cores): both nodes' podswitchd pinned to core 0 (taskset + --cores 0,
# adaptive polling), every traffic tool (iperf3 client and server, trafgen, rr) on core 1.
# The kernel path forwards in softirq on the core that sends (core 1).
# Offloads: podswitch's veths run without offloads (AF_XDP copy mode needs whole frames);
# the kernel path keeps the veth defaults (TSO/GSO/GRO/checksum on), as flannel leaves them.
#
# Output: a table on the terminal, bench-results/<time>/{results.json,results.png,raw/}
# and BENCHMARKS-harness.md (the latest table and the machine it ran on).
# Knobs: BENCH_SECONDS (measured seconds per workload, default 5), BENCH_RR_SECONDS (3),
# BENCH_PSW_CORES (cores of node1's and node2's podswitchd, default "0 0"),
# BENCH_PSW_ARGS (extra podswitchd run arguments, e.g. --busy-poll), BENCH_RR_CORES (cores of
# the RR client and server, default "1 1"), BENCH_PSW_GSO (1: the
# podswitch pods carry super-frames, `gso = true`, see README "Super-frames"), BENCH_PSW_GSO_TX
# (on|off: transmit checksum offload at the switch's end of a GSO pod's veth, default on: with
# it on, checksums the switch leaves to that port reach the pod as offloaded),
# BENCH_PSW_POD_PORT (veth|tap, default veth: tap puts the podswitch pods on tap devices at
# MTU 1450, see README "Tap pods"), BENCH_PSW_TAP_PASS (1, the default: with veth pods, the TCP
# workloads run a second time with the pods on taps, rows "..., tap pods"; 0: not), BENCH_MD (markdown
# output, default BENCHMARKS-harness.md), BENCH_WORKLOADS (default "tcp udp rr services";
# e.g. BENCH_WORKLOADS=services for the Service scenario alone), BENCH_SERVICES (Service
# counts, default "1 1000 10000"), BENCH_SVC_CONCURRENCY (connections in flight, default 32),
# BENCH_SVC_ROUNDS (interleaved rounds over the counts, median reported, default 3),
# BENCH_POLICIES (NetworkPolicy counts of the netpol workload, default "0 1 1000"),
# BENCH_IPTABLES_RESTORE (default iptables-restore; iptables-legacy-restore for the legacy
# backend), BENCH_OVS_XDP_MODE (xdp-mode of the OVS afxdp ports, default native: copy
# mode on veths; "generic" also works, native-with-zerocopy does not on veths),
# BENCH_KUBE_PROXY (kube-proxy modes of the kernel path's services workload, default
# "iptables nftables": the iptables nat table, and kube-proxy's nftables mode, `table ip
# kube-proxy` with the service-ips verdict map, ip daddr . meta l4proto . th dport ->
# goto service chain -> endpoint chain with the DNAT, loaded with nft -f).
#
# Port-to-port workload (p2p): raw 64-byte L2 forwarding between two pods of ONE node,
# pod A (trafgen, core 1) -> veth -> forwarder -> veth -> pod C (counted), forwarder on
# core 0, same namespaces and veths for both forwarders:
#   podswitchd --cores 0, node1's config, frames addressed to pod C's MAC (L2 bridging);
#     busy cycles/pkt from podswitchctl -o json stats
#   Open vSwitch userspace datapath (ovs-vswitchd + ovsdb-server started in the node
#     namespace with a private run/db directory), bridge datapath_type=netdev, the two pod
#     veths as type=afxdp ports, pmd-cpu-mask=0x1, one OpenFlow rule each way
#     (in_port -> output); busy cycles/pkt = "processing cycles" / "packets received" of
#     dpif-netdev/pmd-stats-show over the window (cleared at its start), the same figure
#     as pmd-perf-show's cycles/pkt.
# Skipped with a printed reason when Open vSwitch (installed by scripts/deps.sh bench) is missing
# or does not start.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
P=${BENCH_PREFIX:-pb$$}
TMPD=$(mktemp -d)
DUR=${BENCH_SECONDS:-5}
RR_SECONDS=${BENCH_RR_SECONDS:-3}
PSW_CORES=${BENCH_PSW_CORES:-0 0}
PSW_ARGS=${BENCH_PSW_ARGS:-}
MD=${BENCH_MD:-BENCHMARKS-harness.md}
WORKLOADS=" ${BENCH_WORKLOADS:-tcp tcplocal udp rr services netpol p2p} "
PSW_GSO=${BENCH_PSW_GSO:-0}
PSW_GSO_TX=${BENCH_PSW_GSO_TX:-on}
PSW_POD_PORT=${BENCH_PSW_POD_PORT:-veth}
PSW_TAP_PASS=${BENCH_PSW_TAP_PASS:-1}
declare -A PSW_CFG=([1]=config/node1-vxlan.toml [2]=config/node2-vxlan.toml)
read -r RR_CLIENT_CORE RR_SERVER_CORE <<<"${BENCH_RR_CORES:-1 1}"
OVS_XDP_MODE=${BENCH_OVS_XDP_MODE:-native}
KUBE_PROXY_MODES=" ${BENCH_KUBE_PROXY:-iptables nftables} "
SVC_COUNTS=${BENCH_SERVICES:-1 1000 10000}
SVC_CONC=${BENCH_SVC_CONCURRENCY:-32}
SVC_ROUNDS=${BENCH_SVC_ROUNDS:-3}
NP_COUNTS=${BENCH_POLICIES:-0 1 1000}
IPT_RESTORE=${BENCH_IPTABLES_RESTORE:-iptables-restore}
wl_on() { [[ $WORKLOADS == *" $1 "* ]]; }
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench-results/$STAMP
RAW=$OUT/raw
# shellcheck source=lab/netns.sh
source lab/netns.sh # and lab/topology.sh: the nodes, pods, addresses and MACs used below
# shellcheck source=tests/e2e/lib/interop.sh
source tests/e2e/lib/interop.sh
need_root
# ---- Open vSwitch (p2p workload): private run/db directory, started in one namespace ----
OVS_DIR=
ovs_ctl() { OVS_RUNDIR=$OVS_DIR ovs-appctl -t "$OVS_DIR/ovs-vswitchd.ctl" --timeout=10 "$@"; }
ovs_vsctl() { ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=10 "$@"; }
ovs_stop() {
  [ -n "$OVS_DIR" ] || return 0
  local f pid i
  for f in ovs-vswitchd ovsdb-server; do
    [ -f "$OVS_DIR/$f.pid" ] || continue
    pid=$(cat "$OVS_DIR/$f.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$OVS_DIR"
  OVS_DIR=
}
# ovs_available: prints why not and fails when Open vSwitch cannot run here.
ovs_available() {
  if ! command -v ovs-vswitchd >/dev/null || ! command -v ovsdb-server >/dev/null; then
    echo "bench: SKIP OVS p2p: openvswitch-switch is not installed (scripts/deps.sh bench)"
    return 1
  fi
  if [ ! -f /usr/share/openvswitch/vswitch.ovsschema ]; then
    echo "bench: SKIP OVS p2p: /usr/share/openvswitch/vswitch.ovsschema not found"
    return 1
  fi
}
# ovs_start NS CORE: ovsdb-server + ovs-vswitchd inside NS (process pinned to CORE, PMD on
# CORE), everything under a private directory; no system OVS instance is touched.
ovs_start() {
  local ns=$1 core=$2 i
  OVS_DIR=$(mktemp -d "$TMPD/ovs.XXXX")
  export OVS_RUNDIR=$OVS_DIR OVS_DBDIR=$OVS_DIR OVS_LOGDIR=$OVS_DIR OVS_SYSCONFDIR=$OVS_DIR
  ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema >/dev/null &&
    nsx "$ns" ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/db.sock" \
      --pidfile="$OVS_DIR/ovsdb-server.pid" --unixctl="$OVS_DIR/ovsdb-server.ctl" \
      --log-file="$OVS_DIR/ovsdb-server.log" -vconsole:off --detach 2>>"$OVS_DIR/start.err" &&
    ovs_vsctl --no-wait init &&
    ovs_vsctl --no-wait set Open_vSwitch . other_config:pmd-cpu-mask="$(printf '0x%x' $((1 << core)))" &&
    nsx "$ns" taskset -c "$core" ovs-vswitchd "unix:$OVS_DIR/db.sock" \
      --pidfile="$OVS_DIR/ovs-vswitchd.pid" --unixctl="$OVS_DIR/ovs-vswitchd.ctl" \
      --log-file="$OVS_DIR/ovs-vswitchd.log" -vconsole:off --detach 2>>"$OVS_DIR/start.err" || {
    echo "bench: SKIP OVS p2p: ovsdb-server/ovs-vswitchd did not start"
    tail -5 "$OVS_DIR"/*.log "$OVS_DIR/start.err" 2>/dev/null
    return 1
  }
  for i in $(seq 1 50); do ovs_ctl version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench: SKIP OVS p2p: ovs-vswitchd does not answer"
  return 1
}
ovs_pid() { cat "$OVS_DIR/ovs-vswitchd.pid"; }

cleanup() {
  ovs_stop
  cap_stop_all
  netns_cleanup
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Everything the harness runs (Open vSwitch and matplotlib included) is installed by
# deps.sh and checked by the preflight before anything starts.
./scripts/deps.sh bench
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/preflight.sh
source scripts/preflight.sh
preflight bench
PY=$DEBIAN_PYTHON # matplotlib comes from Debian's python3-matplotlib
build_release
mkdir -p "$RAW"
T0=$(date +%s)

TOOL=(taskset -c 1)
# The two nodes and their static pods (lab/topology.sh); traffic goes from pod A (node1)
# to pod B (node2), the port-to-port workload from pod A to pod C (both on node1).
NODES="1 2"
A=$P-n1-a B=$P-n2-b C=$P-n1-c
B_IP=${TOPO_POD_IP[b]} C_IP=${TOPO_POD_IP[c]}

topology() {
  local n
  fabric_up
  for n in $NODES; do node_up "$n"; done
}

setup_podswitch() {
  topology
  local n x c1 c2 cfg1=config/node1-vxlan.toml cfg2=config/node2-vxlan.toml
  for n in $NODES; do
    host_port "$n"
    for x in $(topo_pods_on "$n"); do topo_pod_up "$x" 1500; done
  done
  if [ "$PSW_POD_PORT" = tap ]; then
    # Tap pods (README, "Tap pods"): each pod's eth0 a tap at the network MTU (1450, as
    # the kernel path's pods), which podswitchd attaches to with virtio-net headers.
    for n in $NODES; do
      for x in $(topo_pods_on "$n"); do
        nsx "$P-node$n" ip link del "veth-pod-$x"
        ip netns del "$P-n$n-$x"
        topo_tap_pod_up "$x" 1450
      done
    done
    for n in $NODES; do
      local cfg=config/node$n-vxlan.toml
      sed -e "s|^port = \"veth-pod-\(.*\)\"$|port = \"veth-pod-\1\"\ntap = { netns = \"/var/run/netns/$P-n$n-\1\", ifname = \"eth0\" }|" \
        -e 's/^mtu = 1500$/mtu = 1450/' "$cfg" >"$TMPD/tap-node$n.toml"
    done
    cfg1=$TMPD/tap-node1.toml cfg2=$TMPD/tap-node2.toml
  elif [ "$PSW_GSO" = 1 ]; then
    # Super-frame pods (README, "Super-frames"): gso = true, pod offloads on, both veth
    # ends at MTU 65000.
    sed 's/^port = "veth-pod-\(.*\)"$/port = "veth-pod-\1"\ngso = true/' "$cfg1" >"$TMPD/gso-node1.toml"
    sed 's/^port = "veth-pod-\(.*\)"$/port = "veth-pod-\1"\ngso = true/' "$cfg2" >"$TMPD/gso-node2.toml"
    cfg1=$TMPD/gso-node1.toml cfg2=$TMPD/gso-node2.toml
    for n in $NODES; do
      for x in $(topo_pods_on "$n"); do
        nsx "$P-n$n-$x" ethtool -K eth0 tx on sg on tso on gso on >/dev/null 2>&1 || true
        # the switch leaves their checksums to this end's transmit offload (as podswitch-cni
        # sets it for a gso pod)
        nsx "$P-node$n" ethtool -K "veth-pod-$x" tx "$PSW_GSO_TX" >/dev/null 2>&1 || true
        nsx "$P-node$n" ip link set "veth-pod-$x" mtu 65000
        nsx "$P-n$n-$x" ip link set eth0 mtu 65000
      done
    done
  fi
  read -r c1 c2 <<<"$PSW_CORES"
  # What the Service and NetworkPolicy workloads build their programs from: the pods as
  # they were started (gso, tap), not the plain example configuration.
  PSW_CFG[1]=$cfg1 PSW_CFG[2]=$cfg2
  # shellcheck disable=SC2086 # extra daemon arguments
  PSW_WRAP="taskset -c $c1" start_psw 1 "$cfg1" "$c1" $PSW_ARGS
  # shellcheck disable=SC2086
  PSW_WRAP="taskset -c $c2" start_psw 2 "$cfg2" "$c2" $PSW_ARGS
  SNAP_ARGS=(--pids "$(psw_pid 1),$(psw_pid 2)" --sockets "$(sock 1),$(sock 2)"
    --ctl "$BIN/podswitchctl" --rx-ns "$B" --tx-ns "$A")
}

offloads_on() {
  local ns=$1 dev=$2
  nsx "$ns" ethtool -K "$dev" tx on rx on sg on tso on gso on gro on >/dev/null 2>&1 || true
}

setup_kernel() {
  topology
  local n
  for n in $NODES; do flannel_node "$n"; done
  flannel_peer 1 2
  flannel_peer 2 1
  # cni0 answers for the pods' gateway with the same MAC podswitch uses, so the same
  # hand-built 64-byte frames are valid on both paths.
  for n in $NODES; do nsx "$P-node$n" ip link set cni0 address "${TOPO_GATEWAY_MAC[$n]}"; done
  topo_kernel_pod a 1450
  topo_kernel_pod b 1450
  topo_kernel_pod c 1450
  for n in $NODES; do
    offloads_on "$P-node$n" eth0
    offloads_on "$P-fab" "$P-n$n"
  done
  offloads_on "$P-node1" veth-pod-a
  offloads_on "$A" eth0
  offloads_on "$P-node2" veth-pod-b
  offloads_on "$B" eth0
  offloads_on "$P-node1" veth-pod-c
  offloads_on "$C" eth0
  SNAP_ARGS=(--rx-ns "$B" --tx-ns "$A")
}

snap() { "$PY" bench/bench.py snap "$1" "${SNAP_ARGS[@]}"; }

# trafgen's worker (a forked child) pins itself to CPU 0 whatever taskset said, which put it
# on the forwarder's core; move our trafgen processes (found by this run's private config
# path) back to the tools' core once they run.
repin_trafgen() {
  local pid i
  for i in 1 2 3 4 5; do
    sleep 0.2
    for pid in $(pgrep -f -- "--conf $TMPD/" || true); do
      taskset -pc "${TOOL[2]}" "$pid" >/dev/null 2>&1 || true
    done
  done
}

# run_wl PATH WL SECONDS OUTFILE CMD...: CMD runs SECONDS + 2 s; counters are sampled
# from 1 s after the start for SECONDS (the steady state).
run_wl() {
  local path=$1 wl=$2 secs=$3 out=$4 pid rc=0
  shift 4
  "$@" >"$out" 2>"$out.err" &
  pid=$!
  repin_trafgen
  snap "$RAW/$path-$wl-before.json"
  sleep "$secs"
  snap "$RAW/$path-$wl-after.json"
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ] && [[ $wl != *64 ]]; then
    echo "bench: $path $wl failed (rc $rc):"
    tail -5 "$out" "$out.err"
    return 1
  fi
}

# trafgen_mac MAC / trafgen_ip IP: an address as trafgen configuration bytes.
trafgen_mac() { echo "0x${1//:/, 0x}"; }
trafgen_ip() { echo "${1//./, }"; }

cat >"$TMPD/udp64.trafgen" <<EOF
/* 64-byte frame on the wire (60 without FCS): pod A -> pod B, UDP 40000 -> 9, 18 B payload */
{
  $(trafgen_mac "${TOPO_GATEWAY_MAC[1]}"),
  $(trafgen_mac "${TOPO_POD_MAC[a]}"),
  0x08, 0x00,
  0x45, 0x00, const16(46), const16(1), const16(0), 64, 17, csumip(14, 33),
  $(trafgen_ip "${TOPO_POD_IP[a]}"),
  $(trafgen_ip "$B_IP"),
  const16(40000), const16(9), const16(26), const16(0),
  fill(0x00, 18),
}
EOF

# udp_sink NS: the 64-byte UDP flood (to port 9) is dropped and counted at the receiving
# pod's eth0 ingress hook, as a packet counter would take it. Without it the pod's kernel
# answers every datagram with an ICMP port unreachable attempt (a route lookup per packet
# even when the ICMP itself is rate-limited), work that runs in the forwarder's transmit
# syscall on the podswitch and OVS paths and dominated their cycles per packet. The
# received count is still eth0's rx_packets (veth counts at the peer's transmit).
udp_sink() {
  nsx "$1" nft -f - <<'NFT'
table netdev bench_sink {
  chain ingress {
    type filter hook ingress device "eth0" priority 0; policy accept;
    udp dport 9 counter drop
  }
}
NFT
}

measure() {
  local path=$1 spid
  echo "bench: [$path] ping check"
  ping_ok "$A" "$B_IP" >/dev/null || { echo "bench: $path: pod A cannot reach pod B"; return 1; }
  if wl_on tcplocal; then
    ping_ok "$A" "$C_IP" >/dev/null || { echo "bench: $path: pod A cannot reach pod C"; return 1; }
  fi
  local n
  if wl_on tcp; then
    for n in 1 4; do
      echo "bench: [$path] TCP, $n stream(s), ${DUR}s"
      nsx "$B" "${TOOL[@]}" timeout $((DUR + 30)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
      spid=$!
      sleep 0.3
      run_wl "$path" "tcp$n" "$DUR" "$RAW/$path-tcp$n.json" \
        nsx "$A" "${TOOL[@]}" timeout $((DUR + 15)) iperf3 -c "$B_IP" -p 5201 -t $((DUR + 2)) -P "$n" -J
      wait "$spid" 2>/dev/null || true
    done
  fi
  if wl_on tcplocal; then
    echo "bench: [$path] TCP, 1 stream, same node (pod A -> pod C), ${DUR}s"
    nsx "$C" "${TOOL[@]}" timeout $((DUR + 30)) iperf3 -s -1 -p 5202 >/dev/null 2>&1 &
    spid=$!
    sleep 0.3
    run_wl "$path" tcplocal "$DUR" "$RAW/$path-tcplocal.json" \
      nsx "$A" "${TOOL[@]}" timeout $((DUR + 15)) iperf3 -c "$C_IP" -p 5202 -t $((DUR + 2)) -J
    wait "$spid" 2>/dev/null || true
  fi
  if wl_on udp; then
    echo "bench: [$path] 64-byte UDP (trafgen), ${DUR}s"
    udp_sink "$B"
    run_wl "$path" udp64 "$DUR" "$RAW/$path-udp64.log" \
      nsx "$A" "${TOOL[@]}" timeout -s INT $((DUR + 2)) trafgen --dev eth0 --conf "$TMPD/udp64.trafgen" \
      --cpus 1 --gap 0
    sleep 0.5
  fi
  if wl_on rr; then rr_round "$path" rr "$B" "$B_IP"; fi
  if wl_on rrlocal; then rr_round "$path" rrlocal "$C" "$C_IP"; fi
  if wl_on netpol; then netpol "$path"; fi
  if wl_on services; then
    if [ "$path" = podswitch ]; then
      services podswitch
    else
      if [[ $KUBE_PROXY_MODES == *" iptables "* ]]; then services kernel; fi
      if [[ $KUBE_PROXY_MODES == *" nftables "* ]]; then
        if ! command -v nft >/dev/null; then
          echo "bench: SKIP kube-proxy nftables variant: nft not installed"
          return 0
        fi
        # the iptables variant's nat table goes away first (an empty restore flushes it)
        for n in $NODES; do printf '*nat\nCOMMIT\n' | nsx "$P-node$n" "$IPT_RESTORE" 2>/dev/null || true; done
        services kernel-nft
      fi
    fi
  fi
}

# services PATH: for each Service count, program the Services on both nodes (podswitch:
# node config + Services in one `program replace`; kernel: kube-proxy's nat table through
# iptables-restore), then new TCP connections/s from pod A to the LAST Service's ClusterIP
# (endpoint pod B:8080 on node2).
services() {
  local path=$1 n vip t0 t1 node r
  nsx "$A" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
  # Rounds interleave the counts (1, 1k, 10k, 1, ...) so that load changes on a shared
  # machine hit every count alike; the report takes the median of the rounds.
  for r in $(seq 1 "$SVC_ROUNDS"); do
  for n in $SVC_COUNTS; do
    vip=$("$PY" bench/bench.py svc-gen "$n" "${PSW_CFG[1]}" "$TMPD/svc-node1.toml" "$TMPD/svc.ipt" "$TMPD/svc.nft")
    "$PY" bench/bench.py svc-gen "$n" "${PSW_CFG[2]}" "$TMPD/svc-node2.toml" /dev/null >/dev/null
    t0=$(date +%s%N)
    for node in $NODES; do
      if [ "$path" = podswitch ]; then
        psw_ctl "$node" program replace "$TMPD/svc-node$node.toml" >"$TMPD/program.out" 2>&1 ||
          { echo "bench: podswitch node$node: program replace ($n Services) failed:"; tail -3 "$TMPD/program.out"; return 1; }
      elif [ "$path" = kernel-nft ]; then
        nsx "$P-node$node" nft -f "$TMPD/svc.nft" ||
          { echo "bench: kernel node$node: nft -f ($n Services) failed"; return 1; }
      else
        nsx "$P-node$node" "$IPT_RESTORE" <"$TMPD/svc.ipt" ||
          { echo "bench: kernel node$node: $IPT_RESTORE ($n Services) failed"; return 1; }
      fi
    done
    t1=$(date +%s%N)
    echo "{\"services\": $n, \"vip\": \"$vip\", \"program_ms\": $(((t1 - t0) / 1000000))}" \
      >"$RAW/$path-svc$n-$r-program.json"
    echo "bench: [$path] round $r: new TCP connections to $vip:80 (the last of $n Services, programmed in $(((t1 - t0) / 1000000)) ms), ${DUR}s"
    cc_round "$path" "svc$n-$r" "$vip" 80
    echo "bench: [$path] $n Services, round $r: $(cat "$RAW/$path-svc$n-$r.json")"
  done
  done
}

# rr_round PATH WL SERVER_NS SERVER_IP: 64-byte request/response over one TCP connection for
# RR_SECONDS from pod A, client and server on the cores of BENCH_RR_CORES.
rr_round() {
  local path=$1 wl=$2 sns=$3 sip=$4 spid
  echo "bench: [$path] request/response ($wl), ${RR_SECONDS}s"
  nsx "$sns" taskset -c "$RR_SERVER_CORE" timeout $((RR_SECONDS + 20)) "$PY" bench/bench.py rr-server 5400 &
  spid=$!
  sleep 0.3
  run_wl "$path" "$wl" "$RR_SECONDS" "$RAW/$path-$wl.json" \
    nsx "$A" taskset -c "$RR_CLIENT_CORE" timeout $((RR_SECONDS + 15)) "$PY" bench/bench.py rr-client "$sip" 5400 $((RR_SECONDS + 2)) 64
  wait "$spid" 2>/dev/null || true
}

# cc_round PATH WL DST PORT: new TCP connections/s from pod A to DST:PORT for DUR s, with
# cc-server on pod B:8080 (the endpoint either way); the client's JSON in $RAW/PATH-WL.json.
cc_round() {
  local path=$1 wl=$2 dst=$3 port=$4 spid
  nsx "$B" "${TOOL[@]}" timeout $((DUR + 30)) "$PY" bench/bench.py cc-server 8080 $((DUR + 5)) &
  spid=$!
  sleep 0.3
  run_wl "$path" "$wl" "$DUR" "$RAW/$path-$wl.json" \
    nsx "$A" "${TOOL[@]}" timeout $((DUR + 15)) "$PY" bench/bench.py cc-client "$dst" "$port" "$DUR" "$SVC_CONC"
  wait "$spid" 2>/dev/null || true
}

# netpol PATH: for each policy count N, pod B (node2) selected by N NetworkPolicies of 10
# rules (bench.py netpol-gen; pod A's rule comes last), then new TCP connections/s from pod A
# straight to pod B:8080. podswitch: node2's config + policies in one `program replace`;
# kernel: Calico's iptables form in node2 (ipset restore + filter chains via iptables-restore).
netpol() {
  local path=$1 n r t0 t1
  nsx "$A" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
  for r in $(seq 1 "$SVC_ROUNDS"); do
  for n in $NP_COUNTS; do
    "$PY" bench/bench.py netpol-gen "$n" "${PSW_CFG[2]}" default/pod-b "$B_IP" \
      "${TOPO_POD_IP[a]}" "$TMPD/np-node2.toml" "$TMPD/np.ipset" "$TMPD/np.ipt"
    [ "$path" = podswitch ] || kernel_policies_flush
    t0=$(date +%s%N)
    if [ "$path" = podswitch ]; then
      psw_ctl 2 program replace "$TMPD/np-node2.toml" >"$TMPD/program.out" 2>&1 ||
        { echo "bench: podswitch node2: program replace ($n policies) failed:"; tail -3 "$TMPD/program.out"; return 1; }
    else
      { nsx "$P-node2" ipset restore <"$TMPD/np.ipset" && nsx "$P-node2" "$IPT_RESTORE" <"$TMPD/np.ipt"; } ||
        { echo "bench: kernel node2: ipset/$IPT_RESTORE ($n policies) failed"; return 1; }
    fi
    t1=$(date +%s%N)
    echo "{\"policies\": $n, \"program_ms\": $(((t1 - t0) / 1000000))}" >"$RAW/$path-np$n-$r-program.json"
    echo "bench: [$path] round $r: new TCP connections to pod B:8080 selected by $n policies (programmed in $(((t1 - t0) / 1000000)) ms), ${DUR}s"
    cc_round "$path" "np$n-$r" "$B_IP" 8080
    echo "bench: [$path] $n policies, round $r: $(cat "$RAW/$path-np$n-$r.json")"
  done
  done
  if [ "$path" = podswitch ]; then
    psw_ctl 2 program replace "${PSW_CFG[2]}" >/dev/null
  else
    kernel_policies_flush
  fi
}

# kernel_policies_flush: node2's filter table empty (an empty restore), then its ipsets gone.
kernel_policies_flush() {
  printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' |
    nsx "$P-node2" "$IPT_RESTORE"
  nsx "$P-node2" ipset destroy 2>/dev/null || true
}

cat >"$TMPD/p2p64.trafgen" <<EOF
/* 64-byte frame on the wire: pod A -> pod C (same node, same subnet: L2 bridging), UDP 40000 -> 9 */
{
  $(trafgen_mac "${TOPO_POD_MAC[c]}"),
  $(trafgen_mac "${TOPO_POD_MAC[a]}"),
  0x08, 0x00,
  0x45, 0x00, const16(46), const16(1), const16(0), 64, 17, csumip(14, 33),
  $(trafgen_ip "${TOPO_POD_IP[a]}"),
  $(trafgen_ip "${TOPO_POD_IP[c]}"),
  const16(40000), const16(9), const16(26), const16(0),
  fill(0x00, 18),
}
EOF

# p2p_topology: node1 with its uplink and host port (podswitchd's config wants them) and
# pods A and C; both forwarders use exactly these veths.
p2p_topology() {
  topology
  host_port 1
  topo_pod_up a 1500
  topo_pod_up c 1500
  # static neighbours: no ARP through the forwarder during the run
  nsx "$P-n1-c" ip neigh replace "${TOPO_POD_IP[a]}" lladdr "${TOPO_POD_MAC[a]}" dev eth0
  nsx "$P-n1-a" ip neigh replace "${TOPO_POD_IP[c]}" lladdr "${TOPO_POD_MAC[c]}" dev eth0
  udp_sink "$P-n1-c"
}

# p2p_run PATH [OVS]: trafgen from pod A for DUR + 2 s; window from 1 s; for OVS the PMD
# counters are cleared at the window start and read at its end.
p2p_run() {
  local path=$1 ovs=${2:-} pid
  echo "bench: [$path] port-to-port 64-byte frames (trafgen), ${DUR}s"
  nsx "$P-n1-a" "${TOOL[@]}" timeout -s INT $((DUR + 2)) trafgen --dev eth0 \
    --conf "$TMPD/p2p64.trafgen" --cpus 1 --gap 0 >"$RAW/$path-p2p64.log" 2>&1 &
  pid=$!
  repin_trafgen
  [ -z "$ovs" ] || ovs_ctl dpif-netdev/pmd-stats-clear >/dev/null
  snap "$RAW/$path-p2p64-before.json"
  sleep "$DUR"
  snap "$RAW/$path-p2p64-after.json"
  if [ -n "$ovs" ]; then
    ovs_ctl dpif-netdev/pmd-stats-show >"$RAW/$path-p2p64-pmd-stats.txt"
    ovs_ctl dpif-netdev/pmd-perf-show >"$RAW/$path-p2p64-pmd-perf.txt"
  fi
  wait "$pid" || true
  sleep 0.5
}

ovs_skip() {
  echo "bench: SKIP OVS p2p: $1"
  [ -z "$OVS_DIR" ] || tail -5 "$OVS_DIR/ovs-vswitchd.log" 2>/dev/null || true
  ovs_stop
  netns_cleanup
}

# p2p: podswitchd, then Open vSwitch, as the forwarder between pod A and pod C.
p2p() {
  local d err
  echo "bench: port-to-port forwarding (prefix $P)"
  p2p_topology
  # shellcheck disable=SC2086 # extra daemon arguments
  PSW_WRAP="taskset -c 0" start_psw 1 config/node1-vxlan.toml 0 $PSW_ARGS
  SNAP_ARGS=(--pids "$(psw_pid 1)" --sockets "$(sock 1)" --ctl "$BIN/podswitchctl"
    --rx-ns "$P-n1-c" --tx-ns "$P-n1-a")
  p2p_run podswitch
  stop_psw 1
  netns_cleanup
  ovs_available || return 0
  p2p_topology
  ovs_start "$P-node1" 0 || { ovs_skip "ovs-vswitchd did not start"; return 0; }
  ovs_vsctl add-br br0 -- set bridge br0 datapath_type=netdev ||
    { ovs_skip "cannot add a netdev bridge"; return 0; }
  for d in veth-pod-a veth-pod-c; do
    ovs_vsctl add-port br0 "$d" -- set interface "$d" type=afxdp options:xdp-mode="$OVS_XDP_MODE" ||
      { ovs_skip "cannot add afxdp port $d"; return 0; }
  done
  sleep 1
  for d in veth-pod-a veth-pod-c; do
    err=$(ovs_vsctl get interface "$d" error 2>/dev/null || echo "?")
    case $err in '[]' | '') ;; *) ovs_skip "afxdp port $d: $err"; return 0 ;; esac
  done
  { ovs-ofctl del-flows br0 &&
    ovs-ofctl add-flow br0 in_port=veth-pod-a,actions=output:veth-pod-c &&
    ovs-ofctl add-flow br0 in_port=veth-pod-c,actions=output:veth-pod-a; } ||
    { ovs_skip "ovs-ofctl failed"; return 0; }
  sleep 0.5
  SNAP_ARGS=(--pids "$(ovs_pid)" --rx-ns "$P-n1-c" --tx-ns "$P-n1-a")
  p2p_run ovs ovs
  ovs_vsctl show >"$RAW/ovs-show.txt" 2>&1 || true
  grep -i afxdp "$OVS_DIR/ovs-vswitchd.log" >"$RAW/ovs-afxdp.log" 2>/dev/null || true
  printf '{"version": "%s", "xdp_mode": "%s"}\n' "$(ovs-vswitchd --version | head -1)" \
    "$OVS_XDP_MODE" >"$RAW/ovs-meta.json"
  ovs_stop
  netns_cleanup
}

if wl_on tcp || wl_on tcplocal || wl_on udp || wl_on rr || wl_on rrlocal || wl_on services || wl_on netpol; then
  echo "bench: podswitch path (prefix $P)"
  setup_podswitch
  measure podswitch
  for n in $NODES; do psw_ctl "$n" stats >"$RAW/podswitch-node$n-stats.txt" || true; done
  for n in $NODES; do stop_psw "$n"; done
  netns_cleanup

  # The same TCP workloads with the pods on tap devices (README "Tap pods"), the pod port
  # that carries super-frames whole at the network MTU: rows "..., tap pods".
  if [ "$PSW_POD_PORT" != tap ] && [ "$PSW_TAP_PASS" = 1 ] && { wl_on tcp || wl_on tcplocal; }; then
    echo "bench: podswitch path, tap pods"
    all_workloads=$WORKLOADS
    WORKLOADS=" $(wl_on tcp && echo tcp) $(wl_on tcplocal && echo tcplocal) "
    PSW_POD_PORT=tap setup_podswitch
    measure podswitch-tap
    for n in $NODES; do stop_psw "$n"; done
    netns_cleanup
    WORKLOADS=$all_workloads
  fi

  echo "bench: kernel flannel path"
  setup_kernel
  measure kernel
  netns_cleanup
fi
if wl_on p2p; then p2p; fi

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
virt=$(systemd-detect-virt 2>/dev/null || true)
[ -n "$virt" ] && [ "$virt" != none ] && virt="virtualization: $virt" || virt="no virtualization detected"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (modified)"
"$PY" - "$RAW/meta.json" <<EOF
import json, sys
json.dump({
  "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "commit": "$commit", "cpu": "$cpu",
  "cores": $(nproc), "kernel": "$(uname -r)", "virt": "$virt",
  "seconds_per_workload": $DUR, "rr_seconds": $RR_SECONDS,
  "workloads_run": "$(echo $WORKLOADS)",
  "service_counts": [$(echo $SVC_COUNTS | tr ' ' ',')], "service_rounds": $SVC_ROUNDS,
  "policy_counts": [$(echo $NP_COUNTS | tr ' ' ',')],
  "netpol": "$(wl_on netpol && echo "new TCP connections/s from pod A (node1) straight to pod B:8080 (node2), pod B selected by N NetworkPolicies of 10 rules (N = $(echo $NP_COUNTS | sed 's/ /, /g'); 10 cluster addresses and one TCP port per rule; pod A allowed by the last rule of the last policy), same client, server, rounds and median as the Service workload. podswitch: node2's config with address sets and the pod policy in one program replace. kernel: Calico's iptables form in node2: an ipset per peer set (hash:ip, ipset restore), filter FORWARD -> cali-FORWARD (conntrack ESTABLISHED,RELATED accept, INVALID drop) -> per-pod chain (dispatched by pod B's address, the path bridges through cni0) clearing the policy mark, jumping to each policy's chain in order and returning once one marked the packet, else DROP; each policy chain one rule per rule (-m set src, -m multiport --dports, MARK) + RETURN; via $IPT_RESTORE; program ms = node2")",
  "services": "$(wl_on services && echo "new TCP connections/s from pod A (node1) to the ClusterIP:80 of the LAST of N Services (N = $(echo $SVC_COUNTS | sed 's/ /, /g'); 1 TCP port each, one endpoint each; the target's endpoint is pod B $B_IP:8080 on node2); bench.py cc-client, $SVC_CONC connections in flight (non-blocking connect, receive 1 byte, close with RST), counted over ${DUR} s after 1 s, $SVC_ROUNDS rounds interleaving the counts, median of the rounds reported; server: bench.py cc-server (accept, send 1 byte, close); both pinned to core 1. podswitch: node config + Services in one program replace per node; kernel: kube-proxy iptables-mode nat table (KUBE-SERVICES one rule per Service -> KUBE-SVC-* -> KUBE-SEP-* DNAT, KUBE-MARK-MASQ / KUBE-POSTROUTING) via $IPT_RESTORE ($($IPT_RESTORE --version 2>&1 | head -1)) in both node namespaces; kernel nftables (rows marked nftables): kube-proxy nftables-mode table ip kube-proxy (service-ips verdict map ip daddr . meta l4proto . th dport : goto service-* -> endpoint-* DNAT, mark-for-masquerade / masquerading) via nft -f ($(nft --version 2>/dev/null | head -1)), the iptables nat table flushed first; program ms = both nodes")",
  "placement": "node1's podswitchd pinned to core ${PSW_CORES% *}, node2's to core ${PSW_CORES#* } (taskset + --cores, ${PSW_ARGS:-adaptive polling}); iperf3 and trafgen pinned to core 1, the RR client to core $RR_CLIENT_CORE and server to core $RR_SERVER_CORE; the kernel path forwards in softirq on the sending core",
  "paths": "podswitch: podswitchd per node, AF_XDP copy mode on veths, VXLAN (config/node{1,2}-vxlan.toml), pod MTU 1500 with MSS clamp, veth offloads off$([ "$PSW_GSO" = 1 ] && echo " (BENCH_PSW_GSO=1: pods gso = true, pod offloads on, veth MTU 65000 on both ends, no MSS clamp, super-frames cut by ip4-tso, checksums toward pods left to the veth's transmit offload through AF_XDP transmit metadata)")$([ "$PSW_POD_PORT" = tap ] && echo " (BENCH_PSW_POD_PORT=tap: pods on tap devices with virtio-net headers at MTU 1450, offloads csum+tso4, super-frames cross whole between pods and are cut by ip4-tso toward the overlay)")$([ "$PSW_POD_PORT" != tap ] && [ "$PSW_TAP_PASS" = 1 ] && echo "; rows 'tap pods': the TCP workloads again with the podswitch pods on tap devices (virtio-net headers, MTU 1450, as BENCH_PSW_POD_PORT=tap)"). kernel: flannel vxlan backend (flannel.1 VNI 1 port 8472 nolearning MTU 1450, cni0 bridge, pod MTU 1450), veth offloads on (defaults)",
  "workloads": "TCP: iperf3 -t $((DUR + 2)) -P 1|4, pod A (node1) -> pod B (node2), Gbit/s as iperf3 reports; TCP same node: iperf3 -P 1, pod A -> pod C (both node1; kernel: through cni0); CPU s per GB: machine-wide busy CPU (user+system+softirq, /proc/stat) and podswitchd's own (/proc/PID/stat) over the ${DUR} s window, per GB received at iperf3's rate; UDP: trafgen 60-byte frames (64 on the wire) at full rate from pod A, packets counted at pod B's eth0 over a ${DUR} s window; RR: 64-byte request/response over one TCP connection for ${RR_SECONDS} s (python, TCP_NODELAY)",
  "notes": "Reading the numbers. (1) busy cycles/pkt are TSC cycles of worker loop iterations that did work divided by the packets the node's worker received (podswitchctl stats); they include the AF_XDP copy-mode syscalls: a tx kick (sendto) runs the whole downstream kernel path synchronously (veth xmit, the fabric bridge, the next node's XDP program and copy into its UMEM), which is why they are ~50x the sum of the per-stage ns. (2) With the default placement both podswitchd share core 0 and poll adaptively: a worker with nothing to do yields the core at every empty pass (sched_yield) and sleeps in poll() after 200 us idle, so the other daemon runs as soon as it has packets; before that change (spinning 2000 empty passes without yielding) RR p50 was ~500 us instead of ~75 us. An iteration preempted by the other daemon still counts the other's run time as busy. (3) /proc/stat is machine wide: on a shared machine other work lands in the softirq and machine-busy figures; the podswitchd figure (/proc/PID/stat) is not affected. (4) The kernel path keeps TSO/GSO/GRO, podswitch moves 1500-byte frames one by one in copy mode: TCP parity needs multi-buffer frames or segmentation offload in userspace."
}, open(sys.argv[1], "w"), indent=1)
EOF
echo
"$PY" bench/bench.py report "$RAW" "$OUT" "$MD"
echo "bench: finished in $(($(date +%s) - T0)) s"
