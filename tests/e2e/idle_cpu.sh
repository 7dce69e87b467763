#!/usr/bin/env bash
# Adaptive polling: with both nodes up and no traffic, each podswitchd uses less than 2% of
# a core (utime+stime from /proc/PID/stat over 10 s), right after start and again after a
# burst of traffic (the workers go back from busy-polling to poll()).
source "$(dirname "$0")/lib.sh"

WINDOW=10        # seconds
LIMIT_PCT=2      # of one core
TCK=$(getconf CLK_TCK)

cluster_up
sleep 2 # let the start-up ARP/ND settle

# measure LABEL: CPU of both daemons over WINDOW seconds.
measure() {
  local label=$1 n t0 a0 b0 a1 b1 ms
  a0=$(proc_cpu_ticks "${DPID[1]}")
  b0=$(proc_cpu_ticks "${DPID[2]}")
  t0=$(now_ms)
  sleep "$WINDOW"
  a1=$(proc_cpu_ticks "${DPID[1]}")
  b1=$(proc_cpu_ticks "${DPID[2]}")
  ms=$(($(now_ms) - t0))
  for n in 1 2; do
    local d
    if [ "$n" = 1 ]; then d=$((a1 - a0)); else d=$((b1 - b0)); fi
    local pct
    pct=$(awk -v d="$d" -v tck="$TCK" -v ms="$ms" 'BEGIN { printf "%.2f", 100 * d / tck / (ms / 1000) }')
    if awk -v p="$pct" -v l="$LIMIT_PCT" 'BEGIN { exit !(p < l) }'; then
      pass "$label: node$n podswitchd idle CPU < ${LIMIT_PCT}% of a core" "$pct% ($d ticks of 1/$TCK s in $ms ms)"
    else
      fail "$label: node$n podswitchd idle CPU < ${LIMIT_PCT}% of a core" "$pct% ($d ticks of 1/$TCK s in $ms ms)"
    fi
  done
}

sleeps() { ctl "$1" -o json stats | python3 -c 'import json,sys; print(sum(w["sleeps"] for w in json.load(sys.stdin)["workers"]))'; }

s0=$(sleeps 1)
measure "idle after start"
s1=$(sleeps 1)
# The worker sleeps in poll() (100 ms timeout) when idle: about 10 sleeps a second.
if [ $((s1 - s0)) -ge $((WINDOW * 5)) ]; then
  pass "node1 worker sleeps in poll() while idle" "$((s1 - s0)) sleeps in ${WINDOW} s"
else
  fail "node1 worker sleeps in poll() while idle" "$((s1 - s0)) sleeps in ${WINDOW} s"
fi

# A burst of traffic, then idle again.
ip netns exec "$P-n2-b" iperf3 -s -1 -p 5401 -D >/dev/null 2>&1
sleep 0.5
check "burst: iperf3 TCP pod a -> pod b for 3 s" \
  timeout 30 ip netns exec "$P-n1-a" iperf3 -c 10.244.2.20 -p 5401 -t 3
sleep 1
measure "idle after traffic"
finish
