"""The model of the upstream NetworkPolicy e2e suite (test/e2e/network/netpol), run against
the lab cluster only through `lab/lab.sh kubectl`, probed with real clients.

Namespaces x, y, z (labelled ns=<name>), each with pods a (node1), b (node2) and c (node1)
labelled pod=<name>, serving TCP and UDP on 80 and 81 and UDP 53, with named container
ports serve-80-tcp, serve-81-udp, ... For each case the policies are applied, every pair
is probed from the source pod's namespace, and the probed reachability matrix is printed
beside the expected one (computed from the case's rule, not typed out), retrying while the
change is programmed; any difference fails. Then the policies go and the cluster is back
to all-reachable before the next case.

Prints PASS/FAIL lines as tests/e2e/lib/common.sh does; exits 1 if any case failed.
Environment: LAB_PREFIX, LAB_STATE (set by cluster_test_init), PODSWITCH_BIN.
"""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
PREFIX = os.environ["LAB_PREFIX"]
STATE = os.environ["LAB_STATE"]
BIN = os.environ.get("PODSWITCH_BIN") or os.path.join(ROOT, "target", "release")
NAMESPACES = ["x", "y", "z"]
PLACEMENT = {"a": "node1", "b": "node2", "c": "node1"}
SERVED = ["80/tcp", "81/tcp", "80/udp", "81/udp", "53/udp", "53/tcp"]
CONVERGE_S = 25
FAILS = []


class Pod:
    def __init__(self, ns, name):
        self.ns, self.name = ns, name
        self.ip = self.netns = None

    def __str__(self):
        return "%s/%s" % (self.ns, self.name)


PODS = [Pod(ns, p) for ns in NAMESPACES for p in "abc"]


def result(ok, name, detail=""):
    print("%s  %-58s %s" % ("PASS" if ok else "FAIL", name, detail), flush=True)
    if not ok:
        FAILS.append(name)


def kubectl(*args, stdin=None, check=True):
    r = subprocess.run([os.path.join(ROOT, "lab", "lab.sh"), "kubectl", *args],
                       input=stdin, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise RuntimeError("kubectl %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def apply(*objects):
    kubectl("apply", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def pod_object(pod):
    ports = []
    for s in SERVED:
        port, proto = s.split("/")
        ports.append({"name": "serve-%s-%s" % (port, proto), "containerPort": int(port),
                      "protocol": proto.upper()})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.ns, "labels": {"pod": pod.name}},
        "spec": {
            "nodeName": PLACEMENT[pod.name],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "serve", "image": "agnhost",
                            "command": ["python3", os.path.join(HERE, "server.py"), *SERVED],
                            "ports": ports}],
        },
    }


def netns_by_ip():
    """The pods' network namespaces (the lab agent's), by the address of their eth0."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        ns = line.split()[0]
        if not ns.startswith(PREFIX + "-n"):
            continue
        addr = subprocess.run(["ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"],
                              capture_output=True, text=True).stdout.split()
        if "inet" in addr:
            found[addr[addr.index("inet") + 1].split("/")[0]] = ns
    return found


def set_up():
    apply(*[{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": ns, "labels": {"ns": ns}}} for ns in NAMESPACES],
          *[pod_object(p) for p in PODS])
    for ns in NAMESPACES:
        kubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "--all", "--timeout=120s")
    by_ip = netns_by_ip()
    for p in PODS:
        p.ip = kubectl("get", "pod", "-n", p.ns, p.name, "-o", "jsonpath={.status.podIP}")
        p.netns = by_ip.get(p.ip)
        if not p.netns:
            raise RuntimeError("no network namespace holds %s (%s)" % (p.ip, p))


def probe(ports):
    """{(src, dst, port): reachable} for every pair and PORT/PROTO, all sources at once."""
    procs = []
    for src in PODS:
        targets = ["%s:%s" % (dst.ip, port) for dst in PODS for port in ports]
        procs.append((src, subprocess.Popen(
            ["ip", "netns", "exec", src.netns, sys.executable,
             os.path.join(HERE, "probe.py"), "matrix", *targets],
            stdout=subprocess.PIPE, text=True)))
    got = {}
    for src, proc in procs:
        line = proc.communicate(timeout=30)[0].strip()
        k = 0
        for dst in PODS:
            for port in ports:
                got[(str(src), str(dst), port)] = line[k:k + 1] == "1"
                k += 1
    return got


def expected(rule, ports):
    return {(str(s), str(d), port): s is d or bool(rule(s, d, port))
            for s in PODS for d in PODS for port in ports}


def render(m, port):
    cols = [str(p) for p in PODS]
    lines = ["%-5s" % port + "".join("%-5s" % c for c in cols)]
    for s in cols:
        lines.append("%-5s" % s + "".join("%-5s" % ("1" if m[(s, d, port)] else ".")
                                         for d in cols))
    return "\n".join(lines)


def converge(want, ports):
    got = {}
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline:
        got = probe(ports)
        if got == want:
            break
        time.sleep(1)
    return got


def policies_gone():
    for ns in NAMESPACES:
        kubectl("delete", "networkpolicy", "--all", "-n", ns, "--wait=true")
    want = expected(lambda s, d, port: True, ["80/tcp"])
    if converge(want, ["80/tcp"]) != want:
        result(False, "policies removed: all reachable again")


def case(name, policies, ports, rule, keep=False):
    """Applies POLICIES, probes PORTS until the matrix is RULE's (or time runs out)."""
    if policies:
        apply(*policies)
    want = expected(rule, ports)
    got = converge(want, ports)
    for port in ports:
        print("--- %s: expected" % name)
        print(render(want, port))
        print("--- %s: probed" % name)
        print(render(got, port))
    bad = sorted("%s->%s %s" % k for k in want if want[k] != got.get(k))
    result(not bad, name, ("differs: " + ", ".join(bad[:4])) if bad else "")
    if policies and not keep:
        policies_gone()


def netpol(ns, name, selector, ingress=None, egress=None, types=None):
    spec = {"podSelector": selector}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def pod_is(p, ident):
    return str(p) == ident


def ctl(node, *args):
    sock = "/run/podswitch/%s-%s.sock" % (PREFIX, node)
    return subprocess.run([os.path.join(BIN, "podswitchctl"), "--socket", sock, *args],
                          capture_output=True, text=True, timeout=30)


def syn_frame(src_mac, dst_mac, src, dst, dport):
    """Ethernet + IPv4 + TCP SYN, checksums filled in, as hex."""
    import ipaddress
    import struct

    def csum(b):
        if len(b) % 2:
            b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
    return (mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + tcp).hex()


def trace_names_policy(src, dst, policy):
    """`podswitchctl trace` of a SYN from SRC to DST:80 on SRC's node (both on node1)."""
    ports = json.loads(ctl("node1", "-o", "json", "dump", "ports").stdout)
    macs = json.loads(ctl("node1", "-o", "json", "dump", "macs").stdout)
    port = next(p for p in ports if p.get("ip") == src.ip)
    gw = next(m["mac"] for m in macs if m["target"] == "gateway")
    r = ctl("node1", "trace", "--in-port", port["name"],
            "--frame", syn_frame(port["mac"], gw, src.ip, dst.ip, 80))
    out = r.stdout + r.stderr
    ok = policy in out and "policy_denied_ingress" in out
    verdict = next((line.strip() for line in out.splitlines() if "netpol" in line), out[-200:])
    result(ok, "trace of %s -> %s:80 names %s" % (src, dst, policy), verdict[:150])


def during_traffic():
    """A TCP connection y/a -> x/b:80 (cross-node), started while a policy selecting x/b
    allows it, keeps going while that policy is replaced by deny-all-ingress and then
    removed (`established = keep`: the flow is tracked), while new connections follow the
    policies. (A flow that started while no policy selected the pod is not tracked, and is
    judged as new once one does: README, "Semantics and where it is enforced".)"""
    ya = next(p for p in PODS if pod_is(p, "y/a"))
    xb = next(p for p in PODS if pod_is(p, "x/b"))
    case("x allows ingress from namespace y",
         [netpol("x", "allow-from-y", {},
                 ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}])],
         ["80/tcp"], lambda s, d, port: d.ns != "x" or s.ns == "y", keep=True)
    stream = subprocess.Popen(
        ["ip", "netns", "exec", ya.netns, sys.executable, os.path.join(HERE, "probe.py"),
         "stream", xb.ip, "80", "25"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    kubectl("delete", "networkpolicy", "-n", "x", "allow-from-y")
    case("while traffic runs: replaced by deny all ingress in x",
         [netpol("x", "deny-all-ingress", {}, types=["Ingress"])], ["80/tcp"],
         lambda s, d, port: d.ns != "x", keep=True)
    policies_gone()
    out = stream.communicate(timeout=60)[0].strip()
    result(stream.returncode == 0,
           "established y/a -> x/b:80 went on through the change and removal (keep)", out)


def bad_policy_is_reported_and_skipped():
    """The apiserver refuses most bad policies itself (an ipBlock except outside its cidr
    is invalid there); SCTP it accepts and podswitch does not support: the controller
    reports that policy and skips it, the others apply."""
    bad = netpol("x", "bad-sctp", {"matchLabels": {"pod": "b"}},
                 ingress=[{"ports": [{"protocol": "SCTP", "port": 80}]}])
    good = netpol("x", "deny-a", {"matchLabels": {"pod": "a"}}, types=["Ingress"])
    case("a policy with SCTP is skipped, the good one applies",
         [bad, good], ["80/tcp"], lambda s, d, port: not pod_is(d, "x/a"), keep=True)
    sock = os.path.join(STATE, "node1", "controller.sock")
    r = subprocess.run([os.path.join(BIN, "podswitch-controller"), "status",
                        "--status-socket", sock], capture_output=True, text=True, timeout=30)
    line = next((ln.strip() for ln in r.stdout.splitlines() if "bad-sctp" in ln), "")
    result("SCTP" in line, "controller status names x/bad-sctp as rejected", line[:150])
    policies_gone()


def main():
    set_up()
    result(True, "namespaces x, y, z with pods a, b, c serving TCP/UDP 80, 81 and UDP 53",
           " ".join("%s=%s" % (p, p.ip) for p in PODS))
    everyone = lambda s, d, port: True
    case("no policy: everything reaches everything", [], ["80/tcp"], everyone)
    case("deny all ingress in x",
         [netpol("x", "deny-all-ingress", {}, types=["Ingress"])], ["80/tcp"],
         lambda s, d, port: d.ns != "x", keep=True)
    trace_names_policy(next(p for p in PODS if pod_is(p, "y/a")),
                       next(p for p in PODS if pod_is(p, "x/a")), "x/deny-all-ingress")
    policies_gone()
    case("deny all egress in x",
         [netpol("x", "deny-all-egress", {}, types=["Egress"])], ["80/tcp"],
         lambda s, d, port: s.ns != "x")
    case("allow ingress from the same namespace (x)",
         [netpol("x", "allow-same-ns", {}, ingress=[{"from": [{"podSelector": {}}]}])],
         ["80/tcp"], lambda s, d, port: d.ns != "x" or s.ns == "x")
    case("x/a allows namespace y by label",
         [netpol("x", "allow-ns-y", {"matchLabels": {"pod": "a"}},
                 ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}])],
         ["80/tcp"], lambda s, d, port: not pod_is(d, "x/a") or s.ns == "y")
    case("x/a allows namespace z by kubernetes.io/metadata.name",
         [netpol("x", "allow-ns-z", {"matchLabels": {"pod": "a"}},
                 ingress=[{"from": [{"namespaceSelector": {
                     "matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}])],
         ["80/tcp"], lambda s, d, port: not pod_is(d, "x/a") or s.ns == "z")
    case("namespaceSelector AND podSelector: x/a allows y/b only",
         [netpol("x", "allow-y-and-b", {"matchLabels": {"pod": "a"}},
                 ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                     "podSelector": {"matchLabels": {"pod": "b"}}}]}])],
         ["80/tcp"], lambda s, d, port: not pod_is(d, "x/a") or pod_is(s, "y/b"))
    case("namespaceSelector OR podSelector: x/a allows y/* and x/b",
         [netpol("x", "allow-y-or-b", {"matchLabels": {"pod": "a"}},
                 ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                                    {"podSelector": {"matchLabels": {"pod": "b"}}}]}])],
         ["80/tcp"],
         lambda s, d, port: not pod_is(d, "x/a") or s.ns == "y" or pod_is(s, "x/b"))
    case("matchExpressions: x/a allows namespaces NotIn (y), pods In (a, b)",
         [netpol("x", "allow-expr", {"matchExpressions": [
             {"key": "pod", "operator": "In", "values": ["a"]}]},
             ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
                 {"key": "ns", "operator": "NotIn", "values": ["y"]}]},
                 "podSelector": {"matchExpressions": [
                     {"key": "pod", "operator": "In", "values": ["a", "b"]}]}}]}])],
         ["80/tcp"],
         lambda s, d, port: not pod_is(d, "x/a") or (s.ns != "y" and s.name in "ab"))
    yb = next(p for p in PODS if pod_is(p, "y/b"))
    case("ipBlock with except: x/a may send to 10.244.0.0/16 except y/b",
         [netpol("x", "egress-except", {"matchLabels": {"pod": "a"}}, types=["Egress"],
                 egress=[{"to": [{"ipBlock": {"cidr": "10.244.0.0/16",
                                              "except": [yb.ip + "/32"]}}]}])],
         ["80/tcp"], lambda s, d, port: not pod_is(s, "x/a") or d is not yb)
    case("named port: x/a allows serve-81-tcp only",
         [netpol("x", "allow-81-named", {"matchLabels": {"pod": "a"}},
                 ingress=[{"ports": [{"port": "serve-81-tcp"}]}])],
         ["80/tcp", "81/tcp"], lambda s, d, port: not pod_is(d, "x/a") or port == "81/tcp")
    case("endPort: x/a allows TCP 81-90",
         [netpol("x", "allow-81-90", {"matchLabels": {"pod": "a"}},
                 ingress=[{"ports": [{"protocol": "TCP", "port": 81, "endPort": 90}]}])],
         ["80/tcp", "81/tcp"], lambda s, d, port: not pod_is(d, "x/a") or port == "81/tcp")
    case("UDP: x/a allows UDP 81 only",
         [netpol("x", "allow-udp-81", {"matchLabels": {"pod": "a"}},
                 ingress=[{"ports": [{"protocol": "UDP", "port": 81}]}])],
         ["80/udp", "81/udp", "81/tcp"],
         lambda s, d, port: not pod_is(d, "x/a") or port == "81/udp")
    case("egress of x allowed only to DNS (UDP/TCP 53)",
         [netpol("x", "egress-dns-only", {}, types=["Egress"],
                 egress=[{"ports": [{"protocol": "UDP", "port": 53},
                                    {"protocol": "TCP", "port": 53}]}])],
         ["80/tcp", "53/udp"], lambda s, d, port: s.ns != "x" or port == "53/udp")
    case("union: deny all ingress in x, plus x/c allows pod b of any namespace",
         [netpol("x", "deny-all-ingress", {}, types=["Ingress"]),
          netpol("x", "allow-b-to-c", {"matchLabels": {"pod": "c"}},
                 ingress=[{"from": [{"namespaceSelector": {},
                                     "podSelector": {"matchLabels": {"pod": "b"}}}]}])],
         ["80/tcp"], lambda s, d, port: d.ns != "x" or (pod_is(d, "x/c") and s.name == "b"))
    # A label change on a pod and on a namespace updates the sets that hold it.
    case("x/a allows role=client pods (none yet)",
         [netpol("x", "allow-clients", {"matchLabels": {"pod": "a"}},
                 ingress=[{"from": [{"namespaceSelector": {},
                                     "podSelector": {"matchLabels": {"role": "client"}}}]}])],
         ["80/tcp"], lambda s, d, port: not pod_is(d, "x/a"), keep=True)
    kubectl("label", "pod", "-n", "z", "c", "role=client")
    case("z/c labelled role=client: now allowed into x/a", [], ["80/tcp"],
         lambda s, d, port: not pod_is(d, "x/a") or pod_is(s, "z/c"), keep=True)
    kubectl("label", "pod", "-n", "z", "c", "role-")
    case("label removed again: z/c denied", [], ["80/tcp"],
         lambda s, d, port: not pod_is(d, "x/a"), keep=True)
    policies_gone()
    case("x/a allows namespaces labelled team=blue (none yet)",
         [netpol("x", "allow-team-blue", {"matchLabels": {"pod": "a"}},
                 ingress=[{"from": [{"namespaceSelector": {
                     "matchLabels": {"team": "blue"}}}]}])],
         ["80/tcp"], lambda s, d, port: not pod_is(d, "x/a"), keep=True)
    kubectl("label", "namespace", "z", "team=blue")
    case("namespace z labelled team=blue: z allowed into x/a", [], ["80/tcp"],
         lambda s, d, port: not pod_is(d, "x/a") or s.ns == "z", keep=True)
    kubectl("label", "namespace", "z", "team-")
    policies_gone()
    bad_policy_is_reported_and_skipped()
    during_traffic()
    n_fail = len(FAILS)
    print("netpol cases: %d failed%s" % (n_fail, (": " + "; ".join(FAILS)) if FAILS else ""))
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
