"""kubectl-to-forwarding latency through the real apiserver (issue 10, `bench/cluster_latency.sh`).

In the lab cluster (controller with --min-sync-period-ms 0): N Services without selectors,
each with one EndpointSlice, are created through the apiserver; the last, lat/target:80,
points at pod-b:8080 (node2). Then, R times, its EndpointSlice is patched to the other demo
server (pod-b <-> pod-c) while a client in pod-a (node1) opens a new connection to the
ClusterIP every few ms and reads /whoami; the latency of a round is from just before the
PATCH is sent to the first answer from the new endpoint. Prints the distribution.

Runs in the fabric namespace (the apiserver's address); the client runs in pod-a's namespace.
Usage: cluster_latency.py APISERVER_HOST:PORT STATE_DIR POD_A_NETNS SERVICES ROUNDS
"""
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time

NS = "lat"
CLIENT = r'''
import socket, sys, threading, time
vip = sys.argv[1]

def attempt(want, done, t0, out):
    try:
        with socket.create_connection((vip, 80), timeout=1) as s:
            s.sendall(b"GET /whoami HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                c = s.recv(4096)
                if not c:
                    break
                data += c
        got = data.split(b"\r\n\r\n", 1)[-1].strip().decode()
    except OSError:
        return
    if got == want and not done.is_set():
        out.append(time.monotonic() - t0)
        done.set()

# A new connection every 2 ms, each on its own: one in flight when the endpoint changes
# (its SYN-ACK comes back from the old endpoint after its conntrack entry is gone, and
# waits for a SYN retransmission) does not hold up the ones after it.
for line in sys.stdin:
    want = line.strip()
    t0 = time.monotonic()
    done, out, tries = threading.Event(), [], 0
    while not done.wait(0.002) and time.monotonic() - t0 < 20:
        if threading.active_count() < 64:
            tries += 1
            threading.Thread(target=attempt, args=(want, done, t0, out), daemon=True).start()
    ok = done.is_set()
    print("%.2f %d %s" % ((out[0] if out else 20) * 1000, tries, "ok" if ok else "timeout"), flush=True)
'''


class Api:
    """A kept-alive HTTPS connection to the apiserver as admin (one per thread)."""

    def __init__(self, server, state):
        host, port = server.rsplit(":", 1)
        self.server = (host, int(port))
        pki = os.path.join(state, "pki")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.local = threading.local()

    def call(self, method, path, body=None, ctype="application/json"):
        # A kept connection the apiserver closed while idle is opened again, once.
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPSConnection(*self.server,
                                                                     context=self.ctx)
            try:
                conn.request(method, path, body=json.dumps(body) if body is not None else None,
                             headers={"Content-Type": ctype})
                r = conn.getresponse()
                data = r.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        if r.status >= 300 and not (method == "POST" and r.status == 409):
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300]))
        return json.loads(data) if data else None


def service(name):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                "targetPort": 8080}]}}


def slice_of(name, ip):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name + "-1", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def create_all(api, n, filler_ip, target_ip):
    """N-1 fillers and the target, 16 client threads."""
    api.call("POST", "/api/v1/namespaces",
             {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    names = ["svc-%05d" % i for i in range(n - 1)]
    todo = iter(names)
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                name = next(todo, None)
            if name is None:
                return
            try:
                api.call("POST", "/api/v1/namespaces/%s/services" % NS, service(name))
                api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS,
                         slice_of(name, filler_ip))
            except Exception as e:  # reported below; the run stops
                errors.append(str(e))
                return

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    api.call("POST", "/api/v1/namespaces/%s/services" % NS, service("target"))
    api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS,
             slice_of("target", target_ip))
    print("created %d Services and EndpointSlices in %.1f s" % (n, time.monotonic() - t0),
          flush=True)
    return api.call("GET", "/api/v1/namespaces/%s/services/target" % NS)["spec"]["clusterIP"]


def pod_ip(api, name):
    return api.call("GET", "/api/v1/namespaces/default/pods/%s" % name)["status"]["podIP"]


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    server, state, pod_a_ns = sys.argv[1:4]
    n, rounds = int(sys.argv[4]), int(sys.argv[5])
    api = Api(server, state)
    ips = {p: pod_ip(api, p) for p in ("pod-b", "pod-c")}
    vip = create_all(api, n, ips["pod-c"], ips["pod-b"])
    client = subprocess.Popen(["ip", "netns", "exec", pod_a_ns, sys.executable, "-c", CLIENT, vip],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    # Programmed: the target answers from pod-b (all N Services are in the daemon by then,
    # the target being created last).
    client.stdin.write("pod-b\n")
    client.stdin.flush()
    first = client.stdout.readline().split()
    print("target %s:80 answered from pod-b %s ms after its creation was sent" % (vip, first[0]),
          flush=True)
    if first[2] != "ok":
        sys.exit("the target Service never answered from pod-b")
    lat, patch_ms, now = [], [], "pod-b"
    path = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/target-1" % NS
    for r in range(rounds):
        now = "pod-c" if now == "pod-b" else "pod-b"
        client.stdin.write(now + "\n")
        client.stdin.flush()
        t0 = time.monotonic()
        api.call("PATCH", path, {"endpoints": [{"addresses": [ips[now]],
                                                "conditions": {"ready": True}}]},
                 ctype="application/merge-patch+json")
        patch_ms.append((time.monotonic() - t0) * 1000)
        ms, tries, verdict = client.stdout.readline().split()
        if verdict != "ok":
            sys.exit("round %d: the client never reached %s" % (r, now))
        lat.append(float(ms))
        time.sleep(0.2)
    client.stdin.close()
    client.wait(timeout=10)
    print("rounds %d, Services %d: kubectl change (PATCH sent) -> forwarding to the new "
          "endpoint: median %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; "
          "the PATCH itself: median %.1f ms" % (
              rounds, n, percentile(lat, 50), percentile(lat, 90), percentile(lat, 99),
              max(lat), percentile(patch_ms, 50)))


if __name__ == "__main__":
    main()
