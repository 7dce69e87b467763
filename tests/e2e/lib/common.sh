# shellcheck shell=bash
# What every end-to-end test and the benchmark harness share: results (PASS/FAIL lines and
# their count), the root check, the release build and the control-socket client. Sourced
# by tests/e2e/lib.sh (the two-node daemon tests) and tests/e2e/lib/interop.sh (interop,
# overlay, PMTU tests and bench/harness.sh); not meant to be sourced on its own.
#
#   pass NAME [DETAIL] / fail NAME [DETAIL]   one result line; fail counts in FAILS
#   check NAME CMD...        PASS with CMD's last output line as detail if CMD exits 0,
#                            FAIL with its last lines otherwise, followed by the lines
#                            of its output that start with FAIL (indented; a lab's failed
#                            checks otherwise hide above its summary); CMD runs in this shell,
#                            so variables it sets (e.g. WAITED) stay visible
#   check_fails NAME CMD...  the reverse: PASS if CMD exits non-zero
#   die NAME [DETAIL]        a FAIL that everything after it depends on: stop here
#   finish                   summary line; exit 1 if any check failed
#   need_root / build_release (sets BIN) / sock N / ctl N ARGS... (= psw_ctl)
#   wait_ping NS DST SECONDS  first answered ping within SECONDS; WAITED = seconds taken
#
# Environment: PODSWITCH_BIN (use these binaries, skip the build), CARGO_TARGET_DIR.

E2E_ROOT=${E2E_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
E2E_NAME=${E2E_NAME:-$(basename "$0" .sh)}
CHECKS=0
FAILS=0
CHECK_OUT=$(mktemp "${TMPDIR:-/tmp}/e2e-check.XXXXXX")

pass() {
  CHECKS=$((CHECKS + 1))
  printf 'PASS  %-58s %s\n' "$1" "${2:-}"
}

fail() {
  CHECKS=$((CHECKS + 1))
  FAILS=$((FAILS + 1))
  printf 'FAIL  %-58s %s\n' "$1" "${2:-}"
}

check() {
  local name=$1
  shift
  if "$@" >"$CHECK_OUT" 2>&1; then
    pass "$name" "$(tail -n 1 "$CHECK_OUT" | cut -c1-160)"
  else
    fail "$name" "$(tail -n 3 "$CHECK_OUT" | tr '\n' ' ' | cut -c1-300)"
    grep -E '^FAIL ' "$CHECK_OUT" | head -n 20 | sed 's/^/      /' || true
  fi
}

check_fails() {
  local name=$1
  shift
  if "$@" >"$CHECK_OUT" 2>&1; then
    fail "$name" "succeeded: $(tail -n 2 "$CHECK_OUT" | tr '\n' ' ' | cut -c1-200)"
  else
    pass "$name"
  fi
}

die() {
  fail "$1" "${2:-}"
  echo "$E2E_NAME: aborted"
  exit 1
}

finish() {
  echo "$E2E_NAME: $((CHECKS - FAILS))/$CHECKS checks passed"
  [ "$FAILS" = 0 ] || exit 1
  exit 0
}

# Removes what this file made; called from the cleanup trap of lib.sh / interop.sh.
common_cleanup() {
  rm -f "$CHECK_OUT"
}

# Privileged tests skip, saying so, when they cannot run (scripts/test.sh runs them as root).
need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "SKIP  $E2E_NAME: needs root (network namespaces, XDP)"
    exit 0
  fi
}

# build_release: release binaries into BIN (cargo is a no-op when they are up to date);
# one build at a time even when several tests start together.
build_release() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if [ -n "${PODSWITCH_BIN:-}" ]; then
    BIN=$PODSWITCH_BIN
  else
    local target=${CARGO_TARGET_DIR:-$E2E_ROOT/target}
    mkdir -p "$target"
    if ! (cd "$E2E_ROOT" && flock -w 1800 "$target/.e2e-build.lock" cargo build --release --bins -q); then
      echo "FAIL  $E2E_NAME: cargo build --release failed"
      exit 1
    fi
    BIN=$target/release
  fi
  if [ ! -x "$BIN/podswitchd" ] || [ ! -x "$BIN/podswitchctl" ]; then
    echo "FAIL  $E2E_NAME: no podswitchd/podswitchctl in $BIN"
    exit 1
  fi
}

sock() { echo "/run/podswitch/$P-node$1.sock"; }

# ctl N ARGS...: podswitchctl against node N's daemon (bounded in time).
ctl() {
  local n=$1
  shift
  timeout 30 "$BIN/podswitchctl" --socket "$(sock "$n")" "$@"
}
psw_ctl() { ctl "$@"; }

ping1() { timeout 5 ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_ping NS DST SECONDS: succeeds as soon as one ping answers; WAITED = seconds taken.
wait_ping() {
  local ns=$1 dst=$2 max=$3 start i ok=1
  start=$(now_ms)
  for i in $(seq 1 $((max * 5))); do
    if ping1 "$ns" "$dst"; then
      ok=0
      break
    fi
    [ $(($(now_ms) - start)) -gt $((max * 1000)) ] && break
    sleep 0.1
  done
  WAITED=$(awk -v ms=$(($(now_ms) - start)) 'BEGIN { printf "%.1f", ms / 1000 }')
  return $ok
}
