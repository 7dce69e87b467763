#!/usr/bin/env python3
"""Helpers of bench/harness.sh (standard library, plus matplotlib for the chart).

  bench.py snap OUT --pids P1,P2 --sockets S1,S2 --ctl PODSWITCHCTL --rx-ns NS --tx-ns NS
      counters at one instant: /proc/stat, /proc/PID/stat of podswitchd, podswitchctl stats
      (json), the receiving pod's rx and the sending pod's tx packet counters
  bench.py rr-server PORT          TCP echo server (one connection at a time)
  bench.py rr-client HOST PORT SECONDS SIZE
      sequential request/response over one TCP connection (TCP_NODELAY); prints JSON
  bench.py svc-gen N BASE_TOML OUT_TOML OUT_IPTABLES [OUT_NFT]
      N ClusterIP Services (TCP port 80 -> 8080, one endpoint each; the LAST one, the
      target, has pod B 10.244.2.20): the node configuration BASE_TOML with N [[service]]
      tables appended (for `podswitchctl program replace`), and the same Services as
      kube-proxy's iptables mode writes them (an iptables-restore file of the nat table)
      and, with OUT_NFT, as its nftables mode does (an nft -f file); prints the target VIP
  bench.py control-gen N ENDPOINTS OUT_IPTABLES OUT_NFT [OUT_CHANGE_PREFIX]
      the control benchmark's Services (benches/benches/control.rs: N ClusterIPs, UDP,
      ENDPOINTS endpoints each) as kube-proxy's iptables and nftables modes write them
  bench.py netpol-gen N BASE_TOML POD POD_IP CLIENT_IP OUT_TOML OUT_IPSET OUT_IPT
      N NetworkPolicies of 10 rules selecting POD, in podswitch's form (node config for
      `program replace`) and Calico's iptables form (ipsets + filter chains)
  bench.py cc-server PORT SECONDS  TCP accept, send 1 byte, close (as fast as possible),
                                   for SECONDS
  bench.py cc-client HOST PORT SECONDS CONCURRENCY
      new TCP connections with CONCURRENCY in flight (non-blocking, epoll): connect,
      receive the byte, close with RST (SO_LINGER 0: no TIME_WAIT on either side);
      counts connections completed over SECONDS after a 1 s warm-up; prints JSON
  bench.py tap-relay TAP_A TAP_B SECONDS
      opens two tap devices with virtio-net headers and TSO offloads and relays every frame
      (header included, no processing) between them for SECONDS: the most a tap pod port
      could give (bench/tap_probe.sh); prints frames, bytes and its CPU seconds
  bench.py report RAW_DIR OUT_DIR MD_FILE
      turns the raw snapshots / tool outputs into results.json, a terminal table, a PNG
      chart and the markdown table
"""
import base64
import hashlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def ns_counter(ns, path):
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip())


def snap(argv):
    out = argv[0]
    opts = dict(zip(argv[1::2], argv[2::2]))
    d = {"t": time.monotonic()}
    with open("/proc/stat") as f:
        d["stat"] = [int(x) for x in f.readline().split()[1:]]
    d["pids"] = {}
    for pid in filter(None, opts.get("--pids", "").split(",")):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime, stime are fields 14 and 15 of stat (after "pid (comm)": index 11, 12)
        d["pids"][pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    d["psw"] = []
    for s in filter(None, opts.get("--sockets", "").split(",")):
        r = subprocess.run([opts["--ctl"], "--socket", s, "-o", "json", "stats"],
                           capture_output=True, text=True, timeout=10)
        v = json.loads(r.stdout)
        d["psw"].append(v.get("data", v))
    d["rx"] = ns_counter(opts["--rx-ns"], "/sys/class/net/eth0/statistics/rx_packets")
    d["tx"] = ns_counter(opts["--tx-ns"], "/sys/class/net/eth0/statistics/tx_packets")
    with open(out, "w") as f:
        json.dump(d, f)


def rr_server(argv):
    port = int(argv[0])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    ls.settimeout(60)
    c, _ = ls.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)


def rr_client(argv):
    host, port, seconds, size = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    s = None
    for _ in range(50):
        try:
            s = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    if s is None:
        sys.exit("rr-client: cannot connect")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size

    def one():
        t0 = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < size:
            b = s.recv(size - got)
            if not b:
                sys.exit("rr-client: connection closed")
            got += len(b)
        return time.perf_counter_ns() - t0

    for _ in range(200):  # warm-up (ARP, caches, the daemons' poll loops)
        one()
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(lat) < 200000:
        lat.append(one())
    s.close()
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] / 1000.0

    print(json.dumps({"samples": len(lat), "size": size, "p50_us": pct(50), "p90_us": pct(90),
                      "p99_us": pct(99), "max_us": lat[-1] / 1000.0,
                      "mean_us": sum(lat) / len(lat) / 1000.0}))


# ---- services: new connections/s -----------------------------------------------------

SVC_BASE = (10 << 24) | (96 << 16) | 1000   # 10.96.3.232: first ClusterIP
TARGET_EP = "10.244.2.20"


def ip4(n):
    return socket.inet_ntoa(struct.pack("!I", n))


def kube_hash(prefix, s):
    """kube-proxy's chain names: prefix + first 16 base32 chars of sha256."""
    return prefix + base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]


def kube_nft(svcs, proto="tcp", port_name="http", port=80, target=8080):
    """The same Services as kube-proxy's nftables mode writes them (nft -f file that
    replaces `table ip kube-proxy` atomically): a verdict map
    ip daddr . meta l4proto . th dport -> goto service chain, per-Service and per-endpoint
    chains with the masquerade mark and the DNAT; several endpoints are picked by
    numgen random. svcs: (name, vip, [endpoint ip, ...])."""
    el, chains = [], []
    for name, vip, eps in svcs:
        sp = f"bench/{name}:{port_name}"
        h = kube_hash("", sp)[:8]
        base = f"bench-{name}-{proto}" + (f"-{port_name}" if port_name else "")
        svc = f"service-{h}-{base}"
        seps = [f"endpoint-{kube_hash('', sp + f'{proto}:{ep}:{target}')[:8]}-{base}"
                f"__{ep.replace('.', '-')}-{target}" for ep in eps]
        el.append(f"{vip} . {proto} . {port} : goto {svc}")
        pick = (f"    goto {seps[0]}\n" if len(seps) == 1 else
                f"    numgen random mod {len(seps)} vmap {{ "
                + ", ".join(f"{k} : goto {sep}" for k, sep in enumerate(seps)) + " }\n")
        chains.append(f"  chain {svc} {{\n"
                      f"    ip daddr {vip} {proto} dport {port} ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n"
                      + pick + "  }\n")
        for ep, sep in zip(eps, seps):
            chains.append(f"  chain {sep} {{\n"
                          f"    ip saddr {ep} jump mark-for-masquerade\n"
                          f"    meta l4proto {proto} dnat to {ep}:{target}\n  }}\n")
    return ("add table ip kube-proxy\ndelete table ip kube-proxy\n"
            "table ip kube-proxy {\n"
            "  map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n"
            "    elements = {\n      " + ",\n      ".join(el) + "\n    }\n  }\n"
            "  chain nat-prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
            "    jump services\n  }\n"
            "  chain nat-output {\n    type nat hook output priority -100; policy accept;\n"
            "    jump services\n  }\n"
            "  chain nat-postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
            "    jump masquerading\n  }\n"
            "  chain mark-for-masquerade {\n    mark set mark or 0x4000\n  }\n"
            "  chain masquerading {\n    meta mark & 0x4000 == 0 return\n"
            "    mark set mark xor 0x4000\n    masquerade fully-random\n  }\n"
            "  chain services {\n    ip daddr . meta l4proto . th dport vmap @service-ips\n  }\n"
            + "".join(chains) + "}\n")


def kube_iptables(svcs, proto="tcp", port_name="http", port=80, target=8080):
    """The same Services as kube-proxy's iptables mode writes them: an iptables-restore
    file of the nat table (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* DNAT, several
    endpoints picked by -m statistic random, KUBE-MARK-MASQ / KUBE-POSTROUTING).
    svcs: (name, vip, [endpoint ip, ...])."""
    chains = [":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
              ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
              ":KUBE-POSTROUTING - [0:0]"]
    rules = ["-A PREROUTING -j KUBE-SERVICES", "-A OUTPUT -j KUBE-SERVICES",
             "-A POSTROUTING -j KUBE-POSTROUTING",
             "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
             "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
             "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
             "-A KUBE-POSTROUTING -j MASQUERADE --random-fully"]
    for name, vip, eps in svcs:
        sp = f"bench/{name}:{port_name}"
        svc = kube_hash("KUBE-SVC-", sp)
        chains.append(f":{svc} - [0:0]")
        rules += [f"-A KUBE-SERVICES -d {vip}/32 -p {proto} -m {proto} --dport {port} -j {svc}",
                  f"-A {svc} ! -s 10.244.0.0/16 -d {vip}/32 -p {proto} -m {proto} --dport {port} -j KUBE-MARK-MASQ"]
        for k, ep in enumerate(eps):
            sep = kube_hash("KUBE-SEP-", sp + f"{proto}:{ep}:{target}")
            chains.append(f":{sep} - [0:0]")
            left = len(eps) - k
            rules += ([f"-A {svc} -m statistic --mode random --probability {1 / left:.11f} -j {sep}"]
                      if left > 1 else [f"-A {svc} -j {sep}"])
            rules += [f"-A {sep} -s {ep}/32 -j KUBE-MARK-MASQ",
                      f"-A {sep} -p {proto} -m {proto} -j DNAT --to-destination {ep}:{target}"]
    return "*nat\n" + "\n".join(chains) + "\n" + "\n".join(rules) + "\nCOMMIT\n"


def control_services(n, e):
    """The Services of the control benchmark (benches/benches/control.rs: ClusterIP
    10.96.(i/250).(1+i%250), E endpoints each, the same addresses)."""
    svcs = []
    for i in range(n):
        eps = []
        for k in range(e):
            x = i * 7 + (10 if k == 0 else k) * 23
            eps.append(f"10.244.{1 + x % 2}.{2 + (x // 2) % 250}")
        svcs.append((f"svc-{i}", f"10.96.{i // 250}.{1 + i % 250}", eps))
    return svcs


CONTROL_PORTS = dict(proto="udp", port_name="", port=80, target=8080)


def control_gen(argv):
    """control-gen N ENDPOINTS OUT_IPTABLES OUT_NFT [OUT_CHANGE_PREFIX]: the Services of the
    control benchmark (UDP 80 -> 8080) as kube-proxy's iptables and nftables modes write
    them; with OUT_CHANGE_PREFIX also the one-endpoint change of the last Service both ways
    (PREFIX-{a,b}.{ipt,nft}: its first endpoint replaced, then put back) as each mode's
    partial sync writes it."""
    n, e, out_ipt, out_nft = int(argv[0]), int(argv[1]), argv[2], argv[3]
    svcs = control_services(n, e)
    with open(out_ipt, "w") as f:
        f.write(kube_iptables(svcs, **CONTROL_PORTS))
    with open(out_nft, "w") as f:
        f.write(kube_nft(svcs, **CONTROL_PORTS))
    if len(argv) > 4:
        name, vip, eps = svcs[-1]
        moved = ["10.244.3.250"] + eps[1:]
        for tag, old, new in (("a", eps, moved), ("b", moved, eps)):
            with open(f"{argv[4]}-{tag}.ipt", "w") as f:
                f.write(kube_iptables_change(name, vip, old, new, **CONTROL_PORTS))
            with open(f"{argv[4]}-{tag}.nft", "w") as f:
                f.write(kube_nft_change(name, vip, old, new, **CONTROL_PORTS))


def kube_iptables_change(name, vip, old, new, proto, port_name, port, target):
    """kube-proxy's partial iptables sync (MinimizeIPTablesRestore, the default) when one
    Service's endpoints go from OLD to NEW: for iptables-restore --noflush, the Service's
    chain declared again (which flushes it) with its rules and the chains of endpoints that
    came; unchanged endpoint chains are not written, and the chains of endpoints that left
    stay (kube-proxy's large-cluster mode, above 1000 endpoints, deletes stale chains only
    now and then; in the same restore, iptables-nft refuses the delete as still in use)."""
    full = kube_iptables([(name, vip, new)], proto, port_name, port, target)
    lines = full.split("\n")
    sp = f"bench/{name}:{port_name}"
    svc = kube_hash("KUBE-SVC-", sp)
    seps = {ep: kube_hash("KUBE-SEP-", sp + f"{proto}:{ep}:{target}") for ep in set(old) | set(new)}
    keep = {svc} | {seps[ep] for ep in new if ep not in old}
    out = ["*nat"]
    out += [c for c in lines if c.startswith(":") and c[1:].split(" ")[0] in keep]
    out += [r for r in lines if r.startswith("-A ") and r.split(" ")[1] in keep]
    return "\n".join(out) + "\nCOMMIT\n"


def kube_nft_change(name, vip, old, new, proto, port_name, port, target):
    """kube-proxy's nftables-mode transaction when one Service's endpoints go from OLD to
    NEW: new endpoint chains added, the Service's chain flushed and written again, the
    chains of endpoints that left deleted; one nft -f."""
    sp = f"bench/{name}:{port_name}"
    h = kube_hash("", sp)[:8]
    base = f"bench-{name}-{proto}" + (f"-{port_name}" if port_name else "")
    svc = f"service-{h}-{base}"
    sep = {ep: f"endpoint-{kube_hash('', sp + f'{proto}:{ep}:{target}')[:8]}-{base}"
           f"__{ep.replace('.', '-')}-{target}" for ep in set(old) | set(new)}
    t = "ip kube-proxy"
    out = []
    for ep in new:
        if ep not in old:
            out += [f"add chain {t} {sep[ep]}", f"flush chain {t} {sep[ep]}",
                    f"add rule {t} {sep[ep]} ip saddr {ep} jump mark-for-masquerade",
                    f"add rule {t} {sep[ep]} meta l4proto {proto} dnat to {ep}:{target}"]
    out += [f"flush chain {t} {svc}",
            f"add rule {t} {svc} ip daddr {vip} {proto} dport {port} ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            f"add rule {t} {svc} numgen random mod {len(new)} vmap {{ "
            + ", ".join(f"{k} : goto {sep[ep]}" for k, ep in enumerate(new)) + " }"]
    out += [f"delete chain {t} {sep[ep]}" for ep in old if ep not in new]
    return "\n".join(out) + "\n"


def svc_gen(argv):
    n, base, out_toml, out_ipt = int(argv[0]), argv[1], argv[2], argv[3]
    svcs = []
    for i in range(n):
        vip = ip4(SVC_BASE + i)
        # Endpoints spread over both pod CIDRs; the target (last) one is pod B.
        ep = TARGET_EP if i == n - 1 else f"10.244.{1 + i % 2}.{100 + i % 100}"
        svcs.append((f"svc-{i:05d}", vip, ep))
    with open(out_toml, "w") as f:
        f.write(open(base).read())
        f.write(f"\n# {n} benchmark Services (bench.py svc-gen)\n")
        for name, vip, ep in svcs:
            f.write(f'\n[[service]]\nname = "{name}"\nnamespace = "bench"\ncluster_ip = "{vip}"\n'
                    f'ports = [{{ name = "http", protocol = "tcp", port = 80, target_port = 8080 }}]\n'
                    f'endpoints = [{{ ip = "{ep}" }}]\n')
    # kube-proxy (iptables mode) for a ClusterIP with one endpoint, nat table only.
    one = [(name, vip, [ep]) for name, vip, ep in svcs]
    with open(out_ipt, "w") as f:
        f.write(kube_iptables(one))
    if len(argv) > 4:
        with open(argv[4], "w") as f:
            f.write(kube_nft(one))
    print(svcs[-1][1])


def netpol_gen(argv):
    """netpol-gen N BASE_TOML POD POD_IP CLIENT_IP OUT_TOML OUT_IPSET OUT_IPT: N policies of
    10 rules select pod POD (POD_IP); rule r of policy p allows one set of 10 cluster pods
    (10.245.x.y, none of them real) on one TCP port; the last rule of the last policy also
    allows CLIENT_IP on TCP 8080, so the client's connections are allowed after every rule
    has been considered (iptables) or found in one lookup (podswitch). Writes podswitch's
    form (BASE_TOML + [[address_set]] + [[pod_policy]]) and Calico's iptables form: one
    ipset per peer set (ipset restore) and filter-table chains (iptables-restore)."""
    n, base, pod, pod_ip, client = int(argv[0]), argv[1], argv[2], argv[3], argv[4]
    out_toml, out_ipset, out_ipt = argv[5], argv[6], argv[7]
    sets, rules = [], []
    for p in range(n):
        for r in range(10):
            k = p * 10 + r
            members = [ip4((10 << 24) | (245 << 16) | ((k * 10 + j) % 65000 + 1)) for j in range(10)]
            last = p == n - 1 and r == 9
            if last:
                members.append(client)
            sets.append((f"p{p}-r{r}", members))
            rules.append((p, r, f"p{p}-r{r}", 8080 if last else 1000 + k % 500))
    with open(out_toml, "w") as f:
        f.write(open(base).read())
        f.write(f"\n# {n} benchmark NetworkPolicies (bench.py netpol-gen)\n")
        for name, members in sets:
            f.write(f'\n[[address_set]]\nname = "bench/{name}"\n'
                    f'prefixes = [{", ".join(f"{chr(34)}{m}/32{chr(34)}" for m in members)}]\n')
        if n:
            f.write(f'\n[[pod_policy]]\npod = "{pod}"\n[pod_policy.ingress]\n'
                    f'policies = [{", ".join(f"{chr(34)}bench/p{p}{chr(34)}" for p in range(n))}]\n')
            for p, r, name, port in rules:
                f.write(f'[[pod_policy.ingress.rules]]\npolicy = "bench/p{p}"\nrule = {r}\n'
                        f'peers = ["bench/{name}"]\nports = [{{ protocol = "tcp", port = {port} }}]\n')
    with open(out_ipset, "w") as f:
        for name, members in sets:
            f.write(f"create cali40s:{name} hash:ip family inet\n")
            f.write("".join(f"add cali40s:{name} {m}\n" for m in members))
    # Calico's shape: conntrack first, then per workload a chain that clears the policy
    # mark, jumps to each policy's chain in order and returns as soon as one accepted,
    # else drops. Calico dispatches by the workload's interface; this path bridges through
    # cni0, so the dispatch matches the pod's address.
    chains = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
              ":cali-FORWARD - [0:0]", ":cali-tw-pod - [0:0]"]
    lines = ["-A FORWARD -j cali-FORWARD",
             "-A cali-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
             "-A cali-FORWARD -m conntrack --ctstate INVALID -j DROP"]
    if n:
        lines += [f"-A cali-FORWARD -d {pod_ip}/32 -j cali-tw-pod",
                  "-A cali-tw-pod -j MARK --set-xmark 0x0/0x10000"]
    for p in range(n):
        chains.append(f":cali-pi-p{p} - [0:0]")
        lines += [f"-A cali-tw-pod -m mark --mark 0x0/0x10000 -j cali-pi-p{p}",
                  "-A cali-tw-pod -m mark --mark 0x10000/0x10000 -j RETURN"]
    if n:
        lines.append("-A cali-tw-pod -j DROP")
    for p, r, name, port in rules:
        lines += [f"-A cali-pi-p{p} -p tcp -m set --match-set cali40s:{name} src "
                  f"-m multiport --dports {port} -j MARK --set-xmark 0x10000/0x10000",
                  f"-A cali-pi-p{p} -m mark --mark 0x10000/0x10000 -j RETURN"]
    with open(out_ipt, "w") as f:
        f.write("*filter\n" + "\n".join(chains) + "\n" + "\n".join(lines) + "\nCOMMIT\n")


def cc_server(argv):
    port, seconds = int(argv[0]), float(argv[1])
    end = time.monotonic() + seconds
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    ls.settimeout(0.5)
    while time.monotonic() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        try:
            c.send(b"x")
        except OSError:
            pass
        c.close()


def cc_client(argv):
    host, port, seconds, conc = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    ep = select.epoll()
    socks = {}
    linger = struct.pack("ii", 1, 0)
    stats = {"completed": 0, "errors": 0, "timeouts": 0}
    started = {}

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            stats["errors"] += 1
            s.close()
            return
        fd = s.fileno()
        socks[fd] = s
        started[fd] = time.monotonic()
        ep.register(fd, select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP)

    def done(fd, ok):
        s = socks.pop(fd)
        started.pop(fd, None)
        ep.unregister(fd)
        s.close()
        if ok:
            stats["completed"] += 1
        else:
            stats["errors"] += 1

    t0 = time.monotonic()
    t_start, t_end = t0 + 1.0, t0 + 1.0 + seconds
    counted_from = None
    next_check = t0 + 1.0
    while True:
        now = time.monotonic()
        if counted_from is None and now >= t_start:
            counted_from = dict(stats, t=now)
        if now >= t_end:
            break
        while len(socks) < conc:
            open_one()
            if stats["errors"] > 100000:
                sys.exit("cc-client: too many errors")
        for fd, ev in ep.poll(0.2):
            s = socks[fd]
            try:
                b = s.recv(16)
                done(fd, len(b) > 0)
            except BlockingIOError:
                pass
            except OSError:
                done(fd, False)
        if now >= next_check:  # connections stuck for 3 s (a lost SYN): drop and count
            next_check = now + 1.0
            for fd in [f for f, t in started.items() if now - t > 3.0]:
                stats["timeouts"] += 1
                done(fd, False)
    now = time.monotonic()
    c0 = counted_from or dict(stats, t=t0)
    dt = now - c0["t"]
    res = {k: stats[k] - c0[k] for k in ("completed", "errors", "timeouts")}
    res.update(seconds=dt, concurrency=conc, conns_per_s=res["completed"] / dt if dt > 0 else 0)
    print(json.dumps(res))


# ---- report -------------------------------------------------------------------------------

TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ = 0x400454CA, 0x400454D0, 0x400454D8
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04


def open_tap(name):
    """A tap device NAME in this namespace, its frames preceded by a 12-byte virtio-net
    header, the pod's checksum and TCP segmentation left to us (so it hands over 64 KB
    GSO frames)."""
    import fcntl
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", 12))
    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    return fd


def tap_relay(argv):
    import resource
    a, b, secs = argv[0], argv[1], float(argv[2])
    fa, fb = open_tap(a), open_tap(b)
    print("ready", flush=True)
    peer = {fa: fb, fb: fa}
    frames = nbytes = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        ready, _, _ = select.select([fa, fb], [], [], 0.2)
        for fd in ready:
            buf = os.read(fd, 65536 + 64)
            os.write(peer[fd], buf)
            frames += 1
            nbytes += len(buf)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"frames": frames, "bytes": nbytes, "cpu_s": round(ru.ru_utime + ru.ru_stime, 2)}),
          flush=True)


def load(path):
    with open(path) as f:
        return json.load(f)


def window(raw, path, wl):
    """Counter deltas over the steady-state window of one workload."""
    a = load(f"{raw}/{path}-{wl}-before.json")
    b = load(f"{raw}/{path}-{wl}-after.json")
    dt = b["t"] - a["t"]
    st = [y - x for x, y in zip(a["stat"], b["stat"])]
    # /proc/stat cpu: user nice system idle iowait irq softirq steal ...
    hz = CLK_TCK
    w = {
        "seconds": dt,
        "softirq_s": st[6] / hz,
        "busy_s": (st[0] + st[1] + st[2] + st[5] + st[6]) / hz,
        "rx_packets": b["rx"] - a["rx"],
        "tx_packets": b["tx"] - a["tx"],
        "podswitchd_cpu_s": sum(b["pids"][p] - a["pids"].get(p, 0) for p in b["pids"]),
        "nodes": [],
    }
    for na, nb in zip(a.get("psw", []), b.get("psw", [])):
        busy = sum(x["busy_cycles"] for x in nb["workers"]) - sum(x["busy_cycles"] for x in na["workers"])
        idle = sum(x["idle_cycles"] for x in nb["workers"]) - sum(x["idle_cycles"] for x in na["workers"])
        pk = sum(x["rx_packets"] for x in nb["workers"]) - sum(x["rx_packets"] for x in na["workers"])
        stages = {}
        sa = {s["stage"]: s for s in na["pipeline"]["stages"]}
        for s in nb["pipeline"]["stages"]:
            p0 = sa.get(s["stage"], {"packets": 0, "ns_per_packet": 0.0})
            dp = s["packets"] - p0["packets"]
            if dp > 0:
                dns = s["ns_per_packet"] * s["packets"] - p0["ns_per_packet"] * p0["packets"]
                stages[s["stage"]] = round(max(dns, 0.0) / dp, 1)
        drops = {}
        da = na["pipeline"].get("drops", {})
        for stage, reasons in nb["pipeline"].get("drops", {}).items():
            for r, n in reasons.items():
                dn = n - da.get(stage, {}).get(r, 0)
                if dn:
                    drops[r] = dn
        w["nodes"].append({
            "rx_packets": pk, "busy_cycles": busy,
            "tsc_hz": (busy + idle) / dt if dt > 0 else 0,
            "busy_cycles_per_packet": busy / pk if pk else None,
            "busy_fraction": busy / (busy + idle) if busy + idle else 0,
            "stage_ns_per_packet": stages, "drops": drops,
        })
    return w


def ovs_pmd_stats(path):
    """packets received / processing (busy) cycles of the PMD threads in pmd-stats-show."""
    pk = cyc = 0
    pmd = False
    with open(path) as f:
        for line in f:
            if line.startswith("pmd thread"):
                pmd = True
            elif line and not line[0].isspace():
                pmd = False  # "main thread:" and anything else
            if not pmd:
                continue
            t = line.strip()
            if t.startswith("packets received:"):
                pk += int(t.split(":")[1])
            elif t.startswith("processing cycles:"):
                cyc += int(t.split(":")[1].split()[0])
    return pk, cyc


def p2p_report(raw):
    """Port-to-port 64-byte forwarding: podswitchd vs Open vSwitch (afxdp ports)."""
    out = {}
    for path in ("podswitch", "ovs"):
        if not os.path.exists(f"{raw}/{path}-p2p64-after.json"):
            continue
        w = window(raw, path, "p2p64")
        mp = w["rx_packets"] / 1e6
        r = {"rx_pps": w["rx_packets"] / w["seconds"], "offered_pps": w["tx_packets"] / w["seconds"],
             "forwarder_cpu_s_per_mpkt": w["podswitchd_cpu_s"] / mp if mp else None,
             "forwarder_cpu_share": w["podswitchd_cpu_s"] / w["seconds"], "window": w}
        if path == "podswitch":
            n = w["nodes"][0] if w["nodes"] else {}
            r["busy_cycles_per_packet"] = n.get("busy_cycles_per_packet")
            r["busy_fraction"] = n.get("busy_fraction")
        else:
            pk, cyc = ovs_pmd_stats(f"{raw}/ovs-p2p64-pmd-stats.txt")
            r.update(pmd_packets=pk, pmd_busy_cycles=cyc,
                     busy_cycles_per_packet=cyc / pk if pk else None)
            if os.path.exists(f"{raw}/ovs-meta.json"):
                r.update(load(f"{raw}/ovs-meta.json"))
        out[path] = r
    if not out:
        return {}
    P, O = out.get("podswitch", {}), out.get("ovs", {})
    rows = [("64 B forwarded (kpps)", "rx_pps", 1e-3, True),
            ("64 B offered by trafgen (kpps)", "offered_pps", 1e-3, None),
            ("busy cycles/pkt (forwarder)", "busy_cycles_per_packet", 1, False),
            ("forwarder CPU s / Mpkt (process)", "forwarder_cpu_s_per_mpkt", 1, False),
            ("forwarder process CPU share of the window (%)", "forwarder_cpu_share", 100, None)]
    table = []
    for m, k, scale, h in rows:
        p = P.get(k) * scale if P.get(k) is not None else None
        o = O.get(k) * scale if O.get(k) is not None else None
        table.append({"metric": m, "podswitch": p, "ovs": o,
                      "ratio": p / o if p is not None and o else None, "higher_is_better": h})
    ovs_v = O.get("version", "Open vSwitch")
    setup = (f"podswitchd --cores 0 (node1's config, L2 bridging to pod C's MAC), busy cycles from "
             f"podswitchctl stats; {ovs_v}, userspace datapath (datapath_type=netdev), "
             f"type=afxdp ports xdp-mode={O.get('xdp_mode', '?')}, pmd-cpu-mask=0x1, in_port->output "
             f"flows, busy cycles = pmd-stats-show processing cycles / packets received; trafgen "
             f"in pod A on core 1; ratio = podswitch / OVS"
             + ("" if O else "; OVS skipped (see the harness output)")
             + ". Both forwarders poll without sleeping under load, so a CPU share well under "
             "100% means other work ran on core 0 during the window: busy cycles are TSC cycles "
             "and then include the time taken away, the CPU s / Mpkt figure does not")
    return {"paths": out, "table": table, "setup": setup}


def p2p_table(p2p, fmt):
    if not p2p:
        return []
    head = f"{'port-to-port (one node)':<42} {'podswitch':>11} {'OVS afxdp':>11} {'ratio':>7}"
    lines = [head, "-" * len(head)]
    for r in p2p["table"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"{r['metric']:<42} {fmt(r['podswitch']):>11} {fmt(r['ovs']):>11} {ratio:>7}")
    return lines


def report(argv):
    raw, outdir, md = argv[0], argv[1], argv[2]
    meta = load(f"{raw}/meta.json")
    res = {"meta": meta, "paths": {}}
    def present(path, wl):
        return os.path.exists(f"{raw}/{path}-{wl}-after.json")

    def dataplane_s(path, w):
        """Dataplane CPU s in a window: podswitchd's own (both podswitch paths), else softirq."""
        return w["podswitchd_cpu_s"] if path.startswith("podswitch") else w["softirq_s"]

    for path in ("podswitch", "podswitch-tap", "kernel", "kernel-nft"):
        r = {}
        for wl in ("tcp1", "tcp4", "tcplocal"):
            if not present(path, wl):
                continue
            e = load(f"{raw}/{path}-{wl}.json")["end"]
            w = window(raw, path, wl)
            gbit_s = e["sum_received"]["bits_per_second"] / 1e9
            # CPU per GB received over the window, at iperf3's rate (the window is the
            # steady state inside iperf3's run).
            gb = gbit_s * w["seconds"] / 8
            r[wl] = {
                "gbit_s": gbit_s,
                "retransmits": e["sum_sent"].get("retransmits"),
                "machine_busy_s_per_gb": w["busy_s"] / gb if gb else None,
                "dataplane_cpu_s_per_gb": dataplane_s(path, w) / gb if gb else None,
                "window": w,
            }
        if present(path, "udp64"):
            w = window(raw, path, "udp64")
            mp = w["rx_packets"] / 1e6
            r["udp64"] = {
                "rx_pps": w["rx_packets"] / w["seconds"],
                "offered_pps": w["tx_packets"] / w["seconds"],
                "dataplane_cpu_s": dataplane_s(path, w),
                "window": w,
            }
            u = r["udp64"]
            u["dataplane_cpu_s_per_mpkt"] = u["dataplane_cpu_s"] / mp if mp else None
            u["softirq_cpu_s_per_mpkt"] = w["softirq_s"] / mp if mp else None
            u["machine_busy_s_per_mpkt"] = w["busy_s"] / mp if mp else None
        for wl in ("rr", "rrlocal"):
            if present(path, wl):
                r[wl] = load(f"{raw}/{path}-{wl}.json")
                r[wl]["window"] = window(raw, path, wl)
                # CPU used beside the latency: machine-wide and podswitchd's, per second.
                w = r[wl]["window"]
                r[wl]["machine_busy_cores"] = w["busy_s"] / w["seconds"] if w["seconds"] else None
                r[wl]["dataplane_cores"] = dataplane_s(path, w) / w["seconds"] if w["seconds"] else None
        svc = {}
        for n in meta.get("service_counts", []):
            rounds = []
            for k in range(1, meta.get("service_rounds", 1) + 1):
                if not present(path, f"svc{n}-{k}"):
                    continue
                c = load(f"{raw}/{path}-svc{n}-{k}.json")
                c.update(load(f"{raw}/{path}-svc{n}-{k}-program.json"))
                c["window"] = window(raw, path, f"svc{n}-{k}")
                rounds.append(c)
            if not rounds:
                continue
            med = sorted(rounds, key=lambda c: c["conns_per_s"])[(len(rounds) - 1) // 2]
            svc[str(n)] = {"conns_per_s": med["conns_per_s"],
                           "conns_per_s_rounds": [c["conns_per_s"] for c in rounds],
                           "program_ms": sorted(c["program_ms"] for c in rounds)[(len(rounds) - 1) // 2],
                           "podswitchd_cpu_s_per_kconn": (med["window"]["podswitchd_cpu_s"] /
                                                          (med["conns_per_s"] * med["window"]["seconds"] / 1e3)
                                                          if med["conns_per_s"] else None),
                           "rounds": rounds}
        if svc:
            r["services"] = svc
        np = {}
        for n in meta.get("policy_counts", []):
            rounds = []
            for k in range(1, meta.get("service_rounds", 1) + 1):
                if not present(path, f"np{n}-{k}"):
                    continue
                c = load(f"{raw}/{path}-np{n}-{k}.json")
                c.update(load(f"{raw}/{path}-np{n}-{k}-program.json"))
                rounds.append(c)
            if rounds:
                med = sorted(rounds, key=lambda c: c["conns_per_s"])[(len(rounds) - 1) // 2]
                np[str(n)] = {"conns_per_s": med["conns_per_s"],
                              "conns_per_s_rounds": [c["conns_per_s"] for c in rounds],
                              "program_ms": sorted(c["program_ms"] for c in rounds)[(len(rounds) - 1) // 2],
                              "rounds": rounds}
        if np:
            r["netpol"] = np
        res["paths"][path] = r

    def cyc(path, wl, node):
        if path != "podswitch" or wl not in res["paths"][path]:
            return None
        ns = res["paths"][path][wl]["window"]["nodes"]
        return ns[node]["busy_cycles_per_packet"] if len(ns) > node else None

    res["p2p"] = p2p_report(raw)
    P, K = res["paths"]["podswitch"], res["paths"]["kernel"]
    both = [wl for wl in ("tcp1", "tcp4", "tcplocal", "udp64", "rr", "rrlocal", "services") if wl in P and wl in K]
    rows = []
    for wl, name in (("tcp1", "TCP 1 stream"), ("tcp4", "TCP 4 streams"), ("tcplocal", "TCP 1 stream, same node")):
        if wl not in both:
            continue
        rows += [
            (f"{name} (Gbit/s)", P[wl]["gbit_s"], K[wl]["gbit_s"], True),
            (f"{name}: machine busy CPU s / GB", P[wl]["machine_busy_s_per_gb"],
             K[wl]["machine_busy_s_per_gb"], False),
            (f"{name}: dataplane CPU s / GB (*)", P[wl]["dataplane_cpu_s_per_gb"],
             K[wl]["dataplane_cpu_s_per_gb"], False),
        ]
    # The TCP workloads again with tap pods (harness BENCH_PSW_TAP_PASS), beside the same kernel run.
    T = res["paths"].get("podswitch-tap", {})
    for wl, name in (("tcp1", "TCP 1 stream"), ("tcp4", "TCP 4 streams"), ("tcplocal", "TCP 1 stream, same node")):
        if wl not in T or wl not in K:
            continue
        rows += [
            (f"{name}, tap pods (Gbit/s)", T[wl]["gbit_s"], K[wl]["gbit_s"], True),
            (f"{name}, tap pods: busy CPU s / GB", T[wl]["machine_busy_s_per_gb"],
             K[wl]["machine_busy_s_per_gb"], False),
        ]
    if "udp64" in both:
        rows += [
            ("UDP 64 B received (kpps)", P["udp64"]["rx_pps"] / 1e3, K["udp64"]["rx_pps"] / 1e3, True),
            ("UDP 64 B offered (kpps)", P["udp64"]["offered_pps"] / 1e3, K["udp64"]["offered_pps"] / 1e3, None),
            ("dataplane CPU s / Mpkt (*)", P["udp64"]["dataplane_cpu_s_per_mpkt"], K["udp64"]["dataplane_cpu_s_per_mpkt"], False),
            ("softirq CPU s / Mpkt (all cores)", P["udp64"]["softirq_cpu_s_per_mpkt"], K["udp64"]["softirq_cpu_s_per_mpkt"], False),
            ("machine busy CPU s / Mpkt", P["udp64"]["machine_busy_s_per_mpkt"], K["udp64"]["machine_busy_s_per_mpkt"], False),
        ]
    for wl, name in (("rr", "RR"), ("rrlocal", "RR same node")):
        if wl not in both:
            continue
        rows += [
            (f"{name} latency p50 (us)", P[wl]["p50_us"], K[wl]["p50_us"], False),
            (f"{name} latency p99 (us)", P[wl]["p99_us"], K[wl]["p99_us"], False),
            (f"{name} transactions/s (1 connection)", 1e6 / P[wl]["mean_us"], 1e6 / K[wl]["mean_us"], True),
            (f"{name}: machine busy cores", P[wl]["machine_busy_cores"], K[wl]["machine_busy_cores"], False),
            (f"{name}: dataplane cores (*)", P[wl]["dataplane_cores"], K[wl]["dataplane_cores"], False),
        ]
    if "services" in both:
        counts = [c for c in map(str, meta.get("service_counts", []))
                  if c in P["services"] and c in K["services"]]

        def label(c):
            c = int(c)
            return f"{c // 1000}k" if c >= 1000 and c % 1000 == 0 else str(c)

        for c in counts:
            rows.append((f"new conns/s, {label(c)} Services", P["services"][c]["conns_per_s"],
                         K["services"][c]["conns_per_s"], True))
        if len(counts) >= 2:
            lo, hi = counts[0], counts[-1]
            rows.append((f"new conns/s ratio {label(hi)}/{label(lo)} Services",
                         P["services"][hi]["conns_per_s"] / P["services"][lo]["conns_per_s"],
                         K["services"][hi]["conns_per_s"] / K["services"][lo]["conns_per_s"], "no-ratio"))
        for c in counts:
            rows.append((f"program {label(c)} Services, 2 nodes (ms)", P["services"][c]["program_ms"],
                         K["services"][c]["program_ms"], False))
    if "netpol" in P and "netpol" in K:
        pcounts = [c for c in map(str, meta.get("policy_counts", []))
                   if c in P["netpol"] and c in K["netpol"]]
        for c in pcounts:
            rows.append((f"new conns/s, pod under {int(c):,} policies (Calico)",
                         P["netpol"][c]["conns_per_s"], K["netpol"][c]["conns_per_s"], True))
        if len(pcounts) >= 2:
            lo, hi = pcounts[0], pcounts[-1]
            rows.append((f"new conns/s ratio {int(hi):,}/{int(lo):,} policies",
                         P["netpol"][hi]["conns_per_s"] / P["netpol"][lo]["conns_per_s"],
                         K["netpol"][hi]["conns_per_s"] / K["netpol"][lo]["conns_per_s"], "no-ratio"))
        for c in pcounts:
            rows.append((f"program {int(c):,} policies, node2 (ms)", P["netpol"][c]["program_ms"],
                         K["netpol"][c]["program_ms"], False))
    N = res["paths"].get("kernel-nft", {})
    if "services" in P and "services" in N:
        ncounts = [c for c in map(str, meta.get("service_counts", []))
                   if c in P["services"] and c in N["services"]]

        def nlabel(c):
            c = int(c)
            return f"{c // 1000}k" if c >= 1000 and c % 1000 == 0 else str(c)

        for c in ncounts:
            rows.append((f"new conns/s, {nlabel(c)} Svc (kernel: nftables)",
                         P["services"][c]["conns_per_s"], N["services"][c]["conns_per_s"], True))
        if len(ncounts) >= 2:
            lo, hi = ncounts[0], ncounts[-1]
            rows.append((f"new conns/s ratio {nlabel(hi)}/{nlabel(lo)} (nftables)",
                         P["services"][hi]["conns_per_s"] / P["services"][lo]["conns_per_s"],
                         N["services"][hi]["conns_per_s"] / N["services"][lo]["conns_per_s"], "no-ratio"))
        for c in ncounts:
            rows.append((f"program {nlabel(c)} Svc, 2 nodes, nftables (ms)",
                         P["services"][c]["program_ms"], N["services"][c]["program_ms"], False))
    for wl, name in (("tcp1", "TCP 1"), ("tcp4", "TCP 4"), ("tcplocal", "TCP same node"), ("udp64", "UDP 64 B"),
                     ("rr", "RR")):
        if wl not in P:
            continue
        for node in (0, 1):
            rows.append((f"busy cycles/pkt node{node + 1} {name}", cyc("podswitch", wl, node), None, None))
    res["table"] = [{"metric": m, "podswitch": p, "kernel": k,
                     "ratio": (p / k if p is not None and k and h != "no-ratio" else None),
                     "higher_is_better": None if h == "no-ratio" else h}
                    for m, p, k, h in rows]

    def fmt(v):
        if v is None:
            return "-"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"

    head = f"{'metric':<52} {'podswitch':>11} {'kernel':>11} {'ratio':>7}"
    lines = [head, "-" * len(head)]
    for r in res["table"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"{r['metric']:<52} {fmt(r['podswitch']):>11} {fmt(r['kernel']):>11} {ratio:>7}")
    if len(lines) > 2:
        print("\n".join(lines))
    p2p_lines = p2p_table(res["p2p"], fmt)
    if p2p_lines:
        print("\n" + "\n".join(p2p_lines))

    # Per-stage ns of the 64-byte workload (where podswitch's time goes).
    stage_lines = []
    for i, n in enumerate(P["udp64"]["window"]["nodes"] if "udp64" in P else []):
        st = ", ".join(f"{k} {v}" for k, v in n["stage_ns_per_packet"].items())
        stage_lines.append(f"node{i + 1}: {st}")
        if n["drops"]:
            stage_lines.append(f"node{i + 1} drops: " + ", ".join(f"{k} {v}" for k, v in n["drops"].items()))
    svc_lines = []
    for path in ("podswitch", "kernel", "kernel-nft"):
        for c, v in res["paths"][path].get("services", {}).items():
            svc_lines.append(f"{path}, {int(c):,} Services: " +
                             " / ".join(f"{x:,.0f}" for x in v["conns_per_s_rounds"]))
        for c, v in res["paths"][path].get("netpol", {}).items():
            svc_lines.append(f"{path}, {int(c):,} policies: " +
                             " / ".join(f"{x:,.0f}" for x in v["conns_per_s_rounds"]))
    if svc_lines:
        print("\nnew conns/s of each round (the table shows the median):")
        print("\n".join("  " + s for s in svc_lines))
    if stage_lines:
        print("\npodswitch per-stage ns/packet (UDP 64 B):")
        print("\n".join("  " + s for s in stage_lines))

    os.makedirs(outdir, exist_ok=True)
    with open(f"{outdir}/results.json", "w") as f:
        json.dump(res, f, indent=1)
    chart(res, f"{outdir}/results.png")

    m = meta
    with open(md, "w") as f:
        f.write("# Benchmark harness results\n\n")
        f.write("Produced by `make bench` (`bench/harness.sh`); the lead merges this file into "
                "BENCHMARKS.md.\n\n")
        f.write(f"- Run: {m['date']}, podswitch {m['commit']}\n")
        f.write(f"- Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, "
                f"{m['virt']}\n")
        f.write(f"- Placement: {m['placement']}\n")
        f.write(f"- Paths: {m['paths']}\n")
        f.write(f"- Workloads: {m['workloads']}\n")
        if m.get("services"):
            f.write(f"- Services: {m['services']}\n")
        if m.get("netpol"):
            f.write(f"- NetworkPolicy: {m['netpol']}\n")
        f.write("\n")
        f.write("| metric | podswitch | kernel (flannel vxlan) | ratio |\n|---|---:|---:|---:|\n")
        for r in res["table"]:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            f.write(f"| {r['metric']} | {fmt(r['podswitch'])} | {fmt(r['kernel'])} | {ratio} |\n")
        if res["p2p"]:
            f.write(f"\nPort-to-port forwarding, 64-byte frames, one node (pod A -> forwarder -> pod C), "
                    f"same run, same veths: {res['p2p']['setup']}\n\n")
            f.write("| metric | podswitch | Open vSwitch afxdp | ratio |\n|---|---:|---:|---:|\n")
            for r in res["p2p"]["table"]:
                ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
                f.write(f"| {r['metric']} | {fmt(r['podswitch'])} | {fmt(r['ovs'])} | {ratio} |\n")
        f.write("\n(*) dataplane CPU: podswitch = utime+stime of both podswitchd processes "
                "(/proc/PID/stat, includes softirq work done in their context, e.g. AF_XDP "
                "copy-mode transmit); kernel = softirq time of all cores (/proc/stat). This "
                "kernel has no IRQ time accounting, so softirq time is tick-sampled.\n\n")
        if svc_lines:
            f.write("New connections/s of each round (the table shows the median):\n\n")
            for s in svc_lines:
                f.write(f"- {s}\n")
            f.write("\n")
        if stage_lines:
            f.write("podswitch per-stage ns/packet during the 64-byte run:\n\n")
        for s in stage_lines:
            f.write(f"- {s}\n")
        f.write("\n" + m.get("notes", "") + "\n")
    print(f"\nresults: {outdir}/results.json, {outdir}/results.png, {md}")


def chart(res, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no chart")
        return
    P, K = res["paths"]["podswitch"], res["paths"]["kernel"]
    N = res["paths"].get("kernel-nft", {})
    psw, kern = "podswitch", "kernel flannel"
    # (title, x labels, [(series name, values)])
    panels = []
    if "tcp1" in P and "tcp4" in P and "tcp1" in K and "tcp4" in K:
        panels.append(("TCP throughput (Gbit/s)", ["1 stream", "4 streams"],
                       [(psw, [P["tcp1"]["gbit_s"], P["tcp4"]["gbit_s"]]),
                        (kern, [K["tcp1"]["gbit_s"], K["tcp4"]["gbit_s"]])]))
    if "udp64" in P and "udp64" in K:
        panels += [
            ("UDP 64 B (kpps received)", ["pps"],
             [(psw, [P["udp64"]["rx_pps"] / 1e3]), (kern, [K["udp64"]["rx_pps"] / 1e3])]),
            ("CPU s per million packets", ["dataplane", "machine"],
             [(psw, [P["udp64"]["dataplane_cpu_s_per_mpkt"] or 0, P["udp64"]["machine_busy_s_per_mpkt"] or 0]),
              (kern, [K["udp64"]["dataplane_cpu_s_per_mpkt"] or 0, K["udp64"]["machine_busy_s_per_mpkt"] or 0])]),
        ]
    if "rr" in P and "rr" in K:
        panels.append(("Request/response latency (us)", ["p50", "p99"],
                       [(psw, [P["rr"]["p50_us"], P["rr"]["p99_us"]]),
                        (kern, [K["rr"]["p50_us"], K["rr"]["p99_us"]])]))
    if "services" in P and "services" in K:
        counts = [c for c in P["services"] if c in K["services"]]
        series = [(psw, [P["services"][c]["conns_per_s"] / 1e3 for c in counts]),
                  ("kube-proxy iptables", [K["services"][c]["conns_per_s"] / 1e3 for c in counts])]
        if all(c in N.get("services", {}) for c in counts):
            series.append(("kube-proxy nftables", [N["services"][c]["conns_per_s"] / 1e3 for c in counts]))
        panels.append(("New TCP conns/s through a ClusterIP (k)", [f"{int(c):,} svc" for c in counts], series))
    p2p = res.get("p2p") or {}
    pp, po = p2p.get("paths", {}).get("podswitch", {}), p2p.get("paths", {}).get("ovs", {})
    if pp.get("busy_cycles_per_packet") and po.get("busy_cycles_per_packet"):
        panels.append(("Port-to-port 64 B: busy cycles/pkt", ["cycles/pkt"],
                       [(psw, [pp["busy_cycles_per_packet"]]),
                        ("Open vSwitch afxdp", [po["busy_cycles_per_packet"]])]))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9, 4 * len(panels)), 4.6), squeeze=False)
    axes = axes[0]
    colors = {psw: "tab:blue", kern: "tab:orange", "kube-proxy iptables": "tab:orange",
              "kube-proxy nftables": "tab:green", "Open vSwitch afxdp": "tab:gray"}
    for ax, (title, labels, series) in zip(axes, panels):
        w = 0.8 / len(series)
        for si, (name, vals) in enumerate(series):
            off = (si - (len(series) - 1) / 2) * w
            bars = ax.bar([i + off for i in range(len(labels))], vals, w, label=name, color=colors.get(name))
            for bar in bars:
                v = bar.get_height()
                ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.3g}",
                            (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(range(len(labels))))
        ax.set_xticklabels(labels)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.12)
        if len(series) > 2 or series[-1][0] != kern:
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(series))
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    m = res["meta"]
    fig.suptitle(f"podswitch vs kernel flannel VXLAN path - {m['cpu']}, {m['cores']} cores, "
                 f"kernel {m['kernel']} ({m['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def chart_cmd(argv):
    """chart RESULTS.json OUT.png: redraw the chart of an earlier run."""
    chart(load(argv[0]), argv[1])


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"snap": snap, "rr-server": rr_server, "rr-client": rr_client, "report": report,
     "svc-gen": svc_gen, "control-gen": control_gen, "netpol-gen": netpol_gen, "cc-server": cc_server, "cc-client": cc_client, "chart": chart_cmd, "tap-relay": tap_relay}[cmd](args)
