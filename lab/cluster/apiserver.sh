#!/usr/bin/env bash
# Starts kube-apiserver for the lab cluster in the fabric namespace, serving on
# 192.168.1.1:6443 with the certificates of certs.sh (CLUSTER_DIR/pki), the flags envtest
# uses, and Node + RBAC authorization; waits for /readyz. Environment: see common.sh.
set -euo pipefail
# shellcheck source=lab/cluster/common.sh
source "$(dirname "$0")/common.sh"
pki=$CLUSTER_DIR/pki
spawn kube-apiserver "$CLUSTER_BIN/kube-apiserver" \
  --etcd-servers http://127.0.0.1:2379 \
  --advertise-address "$TOPO_FABRIC_IP" --bind-address 0.0.0.0 --secure-port "$TOPO_APISERVER_PORT" \
  --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-cluster-ip-range "$TOPO_SERVICE_CIDR" --service-node-port-range "$TOPO_NODEPORT_RANGE" \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --allow-privileged=true --v 1
wait_for kube-apiserver 90 healthz /readyz
echo "cluster: kube-apiserver up on $APISERVER (pid $(cat "$CLUSTER_DIR/kube-apiserver.pid"))" >&2
