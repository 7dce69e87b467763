#!/usr/bin/env bash
# Path MTU for masqueraded pod flows leaving the cluster: the ICMP errors a router outside
# the cluster sends to the node address reach the pod.
#
# The two-node vxlan cluster of lib.sh, plus a router namespace on the fabric (192.168.1.2)
# and a far host behind it (10.77.0.2) on a link of MTU 1400. node1 routes 10.77.0.0/24 via
# the router. Pod A's flows to the far host are masqueraded to 192.168.1.10 (SNAT port
# range 61000-65535); the router answers anything bigger than 1400 bytes with DF with
# "fragmentation needed, mtu 1400" to 192.168.1.10, quoting the masqueraded packet. The
# uplink XDP program must steer that error to podswitch (not the node's kernel, which knows
# nothing about the flow), and podswitch must translate it back to pod A:
#
#  1. ping -M do -s 1472 from pod A: "Frag needed ... mtu = 1400" (quoted echo identifier);
#  2. a 1472-byte DF UDP datagram: pod A's socket learns IP_MTU 1400, the next one fails
#     with EMSGSIZE, and `ip route get` in pod A shows the cached mtu 1400;
#  3. TCP upload of 2 MB from pod A to the far host's second address 10.77.0.3 (the far
#     host advertises MSS 1460): completes, and pod A's route cache holds mtu 1400 for it;
#  4. node1's uplink program counted the errors as snat_icmp_error (per-CPU map read with
#     bpftool) and podswitchd counted nat_icmp_error_translated.
source "$(dirname "$0")/lib.sh"

E2E_IPV6=0
cluster_up

NS_A=$P-n1-a
RTR=$P-rtr
FAR=$P-far
RTR_MAC=02:00:c0:a8:01:02

# Router: one leg on the fabric bridge, one towards the far host with MTU 1400 on the
# router's side (the far side keeps 1500 so that it advertises MSS 1460 and TCP really
# sends segments the router cannot forward).
net_up() {
  ip netns add "$RTR" && ip netns add "$FAR" || return 1
  nsx "$RTR" ip link set lo up
  nsx "$FAR" ip link set lo up
  ip link add "$P-rt" netns "$P-fab" type veth peer name eth0 netns "$RTR" || return 1
  nsx "$P-fab" ip link set "$P-rt" master br0 up
  nsx "$RTR" ip link set eth0 address "$RTR_MAC"
  nsx "$RTR" ip addr add 192.168.1.2/24 dev eth0
  nsx "$RTR" ip link set eth0 up
  ip link add far0 netns "$RTR" mtu 1400 type veth peer name eth0 netns "$FAR" || return 1
  nsx "$RTR" ip addr add 10.77.0.1/24 dev far0
  nsx "$RTR" ip link set far0 up
  nsx "$FAR" ip addr add 10.77.0.2/24 dev eth0
  nsx "$FAR" ip addr add 10.77.0.3/24 dev eth0 # TCP (check 3): no PMTU cached yet
  nsx "$FAR" ip link set eth0 up
  nsx "$FAR" ip route add default via 10.77.0.1
  for ns in "$RTR" "$FAR"; do
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    no_offload "$ns" eth0
  done
  no_offload "$RTR" far0
  no_offload "$P-fab" "$P-rt"
  nsx "$RTR" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0
  # ICMP errors are rate-limited per destination by default: send every one.
  nsx "$RTR" sysctl -qw net.ipv4.icmp_ratelimit=0
}
net_up >"$LOGDIR/net2.log" 2>&1 || die "router and far host namespaces" "$(tail -n 3 "$LOGDIR/net2.log")"

ctl 1 program add-neighbour --ip 192.168.1.2 --mac "$RTR_MAC" >/dev/null ||
  die "node1: add-neighbour 192.168.1.2"
ctl 1 program add-route --prefix 10.77.0.0/24 --via 192.168.1.2 >/dev/null ||
  die "node1: add-route 10.77.0.0/24 via 192.168.1.2"
wait_ping "$NS_A" 10.77.0.2 10 || die "pod A -> far host 10.77.0.2 (masqueraded) answers"
pass "pod A -> far host 10.77.0.2 through the router (masqueraded)" "${WAITED} s"

# uplink_counter NAME: node1's uplink XDP counter NAME, summed over CPUs.
uplink_counter() {
  local id map
  id=$(ip netns exec "$P-node1" ip -d -j link show eth0 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["xdp"]["prog"]["id"])' 2>/dev/null) || return 1
  map=$(timeout 10 bpftool -j prog show id "$id" |
    python3 -c 'import json,sys; print(" ".join(map(str, json.load(sys.stdin)["map_ids"])))') || return 1
  python3 - "$1" $map <<'PY'
import json, subprocess, sys
names = ["pass", "vxlan", "ipip", "pod_cidr", "service_cidr", "node_port", "no_socket",
         "snat", "snat_icmp_error", "external"]
idx = names.index(sys.argv[1])
for m in sys.argv[2:]:
    info = json.loads(subprocess.check_output(["bpftool", "-j", "map", "show", "id", m], timeout=10))
    if info.get("name") != "xdp_counters":
        continue
    for e in json.loads(subprocess.check_output(["bpftool", "-j", "map", "dump", "id", m], timeout=10)):
        key = int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little")
        if key == idx:
            print(sum(int.from_bytes(bytes(int(b, 16) for b in v["value"]), "little")
                      for v in e["values"]))
            sys.exit(0)
sys.exit(1)
PY
}

# event N NAME: node N's pipeline event counter NAME.
event() {
  ctl "$1" -o json stats | python3 -c '
import json, sys
print(json.load(sys.stdin)["pipeline"]["events"].get(sys.argv[1], 0))' "$2"
}

x0=$(uplink_counter snat_icmp_error) || die "node1's uplink XDP counters readable with bpftool"
e0=$(event 1 nat_icmp_error_translated)

# ---------------------------------------------------------------------------------------
# 1. ping -M do

out=$(timeout 20 ip netns exec "$NS_A" ping -M do -s 1472 -c 2 -i 0.5 -W 2 10.77.0.2 2>&1)
if grep -qiE 'mtu ?= ?1400' <<<"$out"; then
  pass "1. ping -M do -s 1472 pod A -> 10.77.0.2: frag needed, mtu 1400 (masqueraded echo)" \
    "$(grep -ioE '.*mtu ?= ?1400.*' <<<"$out" | head -n 1)"
else
  fail "1. ping -M do -s 1472 pod A -> 10.77.0.2: frag needed, mtu 1400 (masqueraded echo)" \
    "$(tail -n 3 <<<"$out" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------------------
# 2. UDP socket learns the path MTU

PMTU='
import errno, socket, sys, time
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.connect(("10.77.0.2", 9999))
def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))
out, second = [], "not sent"
for i in range(20):  # the error comes back asynchronously: up to 2 s
    try:
        s.send(b"x" * 1472)
    except OSError as e:
        second = err(e)
        break
    time.sleep(0.1)
mtu = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
print("IP_MTU=%d; 1472 after the error: %s" % (mtu, second))
print("PMTU", "ok" if mtu == 1400 and second == "EMSGSIZE" else "bad")
'
out=$(timeout 20 ip netns exec "$NS_A" python3 -c "$PMTU" 2>&1)
if grep -q '^PMTU ok' <<<"$out"; then
  pass "2. 1472-byte DF UDP pod A -> 10.77.0.2:9999: IP_MTU 1400, then EMSGSIZE" "$(head -n 1 <<<"$out")"
else
  fail "2. 1472-byte DF UDP pod A -> 10.77.0.2:9999: IP_MTU 1400, then EMSGSIZE" "$(head -n 2 <<<"$out" | tr '\n' ' ')"
fi
route=$(timeout 5 ip netns exec "$NS_A" ip route get 10.77.0.2 2>&1 | tr -s ' \n' ' ')
if grep -q 'mtu 1400' <<<"$route"; then
  pass "2. ip route get 10.77.0.2 in pod A shows the cached mtu 1400" "$route"
else
  fail "2. ip route get 10.77.0.2 in pod A shows the cached mtu 1400" "$route"
fi

# ---------------------------------------------------------------------------------------
# 3. TCP upload through the 1400-byte hop

timeout 30 ip netns exec "$FAR" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); s.settimeout(25)
c, _ = s.accept(); c.settimeout(20); n = 0
while True:
    d = c.recv(65536)
    if not d: break
    n += len(d)
c.sendall(b"%d\n" % n); c.close()
' >"$LOGDIR/tcp-server.out" 2>&1 &
srv=$!
for i in $(seq 1 30); do
  ip netns exec "$FAR" ss -Hltn 'sport = :5001' | grep -q . && break
  sleep 0.1
done
out=$(timeout 25 ip netns exec "$NS_A" python3 -c '
import socket, time
s = socket.create_connection(("10.77.0.3", 5001), timeout=20)
t = time.monotonic()
s.sendall(b"y" * 2000000); s.shutdown(socket.SHUT_WR)
got = s.recv(100).decode().strip()
print("server received %s bytes in %.2f s" % (got, time.monotonic() - t))
' 2>&1)
wait "$srv" 2>/dev/null
if grep -q 'received 2000000 bytes' <<<"$out"; then
  pass "3. TCP upload of 2 MB pod A -> 10.77.0.3:5001 across the 1400-byte hop" "$out"
else
  fail "3. TCP upload of 2 MB pod A -> 10.77.0.3:5001 across the 1400-byte hop" "$(tail -n 2 <<<"$out" | tr '\n' ' ')"
fi
route=$(timeout 5 ip netns exec "$NS_A" ip route get 10.77.0.3 2>&1 | tr -s ' \n' ' ')
if grep -q 'mtu 1400' <<<"$route"; then
  pass "3. after the upload pod A's route cache holds mtu 1400 for 10.77.0.3" "$route"
else
  fail "3. after the upload pod A's route cache holds mtu 1400 for 10.77.0.3" "$route"
fi

# ---------------------------------------------------------------------------------------
# 4. Who handled the errors

sleep 0.5 # pipeline counters are published every 100-200 ms
x1=$(uplink_counter snat_icmp_error)
e1=$(event 1 nat_icmp_error_translated)
if [ "$((x1 - x0))" -ge 3 ] 2>/dev/null; then
  pass "4. node1's uplink XDP program steered the errors to podswitch (snat_icmp_error)" "+$((x1 - x0))"
else
  fail "4. node1's uplink XDP program steered the errors to podswitch (snat_icmp_error)" "before $x0 after $x1"
fi
if [ "$((e1 - e0))" -ge 3 ] 2>/dev/null; then
  pass "4. podswitchd on node1 translated them back (nat_icmp_error_translated)" "+$((e1 - e0))"
else
  fail "4. podswitchd on node1 translated them back (nat_icmp_error_translated)" "before $e0 after $e1"
fi

finish
