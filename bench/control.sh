#!/usr/bin/env bash
# make bench-control: the control side at 10,000 Services with 10 endpoints each, podswitch
# beside kube-proxy, in one run on one core (taskset -c 1), printed side by side.
#
# - podswitch: the control benchmark (benches/benches/control.rs): a daemon's Control
#   serving its control socket, driven as the controller drives it. Full sync from empty
#   (one `batch` of 10k `add-service`; its first run, then criterion's estimate over
#   repeated runs) and one endpoint change (median and p99 of 2000, empty conntrack and
#   with 100k Service flows).
# - kube-proxy: the same Services (addresses, UDP port, endpoints: bench.py control-gen)
#   as its iptables mode writes them, loaded by iptables-restore into an empty nat table,
#   and as its nftables mode writes them, loaded by nft -f, in a throwaway network
#   namespace: what each mode's full sync hands the kernel for one node; then one endpoint
#   change of one Service, BENCH_CONTROL_CHANGES times, as each mode's partial sync writes
#   it (iptables-restore --noflush; one nft transaction).
#
# Knobs: BENCH_CONTROL_SERVICES (default 10000), BENCH_CONTROL_CHANGES (default 20),
# BENCH_CONTROL_ROUNDS (kube-proxy loads per mode, median reported; default 1: one
# nft -f of these 110k chains takes minutes),
# BENCH_IPTABLES_RESTORE (default iptables-restore). Writes the table to
# bench-results/control-STAMP.txt as well. Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "bench-control: needs root (a network namespace for iptables-restore and nft)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/preflight.sh
source scripts/preflight.sh
preflight bench
PY=$DEBIAN_PYTHON

ROUNDS=${BENCH_CONTROL_ROUNDS:-1}
CHANGES=${BENCH_CONTROL_CHANGES:-20}
IPT_RESTORE=${BENCH_IPTABLES_RESTORE:-iptables-restore}
SERVICES=${BENCH_CONTROL_SERVICES:-10000}
ENDPOINTS=10
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench-results/control-$STAMP.txt
NS=pswbc-$$
TMPD=$(mktemp -d)
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p bench-results

echo "bench-control: building the control benchmark"
cargo bench -p podswitch-benches --bench control --no-run 2>"$TMPD/build.log" ||
  { tail -20 "$TMPD/build.log"; exit 1; }
BIN=$(sed -n 's/.*Executable benches\/control.rs (\(.*\))$/\1/p' "$TMPD/build.log" | tail -1)
[ -x "$BIN" ] || { echo "bench-control: no control benchmark binary in the build output" >&2; exit 1; }

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench-control: podswitch: $BIN --bench full_sync (taskset -c 1)"
taskset -c 1 "$BIN" --bench full_sync >"$TMPD/control.log" 2>&1 ||
  { tail -20 "$TMPD/control.log"; exit 1; }
first=$(sed -n 's/^first full sync: \([0-9.]*[mµ]*s\).*/\1/p' "$TMPD/control.log")
change=$(sed -n 's/^endpoint change through the socket, [0-9]* changes: median \([^,]*\), p99 \([^,]*\),.*/\1 \/ \2/p' "$TMPD/control.log")
change_empty=$(echo "$change" | sed -n 1p)
change_ct=$(echo "$change" | sed -n 2p)
crit=$(sed -n 's/^control\/full_sync *time: *\[[^ ]* [^ ]* \([^ ]* [^ ]*\) .*/\1/p' "$TMPD/control.log")

echo "bench-control: kube-proxy: the same $SERVICES Services x $ENDPOINTS endpoints, $ROUNDS loads per mode (taskset -c 1)"
"$PY" bench/bench.py control-gen "$SERVICES" "$ENDPOINTS" "$TMPD/svc.ipt" "$TMPD/svc.nft" "$TMPD/change"
ip netns add "$NS"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
median() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
p99() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { k = int(NR * 0.99 + 0.999); print v[k < 1 ? 1 : k] }'; }
us_since() { echo $((($(date +%s%N) - $1) / 1000)); }
# changes MODE: CHANGES one-endpoint changes of the last Service (its first endpoint moved
# away and back, alternately), each as that mode's partial sync writes it; times in us.
changes() {
  local k t0 f
  for k in $(seq 1 "$CHANGES"); do
    f=$TMPD/change-$([ $((k % 2)) = 1 ] && echo a || echo b)
    t0=$(date +%s%N)
    if [ "$1" = iptables ]; then
      ip netns exec "$NS" taskset -c 1 "$IPT_RESTORE" --noflush <"$f.ipt"
    else
      ip netns exec "$NS" taskset -c 1 nft -f "$f.nft"
    fi
    echo "$(us_since "$t0")"
  done
}
ipt=() nft=() ipt_ch=() nft_ch=()
for r in $(seq 1 "$ROUNDS"); do
  ip netns exec "$NS" nft delete table ip kube-proxy 2>/dev/null || true
  printf '*nat\nCOMMIT\n' | ip netns exec "$NS" "$IPT_RESTORE"
  t0=$(date +%s%N)
  ip netns exec "$NS" taskset -c 1 "$IPT_RESTORE" <"$TMPD/svc.ipt"
  ipt+=("$(ms_since "$t0")")
  mapfile -t -O "${#ipt_ch[@]}" ipt_ch < <(changes iptables)
  printf '*nat\nCOMMIT\n' | ip netns exec "$NS" "$IPT_RESTORE"
  t0=$(date +%s%N)
  ip netns exec "$NS" taskset -c 1 nft -f "$TMPD/svc.nft"
  nft+=("$(ms_since "$t0")")
  mapfile -t -O "${#nft_ch[@]}" nft_ch < <(changes nft)
  if [ "${#ipt_ch[@]}" != $((r * CHANGES)) ] || [ "${#nft_ch[@]}" != $((r * CHANGES)) ]; then
    echo "bench-control: a one-endpoint change was refused (see above)" >&2
    exit 1
  fi
  echo "bench-control: round $r: iptables-restore ${ipt[-1]} ms, nft -f ${nft[-1]} ms; one endpoint change (median of $CHANGES): iptables $(echo "${ipt_ch[*]}" | median) us, nft $(echo "${nft_ch[*]}" | median) us"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
# Rust's Debug durations (292.042998ms, 71.967µs) rounded for the table.
short() { sed -E 's/([0-9]+)\.([0-9])[0-9]*(ms|µs|s)/\1.\2 \3/g; s/([0-9]+)(ms|µs|s)( |$)/\1 \2\3/g'; }
first=$(echo "$first" | short) crit=$(echo "$crit" | short)
change_empty=$(echo "$change_empty" | short) change_ct=$(echo "$change_ct" | short)

{
  echo "Control side, $SERVICES ClusterIP Services x $ENDPOINTS endpoints, one node, one core (taskset -c 1)"
  echo "$(date -u +%Y-%m-%dT%H:%MZ), podswitch $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average $LOAD0 -> $LOAD1"
  echo
  printf '%-44s %-34s %-22s %-22s\n' "" "podswitch" "kube-proxy iptables" "kube-proxy nftables"
  printf '%-44s %-34s %-22s %-22s\n' "full sync from empty" "first $first, then $crit" \
    "$(echo "${ipt[*]}" | median) ms (${ipt[*]})" "$(echo "${nft[*]}" | median) ms (${nft[*]})"
  printf '%-44s %-34s %-22s %-22s\n' "one endpoint change: median / p99" "$change_empty" \
    "$(echo "${ipt_ch[*]}" | median) us / $(echo "${ipt_ch[*]}" | p99) us" "$(echo "${nft_ch[*]}" | median) us / $(echo "${nft_ch[*]}" | p99) us"
  printf '%-44s %-34s %-22s %-22s\n' "  the same, 100k Service flows in conntrack" "$change_ct" "-" "-"
  echo
  echo "podswitch: request written to response read over the control socket (parse, build, publish);"
  echo "  full sync: its first run, then criterion's median over repeated runs."
  echo "kube-proxy: $IPT_RESTORE ($("$IPT_RESTORE" --version 2>&1 | head -1)) into an empty nat table;"
  echo "  nft -f ($(nft --version | head -1)) replacing table ip kube-proxy; rule generation not counted."
  echo "  One endpoint change: the last Service's first endpoint moved away and back, $CHANGES times,"
  echo "  as kube-proxy's partial syncs write it ($IPT_RESTORE --noflush of the Service's chain and the"
  echo "  new endpoint chain, stale chains left as its large-cluster mode does; one nft transaction that"
  echo "  also deletes the stale chain), on the full table."
} | tee "$OUT"
echo "bench-control: written to $OUT"
