#!/usr/bin/env bash
# The lab cluster end to end (lab/lab.sh, root only): brings the cluster up under its own
# prefix (real etcd, kube-apiserver, kube-controller-manager, the node agents, podswitch or
# flannel nodes and flanneld on node3; the lab's own checks must pass), then works as a user
# does, only through `lab/lab.sh kubectl`: applies a Pod and a Service, checks them with
# real clients (ping, HTTP to the pod, HTTP to the ClusterIP on podswitch nodes), deletes
# the Pod (its namespace and programs go), and tears everything down, also on failure,
# checking that no process of the run is left. A spare Node registers first
# (LAB_SPARE_NODES=1), so the workers get podCIDRs other than the house ones: nothing in
# the lab or podswitch may assume them.
#
# Environment: E2E_PREFIX (default pk<pid>), PODSWITCH_BIN.
set -uo pipefail
E2E_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/e2e/lib/common.sh
source "$E2E_ROOT/tests/e2e/lib/common.sh"
need_root
cd "$E2E_ROOT" || exit 1
P=${E2E_PREFIX:-pk$$}
export LAB_PREFIX=$P LAB_STATE="${TMPDIR:-/tmp}/$P-cluster" LAB_SPARE_NODES=1
kc() { lab/lab.sh kubectl "$@"; }

# Every process of the run lives in one of its namespaces (control plane in $P-fab,
# agents, daemons and flanneld in $P-nodeN, pod programs in $P-nN-POD).
leftovers() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-" || true); do
    echo "namespace $ns: pids $(ip netns pids "$ns" | tr '\n' ' ')"
  done
  pgrep -f "$LAB_STATE" | sed 's/^/process /' || true
}

cleanup() {
  lab/lab.sh down >/dev/null 2>&1 || true
  common_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up() { timeout 1800 lab/lab.sh up; }
check "lab/lab.sh up: cluster, manifests, lab checks" lab_up || die "cluster" "see above"

check "Nodes have podCIDRs from node IPAM, node1's not the house 10.244.1.0/24" bash -c "
  out=\$(LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.spec.podCIDR} {end}')
  echo \"\$out\"
  for node in control-plane spare1 node1 node2 node3; do
    echo \"\$out\" | grep -Eq \"\$node=10\\.244\\.[0-9]+\\.0/24\" || exit 1
  done
  ! echo \"\$out\" | grep -q 'node1=10.244.1.0/24'"

kind=flannel
if [ -x "${PODSWITCH_BIN:-target/release}/podswitch-cni" ] &&
  "${PODSWITCH_BIN:-target/release}/podswitch-controller" bootstrap --help >/dev/null 2>&1; then
  kind=podswitch
fi

manifest=$(mktemp "${TMPDIR:-/tmp}/$P-e2e.XXXXXX.yaml")
cat >"$manifest" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: e2e-web, labels: {app: e2e-web}}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 3
  containers:
  - name: web
    image: python
    command: [sh, -c, 'cd "$(mktemp -d)" && echo e2e-web > whoami && exec python3 -m http.server 8080']
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: e2e-web}
spec:
  selector: {app: e2e-web}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
check "kubectl apply Pod + Service" kc apply -f "$manifest"
check "Pod Ready" kc wait --for=condition=Ready pod/e2e-web --timeout=60s
ip=$(kc get pod e2e-web -o 'jsonpath={.status.podIP}')
cip=$(kc get svc e2e-web -o 'jsonpath={.spec.clusterIP}')
check "EndpointSlice lists the pod $ip" bash -c "for i in \$(seq 50); do
  LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get endpointslices -l kubernetes.io/service-name=e2e-web \
    -o jsonpath='{.items[*].endpoints[*].addresses[*]}' | grep -qw '$ip' && exit 0; sleep 0.2; done; exit 1"
check "ping pod-a (node1) -> e2e-web $ip (node2)" ip netns exec "$P-n1-pod-a" ping -c 3 -i 0.2 -W 2 "$ip"
check "ping flannel pod-e (node3) -> e2e-web $ip" ip netns exec "$P-n3-pod-e" ping -c 3 -i 0.2 -W 2 "$ip"
http_get() { ip netns exec "$1" timeout 10 python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())' "$2"; }
check "HTTP pod-a -> $ip:8080 answers e2e-web" bash -c "$(declare -f http_get); http_get $P-n1-pod-a http://$ip:8080/whoami | grep -x e2e-web"
if [ "$kind" = podswitch ]; then
  check "HTTP pod-a -> ClusterIP $cip:80 answers e2e-web" bash -c "$(declare -f http_get); for i in \$(seq 20); do http_get $P-n1-pod-a http://$cip/whoami | grep -x e2e-web && exit 0; sleep 0.25; done; exit 1"
else
  pass "ClusterIP $cip (skipped: node1/node2 are flannel nodes, no service proxy)"
fi

pids=$(ip netns pids "$P-n2-e2e-web" 2>/dev/null | tr '\n' ' ')
check "the pod's program runs in $P-n2-e2e-web (pids $pids)" test -n "$pids"
check "kubectl delete Pod" kc delete pod e2e-web --wait=true --timeout=60s
# The agent removes the namespace before its final delete of the Pod object; a Pod object
# that went away first (the "gone" path) is torn down right after, so wait a little.
check "its namespace $P-n2-e2e-web is gone" bash -c "for i in \$(seq 50); do ip netns list | grep -qw '$P-n2-e2e-web' || exit 0; sleep 0.2; done; exit 1"
alive=""
for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive+="$pid "; done
check "its programs are gone" test -z "$alive"
kc delete svc e2e-web >/dev/null 2>&1
rm -f "$manifest"

check "lab/lab.sh down" lab/lab.sh down
left=$(leftovers)
if [ -z "$left" ]; then pass "no namespace or process of the run left"; else fail "no namespace or process of the run left" "$left"; fi
finish
