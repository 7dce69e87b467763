#!/usr/bin/env bash
# NetworkPolicy in the lab cluster (root only): the model of the upstream netpol e2e suite
# (namespaces x, y, z; pods a, b, c; TCP and UDP servers on 80 and 81 with named ports),
# only through `lab/lab.sh kubectl`, probed with real clients. The case table, the prober
# and the servers are in tests/e2e/lib/netpol/ (cases.py says what each case checks); for
# each policy the probed reachability matrix is printed beside the expected one and any
# difference fails.
# Environment: E2E_PREFIX (default pn<pid>), PODSWITCH_BIN.
set -uo pipefail
E2E_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/e2e/lib/cluster.sh
source "$E2E_ROOT/tests/e2e/lib/cluster.sh"
cluster_test_init "pn$$"

check "lab/lab.sh up" lab_up || die "cluster" "see above"
out=$(mktemp "${TMPDIR:-/tmp}/$P-np.XXXXXX")
CLEANUP_FILES+=("$out")
timeout 900 python3 tests/e2e/lib/netpol/cases.py 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
CHECKS=$((CHECKS + $(grep -c '^PASS\|^FAIL' "$out")))
FAILS=$((FAILS + $(grep -c '^FAIL' "$out")))
[ "$rc" = 0 ] || grep -q '^FAIL' "$out" || fail "netpol cases" "cases.py exited $rc (see above)"
finish
