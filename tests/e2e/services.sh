#!/usr/bin/env bash
# Services end to end, with real clients (curl, iperf3, python sockets) in the pod and fabric
# namespaces of the two-node vxlan cluster. Both nodes get the same Services (like
# kube-proxy on every node). Every pod runs a small server: HTTP on 8080 answering with the
# pod's name, UDP echo on 9090 answering "<pod> <payload length>"; both log the client
# address they saw.
#
#  1. ClusterIP with endpoints on both nodes, from a pod on each node: many fresh TCP
#     connections (curl) all answered by both endpoints; a UDP Service answered, the reply
#     coming from ClusterIP:port.
#  2. NodePort (externalTrafficPolicy Cluster) from the fabric to node1's and node2's address;
#     the endpoints see the client SNATed to the address of the node it reached.
#  3. externalTrafficPolicy Local: the endpoint sees the fabric's address (192.168.1.1);
#     the NodePort of the node without a local endpoint does not answer, and that node
#     counts the drop as svc_no_local_endpoints.
#  4. Hairpin: a pod reaching itself through its own Service.
#  5. sessionAffinity ClientIP: 20 connections from one client land on one endpoint.
#  6. No endpoints: TCP connect refused (RST) and UDP ECONNREFUSED (ICMP port unreachable),
#     both fast, not a timeout.
#  7. Endpoint removed under UDP load (a request every 20 ms from one socket), from a pod on
#     each node: the client gets answers from the remaining endpoint within 1 s (gap
#     printed) and the conntrack dumps hold no entry for the removed endpoint any more.
#  8. Path MTU through a ClusterIP (endpoint across the VXLAN path, MTU 1450): a 1472-byte
#     DF datagram to ClusterIP:port makes the client's kernel learn mtu 1450 for the
#     ClusterIP (podswitch's frag-needed translated back), then a 1422-byte one is answered.
#  9. TCP through a ClusterIP across the VXLAN path: iperf3 both ways; the MSS each end sees
#     in the handshake is clamped to at most 1410.
source "$(dirname "$0")/lib.sh"

E2E_IPV6=0
cluster_up

SVC=$LOGDIR/services.toml
SRV=$LOGDIR/server.py
NS_A=$P-n1-a
NS_C=$P-n1-c
NS_B=$P-n2-b
NS_D=$P-n2-d
NS_FAB=$P-fab

# ---------------------------------------------------------------------------------------
# Servers in every pod

cat >"$SRV" <<'PY'
import http.server, socket, socketserver, sys, threading
name, log = sys.argv[1], sys.argv[2]
lock = threading.Lock()
def note(line):
    with lock, open(log, "a") as f:
        f.write(line + "\n")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        note("tcp %s %d" % self.client_address)
        body = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 9090))
    while True:
        data, addr = s.recvfrom(65535)
        note("udp %s %d" % addr)
        reply = ("%s %d" % (name, len(data))).encode()
        if len(data) > 2000:  # a large request gets a reply as large: fragments both ways
            reply = reply.ljust(len(data), b" ")
        s.sendto(reply, addr)
threading.Thread(target=udp, daemon=True).start()
S(("0.0.0.0", 8080), H).serve_forever()
PY

# pod_ns NAME: the namespace of pod NAME.
pod_ns() {
  local p n name ip mac
  for p in "${PODS[@]}"; do
    read -r n name ip mac <<<"$p"
    [ "$name" = "$1" ] && echo "$P-n$n-$name"
  done
}

start_servers() {
  local pod ns i
  for pod in a b c d; do
    ns=$(pod_ns "$pod")
    : >"$LOGDIR/server-$pod.log"
    ip netns exec "$ns" python3 "$SRV" "pod-$pod" "$LOGDIR/server-$pod.log" \
      >>"$LOGDIR/server-$pod.err" 2>&1 &
  done
  for pod in a b c d; do
    ns=$(pod_ns "$pod")
    for i in $(seq 1 50); do
      ip netns exec "$ns" ss -Hltn 'sport = :8080' | grep -q . &&
        ip netns exec "$ns" ss -Hlun 'sport = :9090' | grep -q . && continue 2
      sleep 0.1
    done
    return 1
  done
}
start_servers || die "servers started in the pods"

# ---------------------------------------------------------------------------------------
# The Services (same file on both nodes)

# endpoint IP: an [[service.endpoints]] table.
endpoint() { printf '\n[[service.endpoints]]\nip = "%s"\n' "$1"; }

# svc_udpload ENDPOINT_IP...: the Service of check 7 with these endpoints.
svc_udpload() {
  cat <<'EOF'

[[service]]
name = "udpload"
type = "ClusterIP"
cluster_ip = "10.96.0.16"
ports = [{ name = "dns", protocol = "udp", port = 53, target_port = 9090 }]
EOF
  local ip
  for ip in "$@"; do endpoint "$ip"; done
}

{
  cat <<'EOF'
# web: ClusterIP + NodePort (policy Cluster), endpoints on both nodes (checks 1, 2).
[[service]]
name = "web"
type = "NodePort"
cluster_ip = "10.96.0.10"
ports = [{ name = "http", protocol = "tcp", port = 80, target_port = 8080, node_port = 30080 }]
EOF
  endpoint 10.244.1.11
  endpoint 10.244.2.20
  cat <<'EOF'

# echo: UDP ClusterIP, endpoints on both nodes (check 1); NodePort 30053 (check 2b).
[[service]]
name = "echo"
type = "NodePort"
cluster_ip = "10.96.0.11"
ports = [{ name = "dns", protocol = "udp", port = 53, target_port = 9090, node_port = 30053 }]
EOF
  endpoint 10.244.1.11
  endpoint 10.244.2.20
  cat <<'EOF'

# local: NodePort with externalTrafficPolicy Local, one endpoint, on node2 (check 3).
[[service]]
name = "local"
type = "NodePort"
cluster_ip = "10.96.0.12"
external_traffic_policy = "Local"
ports = [{ name = "http", protocol = "tcp", port = 80, target_port = 8080, node_port = 30081 }]
EOF
  endpoint 10.244.2.20
  cat <<'EOF'

# hairpin: pod a is the only endpoint (check 4).
[[service]]
name = "hairpin"
type = "ClusterIP"
cluster_ip = "10.96.0.13"
ports = [{ name = "http", protocol = "tcp", port = 80, target_port = 8080 }]
EOF
  endpoint 10.244.1.10
  cat <<'EOF'

# sticky: ClientIP affinity over three endpoints (check 5).
[[service]]
name = "sticky"
type = "ClusterIP"
cluster_ip = "10.96.0.14"
session_affinity = "ClientIP"
session_affinity_timeout = 600
ports = [{ name = "http", protocol = "tcp", port = 80, target_port = 8080 }]
EOF
  endpoint 10.244.1.11
  endpoint 10.244.2.20
  endpoint 10.244.2.21
  cat <<'EOF'

# empty: no endpoints (check 6).
[[service]]
name = "empty"
type = "ClusterIP"
cluster_ip = "10.96.0.15"
ports = [
  { name = "http", protocol = "tcp", port = 80, target_port = 8080 },
  { name = "dns", protocol = "udp", port = 53, target_port = 9090 },
]
EOF
  svc_udpload 10.244.1.11 10.244.2.20
  cat <<'EOF'

# far: UDP ClusterIP whose only endpoint is across the VXLAN path from pod a (check 8).
[[service]]
name = "far"
type = "ClusterIP"
cluster_ip = "10.96.0.17"
ports = [{ name = "dns", protocol = "udp", port = 53, target_port = 9090 }]
EOF
  endpoint 10.244.2.20
  cat <<'EOF'

# bulk: TCP ClusterIP, only endpoint across the VXLAN path from pod a (check 9).
[[service]]
name = "bulk"
type = "ClusterIP"
cluster_ip = "10.96.0.18"
ports = [{ name = "iperf", protocol = "tcp", port = 80, target_port = 5201 }]
EOF
  endpoint 10.244.2.20
} >"$SVC"

for n in 1 2; do
  ctl "$n" program add-service "$SVC" >"$LOGDIR/program$n.out" 2>&1 ||
    die "node$n: add-service" "$(tail -n 3 "$LOGDIR/program$n.out")"
  # The way back to the fabric (192.168.1.1) for NodePort replies, as lab/lab.sh does.
  ctl "$n" program add-neighbour --ip 192.168.1.1 --mac 02:00:c0:a8:01:01 >/dev/null ||
    die "node$n: add-neighbour 192.168.1.1"
  ctl "$n" program add-route --prefix 192.168.1.1/32 --via 192.168.1.1 >/dev/null ||
    die "node$n: add-route 192.168.1.1/32"
done
pass "Services programmed on both nodes" "$(ctl 1 dump services | grep -c '/tcp\|/udp') frontends"

# ---------------------------------------------------------------------------------------
# Client helpers

# http_many NS URL N: N fresh connections (one curl each); prints "pod-x=K ... [error=K]".
http_many() {
  local ns=$1 url=$2 n=$3 i
  for i in $(seq 1 "$n"); do
    timeout 10 ip netns exec "$ns" curl -sS --max-time 3 "$url" 2>/dev/null || echo error
  done | sort | uniq -c | awk '{printf "%s%s=%d", sep, $2, $1; sep=" "} END {print ""}'
}

# check_http NAME NS URL N WANT...: PASS when all N connections are answered and every pod
# named in WANT answered at least one of them.
check_http() {
  local name=$1 ns=$2 url=$3 n=$4 out w ok=1
  shift 4
  out=$(http_many "$ns" "$url" "$n")
  grep -q 'error' <<<"$out" && ok=0
  [ "$(tr ' ' '\n' <<<"$out" | awk -F= '{s += $2} END {print s}')" = "$n" ] || ok=0
  for w in "$@"; do grep -q "$w=" <<<"$out" || ok=0; done
  if [ $ok = 1 ]; then pass "$name" "$out"; else fail "$name" "$out"; fi
}

# stat_drop N REASON: node N's count of drops with REASON.
stat_drop() {
  ctl "$1" -o json stats | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(r.get(sys.argv[1], 0) for r in d["pipeline"]["drops"].values()))' "$2"
}

# ---------------------------------------------------------------------------------------
# 1. ClusterIP, endpoints on both nodes

N=40
check_http "1. ClusterIP 10.96.0.10:80 from pod a (node1): $N fresh connections, both endpoints" \
  "$NS_A" http://10.96.0.10/ "$N" pod-b pod-c
check_http "1. ClusterIP 10.96.0.10:80 from pod d (node2): $N fresh connections, both endpoints" \
  "$NS_D" http://10.96.0.10/ "$N" pod-b pod-c

# udp_ask NS DST PORT N: N requests, each from a fresh socket (new source port); prints
# one line per reply "pod-x FROM_IP:FROM_PORT" or "timeout".
UDP_ASK='
import socket, sys
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"hello %d" % i, (dst, port))
    try:
        data, addr = s.recvfrom(2048)
        print(data.decode().split()[0], "%s:%d" % addr)
    except socket.timeout:
        print("timeout")
    s.close()
'
for ns in "$NS_A" "$NS_D"; do
  out=$(timeout 60 ip netns exec "$ns" python3 -c "$UDP_ASK" 10.96.0.11 53 20 2>&1)
  summary=$(sort <<<"$out" | uniq -c | awk '{c=$1; $1=""; printf "%s%s x%d", sep, substr($0, 2), c; sep=", "}')
  if [ "$(grep -c ' 10.96.0.11:53$' <<<"$out")" = 20 ] && grep -q '^pod-b ' <<<"$out" &&
    grep -q '^pod-c ' <<<"$out"; then
    pass "1. UDP ClusterIP 10.96.0.11:53 from ${ns#"$P"-}: 20 answered from 10.96.0.11:53, both endpoints" "$summary"
  else
    fail "1. UDP ClusterIP 10.96.0.11:53 from ${ns#"$P"-}: 20 answered from 10.96.0.11:53, both endpoints" "$summary"
  fi
done

# ---------------------------------------------------------------------------------------
# 2. NodePort, externalTrafficPolicy Cluster, from the fabric

# new_clients POD LINES: the client addresses pod POD logged after its first LINES lines.
new_clients() {
  tail -n +$(($2 + 1)) "$LOGDIR/server-$1.log" | awk '{print $2}'
}

for n in 1 2; do
  lb=$(wc -l <"$LOGDIR/server-b.log")
  lc=$(wc -l <"$LOGDIR/server-c.log")
  check_http "2. NodePort ${NODE_IP[n]}:30080 from the fabric: $N connections answered" \
    "$NS_FAB" "http://${NODE_IP[n]}:30080/" "$N"
  # Policy Cluster: the client is SNATed to the address of the node it reached.
  clients=$({ new_clients b "$lb"; new_clients c "$lc"; } | sort | uniq -c | awk '{printf "%s%s x%d", sep, $2, $1; sep=", "}')
  if [ "$clients" = "${NODE_IP[n]} x$N" ]; then
    pass "2. NodePort ${NODE_IP[n]}:30080: endpoints saw the client SNATed to ${NODE_IP[n]}" "$clients"
  else
    fail "2. NodePort ${NODE_IP[n]}:30080: endpoints saw the client SNATed to ${NODE_IP[n]}" "saw: ${clients:-nothing}"
  fi
done

# 2b. Fragmented datagrams: 3000-byte UDP requests (the senders' kernels fragment them)
# answered with 3000-byte replies (fragmented by the endpoint's kernel, and again by podswitch
# where a 1500-byte fragment enters the 1450 VXLAN path); translated fragment by fragment.
BIG_ASK='
import socket, sys
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"x" * 3000, (dst, port))
    try:
        data, addr = s.recvfrom(65535)
        f = data.split()
        if len(data) == 3000 and f[1] == b"3000" and addr == (dst, port):
            ok += 1
        else:
            print("bad reply", len(data), data[:20], addr)
    except socket.timeout:
        print("timeout")
    s.close()
print("%d of %d answered with 3000 bytes from %s:%d" % (ok, n, dst, port))
sys.exit(0 if ok == n else 1)
'
check "2b. UDP NodePort 192.168.1.10:30053 from the fabric, 3000-byte datagrams both ways" \
  timeout 60 ip netns exec "$NS_FAB" python3 -c "$BIG_ASK" 192.168.1.10 30053 10
check "2b. UDP ClusterIP 10.96.0.11:53 from pod a, 3000-byte datagrams both ways" \
  timeout 60 ip netns exec "$NS_A" python3 -c "$BIG_ASK" 10.96.0.11 53 10

# ---------------------------------------------------------------------------------------
# 3. externalTrafficPolicy Local (endpoint pod b on node2 only)

before_lines=$(wc -l <"$LOGDIR/server-b.log")
check_http "3. Local NodePort 192.168.1.11:30081 (local endpoint) from the fabric: 10 answered" \
  "$NS_FAB" http://192.168.1.11:30081/ 10 pod-b
clients=$(new_clients b "$before_lines" | sort | uniq -c |
  awk '{printf "%s%s x%d", sep, $2, $1; sep=", "}')
if [ "$clients" = "192.168.1.1 x10" ]; then
  pass "3. Local: pod b saw the client address 192.168.1.1 (preserved)" "$clients"
else
  fail "3. Local: pod b saw the client address 192.168.1.1 (preserved)" "saw: ${clients:-nothing}"
fi
d0=$(stat_drop 1 svc_no_local_endpoints)
check_fails "3. Local NodePort 192.168.1.10:30081 (no local endpoint) does not answer" \
  timeout 10 ip netns exec "$NS_FAB" curl -sS --max-time 2 http://192.168.1.10:30081/
sleep 0.5 # counters are published every 100-200 ms
d1=$(stat_drop 1 svc_no_local_endpoints)
if [ "$((d1 - d0))" -ge 1 ] 2>/dev/null; then
  pass "3. node1 counted the drop as svc_no_local_endpoints" "+$((d1 - d0))"
else
  fail "3. node1 counted the drop as svc_no_local_endpoints" "before $d0 after $d1"
fi

# ---------------------------------------------------------------------------------------
# 4. Hairpin

before_lines=$(wc -l <"$LOGDIR/server-a.log")
check_http "4. hairpin: pod a -> 10.96.0.13:80 (only endpoint pod a): 10 answered by itself" \
  "$NS_A" http://10.96.0.13/ 10 pod-a
echo "      pod a saw clients: $(new_clients a "$before_lines" | sort | uniq -c | awk '{printf "%s x%d ", $2, $1}')"

# ---------------------------------------------------------------------------------------
# 5. sessionAffinity ClientIP

out=$(http_many "$NS_A" http://10.96.0.14/ 20)
if [[ $out =~ ^pod-[bcd]=20$ ]]; then
  pass "5. affinity ClientIP: 20 connections pod a -> 10.96.0.14:80 on one endpoint" "$out"
else
  fail "5. affinity ClientIP: 20 connections pod a -> 10.96.0.14:80 on one endpoint" "$out"
fi

# ---------------------------------------------------------------------------------------
# 6. No endpoints: rejected fast

REJECT='
import errno, socket, sys, time
proto = sys.argv[1]
t = time.monotonic()
try:
    if proto == "tcp":
        s = socket.create_connection(("10.96.0.15", 80), timeout=5)
        print("connected"); sys.exit(1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect(("10.96.0.15", 53))
    s.send(b"anyone?")
    s.recv(2048)
    print("answered"); sys.exit(1)
except socket.timeout:
    print("timeout after %.0f ms" % ((time.monotonic() - t) * 1000)); sys.exit(1)
except OSError as e:
    ms = (time.monotonic() - t) * 1000
    print("%s after %.0f ms" % (errno.errorcode.get(e.errno, e.errno), ms))
    sys.exit(0 if e.errno == errno.ECONNREFUSED and ms < 1000 else 1)
'
d0=$(stat_drop 1 svc_no_endpoints)
out=$(timeout 20 ip netns exec "$NS_A" python3 -c "$REJECT" tcp 2>&1)
rc=$?
if [ $rc = 0 ]; then pass "6. no endpoints: TCP connect refused (RST) within 1 s" "$out"; else
  fail "6. no endpoints: TCP connect refused (RST) within 1 s" "$out"; fi
out=$(timeout 20 ip netns exec "$NS_A" python3 -c "$REJECT" udp 2>&1)
rc=$?
if [ $rc = 0 ]; then pass "6. no endpoints: UDP ECONNREFUSED (ICMP port unreachable) within 1 s" "$out"; else
  fail "6. no endpoints: UDP ECONNREFUSED (ICMP port unreachable) within 1 s" "$out"; fi
sleep 0.5
d1=$(stat_drop 1 svc_no_endpoints)
if [ "$((d1 - d0))" -ge 2 ] 2>/dev/null; then
  pass "6. node1 counted both as svc_no_endpoints" "+$((d1 - d0))"
else
  fail "6. node1 counted both as svc_no_endpoints" "before $d0 after $d1"
fi

# ---------------------------------------------------------------------------------------
# 7. Endpoint removed under UDP load

# One connected socket (one 5-tuple, one conntrack entry), a request every 20 ms for
# SECONDS; one line per reply: "<wall ms> <pod>".
UDP_LOAD='
import select, socket, sys, time
secs = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.96.0.16", 53))
end = time.monotonic() + secs
nxt = time.monotonic()
seq = 0
while time.monotonic() < end:
    now = time.monotonic()
    if now >= nxt:
        try:
            s.send(b"req %d" % seq)
        except OSError as e:
            print(int(time.time() * 1000), "send-error", e.errno, flush=True)
        seq += 1
        nxt += 0.02
    r, _, _ = select.select([s], [], [], max(0.0, nxt - time.monotonic()))
    if r:
        try:
            data = s.recv(2048)
            print(int(time.time() * 1000), data.decode().split()[0], flush=True)
        except OSError as e:
            print(int(time.time() * 1000), "recv-error", e.errno, flush=True)
print("sent", seq, flush=True)
'

# GAP_PY LOG OLD NEW T0 T_APPLIED: judges the client's log; prints "ok|bad <details>".
GAP_PY='
import sys
log, old, new, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rows = [l.split() for l in open(log)]
replies = [(int(r[0]), r[1]) for r in rows if len(r) == 2 and r[1].startswith("pod-")]
errors = [r for r in rows if len(r) > 2 and r[1].endswith("-error")]
sent = [int(r[1]) for r in rows if r[0] == "sent"]
last_old = max((t for t, p in replies if p == old), default=None)
first_new = min((t for t, p in replies if p == new and t >= t0), default=None)
late_old = [t for t, p in replies if p == old and t > t1 + 100]
ok = first_new is not None and last_old is not None and first_new - t1 <= 1000 \
    and first_new - last_old <= 1000 and not late_old
none = first_new is None or last_old is None
print("ok" if ok else "bad",
      "gap %s ms (last reply from %s -> first from %s);" % ("none" if none else first_new - last_old, old, new),
      "first %s reply %s ms after the change applied;" % (new, "none" if none else first_new - t1),
      "replies %d/%s, late %s replies %d, errors %d" % (len(replies), sent[0] if sent else "?", old,
                                                       len(late_old), len(errors)))
'

# ct_flows N VIP ENDPOINT_IP: node N's conntrack entries VIP -> ENDPOINT_IP.
ct_flows() {
  ctl "$1" dump conntrack 2>&1 | grep "dst=$2,.*reply=(src=$3,"
}

# udp_endpoint_removed NODE POD: pod POD on node NODE sends to 10.96.0.16:53 (endpoints pod
# c on node1, pod b on node2) every 20 ms; after 1.5 s the endpoint it is using is removed
# on both nodes (NODE, which translates the flow, first).
udp_endpoint_removed() {
  local cn=$1 pod=$2 ns log other old old_ip new new_ip t0 t1 t2 rc1 rc2 res n loadpid
  ns=$(pod_ns "$pod")
  log=$LOGDIR/udpload-$pod.log
  other=$((3 - cn))
  svc_udpload 10.244.1.11 10.244.2.20 >"$LOGDIR/udpload-full.toml"
  for n in 1 2; do
    ctl "$n" program add-service "$LOGDIR/udpload-full.toml" >/dev/null ||
      { fail "7. node$n: udpload Service reset to two endpoints"; return; }
  done
  timeout 30 ip netns exec "$ns" python3 -c "$UDP_LOAD" 5 >"$log" 2>&1 &
  loadpid=$!
  sleep 1.5
  old=$(awk '$2 ~ /^pod-/ {p = $2} END {print p}' "$log")
  case $old in
    pod-c) old_ip=10.244.1.11 new_ip=10.244.2.20 new=pod-b ;;
    pod-b) old_ip=10.244.2.20 new_ip=10.244.1.11 new=pod-c ;;
    *)
      fail "7. pod $pod: UDP load to 10.96.0.16:53 answered before the change" \
        "$(tail -n 3 "$log" | tr '\n' ' ')"
      wait "$loadpid"
      return
      ;;
  esac
  # The flow's entry exists before the change (so its absence afterwards means something).
  if ct_flows "$cn" 10.96.0.16 "$old_ip" | grep -q .; then
    pass "7. pod $pod: node$cn conntrack holds the flow to $old ($old_ip) before the change"
  else
    fail "7. pod $pod: node$cn conntrack holds the flow to $old ($old_ip) before the change"
  fi
  svc_udpload "$new_ip" >"$LOGDIR/udpload-shrunk.toml"
  t0=$(now_ms)
  ctl "$cn" program add-service "$LOGDIR/udpload-shrunk.toml" >"$LOGDIR/shrink.out" 2>&1
  rc1=$?
  t1=$(now_ms)
  ctl "$other" program add-service "$LOGDIR/udpload-shrunk.toml" >>"$LOGDIR/shrink.out" 2>&1
  rc2=$?
  t2=$(now_ms)
  wait "$loadpid"
  if [ $rc1 != 0 ] || [ $rc2 != 0 ]; then
    fail "7. pod $pod: add-service with $old removed on both nodes" "$(tail -n 2 "$LOGDIR/shrink.out" | tr '\n' ' ')"
  fi
  res=$(python3 -c "$GAP_PY" "$log" "$old" "$new" "$t0" "$t1" 2>&1)
  echo "      pod $pod: ${res#* } (add-service took $((t1 - t0)) ms on node$cn, $((t2 - t1)) ms on node$other)"
  if [ "${res%% *}" = ok ]; then
    pass "7. pod $pod: endpoint $old removed under UDP load, answers from $new within 1 s" "${res#ok }"
  else
    fail "7. pod $pod: endpoint $old removed under UDP load, answers from $new within 1 s" "${res#* }"
  fi
  for n in 1 2; do
    res=$(ct_flows "$n" 10.96.0.16 "$old_ip")
    if [ -z "$res" ]; then
      pass "7. pod $pod: node$n conntrack has no entry 10.96.0.16 -> $old_ip left"
    else
      fail "7. pod $pod: node$n conntrack has no entry 10.96.0.16 -> $old_ip left" "$(head -n 2 <<<"$res" | tr '\n' ' ')"
    fi
  done
  if ct_flows "$cn" 10.96.0.16 "$new_ip" | grep -q .; then
    pass "7. pod $pod: node$cn conntrack now holds the flow to $new ($new_ip)"
  else
    fail "7. pod $pod: node$cn conntrack now holds the flow to $new ($new_ip)"
  fi
}
udp_endpoint_removed 1 a
udp_endpoint_removed 2 d

# ---------------------------------------------------------------------------------------
# 8. Path MTU through a ClusterIP (pod a, node1 -> 10.96.0.17:53 -> pod b on node2)

PMTU='
import errno, socket, sys, time
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.connect(("10.96.0.17", 53))
s.settimeout(1)
def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))
out = []
try:
    s.send(b"x" * 1472)
    out.append("first 1472: sent")
except OSError as e:
    out.append("first 1472: " + err(e))
try:
    data = s.recv(2048)
    out.append("recv: answered %r" % data)
except socket.timeout:
    out.append("recv: timeout")
except OSError as e:
    out.append("recv: " + err(e))
mtu = s.getsockopt(socket.IPPROTO_IP, IP_MTU)
out.append("IP_MTU=%d" % mtu)
try:
    s.send(b"x" * 1472)
    second = "sent"
except OSError as e:
    second = err(e)
out.append("second 1472: " + second)
try:
    s.send(b"x" * 1422)
    data = s.recv(2048).decode()
except OSError as e:
    data = "error " + err(e)
out.append("1422: " + data)
print("; ".join(out))
ok = mtu == 1450 and second == "EMSGSIZE"
print("PMTU", "ok" if ok else "bad")
print("SMALL", "ok" if data == "pod-b 1422" else "bad")
'
out=$(timeout 20 ip netns exec "$NS_A" python3 -c "$PMTU" 2>&1)
route=$(timeout 5 ip netns exec "$NS_A" ip route get 10.96.0.17 2>&1 | tr -s ' \n' ' ')
echo "      $(head -n 1 <<<"$out")"
echo "      ip route get: $route"
if grep -q '^PMTU ok' <<<"$out"; then
  pass "8. 1472-byte DF datagram to ClusterIP 10.96.0.17:53: client learns mtu 1450, next send EMSGSIZE" \
    "$(head -n 1 <<<"$out" | cut -d';' -f2-4)"
else
  fail "8. 1472-byte DF datagram to ClusterIP 10.96.0.17:53: client learns mtu 1450, next send EMSGSIZE" \
    "$(head -n 1 <<<"$out")"
fi
if grep -q 'mtu 1450' <<<"$route"; then
  pass "8. ip route get 10.96.0.17 in pod a shows the cached mtu 1450" "$route"
else
  fail "8. ip route get 10.96.0.17 in pod a shows the cached mtu 1450" "$route"
fi
if grep -q '^SMALL ok' <<<"$out"; then
  pass "8. a 1422-byte DF datagram to 10.96.0.17:53 is answered by pod b"
else
  fail "8. a 1422-byte DF datagram to 10.96.0.17:53 is answered by pod b" "$(head -n 1 <<<"$out" | cut -d';' -f5)"
fi

# ---------------------------------------------------------------------------------------
# 9. TCP through a ClusterIP across the VXLAN path (pod a -> 10.96.0.18:80 -> pod b:5201)

ip netns exec "$NS_B" iperf3 -s -D -p 5201 >/dev/null 2>&1
for i in $(seq 1 30); do
  ip netns exec "$NS_B" ss -Hltn 'sport = :5201' | grep -q . && break
  sleep 0.1
done
# The handshake as each end sees it: the SYN in pod b, the SYN-ACK in pod a.
timeout 20 ip netns exec "$NS_B" tcpdump -nn -l -i eth0 -c 1 \
  'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and dst port 5201' >"$LOGDIR/syn.txt" 2>/dev/null &
dump_b=$!
timeout 20 ip netns exec "$NS_A" tcpdump -nn -l -i eth0 -c 1 \
  'tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack) and src port 80' >"$LOGDIR/synack.txt" 2>/dev/null &
dump_a=$!
sleep 1 # tcpdump attached
for dir in "" -R; do
  js=$(timeout 30 ip netns exec "$NS_A" iperf3 -c 10.96.0.18 -p 80 -t 2 -J $dir 2>&1)
  res=$(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
if "error" in d:
    print("error", d["error"]); sys.exit()
e = d["end"]
print("%.2f Gbit/s, %d retransmits" % (e["sum_received"]["bits_per_second"] / 1e9, e["sum_sent"].get("retransmits", -1)))
' <<<"$js" 2>&1)
  name="9. iperf3${dir:+ $dir} pod a -> ClusterIP 10.96.0.18:80 -> pod b (node2), 2 s"
  if [[ $res == *Gbit/s* ]] && [[ $res != 0.00* ]]; then pass "$name" "$res"; else fail "$name" "$res"; fi
done
wait "$dump_b" "$dump_a"
for f in syn synack; do
  mss=$(grep -o 'mss [0-9]*' "$LOGDIR/$f.txt" | head -n 1 | cut -d' ' -f2)
  where=$([ $f = syn ] && echo "SYN seen in pod b" || echo "SYN-ACK seen in pod a")
  if [ -n "$mss" ] && [ "$mss" -le 1410 ]; then
    pass "9. $where: MSS clamped to at most 1410 (VXLAN path)" "mss $mss"
  else
    fail "9. $where: MSS clamped to at most 1410 (VXLAN path)" "$(head -n 1 "$LOGDIR/$f.txt")"
  fi
done

finish
