#!/usr/bin/env bash
# kubectl-to-forwarding latency at 10k Services through a real apiserver (issue 10): brings
# the lab cluster up with podswitch-controller's minimum sync interval at 0, creates the
# Services and EndpointSlices through the apiserver, and times EndpointSlice changes until
# a client in pod-a reaches the new endpoint (bench/cluster_latency.py says how).
# Environment: LAT_SERVICES (default 10000), LAT_ROUNDS (default 50), E2E_PREFIX,
# PODSWITCH_BIN.
set -uo pipefail
E2E_ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/e2e/lib/cluster.sh
source "$E2E_ROOT/tests/e2e/lib/cluster.sh"
cluster_test_init "lt$$"
export LAB_CONTROLLER_ARGS="--min-sync-period-ms 0"
check "lab/lab.sh up (controller --min-sync-period-ms 0)" lab_up || die "cluster" "see above"
# shellcheck source=lab/topology.sh
source lab/topology.sh
timeout 3600 ip netns exec "$P-fab" python3 bench/cluster_latency.py \
  "$TOPO_FABRIC_IP:$TOPO_APISERVER_PORT" "$LAB_STATE" "$P-n1-pod-a" \
  "${LAT_SERVICES:-10000}" "${LAT_ROUNDS:-50}" || fail "cluster_latency.py" "see above"
finish
