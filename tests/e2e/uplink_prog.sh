#!/usr/bin/env bash
# The uplink XDP program's classification (dataplane/tests/uplink_prog.rs, BPF_PROG_TEST_RUN)
# really runs as root and passes: no "skipped", every test passed, the frames were
# classified. Negative controls: uid 0 without capabilities (BPF refused) must make the
# test fail loudly instead of skipping; a non-root user may skip.
source "$(dirname "$0")/lib.sh"

out=$(timeout 1800 cargo test -p podswitch-dataplane --test uplink_prog -- --nocapture --test-threads=1 2>&1)
rc=$?
echo "$out" | grep -E '^test |test result|classified|skipped' | sed 's/^/    /'
# Every test of the file passed (none filtered or ignored).
want=$(grep -c '^#\[test\]' dataplane/tests/uplink_prog.rs)
if [ "$rc" = 0 ] && grep -q "test result: ok. $want passed; 0 failed" <<<"$out"; then
  pass "cargo test --test uplink_prog as root: all $want passed"
else
  fail "cargo test --test uplink_prog as root: all $want passed" "exit $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
fi
check_fails "as root: nothing skipped" grep -qi 'skipped' <<<"$out"
if grep -qE 'uplink_classification: [0-9]+ frames classified' <<<"$out"; then
  pass "as root: the classification ran" "$(grep -oE '[0-9]+ frames classified' <<<"$out")"
else
  fail "as root: the classification ran" "no 'frames classified' line"
fi

# The test binary cargo just built.
exe=$(timeout 600 cargo test -p podswitch-dataplane --test uplink_prog --no-run 2>&1 |
  grep -oE '\(([^)]*uplink_prog-[0-9a-f]+)\)' | tr -d '()' | tail -n 1)
case $exe in
  /*) ;;
  *) exe="${CARGO_TARGET_DIR:-$E2E_ROOT/target}/${exe#target/}" ;;
esac
if [ -x "$exe" ]; then
  out=$(timeout 60 setpriv --inh-caps=-all --bounding-set=-all "$exe" --nocapture --test-threads=1 2>&1)
  rc=$?
  if [ "$rc" != 0 ] && grep -q 'running as root but loading' <<<"$out"; then
    pass "uid 0 without capabilities: the test fails loudly" "$(grep -o 'running as root but loading[^)]*)' <<<"$out" | head -n 1)"
  else
    fail "uid 0 without capabilities: the test fails loudly" "exit $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
  fi
  out=$(timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups "$exe" --nocapture --test-threads=1 2>&1)
  rc=$?
  if [ "$rc" = 0 ] && grep -q 'skipped (not root)' <<<"$out"; then
    pass "non-root: the test skips (and says so)"
  else
    fail "non-root: the test skips (and says so)" "exit $rc: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
  fi
else
  fail "test binary found" "'$exe'"
fi
finish
