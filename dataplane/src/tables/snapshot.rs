//! The immutable table snapshot and its publication cell.

use super::fasthash::FastMap;
use super::lpm::{Lpm, Prefix};
use super::services::{NatInfo, ServiceTable};
use crate::config::{IcmpSettings, NodeConfig, Overlay, Service, VxlanSettings};
use crate::wire::Mac;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub type PortId = u16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    Uplink,
    Host,
    Pod,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortEntry {
    pub id: PortId,
    /// Interface name (the switch side).
    pub name: String,
    pub kind: PortKind,
    /// MAC of the device on the far side (pod MAC, kernel side of the host port); for the
    /// uplink, the NIC's own MAC.
    pub mac: Mac,
    /// The pod's address (pod ports only): the anti-spoofing source check.
    pub ip: Option<[u8; 4]>,
    pub mtu: u16,
    pub vlan: Option<u16>,
    /// Carries TCP super-frames as multi-buffer frames (pod ports with `gso`).
    pub gso: bool,
    /// Pod name for pod ports.
    pub label: String,
}

/// What a FIB entry does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RouteTarget {
    /// The pod gateway address: answered by the switch (ICMP echo).
    Gateway,
    /// The node's underlay address: tunnels from the uplink are decapsulated, the rest goes to
    /// the host port.
    NodeAddress,
    /// A local pod (/32).
    Pod { port: PortId },
    /// The local pod subnet without a matching pod.
    NoSuchPod,
    /// A remote node's pod subnet.
    Peer { peer: u16 },
    /// The node's own stack through the host port.
    Host,
    /// Out of the uplink to a next hop.
    Via { neighbour: [u8; 4] },
}

/// One FIB entry with its adjacency resolved at build time.
#[derive(Debug, Clone, Serialize)]
pub struct RouteEntry {
    pub prefix: Prefix,
    pub target: RouteTarget,
    /// Output port; `None` when unresolved (drop with a reason).
    pub out_port: Option<PortId>,
    pub dst_mac: Mac,
    pub src_mac: Mac,
    /// Largest IPv4 packet (total length) this path carries without fragmentation.
    pub mtu: u16,
    /// Where the entry came from (pod, peer, config route, ...), for dumps.
    pub origin: String,
}

/// A remote node, with its encapsulation prebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct PeerEntry {
    pub name: String,
    pub address: [u8; 4],
    pub pod_cidr: Prefix,
    pub overlay: Overlay,
    pub vtep_mac: Option<Mac>,
    /// MAC of the underlay next hop (the peer itself or the uplink gateway); `None` = unresolved.
    pub underlay_mac: Option<Mac>,
    /// Outer Ethernet + IPv4 + UDP + VXLAN (50 bytes) with zero lengths and the IPv4
    /// checksum computed for total length 0: the encap stage patches lengths incrementally.
    #[serde(skip)]
    pub vxlan_template: [u8; 50],
    /// Outer Ethernet + IPv4 (34 bytes) for IP-in-IP, same conventions.
    #[serde(skip)]
    pub ipip_template: [u8; 34],
    /// Inner MTU of the path to this peer.
    pub mtu: u16,
}

/// Node-level facts the stages need.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub address: [u8; 4],
    pub gateway: [u8; 4],
    pub gateway_mac: Mac,
    pub vtep_mac: Mac,
    pub pod_cidr: Prefix,
    pub overlay: Overlay,
    pub proxy_arp: bool,
    pub vxlan: VxlanSettings,
    pub ipip_ttl: u8,
    pub icmp: IcmpSettings,
}

/// Everything the pipeline reads, immutable once published.
///
/// Each table sits behind an `Arc`: a change rebuilds only the tables whose inputs changed
/// (`build::rebuild`) and the next snapshot shares the others with this one.
pub struct Snapshot {
    pub generation: u64,
    pub node: NodeInfo,
    pub ports: Arc<Vec<PortEntry>>,
    pub uplink: PortId,
    pub host: Option<PortId>,
    /// Port by the MAC of the device behind it (pods and the host port).
    pub macs: Arc<FastMap<Mac, PortId>>,
    pub fib: Arc<Lpm>,
    pub routes: Arc<Vec<RouteEntry>>,
    pub peers: Arc<Vec<PeerEntry>>,
    pub peer_by_addr: Arc<FastMap<[u8; 4], u16>>,
    /// Neighbours (underlay next hops) as configured.
    pub neighbours: Arc<Vec<(Ipv4Addr, Mac)>>,
    /// Neighbours learned from the kernel's ARP on the uplink (none configured for them).
    pub learned_neighbours: Arc<Vec<(Ipv4Addr, Mac)>>,
    /// Every neighbour's MAC by address, configured ones over learned ones.
    pub neighbour_macs: Arc<FastMap<[u8; 4], Mac>>,
    /// Services (frontends, endpoints, Maglev tables) and NAT settings.
    pub services: Arc<ServiceTable>,
    pub nat: Arc<NatInfo>,
    /// The configuration this snapshot was built from.
    pub config: ConfigState,
}

/// A node configuration with its Services held apart, each behind an `Arc`, so that a
/// change to one Service copies neither the others nor the rest of the configuration.
#[derive(Clone, Debug)]
pub struct ConfigState {
    /// Everything but the Services (`base.services` is always empty).
    pub base: Arc<NodeConfig>,
    pub services: Arc<Vec<Arc<Service>>>,
}

impl ConfigState {
    pub fn new(mut cfg: NodeConfig) -> Self {
        let services = std::mem::take(&mut cfg.services)
            .into_iter()
            .map(Arc::new)
            .collect();
        ConfigState {
            base: Arc::new(cfg),
            services: Arc::new(services),
        }
    }

    /// The whole configuration (a copy: for dumps and full replaces, not per change).
    pub fn to_node_config(&self) -> NodeConfig {
        let mut c = NodeConfig::clone(&self.base);
        c.services = self.services.iter().map(|s| Service::clone(s)).collect();
        c
    }
}

impl Snapshot {
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(usize::from(id))
    }
    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports.iter().find(|p| p.name == name).map(|p| p.id)
    }
    /// True when a tunnel from `peer` may carry a packet from `src`: the peer's pods or the
    /// peer node itself.
    pub fn peer_may_send(&self, peer: u16, src: [u8; 4]) -> bool {
        self.peers
            .get(usize::from(peer))
            .is_some_and(|p| p.address == src || p.pod_cidr.contains(u32::from_be_bytes(src)))
    }

    pub fn route(&self, dst: [u8; 4]) -> Option<&RouteEntry> {
        self.fib
            .lookup(dst)
            .and_then(|i| self.routes.get(i as usize))
    }
}
