#!/usr/bin/env bash
# Starts kube-controller-manager for the lab cluster in the fabric namespace: all default
# controllers (the EndpointSlice controller among them), node IPAM handing out /24s of the
# cluster network, per-controller service-account credentials. Waits for its /healthz.
# The TTL controller is off: it annotates every new Node at once, and that second update
# makes the range allocator, whose cache has not seen its own first patch yet, allocate
# again, fail and release, leaving a hole: nodes would get every other /24.
# Environment: see common.sh.
set -euo pipefail
# shellcheck source=lab/cluster/common.sh
source "$(dirname "$0")/common.sh"
pki=$CLUSTER_DIR/pki
spawn kube-controller-manager "$CLUSTER_BIN/kube-controller-manager" \
  --kubeconfig "$pki/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig "$pki/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig "$pki/kube-controller-manager.kubeconfig" \
  --allocate-node-cidrs --cluster-cidr "$TOPO_CLUSTER_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$TOPO_SERVICE_CIDR" \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials --leader-elect=false --controllers '*,-ttl' \
  --bind-address 127.0.0.1 --secure-port 10257 --v 1
wait_for kube-controller-manager 60 ip netns exec "$CLUSTER_NS" curl -skf --max-time 1 https://127.0.0.1:10257/healthz
echo "cluster: kube-controller-manager up (pid $(cat "$CLUSTER_DIR/kube-controller-manager.pid"))" >&2
