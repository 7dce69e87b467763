#!/usr/bin/env bash
# NetworkPolicy in the lab cluster (root only), only through `lab/lab.sh kubectl`, probed
# with real clients as the upstream netpol e2e suite does: namespaces x and y, pods a
# (node1) and b (node2) in each, labelled pod=<name>, each serving HTTP on port 80
# (container port named serve-80-tcp). For each policy the probed reachability matrix is
# printed beside the expected one; any difference fails.
# Environment: E2E_PREFIX (default pn<pid>), PODSWITCH_BIN.
set -uo pipefail
E2E_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/e2e/lib/cluster.sh
source "$E2E_ROOT/tests/e2e/lib/cluster.sh"
cluster_test_init "pn$$"

PODS="x/a x/b y/a y/b"
check "lab/lab.sh up" lab_up || die "cluster" "see above"

MANIFEST=$(mktemp "${TMPDIR:-/tmp}/$P-np.XXXXXX.yaml")
CLEANUP_FILES+=("$MANIFEST")
{
  for ns in x y; do
    printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: "%s", labels: {ns: "%s"}}\n' "$ns" "$ns"
    for p in a b; do
      node=node1
      [ "$p" = b ] && node=node2
      cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: "$p", namespace: "$ns", labels: {pod: "$p"}}
spec:
  nodeName: $node
  terminationGracePeriodSeconds: 1
  containers:
  - name: serve
    image: python
    command: [python3, -m, http.server, "80"]
    ports: [{name: serve-80-tcp, containerPort: 80}]
YAML
    done
  done
} >"$MANIFEST"
check "kubectl apply: namespaces x, y; pods a, b in each" kc apply -f "$MANIFEST"
for ns in x y; do
  check "pods of $ns Ready" kc wait -n "$ns" --for=condition=Ready pod --all --timeout=90s
done
declare -A IP NS
for p in $PODS; do
  IP[$p]=$(kc get pod -n "${p%/*}" "${p#*/}" -o 'jsonpath={.status.podIP}')
  n=$(kc get pod -n "${p%/*}" "${p#*/}" -o 'jsonpath={.spec.nodeName}' | tr -dc 0-9)
  NS[$p]="$P-n$n-${p#*/}"
done
# The agent names a pod's namespace after the pod; two namespaces with pod a collide, so
# read the netns from the agent's record of each pod's IP instead.
netns_of() {
  local ip=$1 ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-n[0-9]-"); do
    ip netns exec "$ns" ip -4 -o addr show dev eth0 2>/dev/null | grep -q " $ip/" && { echo "$ns"; return; }
  done
}
for p in $PODS; do NS[$p]=$(netns_of "${IP[$p]}"); done

# probe: prints the matrix (rows from, columns to), 1 = TCP 80 connects.
probe() {
  local from to line
  printf '%-5s' ""
  for to in $PODS; do printf '%-5s' "$to"; done
  echo
  for from in $PODS; do
    line=$(printf '%-5s' "$from")
    for to in $PODS; do
      if ip netns exec "${NS[$from]}" curl -s -o /dev/null -m 2 "http://${IP[$to]}/"; then
        line+=$(printf '%-5s' 1)
      else
        line+=$(printf '%-5s' .)
      fi
    done
    echo "$line"
  done
}

# case NAME EXPECTED: probes (retrying while the policy is programmed) and compares.
case_matrix() {
  local name=$1 want=$2 got i
  for ((i = 0; i < 15; i++)); do
    got=$(probe)
    [ "$got" = "$want" ] && break
    sleep 1
  done
  echo "--- $name: expected"
  echo "$want"
  echo "--- $name: probed"
  echo "$got"
  if [ "$got" = "$want" ]; then pass "$name"; else fail "$name" "matrix differs"; fi
}

all=$(printf '     x/a  x/b  y/a  y/b  \nx/a  1    1    1    1    \nx/b  1    1    1    1    \ny/a  1    1    1    1    \ny/b  1    1    1    1    ')
case_matrix "no policy: everything reaches everything" "$all"

kc apply -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress, namespace: "x"}
spec: {podSelector: {}, policyTypes: [Ingress]}
YAML
# A pod reaching its own address never leaves it (the upstream suite allows loopback too).
deny=$(printf '     x/a  x/b  y/a  y/b  \nx/a  1    .    1    1    \nx/b  .    1    1    1    \ny/a  .    .    1    1    \ny/b  .    .    1    1    ')
case_matrix "deny all ingress in x" "$deny"

kc apply -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y-pod-b, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: "a"}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: "y"}}
      podSelector: {matchLabels: {pod: "b"}}
    ports: [{port: serve-80-tcp}]
YAML
and=$(printf '     x/a  x/b  y/a  y/b  \nx/a  1    .    1    1    \nx/b  .    1    1    1    \ny/a  .    .    1    1    \ny/b  1    .    1    1    ')
case_matrix "x/a allows y/b only (namespaceSelector AND podSelector, named port)" "$and"

check "dump policies on node1 names x/allow-from-y-pod-b" bash -c "
  sock=/run/podswitch/$P-node1.sock
  ${PODSWITCH_BIN:-target/release}/podswitchctl --socket \$sock dump policies | grep -q 'x/allow-from-y-pod-b'"
kc delete networkpolicy -n x deny-all-ingress allow-from-y-pod-b >/dev/null
case_matrix "policies removed: everything reaches everything again" "$all"
finish
