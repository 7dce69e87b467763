#!/usr/bin/env bash
# Starts etcd for the lab cluster in the fabric namespace (client URL 127.0.0.1:2379 there,
# data in CLUSTER_DIR/etcd) and waits until it serves. Environment: see common.sh.
set -euo pipefail
# shellcheck source=lab/cluster/common.sh
source "$(dirname "$0")/common.sh"
spawn etcd "$CLUSTER_BIN/etcd" --name lab --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster lab=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn
wait_for etcd 30 ip netns exec "$CLUSTER_NS" curl -sf --max-time 1 http://127.0.0.1:2379/health
echo "cluster: etcd up (pid $(cat "$CLUSTER_DIR/etcd.pid"))" >&2
