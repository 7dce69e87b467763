#!/usr/bin/env bash
# Service policy end to end (issue: a NodePort connection from another node's pod was
# reset), with real clients in the pod and fabric namespaces of the two-node vxlan cluster:
#
#  1. A pod on node2 (b) connects to node1's NodePort (externalTrafficPolicy Cluster) whose
#     only endpoint is pod d, also on node2. node1 must masquerade the connection to its own
#     address: otherwise pod d answers pod b straight from its own address and pod b resets
#     the connection. Every curl must be answered by pod d, which must see 192.168.1.10.
#  2. healthCheckNodePort of an externalTrafficPolicy Local LoadBalancer with its endpoint on
#     node1: curl from the fabric namespace gets 200 and localEndpoints 1 from node1, 503 and
#     localEndpoints 0 from node2, with kube-proxy's JSON body.
source "$(dirname "$0")/lib.sh"

E2E_IPV6=0
cluster_up

SVC=$LOGDIR/policy.toml
SRV=$LOGDIR/server.py
NS_B=$P-n2-b
NS_FAB=$P-fab

cat >"$SRV" <<'PY'
import http.server, socketserver, sys
name, log = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write("%s %d\n" % self.client_address)
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
S(("0.0.0.0", 8080), H).serve_forever()
PY

for pod in n2-d n1-c; do
  : >"$LOGDIR/server-$pod.log"
  ip netns exec "$P-$pod" python3 "$SRV" "pod-${pod#*-}" "$LOGDIR/server-$pod.log" \
    >>"$LOGDIR/server-$pod.err" 2>&1 &
done
for pod in n2-d n1-c; do
  for i in $(seq 1 50); do
    ip netns exec "$P-$pod" ss -Hltn 'sport = :8080' | grep -q . && continue 2
    sleep 0.1
  done
  die "server started in $pod"
done

cat >"$SVC" <<'EOF'
[[service]]
name = "far-nodeport"
type = "NodePort"
cluster_ip = "10.96.0.20"
ports = [{ protocol = "tcp", port = 80, target_port = 8080, node_port = 30085 }]

[[service.endpoints]]
ip = "10.244.2.21"

[[service]]
name = "lb-local"
namespace = "shop"
type = "LoadBalancer"
cluster_ip = "10.96.0.21"
load_balancer_ips = ["192.168.1.220"]
external_traffic_policy = "Local"
health_check_node_port = 31001
ports = [{ protocol = "tcp", port = 80, target_port = 8080, node_port = 30086 }]

[[service.endpoints]]
ip = "10.244.1.11"
EOF
for n in 1 2; do
  ctl "$n" program add-service "$SVC" >"$LOGDIR/program$n.out" 2>&1 ||
    die "node$n: add-service" "$(tail -n 3 "$LOGDIR/program$n.out")"
done

# 1. node2 pod -> node1 NodePort -> endpoint on node2.
out=$(for i in $(seq 1 10); do
  timeout 10 ip netns exec "$NS_B" curl -sS --max-time 3 http://192.168.1.10:30085/ 2>&1 || echo error
done | sort | uniq -c | awk '{printf "%s%s=%d", sep, $2, $1; sep=" "} END {print ""}')
if [ "$out" = "pod-d=10" ]; then
  pass "pod b (node2) -> node1:30085 -> pod d (node2): 10 connections answered" "$out"
else
  fail "pod b (node2) -> node1:30085 -> pod d (node2): 10 connections answered" "$out"
fi
seen=$(awk '{print $1}' "$LOGDIR/server-n2-d.log" | sort -u | tr '\n' ' ')
check "pod d saw the client masqueraded to node1's address ($seen)" \
  test "$seen" = "192.168.1.10 "

# 2. Health-check NodePort, from the fabric namespace.
hc() { timeout 10 ip netns exec "$NS_FAB" curl -sS --max-time 3 -w ' %{http_code}' "http://$1:31001/healthz"; }
r1=$(hc 192.168.1.10)
r2=$(hc 192.168.1.11)
want1='{"service":{"namespace":"shop","name":"lb-local"},"localEndpoints":1,"serviceProxyHealthy":true} 200'
want2='{"service":{"namespace":"shop","name":"lb-local"},"localEndpoints":0,"serviceProxyHealthy":true} 503'
check "health check on node1 (local endpoint): $r1" test "$r1" = "$want1"
check "health check on node2 (no local endpoint): $r2" test "$r2" = "$want2"

finish
