//! Shared frame builders and scenarios for the benchmarks.
//!
//! Every scenario is a snapshot built from one of the example configurations of node1, the
//! port the frames arrive on, 64 pristine frames (one batch; distinct flows by UDP/TCP source
//! port) and the port they must leave on. [`Scenario::check`] runs the scenario once and
//! panics unless every frame comes out of the expected port, so a benchmark can never
//! silently measure the drop path.

use etherparse::{PacketBuilder, TcpOptionElement};
use podswitch::config::NodeConfig;
use podswitch::pipeline::{BATCH_SIZE, Batch, Event, Pipeline};
use podswitch::tables::{PortId, Snapshot};

pub const NODE1_VXLAN: &str = include_str!("../../config/node1-vxlan.toml");
pub const NODE1_IPIP: &str = include_str!("../../config/node1-ipip.toml");
pub const NODE1_HOST_GW: &str = include_str!("../../config/node1-host-gw.toml");

pub const POD_A_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a];
pub const POD_C_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0b];
pub const GATEWAY_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01];
pub const NODE1_VTEP_MAC: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x01];
pub const NODE2_VTEP_MAC: [u8; 6] = [0x0e, 0, 0, 0, 0, 0x02];
pub const NODE1_UPLINK_MAC: [u8; 6] = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x10];
pub const NODE2_UPLINK_MAC: [u8; 6] = [0x02, 0x00, 0xc0, 0xa8, 0x01, 0x11];

pub const POD_A_IP: [u8; 4] = [10, 244, 1, 10];
pub const POD_C_IP: [u8; 4] = [10, 244, 1, 11];
pub const POD_B_IP: [u8; 4] = [10, 244, 2, 20];
pub const NODE1_IP: [u8; 4] = [192, 168, 1, 10];
pub const NODE2_IP: [u8; 4] = [192, 168, 1, 11];
pub const VXLAN_PORT: u16 = 8472;
pub const VNI: u32 = 1;

/// UDP payload of the test frames: 18 bytes makes a minimum-size (60-byte) Ethernet frame.
pub const PAYLOAD_LEN: usize = 18;

/// Builds the snapshot of a configuration text.
pub fn snapshot(toml: &str) -> Snapshot {
    let cfg = NodeConfig::from_toml(toml).expect("example configuration parses");
    podswitch::tables::build::build(&cfg, 1).expect("example configuration builds")
}

/// An Ethernet + IPv4 + UDP frame with an 18-byte payload (60 bytes in all).
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let payload = [0x5au8; PAYLOAD_LEN];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut v, &payload)
        .expect("udp frame");
    v
}

/// [`udp_frame`] from pod A to the gateway's MAC (routed by node1).
pub fn udp_from_pod_a(dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    udp_frame(POD_A_MAC, GATEWAY_MAC, POD_A_IP, dst, sport, dport)
}

/// Runs `frames`, arriving on `port`, through `p` as one batch.
pub fn run_batch(
    p: &mut Pipeline,
    snap: &Snapshot,
    b: &mut Batch,
    frames: &[Vec<u8>],
    port: PortId,
    now: u64,
) {
    b.clear();
    for f in frames {
        b.push_rx(port, f);
    }
    p.run(snap, b, now);
}

/// An Ethernet + IPv4 + TCP SYN carrying an MSS option.
pub fn tcp_syn(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    mss: u16,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .tcp(sport, 80, 1000, 64240)
        .syn()
        .options(&[TcpOptionElement::MaximumSegmentSize(mss)])
        .expect("tcp options")
        .write(&mut v, &[])
        .expect("tcp frame");
    v
}

/// An Ethernet + IPv4 + TCP data segment as a TCP stack sends it: ACK (and PSH when
/// `push`), DF set, full checksums.
#[allow(
    clippy::too_many_arguments,
    reason = "one frame's distinct header values"
)]
pub fn tcp_data(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    push: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, src, dst)
        .expect("ipv4 header");
    ip.dont_fragment = true;
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .tcp(sport, dport, seq, 64240)
        .ack(1);
    let b = if push { b.psh() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("tcp frame");
    v
}

/// VXLAN (RFC 7348) around `inner`, from node2 to node1 on the underlay.
pub fn vxlan_from_node2(inner: &[u8], sport: u16) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + inner.len());
    payload.extend_from_slice(&[0x08, 0, 0, 0]);
    payload.extend_from_slice(&(VNI << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(NODE2_UPLINK_MAC, NODE1_UPLINK_MAC)
        .ipv4(NODE2_IP, NODE1_IP, 64)
        .udp(sport, VXLAN_PORT)
        .write(&mut v, &payload)
        .expect("vxlan frame");
    v
}

/// One benchmark case: a snapshot, a batch worth of frames on one input port and the port
/// they must all leave on.
pub struct Scenario {
    pub name: &'static str,
    pub snap: Snapshot,
    pub in_port: PortId,
    pub out_port: PortId,
    pub frames: Vec<Vec<u8>>,
    /// An event every frame must raise once (e.g. `Encapsulated`), checked by [`check`](Self::check).
    pub event: Option<Event>,
}

fn port(snap: &Snapshot, name: &str) -> PortId {
    snap.port_by_name(name)
        .unwrap_or_else(|| panic!("no port {name}"))
}

/// Source ports of the 64 flows of a batch.
fn sports() -> impl Iterator<Item = u16> {
    (0..BATCH_SIZE as u16).map(|k| 40000 + k * 7)
}

impl Scenario {
    fn new(
        name: &'static str,
        toml: &str,
        in_port: &str,
        out_port: &str,
        event: Option<Event>,
        frame: impl Fn(u16) -> Vec<u8>,
    ) -> Scenario {
        let snap = snapshot(toml);
        let (in_port, out_port) = (port(&snap, in_port), port(&snap, out_port));
        let frames = sports().map(frame).collect();
        Scenario {
            name,
            snap,
            in_port,
            out_port,
            frames,
            event,
        }
    }

    /// Same-node bridging: pod A to pod C's MAC (l2-fwd).
    pub fn bridging() -> Scenario {
        Scenario::new(
            "bridging",
            NODE1_VXLAN,
            "veth-pod-a",
            "veth-pod-c",
            None,
            |sp| udp_frame(POD_A_MAC, POD_C_MAC, POD_A_IP, POD_C_IP, sp, 5000),
        )
    }

    /// Routed to a local pod: pod A to the gateway MAC, pod C's address (ip4 path).
    pub fn routed_local() -> Scenario {
        Scenario::new(
            "routed_local",
            NODE1_VXLAN,
            "veth-pod-a",
            "veth-pod-c",
            None,
            |sp| udp_frame(POD_A_MAC, GATEWAY_MAC, POD_A_IP, POD_C_IP, sp, 5000),
        )
    }

    /// VXLAN encapsulation: pod A to pod B on node2.
    pub fn vxlan_encap() -> Scenario {
        Scenario::new(
            "vxlan_encap",
            NODE1_VXLAN,
            "veth-pod-a",
            "eth0",
            Some(Event::Encapsulated),
            |sp| udp_frame(POD_A_MAC, GATEWAY_MAC, POD_A_IP, POD_B_IP, sp, 5000),
        )
    }

    /// VXLAN decapsulation: node2's outer frame carrying pod B to pod A.
    pub fn vxlan_decap() -> Scenario {
        Scenario::new(
            "vxlan_decap",
            NODE1_VXLAN,
            "eth0",
            "veth-pod-a",
            Some(Event::Decapsulated),
            |sp| {
                let inner = udp_frame(NODE2_VTEP_MAC, NODE1_VTEP_MAC, POD_B_IP, POD_A_IP, sp, 5000);
                vxlan_from_node2(&inner, sp)
            },
        )
    }

    /// IP-in-IP encapsulation: pod A to pod B on node2 with the ipip overlay.
    pub fn ipip_encap() -> Scenario {
        Scenario::new(
            "ipip_encap",
            NODE1_IPIP,
            "veth-pod-a",
            "eth0",
            Some(Event::Encapsulated),
            |sp| udp_frame(POD_A_MAC, GATEWAY_MAC, POD_A_IP, POD_B_IP, sp, 5000),
        )
    }

    /// MSS clamping: a TCP SYN with MSS 1460 from pod A to pod B over VXLAN (clamped to 1410).
    pub fn mss_clamp() -> Scenario {
        Scenario::new(
            "mss_clamp_vxlan",
            NODE1_VXLAN,
            "veth-pod-a",
            "eth0",
            Some(Event::MssClamped),
            |sp| tcp_syn(POD_A_MAC, GATEWAY_MAC, POD_A_IP, POD_B_IP, sp, 1460),
        )
    }

    /// Every pipeline scenario, in table order.
    pub fn all() -> Vec<Scenario> {
        vec![
            Scenario::bridging(),
            Scenario::routed_local(),
            Scenario::vxlan_encap(),
            Scenario::vxlan_decap(),
            Scenario::ipip_encap(),
            Scenario::mss_clamp(),
        ]
    }

    /// Copies the pristine frames into an emptied batch (what the rx path does).
    #[inline]
    pub fn fill(&self, batch: &mut Batch) {
        batch.clear();
        for f in &self.frames {
            batch.push_rx(self.in_port, f);
        }
    }

    /// Runs one batch and panics unless every frame leaves on `out_port` (and raised the
    /// scenario's event once).
    pub fn check(&self) {
        let mut p = Pipeline::new();
        let mut b = Batch::new();
        self.fill(&mut b);
        p.run(&self.snap, &mut b, 1_000_000_000);
        let mut n = 0;
        b.for_each_output(|port, _, _| {
            assert_eq!(
                port, self.out_port,
                "{}: frame left on the wrong port",
                self.name
            );
            n += 1;
        });
        assert_eq!(
            n,
            self.frames.len(),
            "{}: {} of {} frames left; drops: {}",
            self.name,
            n,
            self.frames.len(),
            p.counters.to_json()["drops"]
        );
        if let Some(e) = self.event {
            assert_eq!(
                p.counters.event_count(e),
                self.frames.len() as u64,
                "{}: event {}",
                self.name,
                e.name()
            );
        }
    }
}

/// A small deterministic PRNG (splitmix64), so the benchmarks need no `rand`.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    /// Uniform in `0..n` (n > 0; the bias of the modulo is irrelevant here).
    pub fn below(&mut self, n: u32) -> u32 {
        self.next_u32() % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_forwards_every_frame() {
        for s in Scenario::all() {
            s.check();
        }
    }

    #[test]
    fn host_gw_config_builds() {
        snapshot(NODE1_HOST_GW);
    }
}
