#!/usr/bin/env bash
# Runs every podswitch test: formatting, lints, unit/packet/property tests, the scapy +
# tshark replay checks and the end-to-end tests in network namespaces (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/preflight.sh
source scripts/preflight.sh
preflight test
export PYTHON="$DEBIAN_PYTHON" # the scapy replay imports Debian's python3-scapy
step() { printf '\n=== %s (at %d s)\n' "$*" "$SECONDS"; }
step "cluster components (etcd, kube-apiserver, kube-controller-manager, kubectl, flanneld, cnitool)"
# Built once into a cache folder; the CNI plugin's cnitool tests and the cluster e2e tests use them.
CLUSTER_BIN=$(lab/cluster/build-bins.sh | tail -1)
export CNITOOL=$CLUSTER_BIN/cnitool
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (every target: the benchmarks are type-checked here, not built)"
cargo clippy --all-targets -- -D warnings
step "cargo test (unit, packet-tests, property tests)"
cargo test --workspace
if [ -x packet-tests/scapy/check_replay.sh ]; then
  step "scapy-built frames through podswitchd replay, decoded by tshark"
  packet-tests/scapy/check_replay.sh
fi
if [ "$(id -u)" = 0 ]; then
  # Every end-to-end test runs even after one fails; the failures are listed at the end.
  failed=()
  for t in tests/e2e/*.sh; do
    [ -e "$t" ] || continue
    [ "$(basename "$t")" = lib.sh ] && continue # sourced by the tests
    step "end-to-end: $t"
    t0=$SECONDS
    timeout 1800 "$t" || failed+=("$t")
    echo "($t: $((SECONDS - t0)) s)"
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo
    echo "END-TO-END TESTS FAILED: ${failed[*]}"
    exit 1
  fi
else
  echo "end-to-end tests skipped: they need root (network namespaces, XDP)"
fi
echo
echo "ALL TESTS PASSED"
