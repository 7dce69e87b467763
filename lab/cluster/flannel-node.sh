#!/usr/bin/env bash
# Makes node N a flannel node, as a flannel DaemonSet pod would: kernel forwarding on,
# flanneld in kube-subnet-manager mode with the vxlan backend of net-conf.json (it reads the
# Node's podCIDR, writes its annotations and the subnet file, sets up flannel.1, routes
# and masquerading), then the CNI configuration flannel's plugin would delegate to (bridge
# cni0 + host-local over the node's subnet) for the node agent.
# Usage: flannel-node.sh N. Environment: see common.sh; P.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lab/cluster/common.sh
source "$here/common.sh"
n=${1:?usage: flannel-node.sh N}
node=$(topo_node_name "$n")
dir=$CLUSTER_DIR/node$n
mkdir -p "$dir/net.d"
ip netns exec "$P-node$n" sysctl -qw net.ipv4.ip_forward=1
rm -f "$dir/subnet.env"
spawn_node "$n" flanneld env NODE_NAME="$node" "$CLUSTER_BIN/flanneld" --kube-subnet-mgr \
  --kubeconfig-file "$CLUSTER_DIR/pki/admin.kubeconfig" --iface eth0 --ip-masq \
  --net-config-path "$here/net-conf.json" --subnet-file "$dir/subnet.env"
for ((i = 0; i < 150; i++)); do
  [ -s "$dir/subnet.env" ] && break
  kill -0 "$(cat "$dir/flanneld.pid")" 2>/dev/null || break
  sleep 0.2
done
if [ ! -s "$dir/subnet.env" ]; then
  echo "cluster: flanneld on $node wrote no subnet file; end of its log:" >&2
  tail -20 "$dir/flanneld.log" >&2
  exit 1
fi
"$here/flannel-conflist.sh" "$dir/subnet.env" "$dir/ipam" >"$dir/net.d/10-lab.conflist.tmp"
mv "$dir/net.d/10-lab.conflist.tmp" "$dir/net.d/10-lab.conflist"
echo "cluster: $node is a flannel node (flanneld pid $(cat "$dir/flanneld.pid"), $(grep FLANNEL_SUBNET "$dir/subnet.env"))" >&2
