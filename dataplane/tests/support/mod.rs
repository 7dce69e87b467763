//! Frame builders (etherparse), an independent decoder with checksum checks, and a replay
//! harness for the Service NAT tests, over `config/node1-vxlan-services.toml`.

#![allow(dead_code, reason = "each test file uses a different part")]

use etherparse::PacketBuilder;
use podswitch::config::NodeConfig;
use podswitch::pipeline::Pipeline;
use podswitch::tables::{Snapshot, build::build};
use podswitch::tools::replay::{self, Input};
use std::time::Duration;

pub const POD_A: [u8; 4] = [10, 244, 1, 10];
pub const POD_C: [u8; 4] = [10, 244, 1, 11];
pub const POD_B: [u8; 4] = [10, 244, 2, 20];
pub const POD_D: [u8; 4] = [10, 244, 2, 21];
pub const VIP: [u8; 4] = [10, 96, 0, 10];
pub const NODE: [u8; 4] = [192, 168, 1, 10];
pub const NODE2: [u8; 4] = [192, 168, 1, 11];
pub const GW: [u8; 4] = [10, 244, 1, 1];
pub const EXT: [u8; 4] = [203, 0, 113, 7];
pub const INET: [u8; 4] = [8, 8, 8, 8];

pub const MAC_A: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a];
pub const MAC_C: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0b];
pub const MAC_GW: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01];
pub const MAC_UPLINK: [u8; 6] = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x10];
pub const MAC_ROUTER: [u8; 6] = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x01];
pub const MAC_NODE2: [u8; 6] = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x11];
pub const VTEP1: [u8; 6] = [0x0e, 0, 0, 0, 0, 1];
pub const VTEP2: [u8; 6] = [0x0e, 0, 0, 0, 0, 2];

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

pub fn config() -> NodeConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/node1-vxlan-services.toml");
    NodeConfig::load(&p).expect("example config loads")
}

pub fn snapshot(cfg: &NodeConfig) -> Snapshot {
    build(cfg, 1).expect("example config is valid")
}

/// TCP frame with the given flags (ACK number = `ack` when the ACK flag is set).
#[allow(clippy::too_many_arguments, reason = "one frame, all its fields")]
pub fn tcp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("tcp frame");
    v
}

pub fn udp(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("udp frame");
    v
}

pub fn echo(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    reply: bool,
) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(id, 1)
    } else {
        b.icmpv4_echo_request(id, 1)
    };
    b.write(&mut v, b"ping").expect("icmp frame");
    v
}

/// ICMP error (type, code, rest-of-header) quoting `quote` (an IPv4 packet, no Ethernet).
#[allow(clippy::too_many_arguments, reason = "one frame, all its fields")]
pub fn icmp_error(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ty: u8,
    code: u8,
    rest: [u8; 4],
    quote: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src, dst, 64)
        .icmpv4_raw(ty, code, rest)
        .write(&mut v, quote)
        .expect("icmp error frame");
    v
}

/// Wraps an inner Ethernet frame in node2's VXLAN towards node1.
pub fn from_node2(inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    payload.extend_from_slice(inner);
    udp(MAC_NODE2, MAC_UPLINK, NODE2, NODE, 49152, 8472, &payload)
}

// ---- decoding, with independent checksum verification ----

pub fn csum(data: &[u8], mut acc: u32) -> u16 {
    for c in data.chunks(2) {
        acc += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let w = |a: [u8; 4]| {
        u32::from(u16::from_be_bytes([a[0], a[1]])) + u32::from(u16::from_be_bytes([a[2], a[3]]))
    };
    w(src) + w(dst) + u32::from(proto) + len as u32
}

/// A decoded IPv4 packet (after stripping VXLAN when present).
#[derive(Debug, Clone)]
pub struct Pkt {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    /// Outer VXLAN header was present (to node2).
    pub vxlan: bool,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// IPv4 packet bytes (from the IP header on).
    pub ip: Vec<u8>,
}

impl Pkt {
    pub fn l4(&self) -> &[u8] {
        &self.ip[usize::from(self.ip[0] & 15) * 4..]
    }
    /// The quoted IPv4 packet of an ICMP error.
    pub fn quote(&self) -> Pkt {
        let q = &self.l4()[8..];
        decode_ip(q, [0; 6], [0; 6], false, false)
    }
}

/// Decodes an output frame, asserting that every checksum is right.
pub fn decode(frame: &[u8]) -> Pkt {
    let (mut f, mut vx) = (frame, false);
    if f.len() > 50
        && f[12..14] == [8, 0]
        && f[23] == 17
        && u16::from_be_bytes([f[36], f[37]]) == 8472
    {
        let ip = &f[14..];
        assert_eq!(csum(&ip[..20], 0), 0, "outer IPv4 checksum");
        f = &f[50..];
        vx = true;
    }
    assert_eq!(f[12..14], [8, 0], "IPv4 ethertype");
    decode_ip(
        &f[14..],
        f[6..12].try_into().unwrap(),
        f[0..6].try_into().unwrap(),
        vx,
        true,
    )
}

fn decode_ip(ip: &[u8], eth_src: [u8; 6], eth_dst: [u8; 6], vxlan: bool, full: bool) -> Pkt {
    let hl = usize::from(ip[0] & 15) * 4;
    assert_eq!(csum(&ip[..hl], 0), 0, "IPv4 header checksum");
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    let proto = ip[9];
    let l4 = &ip[hl..ip.len().min(total)];
    let complete = full || total <= ip.len();
    let mut p = Pkt {
        eth_src,
        eth_dst,
        vxlan,
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        seq: 0,
        ack: 0,
        icmp_type: 0,
        icmp_code: 0,
        ip: ip[..ip.len().min(total)].to_vec(),
    };
    match proto {
        6 => {
            p.sport = u16::from_be_bytes([l4[0], l4[1]]);
            p.dport = u16::from_be_bytes([l4[2], l4[3]]);
            p.seq = u32::from_be_bytes(l4[4..8].try_into().unwrap());
            if l4.len() >= 14 {
                p.ack = u32::from_be_bytes(l4[8..12].try_into().unwrap());
                p.tcp_flags = l4[13];
            }
            if complete {
                assert_eq!(csum(l4, pseudo(src, dst, 6, l4.len())), 0, "TCP checksum");
            }
        }
        17 => {
            p.sport = u16::from_be_bytes([l4[0], l4[1]]);
            p.dport = u16::from_be_bytes([l4[2], l4[3]]);
            if complete && u16::from_be_bytes([l4[6], l4[7]]) != 0 {
                assert_eq!(csum(l4, pseudo(src, dst, 17, l4.len())), 0, "UDP checksum");
            }
        }
        1 => {
            p.icmp_type = l4[0];
            p.icmp_code = l4[1];
            if l4[0] == 0 || l4[0] == 8 {
                p.sport = u16::from_be_bytes([l4[4], l4[5]]);
                p.dport = p.sport;
            }
            if complete {
                assert_eq!(csum(l4, 0), 0, "ICMP checksum");
            }
        }
        _ => {}
    }
    p
}

// ---- replay harness ----

/// Runs frames one at a time through one pipeline (and conntrack table), advancing time.
pub struct Node {
    pub snap: Snapshot,
    pub pipeline: Option<Pipeline>,
    pub now: Duration,
}

/// What came out for one input frame.
#[derive(Debug)]
pub struct Out {
    pub frames: Vec<(String, Vec<u8>)>,
    pub drops: Vec<String>,
}

impl Out {
    /// The single output frame, decoded (panics with the drops otherwise).
    pub fn one(&self) -> (String, Pkt) {
        assert_eq!(
            self.frames.len(),
            1,
            "expected one output frame, got {self:?}"
        );
        (self.frames[0].0.clone(), decode(&self.frames[0].1))
    }
    pub fn dropped(&self, reason: &str) {
        assert!(
            self.frames.is_empty(),
            "expected a drop, got output {:?}",
            self.frames
        );
        assert_eq!(self.drops, vec![reason.to_string()]);
    }
}

impl Node {
    pub fn new(cfg: &NodeConfig) -> Self {
        let snap = snapshot(cfg);
        let pipeline = Some(replay::pipeline_for(&snap));
        Node {
            snap,
            pipeline,
            now: Duration::from_secs(1000),
        }
    }

    pub fn send(&mut self, port: &str, frame: Vec<u8>) -> Out {
        self.send_batch(vec![(port, frame)])
    }

    /// Runs frames through the pipeline as one batch (at most 64).
    pub fn send_batch(&mut self, frames: Vec<(&str, Vec<u8>)>) -> Out {
        self.now += Duration::from_millis(1);
        let inputs: Vec<Input> = frames
            .into_iter()
            .map(|(port, data)| Input {
                ts: self.now,
                port: self.snap.port_by_name(port).expect("port exists"),
                data,
            })
            .collect();
        assert!(inputs.len() <= podswitch::pipeline::BATCH_SIZE);
        let p = self.pipeline.take().expect("pipeline");
        let out = replay::run_with(&self.snap, &inputs, p);
        let mut frames = Vec::new();
        for (p, _) in &out.ports {
            for f in &p.tx {
                frames.push((podswitch::port::Port::name(p).to_string(), f.clone()));
            }
        }
        let drops = out.verdicts.iter().flat_map(|v| v.drops.clone()).collect();
        self.pipeline = Some(out.pipeline);
        Out { frames, drops }
    }

    pub fn counters(&self) -> &podswitch::pipeline::Counters {
        &self.pipeline.as_ref().expect("pipeline").counters
    }

    pub fn ct(&self) -> &podswitch::conntrack::Conntrack {
        self.pipeline
            .as_ref()
            .and_then(|p| p.conntrack())
            .expect("conntrack")
    }

    pub fn now_ns(&self) -> u64 {
        self.now.as_nanos() as u64
    }

    /// The text dump.
    pub fn dump(&self) -> String {
        podswitch::conntrack::dump_text(self.ct(), self.now_ns())
    }

    /// Replaces the snapshot (as a publish would), running the stale-entry cleanup.
    pub fn publish(&mut self, cfg: &NodeConfig) -> usize {
        let snap = build(cfg, self.snap.generation + 1).expect("valid");
        let n = podswitch::conntrack::cleanup_stale(self.ct(), &snap, self.now_ns());
        self.snap = snap;
        n
    }
}

/// Dump lines without the volatile fields (timeout, packets, bytes).
pub fn stable(dump: &str) -> Vec<String> {
    dump.lines()
        .map(|l| l.split(" timeout=").next().unwrap_or("").to_string())
        .collect()
}

/// What one batch through a fresh pipeline (with conntrack) gave: the output frames per port
/// name, in transmit order (chains joined), the drop reasons, and the pipeline (counters).
pub struct BatchRun {
    pub out: Vec<(String, Vec<u8>)>,
    /// The `TxInfo::segment_size` of each frame of `out`.
    pub segment_sizes: Vec<u16>,
    pub drops: Vec<&'static str>,
    pub pipeline: Pipeline,
}

/// Runs one batch that `fill` pushes its frames into, through a fresh pipeline.
pub fn run_one_batch(
    snap: &Snapshot,
    fill: impl FnOnce(&mut podswitch::pipeline::Batch),
) -> BatchRun {
    let mut pipeline = replay::pipeline_for(snap);
    let mut b = podswitch::pipeline::Batch::new();
    fill(&mut b);
    pipeline.run(snap, &mut b, 1_000_000_000);
    let (mut out, mut segment_sizes) = (Vec::new(), Vec::new());
    b.for_each_output(|p, chain, tx| {
        let name = snap.port(p).map_or("?", |p| p.name.as_str());
        out.push((name.to_string(), chain.concat()));
        segment_sizes.push(tx.segment_size);
    });
    let drops = (0..b.len())
        .filter_map(|i| b.meta[i].drop.map(podswitch::pipeline::DropReason::name))
        .collect();
    BatchRun {
        out,
        segment_sizes,
        drops,
        pipeline,
    }
}
