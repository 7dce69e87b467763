# shellcheck shell=bash
# The lab's topology, defined once: sourced by lab/lab.sh, lab/cluster/*.sh and the
# cluster e2e test. Node N (1..3) is the Node "nodeN"; the fabric host 192.168.1.1 is the
# control plane (Node "control-plane", podCIDR 10.244.0.0/24, tainted NoSchedule).
# Still typed out separately (not yet reading this file): config/*.toml,
# tests/e2e/lib.sh, tests/e2e/lib/interop.sh and bench/harness.sh.

TOPO_FABRIC_IP=192.168.1.1
TOPO_FABRIC_MAC=02:00:c0:a8:01:01
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

topo_node_name() { echo "node$1"; }
