#!/usr/bin/env bash
# Garbage on the control socket: invalid JSON, unknown commands and fields, invalid MACs,
# addresses and prefixes, changes that do not validate, a configuration whose new port
# cannot be opened, and requests larger than 64 MiB. Each gets an error reply
# ({"ok":false,"error":...}) and leaves every dump (ports, macs, fib, neighbours, tunnels,
# flows, config; text and JSON, packet counters left out), the generation and the XDP
# programs on the node's interfaces byte-for-byte unchanged; the daemon keeps answering
# and forwarding.
source "$(dirname "$0")/lib.sh"

# No IPv6 ND/MLD from the namespaces: nothing but this test talks to the daemon.
E2E_IPV6=0
cluster_up
S=$(sock 1)

strip_json() {
  python3 -c '
import json, sys
COUNTERS = {"rx_packets", "tx_packets", "tx_dropped", "packets", "bytes"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in COUNTERS}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(sys.stdin)), indent=1, sort_keys=True))'
}

# snapshot FILE: everything a request could change, without packet counters.
snapshot() {
  local t
  {
    for t in ports macs fib neighbours tunnels flows config; do
      echo "== $t (text)"
      case $t in
        ports) ctl 1 dump ports | awk '{ $7 = $8 = $9 = ""; print }' ;;
        flows) ctl 1 dump flows | sed -E 's/ packets:[0-9]+ bytes:[0-9]+//' ;;
        *) ctl 1 dump "$t" ;;
      esac
      echo "== $t (json)"
      ctl 1 -o json dump "$t" | strip_json
    done
    echo "== generation"
    ctl_generation 1
    echo "== xdp programs"
    ip netns exec "$P-node1" ip -d -o link show |
      awk '{ id = "-"; for (i = 1; i < NF; i++) if ($i == "prog/xdp") id = $(i + 2); print $2, id }'
  } >"$1" 2>&1
}

# A pod interface the daemon does not know yet (for the rollback case below).
pod_up 1 y 10.244.1.78 0a:58:0a:f4:01:4e 10.244.1.1 >>"$LOGDIR/net.log" 2>&1 ||
  die "pod y namespace created"
ip netns exec "$P-n1-y" sysctl -qw net.ipv6.conf.all.disable_ipv6=1

snapshot "$LOGDIR/before"
# Sanity: the snapshot holds real content and is stable without any request.
snapshot "$LOGDIR/again"
if grep -q 'veth-pod-a' "$LOGDIR/before" && grep -q '10.244.2.0/24' "$LOGDIR/before" &&
  cmp -s "$LOGDIR/before" "$LOGDIR/again"; then
  pass "dumps read and stable without requests" "$(wc -l <"$LOGDIR/before") lines"
else
  die "dumps read and stable without requests" "$(diff "$LOGDIR/before" "$LOGDIR/again" | head -5 | tr '\n' ' ')"
fi

# A node1 configuration with two extra pods: pod-y on an existing interface, then pod-x on
# one that does not exist. The tables validate; pod-y's port opens (XDP attached, socket
# bound), pod-x's fails: pod-y's must be closed again (the XDP snapshot sees it).
NOPORT_CFG="$LOGDIR/noport.toml"
cat "$E2E_ROOT/config/node1-vxlan.toml" >"$NOPORT_CFG"
printf '\n[[pod]]\nname = "default/pod-y"\nport = "veth-pod-y"\nip = "10.244.1.78"\nmac = "0a:58:0a:f4:01:4e"\n' >>"$NOPORT_CFG"
printf '\n[[pod]]\nname = "default/pod-x"\nport = "veth-pod-x"\nip = "10.244.1.77"\nmac = "0a:58:0a:f4:01:4d"\n' >>"$NOPORT_CFG"
# The same, but two pods share an address: does not validate.
DUP_CFG="$LOGDIR/dup.toml"
sed 's/10.244.1.11/10.244.1.10/' "$E2E_ROOT/config/node1-vxlan.toml" >"$DUP_CFG"
# replace_req CONFIG OUT: a replace request carrying CONFIG's text.
replace_req() { python3 -c 'import json,sys; print(json.dumps({"cmd": "replace", "config": open(sys.argv[1]).read()}))' "$1" >"$2"; }
replace_req "$NOPORT_CFG" "$LOGDIR/req-noport"
replace_req "$DUP_CFG" "$LOGDIR/req-dup"

POD='"name":"default/pod-x","port":"veth-pod-x","ip":"10.244.1.77","mac":"0a:58:0a:f4:01:4d"'
CASES=(
  "invalid JSON|this is not json"
  "empty line|"
  "JSON array|[1,2,3]"
  "JSON without cmd|{}"
  "truncated JSON|{\"cmd\":\"dump\",\"table\":"
  "invalid UTF-8|{\"cmd\":\"dump\",\"table\":\"\xff\xfe\"}"
  "NUL bytes|{\"cmd\":\"version\"}\x00\x00"
  "unknown command|{\"cmd\":\"frobnicate\"}"
  "unknown field|{\"cmd\":\"dump\",\"table\":\"fib\",\"please\":true}"
  "remove-pod with an unknown field|{\"cmd\":\"remove-pod\",\"name\":\"default/pod-a\",\"dry_run\":true}"
  "dump without table|{\"cmd\":\"dump\"}"
  "dump of an unknown table|{\"cmd\":\"dump\",\"table\":\"nope\"}"
  "add-pod: invalid MAC|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-x\",\"ip\":\"10.244.1.77\",\"mac\":\"zz:58:0a:f4:01:4d\"}}"
  "add-pod: invalid IP|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-x\",\"ip\":\"10.244.1.777\",\"mac\":\"0a:58:0a:f4:01:4d\"}}"
  "add-pod: multicast MAC|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-x\",\"ip\":\"10.244.1.77\",\"mac\":\"01:00:5e:00:00:01\"}}"
  "add-pod: IP outside the pod CIDR|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-x\",\"ip\":\"10.9.9.9\",\"mac\":\"0a:58:0a:f4:01:4d\"}}"
  "add-pod: IP of another pod|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-x\",\"ip\":\"10.244.1.10\",\"mac\":\"0a:58:0a:f4:01:4d\"}}"
  "add-pod: the gateway address|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-x\",\"ip\":\"10.244.1.1\",\"mac\":\"0a:58:0a:f4:01:4d\"}}"
  "add-pod: existing name|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-a\",\"port\":\"veth-pod-x\",\"ip\":\"10.244.1.77\",\"mac\":\"0a:58:0a:f4:01:4d\"}}"
  "add-pod: port of another pod|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\",\"port\":\"veth-pod-a\",\"ip\":\"10.244.1.77\",\"mac\":\"0a:58:0a:f4:01:4d\"}}"
  "add-pod: MTU out of range|{\"cmd\":\"add-pod\",\"pod\":{$POD,\"mtu\":20}}"
  "add-pod: MTU not a u16|{\"cmd\":\"add-pod\",\"pod\":{$POD,\"mtu\":70000}}"
  "add-pod: VLAN 0|{\"cmd\":\"add-pod\",\"pod\":{$POD,\"vlan\":0}}"
  "add-pod: missing fields|{\"cmd\":\"add-pod\",\"pod\":{\"name\":\"default/pod-x\"}}"
  "add-pod: interface does not exist|{\"cmd\":\"add-pod\",\"pod\":{$POD}}"
  "remove-pod: unknown pod|{\"cmd\":\"remove-pod\",\"name\":\"default/nobody\"}"
  "add-route: prefix /33|{\"cmd\":\"add-route\",\"route\":{\"prefix\":\"10.1.2.0/33\"}}"
  "add-route: octet 300|{\"cmd\":\"add-route\",\"route\":{\"prefix\":\"300.1.2.0/24\"}}"
  "add-route: prefix without length|{\"cmd\":\"add-route\",\"route\":{\"prefix\":\"10.1.2.0\"}}"
  "add-route: via not an address|{\"cmd\":\"add-route\",\"route\":{\"prefix\":\"10.1.2.0/24\",\"via\":\"gateway\"}}"
  "remove-route: unknown prefix|{\"cmd\":\"remove-route\",\"prefix\":\"10.123.0.0/16\"}"
  "add-peer: pod CIDR overlaps this node's|{\"cmd\":\"add-peer\",\"peer\":{\"name\":\"node9\",\"address\":\"192.168.1.19\",\"pod_cidr\":\"10.244.1.128/25\",\"vtep_mac\":\"0e:00:00:00:00:09\"}}"
  "add-peer: this node's address|{\"cmd\":\"add-peer\",\"peer\":{\"name\":\"node9\",\"address\":\"192.168.1.10\",\"pod_cidr\":\"10.244.9.0/24\",\"vtep_mac\":\"0e:00:00:00:00:09\"}}"
  "add-peer: vxlan without vtep_mac|{\"cmd\":\"add-peer\",\"peer\":{\"name\":\"node9\",\"address\":\"192.168.1.19\",\"pod_cidr\":\"10.244.9.0/24\"}}"
  "add-peer: unknown overlay|{\"cmd\":\"add-peer\",\"peer\":{\"name\":\"node9\",\"address\":\"192.168.1.19\",\"pod_cidr\":\"10.244.9.0/24\",\"vtep_mac\":\"0e:00:00:00:00:09\",\"overlay\":\"gre\"}}"
  "remove-peer: unknown peer|{\"cmd\":\"remove-peer\",\"name\":\"node9\"}"
  "add-neighbour: invalid MAC|{\"cmd\":\"add-neighbour\",\"neighbour\":{\"ip\":\"192.168.1.11\",\"mac\":\"02:00:c0:a8:01\"}}"
  "add-neighbour: broadcast MAC|{\"cmd\":\"add-neighbour\",\"neighbour\":{\"ip\":\"192.168.1.11\",\"mac\":\"ff:ff:ff:ff:ff:ff\"}}"
  "remove-neighbour: unknown|{\"cmd\":\"remove-neighbour\",\"ip\":\"192.168.1.99\"}"
  "replace: not TOML|{\"cmd\":\"replace\",\"config\":\"this is [not toml\"}"
  "replace: empty configuration|{\"cmd\":\"replace\",\"config\":\"\"}"
  "replace: two pods with one address|@$LOGDIR/req-dup"
  "replace: a pod's interface does not exist|@$LOGDIR/req-noport"
  "trace: unknown port|{\"cmd\":\"trace\",\"in_port\":\"nope\",\"frame\":\"00\"}"
  "trace: invalid hex|{\"cmd\":\"trace\",\"in_port\":\"veth-pod-a\",\"frame\":\"xyz\"}"
)

req="$LOGDIR/req"
for c in "${CASES[@]}"; do
  name=${c%%|*}
  body=${c#*|}
  case $body in
    @*) cp "${body#@}" "$req" ;;             # a request prepared in a file
    *) printf '%b\n' "$body" >"$req" ;; # \xNN escapes for bytes that are not text
  esac
  resp=$(raw_request "$S" "$req" 2>"$LOGDIR/raw.err")
  err=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["ok"] is False and r.get("error"), r
print(r["error"].replace("\n", " ")[:150])' "$resp" 2>/dev/null)
  if [ -z "$err" ]; then
    fail "$name: error reply" "got: ${resp:0:200} $(cat "$LOGDIR/raw.err")"
    continue
  fi
  snapshot "$LOGDIR/after"
  if cmp -s "$LOGDIR/before" "$LOGDIR/after"; then
    pass "$name: error reply, dumps unchanged" "$err"
  else
    fail "$name: error reply, dumps unchanged" "$(diff "$LOGDIR/before" "$LOGDIR/after" | head -6 | tr '\n' ' ')"
  fi
done

# Requests over the daemon's limit (MAX_REQUEST in model/src/protocol.rs: 64 MiB, which
# 10k Services with 100k endpoints fit): a 65 MiB line of garbage and a 65 MiB
# valid-looking replace.
python3 -c 'import sys; sys.stdout.write("x" * (65 << 20) + "\n")' >"$req"
python3 -c '
import json, sys
print(json.dumps({"cmd": "replace", "config": open(sys.argv[1]).read() + "#" * (65 << 20)}))' \
  "$E2E_ROOT/config/node1-vxlan.toml" >"$LOGDIR/req-big-replace"
for c in "65 MiB of garbage|$req" "65 MiB replace request|$LOGDIR/req-big-replace"; do
  name=${c%%|*}
  resp=$(raw_request "$S" "${c#*|}" 2>"$LOGDIR/raw.err")
  if grep -q '"ok":false' <<<"$resp" && grep -q 'larger than' <<<"$resp"; then
    snapshot "$LOGDIR/after"
    if cmp -s "$LOGDIR/before" "$LOGDIR/after"; then
      pass "oversized: $name: error reply, dumps unchanged" "$(grep -o '"error":"[^"]*"' <<<"$resp")"
    else
      fail "oversized: $name: error reply, dumps unchanged" "$(diff "$LOGDIR/before" "$LOGDIR/after" | head -6 | tr '\n' ' ')"
    fi
  else
    fail "oversized: $name: error reply" "got: ${resp:0:200} $(cat "$LOGDIR/raw.err")"
  fi
done

# The same through podswitchctl: it shows the daemon's error (not a broken pipe).
python3 -c 'import sys; sys.stdout.write(open(sys.argv[1]).read() + "#" * (65 << 20) + "\n")' \
  "$E2E_ROOT/config/node1-vxlan.toml" >"$LOGDIR/big.toml"
out=$(ctl 1 program replace "$LOGDIR/big.toml" 2>&1)
rc=$?
snapshot "$LOGDIR/after"
if [ "$rc" = 1 ] && grep -q 'request larger than' <<<"$out" && cmp -s "$LOGDIR/before" "$LOGDIR/after"; then
  pass "oversized: podswitchctl program replace (65 MiB file): daemon's error shown, dumps unchanged" "$out"
else
  fail "oversized: podswitchctl program replace (65 MiB file): daemon's error shown, dumps unchanged" "exit $rc: $out $(diff "$LOGDIR/before" "$LOGDIR/after" | head -4 | tr '\n' ' ')"
fi

# One connection: garbage, then a valid request on the same connection is still served.
printf 'garbage\n{"cmd":"version"}\n' >"$req"
resp=$(timeout 20 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
s.sendall(open(sys.argv[2], "rb").read())
f = s.makefile("rb")
print(f.readline().decode().strip()); print(f.readline().decode().strip())' "$S" "$req" 2>&1)
if [ "$(grep -c '"ok":false' <<<"$resp")" = 1 ] && [ "$(grep -c '"ok":true' <<<"$resp")" = 1 ]; then
  pass "garbage then a valid request on one connection: error, then answer"
else
  fail "garbage then a valid request on one connection: error, then answer" "$(tr '\n' ' ' <<<"$resp" | cut -c1-200)"
fi

check "daemon still running" kill -0 "${DPID[1]}"
check "daemon still answers" ctl 1 version
check "pod a -> pod c still forwards" ping1 "$P-n1-a" 10.244.1.11
check "pod b -> pod a still forwards" ping1 "$P-n2-b" 10.244.1.10
check "rollback exercised: the daemon had opened veth-pod-y" grep -q 'port veth-pod-y queue' "$LOGDIR/node1.log"
check "rolled back: veth-pod-y exists without an XDP program" sh -c \
  "ip netns exec $P-node1 ip -d -o link show veth-pod-y | grep -v -q -E 'prog/xdp|xdpgeneric|xdpdrv'"
check_fails "rolled back: pod y is not served" ping1 "$P-n1-y" 10.244.1.1
# A valid change after all that still works (the control side is not wedged).
check "a valid change still applies (add-route, remove-route)" sh -c \
  "timeout 10 '$BIN/podswitchctl' --socket '$S' program add-route --prefix 10.123.0.0/16 --to-host &&
   timeout 10 '$BIN/podswitchctl' --socket '$S' program remove-route 10.123.0.0/16"
finish
