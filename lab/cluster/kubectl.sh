#!/usr/bin/env bash
# kubectl against the lab cluster, as admin, from the fabric namespace (the apiserver
# listens on 192.168.1.1 there). Environment: see common.sh.
set -euo pipefail
# shellcheck source=lab/cluster/common.sh
source "$(dirname "$0")/common.sh"
kctl "$@"
