#!/usr/bin/env bash
# podswitch-controller against the lab cluster (root only), only through `lab/lab.sh
# kubectl` as a user works, with real clients in the pods:
#   flannel's lease annotations on the podswitch Nodes; a NodePort Service reached from
#   the fabric and from a pod on the other node; a LoadBalancer whose ingress IP is set
#   with a status patch; eTP Local; ClientIP affinity; endpoints scaled up and down;
#   a Service deleted; bad objects (SCTP, a Node with garbage backend-data) named in
#   `status` while the rest is programmed; a burst of Services coalesced into few
#   publishes; kill -9 of the controller and a stopped apiserver leave traffic flowing;
#   a restarted controller with nothing changed publishes nothing; a podswitchd killed
#   with -9 and restarted registers its pods again by itself (--cni-state).
# Environment: E2E_PREFIX (default pq<pid>), PODSWITCH_BIN.
set -uo pipefail
E2E_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/e2e/lib/cluster.sh
source "$E2E_ROOT/tests/e2e/lib/cluster.sh"
cluster_test_init "pq$$"
BIN=${PODSWITCH_BIN:-$E2E_ROOT/target/release}
status() { "$BIN/podswitch-controller" status --status-socket "$LAB_STATE/node$1/controller.sock" "${@:2}"; }
status_field() { status "$1" -o json | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$2"; }
pod_ns() { echo "$P-n$(kc get pod "$1" -o 'jsonpath={.spec.nodeName}' | tr -dc 0-9)-$1"; }


# http_ok NS URL N [WANT]: N fresh connections all answered (and WANT among the answers).
http_ok() {
  local ns=$1 url=$2 n=$3 want=${4:-}
  ip netns exec "$ns" timeout 60 python3 - "$url" "$n" "$want" <<'PY'
import sys, urllib.request, collections
url, n, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = collections.Counter()
for _ in range(n):
    try:
        seen[urllib.request.urlopen(url, timeout=3).read().decode().strip()] += 1
    except Exception as e:
        seen["error"] += 1
print(" ".join("%s=%d" % kv for kv in sorted(seen.items())))
sys.exit(0 if "error" not in seen and (not want or want in seen) else 1)
PY
}

# wait_until SECONDS CMD...: polls CMD every 0.2 s.
wait_until() {
  local secs=$1 i
  shift
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  "$@"
}

check "lab/lab.sh up (podswitch nodes 1 and 2, flannel node 3)" lab_up || die "cluster" "see above"
[ -S "$LAB_STATE/node1/controller.sock" ] || die "podswitch-controller runs on node1" "no status socket"

check "node1 carries flannel's lease annotations" bash -c "
  a=\$(LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get node node1 -o json)
  echo \"\$a\" | python3 -c '
import json,sys
a = json.load(sys.stdin)[\"metadata\"][\"annotations\"]
p = \"flannel.alpha.coreos.com/\"
assert a[p + \"backend-type\"] == \"vxlan\", a
d = json.loads(a[p + \"backend-data\"]); assert d[\"VNI\"] == 1 and len(d[\"VtepMAC\"]) == 17, d
assert a[p + \"public-ip\"] == \"192.168.1.10\" and a[p + \"kube-subnet-manager\"] == \"true\", a
print(a[p + \"backend-data\"])'"
check "node1's NetworkUnavailable is False" bash -c "LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get node node1 \
  -o jsonpath='{.status.conditions[?(@.type==\"NetworkUnavailable\")].status}' | grep -qx False"
check "node1 has node2 and node3 (flanneld) as peers" bash -c "$BIN/podswitchctl --socket /run/podswitch/$P-node1.sock dump tunnels | tee /dev/stderr | grep -q 192.168.1.12"

MANIFEST=$(mktemp "${TMPDIR:-/tmp}/$P-ctl.XXXXXX.yaml")
CLEANUP_FILES+=("$MANIFEST")
cat >"$MANIFEST" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: echo-1, labels: {app: echo}}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: python
    command: [sh, -c, 'cd "$(mktemp -d)" && echo echo-1 > whoami && exec python3 -m http.server 8080']
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-np}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30090}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30091}]
---
apiVersion: v1
kind: Service
metadata: {name: bad-sctp}
spec:
  selector: {app: echo}
  ports: [{name: s, port: 9999, protocol: SCTP}]
---
apiVersion: v1
kind: Node
metadata:
  name: bogus
  annotations:
    flannel.alpha.coreos.com/kube-subnet-manager: "true"
    flannel.alpha.coreos.com/backend-type: vxlan
    flannel.alpha.coreos.com/backend-data: "{garbage"
    flannel.alpha.coreos.com/public-ip: 192.168.1.99
YAML
check "kubectl apply: a pod, NodePort, LoadBalancer, an SCTP Service, a bogus Node" kc apply -f "$MANIFEST"
check "echo-1 Ready" kc wait --for=condition=Ready pod/echo-1 --timeout=90s
echo1_ip=$(kc get pod echo-1 -o 'jsonpath={.status.podIP}')
check "echo-1 ($echo1_ip) is a podswitchd port on node2 with a host-local lease" bash -c "
  $BIN/podswitchctl --socket /run/podswitch/$P-node2.sock dump config | grep -q 'name = \"default/echo-1\"' &&
  test -f $LAB_STATE/node2/ipam/podswitch/$echo1_ip"
check "LoadBalancer ingress 192.168.1.240 set through the status subresource" \
  kc patch svc echo-lb --subresource=status --type=merge -p '{"status":{"loadBalancer":{"ingress":[{"ip":"192.168.1.240"}]}}}'

check "NodePort node1:30090 from the fabric (endpoint on node2)" wait_until 20 http_ok "$P-fab" http://192.168.1.10:30090/whoami 10 echo-1
podb=$(pod_ns pod-b)
check "NodePort node1:30090 from a pod on node2 (masqueraded, reply symmetric)" http_ok "$podb" http://192.168.1.10:30090/whoami 10 echo-1
check "LoadBalancer IP from the fabric via node2 (eTP Local, endpoint on node2)" bash -c "
  ip netns exec $P-fab ip route replace 192.168.1.240/32 via 192.168.1.11 &&
  for i in \$(seq 50); do ip netns exec $P-fab curl -sf -m 2 http://192.168.1.240/whoami && exit 0; sleep 0.2; done; exit 1"
check "eTP Local: node1 (no local endpoint) answers the health check with 503" bash -c "
  hc=\$(LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get svc echo-lb -o jsonpath='{.spec.healthCheckNodePort}')
  code1=\$(ip netns exec $P-fab curl -s -o /dev/null -w '%{http_code}' -m 3 http://192.168.1.10:\$hc/)
  code2=\$(ip netns exec $P-fab curl -s -o /dev/null -w '%{http_code}' -m 3 http://192.168.1.11:\$hc/)
  echo \"node1 \$code1 node2 \$code2\"; [ \"\$code1\" = 503 ] && [ \"\$code2\" = 200 ]"

check "status names the SCTP Service and the bogus Node, and programs the rest" bash -c "
  s=\$($BIN/podswitch-controller status --status-socket $LAB_STATE/node1/controller.sock)
  echo \"\$s\" | grep -q 'default/bad-sctp.*SCTP' && echo \"\$s\" | grep -q 'bogus.*backend-data' &&
  echo \"\$s\" | grep 'rejected'"

# Scale: a second endpoint on node1; both answer; then the first goes.
sed -e 's/echo-1/echo-2/g' -e 's/nodeName: node2/nodeName: node1/' "$MANIFEST" | python3 -c '
import sys; print(sys.stdin.read().split("---")[0])' | kc apply -f - >/dev/null
check "echo-2 Ready (scaled to 2 endpoints)" kc wait --for=condition=Ready pod/echo-2 --timeout=90s
check "ClusterIP reaches both endpoints from pod-a" wait_until 10 bash -c "
  cip=\$(LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get svc echo-np -o jsonpath='{.spec.clusterIP}')
  out=\$(ip netns exec $(pod_ns pod-a) timeout 30 python3 -c '
import sys, urllib.request
seen = set()
for _ in range(30):
    seen.add(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode().strip())
print(\" \".join(sorted(seen)))' http://\$cip/whoami); echo \"\$out\"; [ \"\$out\" = 'echo-1 echo-2' ]"
check "ClientIP affinity: one client sticks to one endpoint" bash -c "
  cip=\$(LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl get svc echo-lb -o jsonpath='{.spec.clusterIP}')
  out=\$(for i in \$(seq 10); do ip netns exec $(pod_ns pod-a) curl -sf -m 2 http://\$cip/whoami; done | sort -u)
  echo \$out; [ \$(echo \"\$out\" | wc -l) = 1 ]"
check "kubectl delete pod echo-1: only echo-2 answers" bash -c "
  LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl delete pod echo-1 --wait=true >/dev/null &&
  for i in \$(seq 50); do
    out=\$(for j in \$(seq 10); do ip netns exec $P-fab curl -sf -m 2 http://192.168.1.10:30090/whoami; done | sort -u)
    [ \"\$out\" = echo-2 ] && { echo \$out; exit 0; }; sleep 0.2
  done; echo \$out; exit 1"

check "echo-1's podswitchd port and IPAM lease on node2 are gone" bash -c "
  ! $BIN/podswitchctl --socket /run/podswitch/$P-node2.sock dump config | grep -q 'name = \"default/echo-1\"' &&
  ! grep -rqs . $LAB_STATE/node2/ipam/podswitch/$echo1_ip"

# A burst of 200 Services arrives within the minimum sync interval (1 s): few publishes.
p0=$(status_field 1 '["publishes"]')
burst=$(mktemp "${TMPDIR:-/tmp}/$P-burst.XXXXXX.yaml")
for i in $(seq 1 200); do
  printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: burst-%d}\nspec:\n  selector: {app: echo}\n  ports: [{port: 80, targetPort: 8080}]\n' "$i"
done >"$burst"
check "kubectl apply of 200 Services" kc apply -f "$burst"
check "all 200 programmed on node1" wait_until 30 bash -c "$BIN/podswitchctl --socket /run/podswitch/$P-node1.sock dump services | grep -c 'default/burst-' | grep -qx 200"
check "200 Services took at most 10 publishes (coalesced)" bash -c "
  p1=\$($BIN/podswitch-controller status --status-socket $LAB_STATE/node1/controller.sock -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"publishes\"])')
  echo \"publishes \$(( p1 - $p0 ))\"; [ \$(( p1 - $p0 )) -le 10 ]"
check "kubectl delete of 200 Services: gone from node1" bash -c "
  LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl delete -f $burst >/dev/null &&
  for i in \$(seq 100); do
    n=\$($BIN/podswitchctl --socket /run/podswitch/$P-node1.sock dump services | grep -c 'default/burst-'); [ \"\$n\" = 0 ] && exit 0; sleep 0.2
  done; exit 1"
rm -f "$burst"

# Failures: the last tables keep forwarding.
ctl_pid=$(cat "$LAB_STATE/node1/controller.pid")
ctl_cmd=$(tr '\0' ' ' <"/proc/$ctl_pid/cmdline")
check "kill -9 podswitch-controller on node1" kill -9 "$ctl_pid"
check "NodePort still answers without the controller" http_ok "$P-fab" http://192.168.1.10:30090/whoami 10 echo-2
# Names the API gives, read while it is up.
nsa=$(pod_ns pod-a)
ipb=$(kc get pod pod-b -o 'jsonpath={.status.podIP}')
api_pid=$(cat "$LAB_STATE/kube-apiserver.pid")
check "stop kube-apiserver" kill "$api_pid"
sleep 1
check "NodePort and pod-to-pod still work without the apiserver" bash -c "
  ip netns exec $P-fab curl -sf -m 3 http://192.168.1.10:30090/whoami && ip netns exec $nsa ping -c 2 -W 2 $ipb"
check "kube-apiserver restarted" env CLUSTER_BIN="$(lab/cluster/build-bins.sh 2>/dev/null | tail -1)" \
  CLUSTER_DIR="$LAB_STATE" CLUSTER_NS="$P-fab" P="$P" lab/cluster/apiserver.sh
# shellcheck disable=SC2086 # the recorded command line, word by word
setsid nsenter --net="/run/netns/$P-node1" $ctl_cmd >"$LAB_STATE/node1/controller-restart.log" 2>&1 &
echo $! >"$LAB_STATE/node1/controller.pid"
check "restarted controller synced" wait_until 30 bash -c "
  $BIN/podswitch-controller status --status-socket $LAB_STATE/node1/controller.sock -o json |
  python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d[\"syncs\"] >= 1 else 1)'"
check "a restarted controller with nothing changed published nothing" bash -c "
  $BIN/podswitch-controller status --status-socket $LAB_STATE/node1/controller.sock -o json |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(\"publishes\", d[\"publishes\"], \"requests\", d[\"requests\"]); sys.exit(0 if d[\"publishes\"] == 0 else 1)'"
check "the Service still follows the API after the restart" bash -c "
  LAB_PREFIX=$P LAB_STATE=$LAB_STATE lab/lab.sh kubectl delete svc echo-np >/dev/null &&
  for i in \$(seq 50); do $BIN/podswitchctl --socket /run/podswitch/$P-node1.sock dump services | grep -q echo-np || exit 0; sleep 0.2; done; exit 1"

# kill -9 of podswitchd on node2, restarted with its recorded command line (as a service
# manager would): with --cni-state it registers again the pods podswitch-cni attached, with
# no restore call, and the controller programs it again.
psw_pid=$(cat "$LAB_STATE/node2/podswitchd.pid")
psw_cmd=$(tr '\0' ' ' <"/proc/$psw_pid/cmdline")
check "kill -9 podswitchd on node2" kill -9 "$psw_pid"
for _ in $(seq 50); do kill -0 "$psw_pid" 2>/dev/null || break; sleep 0.1; done
# shellcheck disable=SC2086 # the recorded command line, word by word
setsid nsenter --net="/run/netns/$P-node2" $psw_cmd >"$LAB_STATE/node2/podswitchd-restart.log" 2>&1 &
echo $! >"$LAB_STATE/node2/podswitchd.pid"
check "restarted podswitchd on node2 registered pod-b again by itself" wait_until 30 bash -c "
  $BIN/podswitchctl --socket /run/podswitch/$P-node2.sock dump config | grep -q 'name = \"default/pod-b\"'"
check "pod-a (node1) reaches pod-b (node2) after the restart" wait_until 30 ip netns exec "$nsa" ping -c 1 -W 1 "$ipb"
finish
