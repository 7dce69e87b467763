# shellcheck shell=bash
# Shared by the control-plane scripts in lab/cluster/: where things are, and how a
# component is started in the fabric namespace (the control-plane host, 192.168.1.1).
#   CLUSTER_BIN  the folder build-bins.sh printed (etcd, kube-apiserver, ...)
#   CLUSTER_DIR  this cluster's state: certificates, data, logs, pid files
#   CLUSTER_NS   the fabric namespace the control plane runs in
: "${CLUSTER_BIN:?set CLUSTER_BIN (lab/cluster/build-bins.sh prints it)}"
: "${CLUSTER_DIR:?set CLUSTER_DIR (the cluster state folder)}"
: "${CLUSTER_NS:?set CLUSTER_NS (the fabric namespace)}"
# shellcheck source=lab/topology.sh
source "$(dirname "${BASH_SOURCE[0]}")/../topology.sh"
APISERVER="https://$TOPO_FABRIC_IP:$TOPO_APISERVER_PORT"

# spawn NAME CMD...: runs CMD in the fabric namespace in its own session, logs to
# CLUSTER_DIR/NAME.log, records its pid in CLUSTER_DIR/NAME.pid.
spawn() {
  local name=$1
  shift
  setsid ip netns exec "$CLUSTER_NS" "$@" >"$CLUSTER_DIR/$name.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/$name.pid"
}

# wait_for NAME SECONDS CMD...: polls CMD (every 0.2 s) until it succeeds; on timeout
# shows the end of NAME's log and fails.
wait_for() {
  local name=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if ! kill -0 "$(cat "$CLUSTER_DIR/$name.pid")" 2>/dev/null; then
      echo "cluster: $name exited; end of its log:" >&2
      tail -20 "$CLUSTER_DIR/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "cluster: $name not ready after $secs s; end of its log:" >&2
  tail -20 "$CLUSTER_DIR/$name.log" >&2
  return 1
}

# healthz PATH: GET on the apiserver as admin, from the fabric namespace.
healthz() {
  ip netns exec "$CLUSTER_NS" curl -sf --max-time 2 --cacert "$CLUSTER_DIR/pki/ca.crt" \
    --cert "$CLUSTER_DIR/pki/admin.crt" --key "$CLUSTER_DIR/pki/admin.key" "$APISERVER$1"
}

# spawn_node N NAME CMD...: runs CMD in node N's network namespace (nsenter keeps the
# host's mount namespace, so namespaces made there under /run/netns are seen by all),
# logging to CLUSTER_DIR/nodeN/NAME.log, pid in CLUSTER_DIR/nodeN/NAME.pid.
spawn_node() {
  local n=$1 name=$2 dir="$CLUSTER_DIR/node$1"
  shift 2
  mkdir -p "$dir"
  setsid nsenter --net="/run/netns/$P-node$n" "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# kubectl as admin from the fabric namespace.
kctl() { ip netns exec "$CLUSTER_NS" "$CLUSTER_BIN/kubectl" --kubeconfig "$CLUSTER_DIR/pki/admin.kubeconfig" "$@"; }

# cidr_gateway CIDR: its first host address (a node's pod gateway).
cidr_gateway() {
  python3 -c 'import ipaddress, sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$1"
}

# wait_pod_cidr NODE SECONDS: prints the Node's spec.podCIDR once it has one.
wait_pod_cidr() {
  local node=$1 secs=$2 i cidr
  for ((i = 0; i < secs * 5; i++)); do
    cidr=$(kctl get node "$node" -o 'jsonpath={.spec.podCIDR}' 2>/dev/null || true)
    [ -n "$cidr" ] && { echo "$cidr"; return 0; }
    sleep 0.2
  done
  echo "cluster: Node $node got no podCIDR in $secs s" >&2
  return 1
}
