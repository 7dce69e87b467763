# shellcheck shell=bash
# The lab's topology, defined once: sourced by lab/netns.sh (so by every lab, e2e test and
# the bench harness that builds namespaces), lab/lab.sh and lab/cluster/*.sh. Node N (1..3)
# is the Node "nodeN"; the fabric host 192.168.1.1 is the control plane (Node
# "control-plane", podCIDR 10.244.0.0/24, tainted NoSchedule). The static node
# configurations config/*.toml are readable files of their own; a test
# (packet-tests/tests/topology_configs.rs) fails when one disagrees with this file.

TOPO_FABRIC_IP=192.168.1.1
TOPO_FABRIC_MAC=02:00:c0:a8:01:01
TOPO_FABRIC_NET=192.168.1.0/24
TOPO_FABRIC_PREFIX_LEN=24
TOPO_CLUSTER_CIDR=10.244.0.0/16
TOPO_SERVICE_CIDR=10.96.0.0/12
TOPO_SERVICE_FIRST_IP=10.96.0.1
TOPO_NODEPORT_RANGE=30000-32767
TOPO_CONTROL_PLANE_NAME=control-plane
TOPO_APISERVER_PORT=6443

# What runs on each node: podswitch (podswitchd + podswitch-controller) or flannel
# (flanneld with the reference bridge + host-local CNI plugins, the kernel forwarding).
TOPO_NODES="1 2 3"
declare -A TOPO_KIND=([1]=podswitch [2]=podswitch [3]=flannel)
declare -A TOPO_ADDR=([1]=192.168.1.10 [2]=192.168.1.11 [3]=192.168.1.12)
declare -A TOPO_UPLINK_MAC=([1]=02:00:c0:a8:01:10 [2]=02:00:c0:a8:01:11 [3]=02:00:c0:a8:01:12)
# The podCIDR kube-controller-manager's range allocator hands out when the Nodes are
# registered in order (control-plane first): checked by lab/lab.sh, never forced.
declare -A TOPO_POD_CIDR=([1]=10.244.1.0/24 [2]=10.244.2.0/24 [3]=10.244.3.0/24)
declare -A TOPO_GATEWAY=([1]=10.244.1.1 [2]=10.244.2.1 [3]=10.244.3.1)
declare -A TOPO_GATEWAY_MAC=([1]=0a:58:0a:f4:01:01 [2]=0a:58:0a:f4:02:01 [3]=0a:58:0a:f4:03:01)
declare -A TOPO_VTEP_MAC=([1]=0e:00:00:00:00:01 [2]=0e:00:00:00:00:02 [3]=0e:00:00:00:00:03)
declare -A TOPO_HOST_MAC=([1]=02:00:0a:f4:01:fe [2]=02:00:0a:f4:02:fe [3]=02:00:0a:f4:03:fe)
# podswitchd --cores per node (the flannel node runs no podswitchd).
declare -A TOPO_CORES=([1]=0 [2]=1)
# The VXLAN overlay, flannel's vxlan backend defaults (VNI 1, UDP port 8472).
TOPO_VXLAN_VNI=1
TOPO_VXLAN_PORT=8472

# The static test pods (no Kubernetes): the namespace tests, the bench harness and
# config/*.toml run pod X as "default/pod-X" on its node's port veth-pod-X. The MAC is
# 0a:58 + the IPv4 address, as the CNI bridge plugin derives it. Pod e is node3's pod of
# the mixed-overlay example.
TOPO_PODS="a c b d e"
declare -A TOPO_POD_NODE=([a]=1 [c]=1 [b]=2 [d]=2 [e]=3)
declare -A TOPO_POD_IP=([a]=10.244.1.10 [c]=10.244.1.11 [b]=10.244.2.20 [d]=10.244.2.21
  [e]=10.244.3.30)
declare -A TOPO_POD_MAC=([a]=0a:58:0a:f4:01:0a [c]=0a:58:0a:f4:01:0b [b]=0a:58:0a:f4:02:14
  [d]=0a:58:0a:f4:02:15 [e]=0a:58:0a:f4:03:1e)

# The mixed-overlay example (config/node{1,2,3}-mixed.toml, tests/e2e/overlay_modes.sh):
# node3 on a second fabric segment that the fabric host routes to (flannel DirectRouting /
# Calico CrossSubnet style); node1 and node2 stay on the first.
TOPO_ROUTED_NODE=3
TOPO_ROUTED_NET=192.168.2.0/24
TOPO_ROUTED_ROUTER_IP=192.168.2.1
TOPO_ROUTED_ROUTER_MAC=02:00:c0:a8:02:01
TOPO_ROUTED_ADDR=192.168.2.12
TOPO_ROUTED_UPLINK_MAC=02:00:c0:a8:02:12

topo_node_name() { echo "node$1"; }

# topo_pods_on N: the static pods of node N, in TOPO_PODS order.
topo_pods_on() {
  local x
  for x in $TOPO_PODS; do
    if [ "${TOPO_POD_NODE[$x]}" = "$1" ]; then echo "$x"; fi
  done
}
