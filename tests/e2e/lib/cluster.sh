# shellcheck shell=bash
# What the lab-cluster end-to-end tests share: the results helpers (common.sh), the root
# check, a prefix of their own for lab/lab.sh, kubectl against it, and a teardown on exit
# (also on failure) that removes the cluster and the files listed in CLEANUP_FILES.
#
#   cluster_test_init DEFAULT_PREFIX   sets P, LAB_PREFIX, LAB_STATE; installs the trap
#   kc ARGS...                         kubectl against the test's cluster
#   lab_up                             lab/lab.sh up (bounded in time)
#
# Environment: E2E_PREFIX (overrides the prefix), PODSWITCH_BIN.

E2E_ROOT=${E2E_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
# shellcheck source=tests/e2e/lib/common.sh
source "$E2E_ROOT/tests/e2e/lib/common.sh"
CLEANUP_FILES=()

cluster_test_init() {
  need_root
  cd "$E2E_ROOT" || exit 1
  P=${E2E_PREFIX:-$1}
  export LAB_PREFIX=$P LAB_STATE="${TMPDIR:-/tmp}/$P-cluster"
  trap cluster_cleanup EXIT
  trap 'exit 130' INT TERM
}

cluster_cleanup() {
  lab/lab.sh down >/dev/null 2>&1 || true
  [ ${#CLEANUP_FILES[@]} -eq 0 ] || rm -f "${CLEANUP_FILES[@]}"
  common_cleanup
}

kc() { lab/lab.sh kubectl "$@"; }
lab_up() { timeout 1800 lab/lab.sh up; }
