//! Helpers for the packet tests (see tests/).
//!
//! Frames are built with etherparse's `PacketBuilder` (never with podswitch's own emitters),
//! run through the pipeline with `tools::replay`, and the outputs are checked by two
//! decoders that share no code with the project or each other: etherparse parses every
//! layer, and smoltcp's `wire` module verifies every checksum (IPv4 header, UDP, TCP,
//! ICMP, recursively inside VXLAN, IP-in-IP and the packets quoted by ICMP errors) and
//! cross-checks the IPv4 fields etherparse reported.

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header, IpFragOffset, IpHeaders, IpNumber,
    Ipv4Header, NetHeaders, PacketBuilder, PacketHeaders, SlicedPacket, TcpOptionElement,
    TransportHeader,
};
use podswitch::config::NodeConfig;
use podswitch::pipeline::{DropReason, Event};
use podswitch::tables::Snapshot;
use podswitch::tables::build::build;
use podswitch::tools::replay::{self, Input, ReplayOutput, Verdict};
use smoltcp::wire::{IpAddress, Ipv4Packet};
use std::path::PathBuf;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The house addresses of the two-node example (config/node{1,2}-*.toml).
// ---------------------------------------------------------------------------------------

pub type MacAddr = [u8; 6];
pub type Ip4 = [u8; 4];

pub const NODE1: Ip4 = [192, 168, 1, 10];
pub const NODE2: Ip4 = [192, 168, 1, 11];
pub const UPLINK: &str = "eth0";
pub const UPLINK_MAC: MacAddr = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x10];
/// node2's underlay MAC (neighbour entry for 192.168.1.11).
pub const NODE2_MAC: MacAddr = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x11];
pub const GATEWAY: Ip4 = [10, 244, 1, 1];
pub const GATEWAY_MAC: MacAddr = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01];
pub const VTEP1_MAC: MacAddr = [0x0e, 0, 0, 0, 0, 0x01];
pub const VTEP2_MAC: MacAddr = [0x0e, 0, 0, 0, 0, 0x02];
pub const POD_A: Ip4 = [10, 244, 1, 10];
pub const POD_A_MAC: MacAddr = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a];
pub const POD_A_PORT: &str = "veth-pod-a";
pub const POD_C: Ip4 = [10, 244, 1, 11];
pub const POD_C_MAC: MacAddr = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0b];
pub const POD_C_PORT: &str = "veth-pod-c";
/// A pod on node2 (its MAC never leaves node2).
pub const POD_B: Ip4 = [10, 244, 2, 20];
pub const HOST_PORT: &str = "psw-host";
pub const HOST_MAC: MacAddr = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0xfe];
pub const BROADCAST: MacAddr = [0xff; 6];
pub const VXLAN_PORT: u16 = 8472;

// ---------------------------------------------------------------------------------------
// Configurations and snapshots.
// ---------------------------------------------------------------------------------------

/// Path of an example configuration, e.g. `config_path("node1-vxlan")`.
pub fn config_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config")
        .join(format!("{name}.toml"))
}

/// Loads an example configuration by name (without `.toml`).
pub fn load_config(name: &str) -> NodeConfig {
    NodeConfig::load(&config_path(name)).unwrap_or_else(|e| panic!("config {name}: {e}"))
}

/// Builds the snapshot of an example configuration.
pub fn snapshot(name: &str) -> Snapshot {
    snapshot_with(name, |_| {})
}

/// Builds the snapshot of an example configuration after `edit` changed it.
pub fn snapshot_with(name: &str, edit: impl FnOnce(&mut NodeConfig)) -> Snapshot {
    let mut cfg = load_config(name);
    edit(&mut cfg);
    build(&cfg, 1).unwrap_or_else(|e| panic!("config {name} does not build:\n{e}"))
}

// ---------------------------------------------------------------------------------------
// Running frames through the pipeline.
// ---------------------------------------------------------------------------------------

/// A frame that left the switch: port name and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub port: String,
    pub frame: Vec<u8>,
}

/// Port id of `name`, panicking with the known names if it does not exist.
pub fn port_id(snap: &Snapshot, name: &str) -> u16 {
    snap.port_by_name(name).unwrap_or_else(|| {
        let names: Vec<&str> = snap.ports.iter().map(|p| p.name.as_str()).collect();
        panic!("no port {name:?} (ports: {names:?})")
    })
}

/// The result of a replay, with lookups by port, drop reason and event name.
pub struct Replayed {
    pub out: ReplayOutput,
}

impl Replayed {
    /// Every frame sent, in port order.
    pub fn sent(&self) -> Vec<Sent> {
        self.out
            .ports
            .iter()
            .flat_map(|(p, _)| {
                let name = podswitch::port::Port::name(p).to_string();
                p.tx.iter().map(move |f| Sent {
                    port: name.clone(),
                    frame: f.clone(),
                })
            })
            .collect()
    }

    /// Frames sent on one port.
    pub fn tx(&self, port: &str) -> Vec<Vec<u8>> {
        self.out
            .ports
            .iter()
            .filter(|(p, _)| podswitch::port::Port::name(p) == port)
            .flat_map(|(p, _)| p.tx.iter().cloned())
            .collect()
    }

    /// Counter of the drop reason called `name` (panics on an unknown name).
    pub fn drops(&self, name: &str) -> u64 {
        self.out.pipeline.counters.drop_count(drop_reason(name))
    }

    /// Counter of the event called `name` (panics on an unknown name).
    pub fn events(&self, name: &str) -> u64 {
        self.out.pipeline.counters.event_count(event(name))
    }

    pub fn total_drops(&self) -> u64 {
        self.out.pipeline.counters.total_drops()
    }
}

/// The drop reason with this stable name.
pub fn drop_reason(name: &str) -> DropReason {
    *DropReason::ALL
        .iter()
        .find(|r| r.name() == name)
        .unwrap_or_else(|| panic!("no drop reason named {name:?}"))
}

/// The event with this stable name.
pub fn event(name: &str) -> Event {
    Event::ALL
        .into_iter()
        .find(|e| e.name() == name)
        .unwrap_or_else(|| panic!("no event named {name:?}"))
}

/// Replays frames `(port name, bytes)`, all at time 0.
pub fn replay_frames(snap: &Snapshot, frames: &[(&str, Vec<u8>)]) -> Replayed {
    let inputs: Vec<Input> = frames
        .iter()
        .map(|(p, d)| Input {
            ts: Duration::ZERO,
            port: port_id(snap, p),
            data: d.clone(),
        })
        .collect();
    Replayed {
        out: replay::run(snap, &inputs),
    }
}

/// Replays frames `(time, port name, bytes)`; replay batches 64 inputs at a time and runs
/// each batch at the time of its first input.
pub fn replay_timed(snap: &Snapshot, frames: &[(Duration, &str, Vec<u8>)]) -> Replayed {
    let inputs: Vec<Input> = frames
        .iter()
        .map(|(t, p, d)| Input {
            ts: *t,
            port: port_id(snap, p),
            data: d.clone(),
        })
        .collect();
    Replayed {
        out: replay::run(snap, &inputs),
    }
}

/// Replays one frame on `port_name`; returns every frame sent and the input's verdict.
pub fn replay_one(snap: &Snapshot, port_name: &str, frame: &[u8]) -> (Vec<Sent>, Verdict) {
    let r = replay_frames(snap, &[(port_name, frame.to_vec())]);
    let v = r.out.verdicts[0].clone();
    (r.sent(), v)
}

/// Replays one frame and asserts it was dropped for `reason` with nothing sent; returns the
/// replay for further checks.
#[track_caller]
pub fn assert_dropped(snap: &Snapshot, port_name: &str, frame: &[u8], reason: &str) -> Replayed {
    let r = replay_frames(snap, &[(port_name, frame.to_vec())]);
    let v = &r.out.verdicts[0];
    assert!(
        r.sent().is_empty(),
        "expected drop {reason}, but frames were sent: {:?} (verdict {v:?})\ninput {}",
        r.sent().iter().map(|s| &s.port).collect::<Vec<_>>(),
        hex(frame)
    );
    assert_eq!(v.out, Vec::<String>::new(), "verdict {v:?}");
    assert_eq!(
        v.drops,
        vec![reason.to_string()],
        "wrong drop reason for input {}",
        hex(frame)
    );
    assert_eq!(r.drops(reason), 1, "counter {reason}");
    r
}

/// Replays one frame and asserts exactly one frame left, on `port`; returns that frame.
#[track_caller]
pub fn forward_one(snap: &Snapshot, in_port: &str, frame: &[u8], out_port: &str) -> Vec<u8> {
    let (sent, v) = replay_one(snap, in_port, frame);
    assert_eq!(
        v.drops,
        Vec::<String>::new(),
        "unexpected drop; verdict {v:?}\ninput {}",
        hex(frame)
    );
    assert_eq!(sent.len(), 1, "expected one frame out, got {sent:?}");
    assert_eq!(sent[0].port, out_port, "wrong output port");
    assert_eq!(v.out, vec![out_port.to_string()]);
    sent.into_iter().next().map(|s| s.frame).unwrap_or_default()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Frame builders (etherparse).
// ---------------------------------------------------------------------------------------

/// IPv4 header fields for a test packet.
#[derive(Debug, Clone)]
pub struct Ip {
    pub src: Ip4,
    pub dst: Ip4,
    pub ttl: u8,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in 8-byte units.
    pub frag_units: u16,
    pub ident: u16,
    pub tos: u8,
    /// Raw option bytes (a multiple of 4, at most 40).
    pub options: Vec<u8>,
}

impl Ip {
    /// `src -> dst`, TTL 64, DF set, ident 0x1234, no options.
    pub fn new(src: Ip4, dst: Ip4) -> Self {
        Ip {
            src,
            dst,
            ttl: 64,
            df: true,
            mf: false,
            frag_units: 0,
            ident: 0x1234,
            tos: 0,
            options: Vec::new(),
        }
    }
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }
    pub fn df(mut self, df: bool) -> Self {
        self.df = df;
        self
    }
    pub fn ident(mut self, ident: u16) -> Self {
        self.ident = ident;
        self
    }
    /// A fragment at `units * 8` bytes, with MF as given (DF cleared).
    pub fn frag(mut self, units: u16, mf: bool) -> Self {
        self.frag_units = units;
        self.mf = mf;
        self.df = false;
        self
    }
    pub fn options(mut self, opts: &[u8]) -> Self {
        self.options = opts.to_vec();
        self
    }

    /// The etherparse header (lengths, protocol and checksum are filled in on write).
    pub fn header(&self, proto: u8) -> Ipv4Header {
        let mut h = Ipv4Header::new(0, self.ttl, IpNumber(proto), self.src, self.dst)
            .unwrap_or_else(|e| panic!("ipv4 header: {e}"));
        h.dont_fragment = self.df;
        h.more_fragments = self.mf;
        h.fragment_offset =
            IpFragOffset::try_new(self.frag_units).unwrap_or_else(|e| panic!("{e}"));
        h.identification = self.ident;
        h.dscp = etherparse::IpDscp::try_new(self.tos >> 2).unwrap_or_else(|e| panic!("{e}"));
        h.ecn = etherparse::IpEcn::try_new(self.tos & 3).unwrap_or_else(|e| panic!("{e}"));
        h.options = self
            .options
            .as_slice()
            .try_into()
            .unwrap_or_else(|e| panic!("options: {e:?}"));
        h
    }
}

/// What the IPv4 packet carries.
#[derive(Debug, Clone)]
pub enum L4 {
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// A TCP SYN (or SYN-ACK when `ack` is set) with an optional MSS option.
    TcpSyn {
        sport: u16,
        dport: u16,
        mss: Option<u16>,
        ack: Option<u32>,
    },
    EchoRequest {
        id: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    /// Any protocol: `payload` is written as is after the IPv4 header.
    Raw {
        proto: u8,
        payload: Vec<u8>,
    },
}

impl L4 {
    pub fn udp(sport: u16, dport: u16, len: usize) -> Self {
        L4::Udp {
            sport,
            dport,
            payload: pattern(len),
        }
    }
    pub fn syn(mss: u16) -> Self {
        L4::TcpSyn {
            sport: 40000,
            dport: 80,
            mss: Some(mss),
            ack: None,
        }
    }
    pub fn syn_ack(mss: u16) -> Self {
        L4::TcpSyn {
            sport: 80,
            dport: 40000,
            mss: Some(mss),
            ack: Some(0x1000_0001),
        }
    }
    pub fn echo(len: usize) -> Self {
        L4::EchoRequest {
            id: 0x4242,
            seq: 7,
            payload: pattern(len),
        }
    }
    pub fn raw(proto: u8, payload: Vec<u8>) -> Self {
        L4::Raw { proto, payload }
    }
}

/// A recognisable payload: byte k is k mod 251.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|k| (k % 251) as u8).collect()
}

/// 802.1Q / 802.1ad tagging of a built frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    None,
    /// One 802.1Q tag with this VLAN id.
    Dot1q(u16),
    /// 802.1ad: outer (service) and inner (customer) VLAN ids.
    Dot1ad(u16, u16),
}

fn vid(v: u16) -> etherparse::VlanId {
    etherparse::VlanId::try_new(v).unwrap_or_else(|e| panic!("vlan id: {e}"))
}

fn write_ip(src_mac: MacAddr, dst_mac: MacAddr, tag: Tag, ip: &Ip, l4: &L4) -> Vec<u8> {
    let mut out = Vec::new();
    let proto = match l4 {
        L4::Udp { .. } => 17,
        L4::TcpSyn { .. } => 6,
        L4::EchoRequest { .. } => 1,
        L4::Raw { proto, .. } => *proto,
    };
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let header = IpHeaders::Ipv4(ip.header(proto), Default::default());
    let step = match tag {
        Tag::None => eth.ip(header),
        Tag::Dot1q(v) => eth.single_vlan(vid(v)).ip(header),
        Tag::Dot1ad(o, i) => eth.double_vlan(vid(o), vid(i)).ip(header),
    };
    let r = match l4 {
        L4::Udp {
            sport,
            dport,
            payload,
        } => step.udp(*sport, *dport).write(&mut out, payload),
        L4::TcpSyn {
            sport,
            dport,
            mss,
            ack,
        } => {
            let mut t = step.tcp(*sport, *dport, 0x1000_0000, 64240).syn();
            if let Some(a) = ack {
                t = t.ack(*a);
            }
            let mut opts = Vec::new();
            if let Some(m) = mss {
                opts.push(TcpOptionElement::MaximumSegmentSize(*m));
            }
            opts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
            opts.push(TcpOptionElement::WindowScale(7));
            let t = t
                .options(&opts)
                .unwrap_or_else(|e| panic!("tcp options: {e}"));
            t.write(&mut out, &[])
        }
        L4::EchoRequest { id, seq, payload } => {
            step.icmpv4_echo_request(*id, *seq).write(&mut out, payload)
        }
        L4::Raw { proto, payload } => step.write(&mut out, IpNumber(*proto), payload),
    };
    r.unwrap_or_else(|e| panic!("building a frame: {e}"));
    out
}

/// An Ethernet II frame `src_mac -> dst_mac` carrying `ip` / `l4`.
pub fn eth_ip(src_mac: MacAddr, dst_mac: MacAddr, ip: &Ip, l4: &L4) -> Vec<u8> {
    write_ip(src_mac, dst_mac, Tag::None, ip, l4)
}

/// Like [`eth_ip`], with VLAN tags.
pub fn eth_tagged_ip(src_mac: MacAddr, dst_mac: MacAddr, tag: Tag, ip: &Ip, l4: &L4) -> Vec<u8> {
    write_ip(src_mac, dst_mac, tag, ip, l4)
}

/// A bare IPv4 packet (no Ethernet header), e.g. the inside of IP-in-IP.
pub fn ip_packet(ip: &Ip, l4: &L4) -> Vec<u8> {
    // Built with a throwaway Ethernet header, then stripped: same etherparse code path.
    let f = eth_ip([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], ip, l4);
    f[Ethernet2Header::LEN..].to_vec()
}

/// From pod A (its MAC) to the gateway MAC: what pod A sends to anything not on its L2.
pub fn from_pod_a(ip: &Ip, l4: &L4) -> Vec<u8> {
    eth_ip(POD_A_MAC, GATEWAY_MAC, ip, l4)
}

/// An ARP request `who-has target tell sender_ip` from `sender_mac`, broadcast.
pub fn arp_request(sender_mac: MacAddr, sender_ip: Ip4, target: Ip4) -> Vec<u8> {
    arp_frame(
        sender_mac,
        BROADCAST,
        ArpOperation::REQUEST,
        sender_mac,
        sender_ip,
        [0; 6],
        target,
    )
}

/// Any Ethernet/IPv4 ARP frame.
pub fn arp_frame(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    op: ArpOperation,
    sender_mac: MacAddr,
    sender_ip: Ip4,
    target_mac: MacAddr,
    target_ip: Ip4,
) -> Vec<u8> {
    let arp = ArpEthIpv4Packet {
        operation: op,
        sender_mac,
        sender_ipv4: sender_ip,
        target_mac,
        target_ipv4: target_ip,
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(eth_src, eth_dst)
        .arp(arp.into())
        .write(&mut out)
        .unwrap_or_else(|e| panic!("arp: {e}"));
    out
}

/// The 8-byte VXLAN header (RFC 7348).
pub fn vxlan_header(flags: u8, vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [flags, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// An outer Ethernet/IPv4/UDP/VXLAN frame carrying `inner` (an Ethernet frame). The outer
/// IPv4 header has DF set and TTL 64; the UDP checksum is computed by etherparse.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per header field a test may vary"
)]
pub fn vxlan_frame(
    outer_src_mac: MacAddr,
    outer_dst_mac: MacAddr,
    outer_src: Ip4,
    outer_dst: Ip4,
    sport: u16,
    dport: u16,
    vx: [u8; 8],
    inner: &[u8],
) -> Vec<u8> {
    let mut payload = vx.to_vec();
    payload.extend_from_slice(inner);
    eth_ip(
        outer_src_mac,
        outer_dst_mac,
        &Ip::new(outer_src, outer_dst).ident(0x7777),
        &L4::Udp {
            sport,
            dport,
            payload,
        },
    )
}

/// VXLAN from node2 to node1 (port 8472, VNI 1, I flag) carrying `inner`.
pub fn vxlan_from_node2(inner: &[u8]) -> Vec<u8> {
    vxlan_frame(
        NODE2_MAC,
        UPLINK_MAC,
        NODE2,
        NODE1,
        50000,
        VXLAN_PORT,
        vxlan_header(0x08, 1),
        inner,
    )
}

/// The inner Ethernet frame node2 would send for a packet to node1's pods.
pub fn inner_from_node2(ip: &Ip, l4: &L4) -> Vec<u8> {
    eth_ip(VTEP2_MAC, VTEP1_MAC, ip, l4)
}

/// An IP-in-IP frame `outer_src -> outer_dst` on the underlay carrying `inner` (a bare IPv4 packet).
pub fn ipip_frame(
    outer_src_mac: MacAddr,
    outer_dst_mac: MacAddr,
    outer_src: Ip4,
    outer_dst: Ip4,
    inner: &[u8],
) -> Vec<u8> {
    eth_ip(
        outer_src_mac,
        outer_dst_mac,
        &Ip::new(outer_src, outer_dst).ident(0x6666),
        &L4::raw(4, inner.to_vec()),
    )
}

/// IP-in-IP from node2 to node1 carrying `inner`.
pub fn ipip_from_node2(inner: &[u8]) -> Vec<u8> {
    ipip_frame(NODE2_MAC, UPLINK_MAC, NODE2, NODE1, inner)
}

/// Recomputes the IPv4 header checksum of the packet at `ip_off` of `frame` (after a test
/// edited the header on purpose). Uses smoltcp, not the project's code.
pub fn refill_ip_checksum(frame: &mut [u8], ip_off: usize) {
    let mut p = Ipv4Packet::new_unchecked(&mut frame[ip_off..]);
    p.fill_checksum();
}

// ---------------------------------------------------------------------------------------
// Independent checkers: etherparse parses, smoltcp verifies checksums and cross-checks.
// ---------------------------------------------------------------------------------------

/// Parses an output frame with etherparse (strict) and verifies every checksum in it with
/// smoltcp, descending into VXLAN (UDP 8472 and 4789), IP-in-IP and ICMP error quotes.
/// Panics with a description and the frame's hex on any problem.
#[track_caller]
pub fn verify(frame: &[u8]) -> PacketHeaders<'_> {
    if let Err(e) = verify_frame(frame, 0) {
        panic!("{e}\nframe {}", hex(frame));
    }
    PacketHeaders::from_ethernet_slice(frame)
        .unwrap_or_else(|e| panic!("etherparse: {e}\nframe {}", hex(frame)))
}

fn verify_frame(frame: &[u8], depth: usize) -> Result<(), String> {
    let sp = SlicedPacket::from_ethernet(frame)
        .map_err(|e| format!("etherparse cannot slice the frame: {e}"))?;
    if !sp.link_exts.is_empty() {
        return Err("unexpected VLAN tag on an output frame".into());
    }
    match &sp.net {
        Some(etherparse::NetSlice::Ipv4(_)) => {
            let et = match &sp.link {
                Some(etherparse::LinkSlice::Ethernet2(e)) => e.ether_type(),
                _ => return Err("not an Ethernet II frame".into()),
            };
            if et != EtherType::IPV4 {
                return Err(format!("IPv4 packet behind ethertype {et:?}"));
            }
            verify_ip(&frame[Ethernet2Header::LEN..], depth)
        }
        Some(etherparse::NetSlice::Arp(_)) => Ok(()),
        Some(_) => Err("unexpected network layer".into()),
        None => Err("frame has no network layer".into()),
    }
}

/// Verifies an IPv4 packet that must span exactly `ip` (no trailing bytes).
fn verify_ip(ip: &[u8], depth: usize) -> Result<(), String> {
    if depth > 3 {
        return Err("tunnel nesting deeper than 3".into());
    }
    let (eh, _) = Ipv4Header::from_slice(ip).map_err(|e| format!("etherparse ipv4: {e}"))?;
    let p = Ipv4Packet::new_checked(ip).map_err(|e| format!("smoltcp ipv4: {e}"))?;
    if !p.verify_checksum() {
        return Err(format!(
            "IPv4 header checksum invalid ({:?} -> {:?})",
            p.src_addr(),
            p.dst_addr()
        ));
    }
    if usize::from(p.total_len()) != ip.len() {
        return Err(format!(
            "IPv4 total length {} but {} bytes follow the Ethernet header",
            p.total_len(),
            ip.len()
        ));
    }
    // The two decoders must agree field by field.
    let same = p.src_addr().octets() == eh.source
        && p.dst_addr().octets() == eh.destination
        && p.hop_limit() == eh.time_to_live
        && u8::from(p.next_header()) == eh.protocol.0
        && p.total_len() == eh.total_len
        && p.dont_frag() == eh.dont_fragment
        && p.more_frags() == eh.more_fragments
        && p.frag_offset() == eh.fragment_offset.value() * 8
        && p.ident() == eh.identification
        && usize::from(p.header_len()) == eh.header_len();
    if !same {
        return Err(format!(
            "smoltcp and etherparse disagree on the IPv4 header: {eh:?}"
        ));
    }
    if p.more_frags() || p.frag_offset() != 0 {
        return Ok(()); // a fragment: no transport checksum to verify
    }
    let payload = p.payload();
    let (src, dst) = (IpAddress::from(p.src_addr()), IpAddress::from(p.dst_addr()));
    match eh.protocol.0 {
        17 => {
            let u = smoltcp::wire::UdpPacket::new_checked(payload)
                .map_err(|e| format!("smoltcp udp: {e}"))?;
            if usize::from(u.len()) != payload.len() {
                return Err(format!(
                    "UDP length {} but the IPv4 payload is {}",
                    u.len(),
                    payload.len()
                ));
            }
            if !u.verify_checksum(&src, &dst) {
                return Err("UDP checksum invalid".into());
            }
            if matches!(u.dst_port(), 8472 | 4789) {
                let inner = payload.get(8 + 8..).ok_or("VXLAN header truncated")?;
                let sp =
                    SlicedPacket::from_ethernet(inner).map_err(|e| format!("inner frame: {e}"))?;
                if sp.net.as_ref().is_some_and(|n| n.is_ipv4()) {
                    verify_ip(&inner[Ethernet2Header::LEN..], depth + 1)
                        .map_err(|e| format!("inside VXLAN: {e}"))?;
                }
            }
            Ok(())
        }
        6 => {
            let t = smoltcp::wire::TcpPacket::new_checked(payload)
                .map_err(|e| format!("smoltcp tcp: {e}"))?;
            if !t.verify_checksum(&src, &dst) {
                return Err("TCP checksum invalid".into());
            }
            Ok(())
        }
        1 => {
            let m = smoltcp::wire::Icmpv4Packet::new_checked(payload)
                .map_err(|e| format!("smoltcp icmp: {e}"))?;
            if !m.verify_checksum() {
                return Err("ICMP checksum invalid".into());
            }
            if matches!(payload[0], 3 | 11) {
                // The quoted header must itself be a valid IPv4 header.
                let q = payload.get(8..).ok_or("ICMP error without a quote")?;
                let qp = Ipv4Packet::new_unchecked(q);
                if q.len() < 20 || q.len() < usize::from(qp.header_len()) || !qp.verify_checksum() {
                    return Err("quoted IPv4 header truncated or with a bad checksum".into());
                }
            }
            Ok(())
        }
        4 => verify_ip(payload, depth + 1).map_err(|e| format!("inside IP-in-IP: {e}")),
        _ => Ok(()),
    }
}

/// Decoded view of an output frame's outermost layers (after `verify`).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub eth: Ethernet2Header,
    pub ip: Option<Ipv4Header>,
    pub transport: Option<TransportHeader>,
    /// The IPv4 payload (whole, even for fragments).
    pub ip_payload: Vec<u8>,
    /// The payload after the transport header (for UDP/TCP/ICMP), or the IPv4 payload.
    pub payload: Vec<u8>,
    pub arp: Option<ArpEthIpv4Packet>,
}

/// Verifies (`verify`) and decodes a frame with etherparse.
#[track_caller]
pub fn decode(frame: &[u8]) -> Decoded {
    let h = verify(frame);
    let eth = match &h.link {
        Some(etherparse::LinkHeader::Ethernet2(e)) => e.clone(),
        other => panic!("not Ethernet II: {other:?}"),
    };
    let (ip, arp) = match &h.net {
        Some(NetHeaders::Ipv4(ip, _)) => (Some(ip.clone()), None),
        Some(NetHeaders::Arp(a)) => (
            None,
            Some(a.try_eth_ipv4().unwrap_or_else(|e| panic!("arp: {e}"))),
        ),
        _ => (None, None),
    };
    let ip_payload = ip.as_ref().map_or_else(Vec::new, |ip| {
        frame[14 + ip.header_len()..14 + usize::from(ip.total_len)].to_vec()
    });
    Decoded {
        eth,
        ip,
        transport: h.transport.clone(),
        ip_payload,
        payload: h.payload.slice().to_vec(),
        arp,
    }
}

impl Decoded {
    #[track_caller]
    pub fn ip(&self) -> &Ipv4Header {
        self.ip
            .as_ref()
            .unwrap_or_else(|| panic!("no IPv4 header in {self:?}"))
    }
    #[track_caller]
    pub fn udp(&self) -> etherparse::UdpHeader {
        match &self.transport {
            Some(TransportHeader::Udp(u)) => u.clone(),
            t => panic!("not UDP: {t:?}"),
        }
    }
    #[track_caller]
    pub fn tcp(&self) -> etherparse::TcpHeader {
        match &self.transport {
            Some(TransportHeader::Tcp(t)) => t.clone(),
            t => panic!("not TCP: {t:?}"),
        }
    }
    #[track_caller]
    pub fn icmp(&self) -> etherparse::Icmpv4Header {
        match &self.transport {
            Some(TransportHeader::Icmpv4(t)) => t.clone(),
            t => panic!("not ICMP: {t:?}"),
        }
    }
    /// For a VXLAN frame: (flags, VNI, inner Ethernet frame).
    #[track_caller]
    pub fn vxlan(&self) -> (u8, u32, Vec<u8>) {
        let p = &self.payload;
        assert!(p.len() >= 8 + 14, "VXLAN payload too short: {}", p.len());
        let vni = u32::from_be_bytes([0, p[4], p[5], p[6]]);
        (p[0], vni, p[8..].to_vec())
    }
}

/// MSS option of a TCP header, if any.
pub fn mss_of(t: &etherparse::TcpHeader) -> Option<u16> {
    t.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    })
}
