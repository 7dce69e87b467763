#!/usr/bin/env bash
# Starts the lab node agent (podswitch-lab-agent, the kubelet stand-in) for node N in its
# network namespace, with the node's own identity (system:node:nodeN). It registers the
# Node; this script waits until kube-controller-manager gave it a podCIDR and prints it.
# Pods are attached with CLUSTER_DIR/nodeN/net.d/10-lab.conflist, which the node's network
# (flannel-node.sh or podswitch-node.sh) writes; CNI plugins are looked up in CNI_PATH.
# Usage: agent.sh N. Environment: see common.sh; P, AGENT_BIN (the agent binary).
set -euo pipefail
# shellcheck source=lab/cluster/common.sh
source "$(dirname "$0")/common.sh"
n=${1:?usage: agent.sh N}
node=$(topo_node_name "$n")
dir=$CLUSTER_DIR/node$n
mkdir -p "$dir/net.d"
spawn_node "$n" agent "${AGENT_BIN:?set AGENT_BIN}" --kubeconfig "$CLUSTER_DIR/pki/$node.kubeconfig" \
  --node "$node" --node-ip "${TOPO_ADDR[$n]}" --cni-conf "$dir/net.d/10-lab.conflist" \
  --cni-path "${CNI_PATH:-$BIN:/opt/cni/bin:/usr/lib/cni}" --netns-prefix "$P-n$n-" --state-dir "$dir/agent"
if ! cidr=$(wait_pod_cidr "$node" 30); then
  tail -20 "$dir/agent.log" >&2
  exit 1
fi
echo "cluster: $node registered by its agent (pid $(cat "$dir/agent.pid")), podCIDR $cidr" >&2
echo "$cidr"
