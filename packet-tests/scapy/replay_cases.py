#!/usr/bin/python3
"""Cases for check_replay.sh: frames built with scapy, outputs decoded with tshark.

  replay_cases.py list                   case names, one per line
  replay_cases.py gen CASE DIR           writes DIR/in.pcap, prints "CONFIG IN_PORT"
  replay_cases.py check CASE DIR         decodes DIR/out/*.pcap with tshark and checks them;
                                         exits non-zero with a reason on the first failure

Frames never come from podswitch's own code, and outputs are judged by Wireshark's
dissectors with checksum validation on.
"""

import json
import os
import subprocess
import sys

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, Raw, wrpcap  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

NODE1, NODE2 = "192.168.1.10", "192.168.1.11"
UPLINK_MAC, NODE2_MAC = "02:00:c0:a8:01:10", "02:00:c0:a8:01:11"
GW, GW_MAC = "10.244.1.1", "0a:58:0a:f4:01:01"
VTEP1, VTEP2 = "0e:00:00:00:00:01", "0e:00:00:00:00:02"
POD_A, POD_A_MAC = "10.244.1.10", "0a:58:0a:f4:01:0a"
POD_C, POD_C_MAC = "10.244.1.11", "0a:58:0a:f4:01:0b"
POD_B = "10.244.2.20"

TSHARK_OPTS = [
    "-o", "ip.check_checksum:TRUE",
    "-o", "udp.check_checksum:TRUE",
    "-o", "tcp.check_checksum:TRUE",
    "-d", "udp.port==8472,vxlan",
]


def payload(n):
    return Raw(bytes(k % 251 for k in range(n)))


def from_a(ip, l4):
    return Ether(src=POD_A_MAC, dst=GW_MAC) / ip / l4


def vxlan_from_node2(inner):
    return (Ether(src=NODE2_MAC, dst=UPLINK_MAC) / IP(src=NODE2, dst=NODE1, flags="DF")
            / UDP(sport=50000, dport=8472) / VXLAN(flags=0x08, vni=1) / inner)


# Each case: config, input port, frames, and a check function over the decoded outputs.
def case_same_node():
    frames = [
        Ether(src=POD_A_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=POD_A_MAC, psrc=POD_A, pdst=GW),
        from_a(IP(src=POD_A, dst=GW, ttl=64), ICMP(type=8, id=0x42, seq=1) / payload(32)),
        from_a(IP(src=POD_A, dst=POD_C, ttl=64, flags="DF"), UDP(sport=40000, dport=9000) / payload(100)),
        Ether(src=POD_A_MAC, dst=POD_C_MAC) / IP(src=POD_A, dst=POD_C) / TCP(sport=1234, dport=80, flags="S"),
    ]

    def check(out):
        expect_ports(out, {"veth-pod-a": 2, "veth-pod-c": 2})
        arp, echo = fields(out, "veth-pod-a", ["arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4",
                                               "arp.dst.hw_mac", "icmp.type", "ip.src", "ip.dst", "eth.src"])
        expect(arp[:4], ["2", GW_MAC, GW, POD_A_MAC], "ARP reply for the gateway")
        expect(echo[4:], ["0", GW, POD_A, GW_MAC], "echo reply from the gateway")
        routed, bridged = fields(out, "veth-pod-c", ["eth.src", "eth.dst", "ip.ttl", "ip.src", "ip.dst", "udp.length"])
        expect(routed, [GW_MAC, POD_C_MAC, "63", POD_A, POD_C, "108"], "routed to pod C")
        expect(bridged[:3], [POD_A_MAC, POD_C_MAC, "64"], "bridged to pod C")
    return "node1-vxlan", "veth-pod-a", frames, check


def case_vxlan_encap():
    frames = [from_a(IP(src=POD_A, dst=POD_B, ttl=64, flags="DF"), UDP(sport=40000, dport=9000) / payload(200))]

    def check(out):
        expect_ports(out, {"eth0": 1})
        (r,) = fields(out, "eth0", ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.ttl", "ip.flags.df",
                                    "udp.dstport", "vxlan.vni", "vxlan.flags", "ip.proto"])
        expect(r[:2], [UPLINK_MAC + "," + VTEP1, NODE2_MAC + "," + VTEP2], "outer and inner MACs")
        expect(r[2:6], [NODE1 + "," + POD_A, NODE2 + "," + POD_B, "64,63", "1,1"], "outer and inner IPv4")
        expect(r[6].split(",")[0], "8472", "VXLAN UDP port")
        expect(r[7], "1", "VNI")
        expect(r[8], "0x0800", "VXLAN flags: I")
        expect(r[9], "17,17", "protocols")
        sport = int(fields(out, "eth0", ["udp.srcport"])[0][0].split(",")[0])
        if not 32768 <= sport < 61000:
            fail(f"UDP source port {sport} outside 32768..61000")
    return "node1-vxlan", "veth-pod-a", frames, check


def case_vxlan_decap():
    inner = Ether(src=VTEP2, dst=VTEP1) / IP(src=POD_B, dst=POD_A, ttl=63) / UDP(sport=9000, dport=40000) / payload(80)
    frames = [vxlan_from_node2(inner)]

    def check(out):
        expect_ports(out, {"veth-pod-a": 1})
        (r,) = fields(out, "veth-pod-a", ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.ttl", "udp.dstport"])
        expect(r, [GW_MAC, POD_A_MAC, POD_B, POD_A, "62", "40000"], "decapsulated to pod A")
    return "node1-vxlan", "eth0", frames, check


def case_ipip():
    frames = [from_a(IP(src=POD_A, dst=POD_B, ttl=64, flags="DF"), UDP(sport=40000, dport=9000) / payload(64))]

    def check(out):
        expect_ports(out, {"eth0": 1})
        (r,) = fields(out, "eth0", ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.flags.df"])
        expect(r, [UPLINK_MAC, NODE2_MAC, NODE1 + "," + POD_A, NODE2 + "," + POD_B, "4,17", "64,63", "1,1"],
               "IP-in-IP to node2")
    return "node1-ipip", "veth-pod-a", frames, check


def case_ipip_decap():
    frames = [Ether(src=NODE2_MAC, dst=UPLINK_MAC) / IP(src=NODE2, dst=NODE1, proto=4)
              / IP(src=POD_B, dst=POD_A, ttl=63) / ICMP(type=8) / payload(16)]

    def check(out):
        expect_ports(out, {"veth-pod-a": 1})
        (r,) = fields(out, "veth-pod-a", ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.ttl", "icmp.type"])
        expect(r, [GW_MAC, POD_A_MAC, POD_B, POD_A, "62", "8"], "IP-in-IP decapsulated to pod A")
    return "node1-ipip", "eth0", frames, check


def case_host_gw():
    frames = [from_a(IP(src=POD_A, dst=POD_B, ttl=64), TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460)]))]

    def check(out):
        expect_ports(out, {"eth0": 1})
        (r,) = fields(out, "eth0", ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.ttl", "ip.proto",
                                    "tcp.options.mss_val", "vxlan.vni"])
        expect(r, [UPLINK_MAC, NODE2_MAC, POD_A, POD_B, "63", "6", "1460", ""], "routed to node2, no tunnel")
    return "node1-host-gw", "veth-pod-a", frames, check


def case_frag_needed():
    frames = [from_a(IP(src=POD_A, dst=POD_B, ttl=64, flags="DF"), UDP(sport=40000, dport=9000) / payload(1472))]

    def check(out):
        expect_ports(out, {"veth-pod-a": 1})
        (r,) = fields(out, "veth-pod-a", ["eth.src", "eth.dst", "ip.src", "ip.dst", "ip.proto",
                                          "icmp.type", "icmp.code", "icmp.mtu", "ip.len"])
        expect(r[:2], [GW_MAC, POD_A_MAC], "L2 back to pod A")
        # ip.* lists the error's header, then the quoted original.
        expect(r[2:5], [GW + "," + POD_A, POD_A + "," + POD_B, "1,17"], "error and quoted headers")
        expect(r[5:8], ["3", "4", "1450"], "fragmentation needed, next-hop MTU 1450")
        expect(r[8], "576,1500", "576-byte error quoting a 1500-byte packet")
    return "node1-vxlan", "veth-pod-a", frames, check


def case_fragment():
    frames = [from_a(IP(src=POD_A, dst=POD_B, ttl=64, flags=0, id=0x5151), UDP(sport=40000, dport=9000) / payload(1472))]

    def check(out):
        expect_ports(out, {"eth0": 2})
        rows = fields(out, "eth0", ["vxlan.vni", "ip.src", "ip.flags.mf", "ip.frag_offset", "ip.len", "ip.id"])
        expect([r[0] for r in rows], ["1", "1"], "each fragment in VXLAN")
        expect([r[2] for r in rows], ["0,1", "0,0"], "MF on the first fragment only")
        expect([r[3] for r in rows], ["0,0", "0,178"], "fragment offsets (8-byte units)")
        expect([r[4] for r in rows], ["1494,1444", "126,76"], "fragment lengths")
        expect([r[5].split(",")[1] for r in rows], ["0x5151", "0x5151"], "same ident")
    return "node1-vxlan", "veth-pod-a", frames, check


def case_mss_clamp():
    frames = [from_a(IP(src=POD_A, dst=POD_B, ttl=64, flags="DF"),
                     TCP(sport=40000, dport=80, flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))]

    def check(out):
        expect_ports(out, {"eth0": 1})
        (r,) = fields(out, "eth0", ["vxlan.vni", "ip.dst", "tcp.flags.syn", "tcp.options.mss_val", "tcp.checksum.status"])  # 1 = Good
        expect(r, ["1", NODE2 + "," + POD_B, "1", "1410", "1"], "SYN clamped to 1410, checksum good")
    return "node1-vxlan", "veth-pod-a", frames, check


def case_mss_clamp_decap():
    inner = (Ether(src=VTEP2, dst=VTEP1) / IP(src=POD_B, dst=POD_A, ttl=63)
             / TCP(sport=80, dport=40000, flags="SA", ack=1, options=[("MSS", 1460)]))
    frames = [vxlan_from_node2(inner)]

    def check(out):
        expect_ports(out, {"veth-pod-a": 1})
        (r,) = fields(out, "veth-pod-a", ["ip.src", "tcp.flags.syn", "tcp.flags.ack", "tcp.options.mss_val",
                                          "tcp.checksum.status"])  # 1 = Good
        expect(r, [POD_B, "1", "1", "1410", "1"], "SYN-ACK from node2 clamped to 1410")
    return "node1-vxlan", "eth0", frames, check


CASES = {
    "same-node": case_same_node,
    "vxlan-encap": case_vxlan_encap,
    "vxlan-decap": case_vxlan_decap,
    "ipip-encap": case_ipip,
    "ipip-decap": case_ipip_decap,
    "host-gw": case_host_gw,
    "frag-needed": case_frag_needed,
    "fragment": case_fragment,
    "mss-clamp": case_mss_clamp,
    "mss-clamp-decap": case_mss_clamp_decap,
}


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def expect(got, want, what):
    if got != want:
        fail(f"{what}: got {got!r}, expected {want!r}")


OUT_DIR = None


def pcap(port):
    return os.path.join(OUT_DIR, f"{port}.pcap")


def expect_ports(out, counts):
    present = {f[:-5] for f in os.listdir(OUT_DIR) if f.endswith(".pcap")}
    expect(sorted(present), sorted(counts), "ports with output")
    for port, n in counts.items():
        expect(out["frames_out"].get(port), n, f"frames out on {port}")


def fields(_out, port, names):
    args = ["tshark", "-r", pcap(port), *TSHARK_OPTS, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
            "-E", "aggregator=,"]
    for n in names:
        args += ["-e", n]
    res = subprocess.run(args, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in res.stdout.splitlines()]


def verify_dissection(port_file):
    """No malformed packet and no bad checksum anywhere in the verbose dissection."""
    res = subprocess.run(["tshark", "-r", port_file, "-V", *TSHARK_OPTS], capture_output=True, text=True, check=True)
    text = res.stdout
    if not text.strip():
        fail(f"{port_file}: tshark decoded nothing")
    for line in text.splitlines():
        low = line.lower()
        if "malformed" in low or "[bad]" in low or "incorrect" in low or "status: bad" in low or "[expert info (error" in low:
            fail(f"{os.path.basename(port_file)}: {line.strip()}")
    good = text.count("Status: Good]") + text.count("[correct]")
    if good == 0 and "Address Resolution Protocol" not in text:
        fail(f"{port_file}: no checksum was validated")


def main():
    global OUT_DIR
    cmd = sys.argv[1]
    if cmd == "list":
        print("\n".join(CASES))
        return 0
    name, d = sys.argv[2], sys.argv[3]
    cfg, in_port, frames, check = CASES[name]()
    if cmd == "gen":
        os.makedirs(d, exist_ok=True)
        wrpcap(os.path.join(d, "in.pcap"), frames)
        print(cfg, in_port)
        return 0
    if cmd == "check":
        OUT_DIR = os.path.join(d, "out")
        with open(os.path.join(d, "summary.json")) as f:
            out = json.load(f)
        try:
            for v in out["verdicts"]:
                if v["drops"]:
                    fail(f"input {v['index']} dropped: {v['drops']}")
            for f in sorted(os.listdir(OUT_DIR)):
                verify_dissection(os.path.join(OUT_DIR, f))
            check(out)
        except CheckFailed as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 1
        return 0
    print(f"unknown command {cmd}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
