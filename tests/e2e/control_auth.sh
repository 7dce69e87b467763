#!/usr/bin/env bash
# The control socket refuses non-root clients twice over: the socket file is root's with
# mode 0600 (a plain non-root client cannot even connect), and a non-root client that gets
# past the file mode (uid 65534 holding CAP_DAC_OVERRIDE) is refused by the daemon's
# SO_PEERCRED check and changes nothing. Several clients at once work, also while other
# clients sit idle or half-way through a request.
source "$(dirname "$0")/lib.sh"

PARALLEL=8

cluster_up
S=$(sock 1)

mode=$(stat -c '%a %U %G %F' "$S")
if [ "$mode" = "600 root root socket" ]; then
  pass "socket file is root's, mode 0600" "$mode"
else
  fail "socket file is root's, mode 0600" "$mode"
fi

port_names() { ctl 1 -o json dump ports | python3 -c 'import json,sys; print(" ".join(sorted(p["name"] for p in json.load(sys.stdin))))'; }
gen_before=$(ctl_generation 1)
ports_before=$(port_names)
[ -n "$gen_before" ] && [ -n "$ports_before" ] || die "generation and ports of node1 read" "'$gen_before' '$ports_before'"

# 1. The file mode: nobody, no capabilities.
as_nobody() { timeout 10 setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
out=$(as_nobody "$BIN/podswitchctl" --socket "$S" version 2>&1)
rc=$?
if [ "$rc" != 0 ] && grep -qi "permission denied" <<<"$out"; then
  pass "uid 65534 (setpriv) cannot connect: file mode" "exit $rc: $out"
else
  fail "uid 65534 (setpriv) cannot connect: file mode" "exit $rc: $out"
fi
out=$(timeout 10 runuser -u nobody -- "$BIN/podswitchctl" --socket "$S" dump fib 2>&1)
rc=$?
if [ "$rc" != 0 ] && grep -qi "permission denied" <<<"$out"; then
  pass "user nobody (runuser) cannot connect: file mode" "exit $rc"
else
  fail "user nobody (runuser) cannot connect: file mode" "exit $rc: $out"
fi

# 2. The peer-credential check: uid 65534 with CAP_DAC_OVERRIDE connects despite the mode.
as_nobody_dac() {
  timeout 10 setpriv --reuid=65534 --regid=65534 --clear-groups \
    --inh-caps=+dac_override --ambient-caps=+dac_override "$@"
}
for req in "version" "dump fib" "program remove-pod default/pod-a"; do
  # shellcheck disable=SC2086
  out=$(as_nobody_dac "$BIN/podswitchctl" --socket "$S" $req 2>&1)
  rc=$?
  if [ "$rc" = 1 ] && grep -q "permission denied: uid 65534 is not root" <<<"$out"; then
    pass "uid 65534 past the file mode: '$req' refused by SO_PEERCRED" "$out"
  else
    fail "uid 65534 past the file mode: '$req' refused by SO_PEERCRED" "exit $rc: $out"
  fi
done
gen_after=$(ctl_generation 1)
ports_after=$(port_names)
if [ "$gen_before" = "$gen_after" ] && [ "$ports_before" = "$ports_after" ]; then
  pass "refused clients changed nothing" "generation $gen_after, ports $ports_after"
else
  fail "refused clients changed nothing" "generation $gen_before -> $gen_after, ports $ports_before -> $ports_after"
fi
check "pod a still forwards" ping1 "$P-n1-a" 10.244.1.11
check "root client still served" ctl 1 version

# 3. Several clients at once, with three others idle / stuck half-way through a line.
(sleep 20 | timeout 25 nc -U "$S" >/dev/null 2>&1) &
idle1=$!
(sleep 20 | timeout 25 nc -U "$S" >/dev/null 2>&1) &
idle2=$!
( (printf '{"cmd":"dump","tab'; sleep 20) | timeout 25 nc -U "$S" >/dev/null 2>&1) &
idle3=$!
sleep 0.5
ctl 1 dump fib >"$LOGDIR/fib.ref" 2>&1
start=$(now_ms)
pids=()
for i in $(seq 1 "$PARALLEL"); do
  ctl 1 dump fib >"$LOGDIR/fib.$i" 2>&1 &
  pids+=($!)
done
ok=0
for i in $(seq 1 "$PARALLEL"); do
  if wait "${pids[$((i - 1))]}" && cmp -s "$LOGDIR/fib.ref" "$LOGDIR/fib.$i"; then
    ok=$((ok + 1))
  fi
done
ms=$(($(now_ms) - start))
if [ "$ok" = "$PARALLEL" ] && [ -s "$LOGDIR/fib.ref" ]; then
  pass "$PARALLEL parallel 'dump fib' all answered, identical" "$ms ms, 3 idle clients connected"
else
  fail "$PARALLEL parallel 'dump fib' all answered, identical" "$ok of $PARALLEL ok in $ms ms"
fi
# Mixed parallel requests (dumps, stats, JSON) while a ping runs through the switch.
ip netns exec "$P-n1-a" timeout 10 ping -q -i 0.01 -c 200 10.244.2.20 >"$LOGDIR/ping.out" 2>&1 &
pingp=$!
pids=()
for t in ports macs fib neighbours tunnels flows config; do
  ctl 1 -o json dump "$t" >/dev/null 2>&1 &
  pids+=($!)
done
ctl 1 stats >/dev/null 2>&1 &
pids+=($!)
ok=0
for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
if [ "$ok" = "${#pids[@]}" ]; then
  pass "${#pids[@]} parallel mixed requests (every dump, stats) answered"
else
  fail "${#pids[@]} parallel mixed requests (every dump, stats) answered" "$ok ok"
fi
wait "$pingp"
check "ping during the parallel requests: 0% loss" grep -q ' 0% packet loss' "$LOGDIR/ping.out"
kill "$idle1" "$idle2" "$idle3" 2>/dev/null
wait "$idle1" "$idle2" "$idle3" 2>/dev/null
check "daemon still answers after the idle clients left" ctl 1 version
finish
