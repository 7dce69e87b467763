# shellcheck shell=bash
# Building blocks for podswitch labs and tests: a cluster of "nodes" in network
# namespaces. Every name starts with $P (the caller picks a unique prefix), so several
# labs/tests can coexist and `netns_cleanup` removes exactly what was made.
#
#   fabric ns  $P-fab : bridge br0 (192.168.1.1/24) joining the node uplinks
#   node ns    $P-nodeN : eth0 (uplink, 192.168.1.(9+N)), psw-host <-> psw-host-k (host port),
#                         veth-pod-X (switch side of each pod)
#   pod ns     $P-nN-X  : eth0 with the pod address, default route via the gateway
#
# Addresses and MACs come from lab/topology.sh (sourced here): node_up N, host_port N and
# topo_pod_up X (topo_tap_pod_up X on a tap) build the topology's node N and static pod X;
# explicit arguments build anything else.

: "${P:?set P to a unique prefix}"
# shellcheck source=lab/topology.sh
source "$(dirname "${BASH_SOURCE[0]}")/topology.sh"

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Veth offloads produce partial checksums and super-frames that AF_XDP copy mode would
# pass on as they are; switch them off on every interface podswitch touches.
no_offload() {
  local ns=$1 dev=$2
  nsx "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
}

# The fabric stands in for the physical network: a plain L2 switch. Where br_netfilter is
# loaded it would send every bridged frame through the fabric namespace's (empty) iptables
# hooks, a cost no real switch has; switch that off for the fabric namespace only.
fabric_no_netfilter() {
  nsx "$P-fab" sysctl -qw net.bridge.bridge-nf-call-iptables=0 \
    net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0 \
    >/dev/null 2>&1 || true
}

fabric_up() {
  ip netns add "$P-fab"
  nsx "$P-fab" ip link set lo up
  fabric_no_netfilter
  nsx "$P-fab" ip link add br0 address "$TOPO_FABRIC_MAC" type bridge
  nsx "$P-fab" ip addr add "$TOPO_FABRIC_IP/$TOPO_FABRIC_PREFIX_LEN" dev br0
  nsx "$P-fab" ip link set br0 up
}

# node_up N [IP MAC]: node namespace with its uplink on the fabric bridge (default: the
# topology's address and uplink MAC of node N).
node_up() {
  local n=$1 ip=${2:-${TOPO_ADDR[$1]}} mac=${3:-${TOPO_UPLINK_MAC[$1]}} ns="$P-node$1"
  ip netns add "$ns"
  nsx "$ns" ip link set lo up
  nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ip link add "$P-n$n" netns "$P-fab" type veth peer name eth0 netns "$ns"
  nsx "$P-fab" ip link set "$P-n$n" master br0 up
  nsx "$ns" ip link set eth0 address "$mac"
  nsx "$ns" ip addr add "$ip/$TOPO_FABRIC_PREFIX_LEN" dev eth0
  nsx "$ns" ip link set eth0 up
  no_offload "$ns" eth0
  no_offload "$P-fab" "$P-n$n"
}

# host_port N [KERNEL_MAC GATEWAY]: the veth into the node's own stack (cni0's job;
# default: the topology's host MAC and pod gateway of node N).
host_port() {
  local n=$1 kmac=${2:-${TOPO_HOST_MAC[$1]}} gw=${3:-${TOPO_GATEWAY[$1]}} ns="$P-node$1"
  nsx "$ns" ip link add psw-host type veth peer name psw-host-k
  nsx "$ns" ip link set psw-host-k address "$kmac"
  nsx "$ns" ip link set psw-host up
  nsx "$ns" ip link set psw-host-k up
  no_offload "$ns" psw-host
  no_offload "$ns" psw-host-k
  nsx "$ns" sysctl -qw net.ipv4.conf.psw-host-k.rp_filter=0
  nsx "$ns" ip route add "$TOPO_CLUSTER_CIDR" via "$gw" dev psw-host-k onlink
  nsx "$ns" ip route add "$TOPO_SERVICE_CIDR" via "$gw" dev psw-host-k onlink
}

# pod_up N NAME IP MAC GATEWAY [MTU]: a pod namespace wired to the node's veth-pod-NAME,
# in node N's pod subnet.
pod_up() {
  local n=$1 name=$2 ip=$3 mac=$4 gw=$5 mtu=${6:-1500} node="$P-node$1" ns="$P-n$1-$2"
  ip netns add "$ns"
  nsx "$ns" ip link set lo up
  ip link add "veth-pod-$name" netns "$node" mtu "$mtu" type veth peer name eth0 netns "$ns" mtu "$mtu"
  nsx "$ns" ip link set eth0 address "$mac"
  nsx "$ns" ip addr add "$ip/${TOPO_POD_CIDR[$n]#*/}" dev eth0
  nsx "$ns" ip link set eth0 up
  nsx "$ns" ip route add default via "$gw" dev eth0
  nsx "$node" ip link set "veth-pod-$name" up
  no_offload "$ns" eth0
  no_offload "$node" "veth-pod-$name"
}

# topo_pod_up X [MTU]: the topology's static pod X (TOPO_PODS) on its node.
topo_pod_up() {
  local x=$1 n=${TOPO_POD_NODE[$1]:?unknown static pod $1 (lab/topology.sh TOPO_PODS)}
  pod_up "$n" "$x" "${TOPO_POD_IP[$x]}" "${TOPO_POD_MAC[$x]}" "${TOPO_GATEWAY[$n]}" "${2:-1500}"
}

# tap_pod_up N NAME IP MAC GATEWAY [MTU]: a pod namespace whose eth0 is a persistent tap
# device (virtio-net headers) that podswitchd attaches to (a pod with `tap = { netns,
# ifname }`, README "Tap pods"), as podswitch-cni makes it for `"podInterface": "tap"`.
tap_pod_up() {
  local n=$1 name=$2 ip=$3 mac=$4 gw=$5 mtu=${6:-1450} ns="$P-n$1-$2"
  ip netns add "$ns"
  nsx "$ns" ip link set lo up
  nsx "$ns" ip tuntap add dev eth0 mode tap vnet_hdr
  nsx "$ns" ip link set eth0 address "$mac" mtu "$mtu" up
  nsx "$ns" ip addr add "$ip/${TOPO_POD_CIDR[$n]#*/}" dev eth0
  nsx "$ns" ip route add default via "$gw" dev eth0
}

# topo_tap_pod_up X [MTU]: the topology's static pod X on a tap device (tap_pod_up).
topo_tap_pod_up() {
  local x=$1 n=${TOPO_POD_NODE[$1]:?unknown static pod $1 (lab/topology.sh TOPO_PODS)}
  tap_pod_up "$n" "$x" "${TOPO_POD_IP[$x]}" "${TOPO_POD_MAC[$x]}" "${TOPO_GATEWAY[$n]}" "${2:-1450}"
}

pod_down() {
  local n=$1 name=$2
  ip netns del "$P-n$1-$2" 2>/dev/null || true
  nsx "$P-node$n" ip link del "veth-pod-$name" 2>/dev/null || true
}

# Stops daemons started in our namespaces and removes every namespace with our prefix.
netns_cleanup() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  sleep 0.3
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f "/run/podswitch/$P-"*.sock
  rm -rf "/tmp/$P-www-"*
}
