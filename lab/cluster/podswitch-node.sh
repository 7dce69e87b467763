#!/usr/bin/env bash
# Makes node N a podswitch node, once it has its podCIDR: the host port (psw-host, cni0's
# job), the node's podswitchd configuration from the cluster (podswitch-controller
# bootstrap), podswitchd on its core, podswitch-controller (peers, Services, flannel's Node
# annotations), and the podswitch-cni configuration list for the node agent.
# Usage: podswitch-node.sh N. Environment: see common.sh; P, BIN (podswitch binaries).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lab/cluster/common.sh
source "$here/common.sh"
# shellcheck source=lab/netns.sh
source "$here/../netns.sh"
n=${1:?usage: podswitch-node.sh N}
node=$(topo_node_name "$n")
dir=$CLUSTER_DIR/node$n
kc=$CLUSTER_DIR/pki/admin.kubeconfig
sock=/run/podswitch/$P-node$n.sock
mkdir -p "$dir/net.d" /run/podswitch
# The pod gateway is the first address of the podCIDR node IPAM gave (podswitchd answers
# ARP for it), which need not be the topology's when the allocator skipped a range.
cidr=$(wait_pod_cidr "$node" 10)
gw=$(cidr_gateway "$cidr")
host_port "$n" "${TOPO_HOST_MAC[$n]}" "$gw"
"$here/node-template.sh" "$n" >"$dir/node-template.toml"
nsenter --net="/run/netns/$P-node$n" "$BIN/podswitch-controller" bootstrap --kubeconfig "$kc" \
  --node "$node" --net-conf "$here/net-conf.json" --node-template "$dir/node-template.toml" \
  --out "$dir/podswitchd.toml" --timeout-secs 60
# --cni-state: a restarted podswitchd registers again the pods podswitch-cni attached.
spawn_node "$n" podswitchd "$BIN/podswitchd" run --config "$dir/podswitchd.toml" --socket "$sock" \
  --cores "${TOPO_CORES[$n]}" --cni-state "$dir/cni-state"
for ((i = 0; i < 100; i++)); do
  [ -S "$sock" ] && "$BIN/podswitchctl" --socket "$sock" version >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN/podswitchctl" --socket "$sock" version >/dev/null || { tail -20 "$dir/podswitchd.log" >&2; exit 1; }
# LAB_CONTROLLER_ARGS: extra podswitch-controller run flags (word-split on purpose), e.g.
# --min-sync-period-ms 0 for bench/cluster_latency.sh.
# shellcheck disable=SC2086
spawn_node "$n" controller "$BIN/podswitch-controller" run --kubeconfig "$kc" --node "$node" \
  --net-conf "$here/net-conf.json" --node-template "$dir/node-template.toml" --socket "$sock" \
  --status-socket "$dir/controller.sock" ${LAB_CONTROLLER_ARGS:-}
# The CNI configuration list podswitch-cni is installed with (README "podswitch-cni"),
# host-local over this node's podCIDR with its leases in this node's folder.
# LAB_GSO=1: pods are attached as super-frame pods (README "Super-frames", the plugin's
# `gso` key).
gso=false
[ "${LAB_GSO:-0}" = 1 ] && gso=true
# LAB_POD_INTERFACE=tap: pods get a tap device instead of a veth (README "Tap pods", the
# plugin's `podInterface` key).
podif=${LAB_POD_INTERFACE:-veth}
case $podif in veth | tap) ;; *) echo "LAB_POD_INTERFACE must be veth or tap, not $podif" >&2; exit 2 ;; esac
cat >"$dir/net.d/10-lab.conflist" <<EOF2
{
  "cniVersion": "1.1.0",
  "name": "podswitch",
  "plugins": [
    {
      "type": "podswitch-cni",
      "socket": "$sock",
      "capabilities": {"ips": true},
      "gso": $gso,
      "podInterface": "$podif",
      "stateDir": "$dir/cni-state",
      "ipam": {"type": "host-local", "dataDir": "$dir/ipam", "ranges": [[{"subnet": "$cidr"}]]}
    }
  ]
}
EOF2
echo "cluster: $node is a podswitch node (podswitchd pid $(cat "$dir/podswitchd.pid"), controller pid $(cat "$dir/controller.pid"))" >&2
