#!/usr/bin/env bash
# Counters and trace on a live daemon:
#  - after N pings pod a -> pod b (across nodes) and N pings pod a -> pod c (same node),
#    the uplink XDP filter counted exactly N VXLAN frames steered on each node, and
#    `dump ports` and `stats` (per port, per worker, per stage, events) on both nodes show
#    exactly the traffic that went (a kernel ARP probe may add up to 2 on a port), and
#    `dump ports` and `stats` agree with each other;
#  - frames injected into pod a with a bad IPv4 checksum or a spoofed source MAC, and pings
#    to an address with no pod, are counted under exactly their drop reasons;
#  - `podswitchctl trace` on the live tables prints the same as offline `podswitchd trace`
#    with the same configuration, for frames taking every kind of path.
source "$(dirname "$0")/lib.sh"

N=20
SLACK=2 # ARP probes the kernel may send during the test

E2E_IPV6=0 # no ND/MLD: the counters see only this test's traffic
cluster_up
# Warm up every path used below, so no ARP is needed while counting.
for p in "$P-n1-a 10.244.1.11" "$P-n1-c 10.244.1.10" "$P-n1-a 10.244.2.20" "$P-n2-b 10.244.1.10" \
  "$P-node1 10.244.1.10"; do
  read -r ns dst <<<"$p"
  ping1 "$ns" "$dst" || die "warm-up ping $ns -> $dst"
done

# counters N FILE: node N's stats and ports dump (as one JSON object).
counters() {
  sleep 0.5 # workers publish their counters every 100 ms (200 ms when idle)
  {
    echo '{"stats":'
    ctl "$1" -o json stats
    echo ',"ports":'
    ctl "$1" -o json dump ports
    echo '}'
  } >"$2"
}

# delta N EXPR: a value from node N's counters, after minus before. EXPR is a Python
# expression over `d` (the JSON above), e.g. port(d,"eth0","rx_packets").
DELTA_PY='
import json, sys
def port(d, name, key):
    return sum(p.get(key, 0) for p in d["ports"] if p["name"] == name)
def sport(d, name, key):
    return sum(p[key] for w in d["stats"]["workers"] for p in w["ports"] if p["name"] == name)
def stage(d, name):
    return sum(s["packets"] for s in d["stats"]["pipeline"]["stages"] if s["stage"] == name)
def event(d, name):
    return d["stats"]["pipeline"]["events"].get(name, 0)
def drop(d, reason):
    return sum(r.get(reason, 0) for r in d["stats"]["pipeline"]["drops"].values())
def total_drops(d):
    return d["stats"]["pipeline"]["total_drops"]
def worker(d, key):
    return sum(w[key] for w in d["stats"]["workers"])
def xdp(d, name):
    return d["stats"]["uplink_xdp"]["counters"][name]
def ports_rx(d):
    return sum(p.get("rx_packets", 0) for p in d["ports"])
b = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2]))
f = eval("lambda d: " + sys.argv[3])
print(f(a) - f(b))
'
delta() { python3 -c "$DELTA_PY" "$LOGDIR/before$1" "$LOGDIR/after$1" "$2"; }

# expect NODE EXPR WANT [SLACK]: delta of EXPR on NODE is WANT (up to WANT+SLACK).
expect() {
  local n=$1 expr=$2 want=$3 slack=${4:-0} got
  got=$(delta "$n" "$expr" 2>&1)
  if [ "$got" -ge "$want" ] 2>/dev/null && [ "$got" -le $((want + slack)) ]; then
    pass "node$n: $expr = $want${4:+ (+$slack)}" "$got"
  else
    fail "node$n: $expr = $want${4:+ (+$slack)}" "got $got"
  fi
}

# 1. Traffic counters.
counters 1 "$LOGDIR/before1"
counters 2 "$LOGDIR/before2"
check "$N pings pod a -> pod b" timeout 30 ip netns exec "$P-n1-a" ping -c "$N" -i 0.05 -W 1 10.244.2.20
check "$N pings pod a -> pod c" timeout 30 ip netns exec "$P-n1-a" ping -c "$N" -i 0.05 -W 1 10.244.1.11
counters 1 "$LOGDIR/after1"
counters 2 "$LOGDIR/after2"

expect 1 'port(d,"veth-pod-a","rx_packets")' $((2 * N)) $SLACK
expect 1 'port(d,"veth-pod-a","tx_packets")' $((2 * N)) $SLACK
expect 1 'port(d,"veth-pod-c","rx_packets")' "$N" $SLACK
expect 1 'port(d,"veth-pod-c","tx_packets")' "$N" $SLACK
expect 1 'port(d,"eth0","rx_packets")' "$N"
expect 1 'port(d,"eth0","tx_packets")' "$N"
expect 1 'port(d,"psw-host","rx_packets") + port(d,"psw-host","tx_packets")' 0
expect 1 'worker(d,"rx_packets") - ports_rx(d)' 0
expect 1 'event(d,"encapsulated")' "$N"
expect 1 'event(d,"decapsulated")' "$N"
expect 1 'stage(d,"vxlan4-encap")' "$N"
expect 1 'stage(d,"vxlan4-decap")' "$N"
# Every received frame enters ethernet-input once, decapsulated ones a second time.
expect 1 'stage(d,"ethernet-input") - ports_rx(d) - event(d,"decapsulated")' 0
expect 1 'stage(d,"interface-output")' $((4 * N)) $((2 * SLACK))
expect 1 'total_drops(d)' 0
# The uplink's XDP filter steered exactly the VXLAN frames to podswitch.
expect 1 'xdp(d,"vxlan")' "$N"
expect 1 'xdp(d,"no_socket")' 0
expect 2 'port(d,"eth0","rx_packets")' "$N"
expect 2 'xdp(d,"vxlan")' "$N"
expect 2 'port(d,"eth0","tx_packets")' "$N"
expect 2 'port(d,"veth-pod-b","rx_packets")' "$N" $SLACK
expect 2 'port(d,"veth-pod-b","tx_packets")' "$N" $SLACK
expect 2 'port(d,"veth-pod-d","rx_packets") + port(d,"veth-pod-d","tx_packets")' 0
expect 2 'event(d,"encapsulated")' "$N"
expect 2 'event(d,"decapsulated")' "$N"
expect 2 'total_drops(d)' 0
for n in 1 2; do
  for f in before after; do
    same=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
dump = {p["name"]: (p.get("rx_packets"), p.get("tx_packets")) for p in d["ports"]}
st = {}
for w in d["stats"]["workers"]:
    for p in w["ports"]:
        r = st.setdefault(p["name"], [0, 0])
        r[0] += p["rx_packets"]; r[1] += p["tx_packets"]
print("yes" if all(dump[k] == tuple(v) for k, v in st.items()) and set(st) == set(dump) and any(v[0] for v in st.values()) else "no %s %s" % (dump, st))
' "$LOGDIR/$f$n")
    if [ "$same" = yes ]; then
      pass "node$n ($f): dump ports and stats report the same rx/tx per port"
    else
      fail "node$n ($f): dump ports and stats report the same rx/tx per port" "$same"
    fi
  done
done

# 2. Drops by reason: frames injected into pod a's eth0 (AF_PACKET), and pings from node1
#    (through the host port) to an address of its pod subnet with no pod.
INJECT_PY='
import socket, struct, sys
kind, count = sys.argv[1], int(sys.argv[2])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def mac(m): return bytes.fromhex(m.replace(":", ""))
src_mac = "0a:58:0a:f4:01:99" if kind == "spoofed-mac" else "0a:58:0a:f4:01:0a"
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x77, 1) + b"x" * 32
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0x4000, 64, 1, 0,
                 socket.inet_aton("10.244.1.10"), socket.inet_aton("10.244.2.20"))
c = csum(ip)
if kind == "bad-checksum": c ^= 0x5555
ip = ip[:10] + struct.pack("!H", c) + ip[12:]
frame = mac("0a:58:0a:f4:01:01") + mac(src_mac) + b"\x08\x00" + ip + icmp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(count): s.send(frame)
'
counters 1 "$LOGDIR/before1"
check "inject 7 frames with a bad IPv4 checksum into pod a's eth0" \
  timeout 10 ip netns exec "$P-n1-a" python3 -c "$INJECT_PY" bad-checksum 7
check "inject 5 frames with a spoofed source MAC into pod a's eth0" \
  timeout 10 ip netns exec "$P-n1-a" python3 -c "$INJECT_PY" spoofed-mac 5
out=$(timeout 10 ip netns exec "$P-node1" ping -c 3 -i 0.1 -W 1 10.244.1.99 2>&1)
if grep -q "3 packets transmitted, 0 received" <<<"$out" && grep -qi "unreachable" <<<"$out"; then
  pass "3 pings node1 -> 10.244.1.99 (no such pod): host unreachable"
else
  fail "3 pings node1 -> 10.244.1.99 (no such pod): host unreachable" "$(tail -n 2 <<<"$out" | tr '\n' ' ')"
fi
counters 1 "$LOGDIR/after1"
expect 1 'drop(d,"ip4_bad_checksum")' 7
expect 1 'drop(d,"mac_spoofed")' 5
expect 1 'drop(d,"no_such_pod")' 3
expect 1 'total_drops(d)' 15
expect 1 'port(d,"veth-pod-a","rx_packets")' 12 $SLACK
expect 1 'port(d,"veth-pod-a","tx_packets")' 0 $SLACK
expect 1 'port(d,"psw-host","rx_packets")' 3 $SLACK
expect 1 'port(d,"psw-host","tx_packets")' 3 $SLACK # ICMP host unreachable
expect 1 'port(d,"veth-pod-b","tx_packets") + port(d,"eth0","tx_packets")' 0
check "stats text lists the drop reasons" sh -c \
  "timeout 10 '$BIN/podswitchctl' --socket '$(sock 1)' stats | grep -E 'ip4_bad_checksum +7' >/dev/null"

# 3. trace: live tables vs offline, same frames.
FRAME_PY='
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def mac(m): return bytes.fromhex(m.replace(":", ""))
def ipv4(src, dst, proto, payload, df=True, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0x4000 if df else 0, ttl, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
def echo(size=32):
    i = struct.pack("!BBHHH", 8, 0, 0, 0x99, 1) + b"p" * size
    return i[:2] + struct.pack("!H", csum(i)) + i[4:]
def eth(dst, src, et, payload): return mac(dst) + mac(src) + struct.pack("!H", et) + payload
A, GW = "0a:58:0a:f4:01:0a", "0a:58:0a:f4:01:01"
k = sys.argv[1]
if k == "a-b":
    f = eth(GW, A, 0x800, ipv4("10.244.1.10", "10.244.2.20", 1, echo()))
elif k == "a-c":
    f = eth("0a:58:0a:f4:01:0b", A, 0x800, ipv4("10.244.1.10", "10.244.1.11", 1, echo()))
elif k == "arp":
    f = eth("ff:ff:ff:ff:ff:ff", A, 0x806, struct.pack("!HHBBH6s4s6s4s", 1, 0x800, 6, 4, 1, mac(A),
            socket.inet_aton("10.244.1.10"), b"\0" * 6, socket.inet_aton("10.244.1.1")))
elif k == "syn":
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 6 << 4, 0x02, 65535, 0, 0) + struct.pack("!BBH", 2, 4, 1460)
    f = eth(GW, A, 0x800, ipv4("10.244.1.10", "10.244.2.20", 6, tcp))
elif k == "too-big":
    f = eth(GW, A, 0x800, ipv4("10.244.1.10", "10.244.2.20", 1, echo(1472 - 8)))
elif k == "ttl1":
    f = eth(GW, A, 0x800, ipv4("10.244.1.10", "10.244.2.20", 1, echo(), ttl=1))
elif k == "bad-checksum":
    b = bytearray(eth(GW, A, 0x800, ipv4("10.244.1.10", "10.244.2.20", 1, echo())))
    b[24] ^= 0xff
    f = bytes(b)
elif k == "vxlan-in":
    inner = eth(GW, "0e:00:00:00:00:02", 0x800, ipv4("10.244.2.20", "10.244.1.10", 1, echo()))
    inner = mac("0e:00:00:00:00:01") + inner[6:]
    vx = struct.pack("!BBHI", 0x08, 0, 0, 1 << 8) + inner
    udp = struct.pack("!HHHH", 51000, 8472, 8 + len(vx), 0) + vx
    f = eth("02:00:c0:a8:01:10", "02:00:c0:a8:01:11", 0x800, ipv4("192.168.1.11", "192.168.1.10", 17, udp))
elif k == "host":
    f = eth("02:00:0a:f4:01:fe", "02:00:c0:a8:01:11", 0x800, ipv4("192.168.1.11", "192.168.1.10", 1, echo()))
print(f.hex())
'
for t in "a-b|veth-pod-a" "a-c|veth-pod-a" "arp|veth-pod-a" "syn|veth-pod-a" "too-big|veth-pod-a" \
  "ttl1|veth-pod-a" "bad-checksum|veth-pod-a" "vxlan-in|eth0" "host|eth0"; do
  IFS='|' read -r kind port <<<"$t"
  hex=$(python3 -c "$FRAME_PY" "$kind")
  live=$(ctl 1 trace --in-port "$port" --frame "$hex" 2>&1)
  lrc=$?
  off=$(timeout 30 "$BIN/podswitchd" trace --config "$E2E_ROOT/config/node1-vxlan.toml" \
    --in-port "$port" --frame "$hex" 2>&1)
  orc=$?
  if [ "$lrc" = 0 ] && [ "$orc" = 0 ] && [ -n "$live" ] && [ "$live" = "$off" ]; then
    pass "trace $kind (in $port): live = offline" "$(tail -n 1 <<<"$live" | cut -c1-120)"
  else
    fail "trace $kind (in $port): live = offline" "rc $lrc/$orc; $(diff <(echo "$live") <(echo "$off") | head -4 | tr '\n' ' ')"
  fi
done

# The live trace follows the live tables: after remove-peer node2 it matches the offline
# trace of a configuration without that peer, and no longer the original one.
hex=$(python3 -c "$FRAME_PY" a-b)
NOPEER_CFG="$LOGDIR/nopeer.toml"
awk '/^\[\[peer\]\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' \
  "$E2E_ROOT/config/node1-vxlan.toml" >"$NOPEER_CFG"
check "node1: remove-peer node2" ctl 1 program remove-peer node2
# The first line names the snapshot generation: 2 live (one change), 1 offline.
nogen() { sed -E '1s/snapshot generation [0-9]+/snapshot generation G/'; }
live=$(ctl 1 trace --in-port veth-pod-a --frame "$hex" 2>&1 | nogen)
off_nopeer=$(timeout 30 "$BIN/podswitchd" trace --config "$NOPEER_CFG" --in-port veth-pod-a --frame "$hex" 2>&1 | nogen)
off_orig=$(timeout 30 "$BIN/podswitchd" trace --config "$E2E_ROOT/config/node1-vxlan.toml" \
  --in-port veth-pod-a --frame "$hex" 2>&1 | nogen)
if [ -n "$live" ] && [ "$live" = "$off_nopeer" ] && [ "$live" != "$off_orig" ]; then
  pass "trace a-b after remove-peer: live = offline without the peer, != original" "$(tail -n 1 <<<"$live" | cut -c1-80)"
else
  fail "trace a-b after remove-peer: live = offline without the peer, != original" "$(diff <(echo "$live") <(echo "$off_nopeer") | head -4 | tr '\n' ' ')"
fi
check "node1: add-peer node2 again" ctl 1 program add-peer --name node2 --address 192.168.1.11 \
  --pod-cidr 10.244.2.0/24 --vtep-mac 0e:00:00:00:00:02
check "pod a -> pod b forwards again" ping1 "$P-n1-a" 10.244.2.20
finish
