//! The immutable table snapshot and its publication cell.

use super::cow::ShardedMap;
use super::fasthash::FastMap;
use super::lpm::{Lpm, Prefix};
use super::named::Named;
use super::services::{NatInfo, ServiceTable};
use crate::config::{
    AddressSet, IcmpSettings, NodeConfig, Overlay, PodPolicy, Service, VxlanSettings,
};
use crate::wire::Mac;
use serde::Serialize;
use std::collections::BTreeSet;
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
    /// Carries TCP super-frames (pod ports with `gso`, or a tap).
    pub gso: bool,
    /// The pod's tap device, for a pod reached through one (else the port is `name`'s
    /// AF_XDP socket).
    pub tap: Option<crate::config::PodTap>,
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
    /// NetworkPolicy compiled per local pod (`tables::policy`).
    pub policy: Arc<super::policy::PolicyTable>,
    /// The configuration this snapshot was built from.
    pub config: ConfigState,
}

/// A node configuration with its Services and NetworkPolicy sections held apart, by name
/// in copy-on-write maps, so that a change to one Service, address set or pod policy
/// copies neither the others nor the rest of the configuration.
#[derive(Clone, Debug)]
pub struct ConfigState {
    /// Everything but the Services, address sets and pod policies (always empty here).
    pub base: Arc<NodeConfig>,
    pub services: ServiceSet,
    pub policy: PolicyConfig,
}

/// The address sets and pod policies of a configuration, by name.
#[derive(Clone, Debug, Default)]
pub struct PolicyConfig {
    pub sets: Named<AddressSet>,
    /// By pod name.
    pub pods: Named<PodPolicy>,
}

impl PolicyConfig {
    /// Takes the sections out of `cfg`.
    pub fn take(cfg: &mut NodeConfig) -> Self {
        PolicyConfig {
            sets: Named::from_list(std::mem::take(&mut cfg.address_sets), |s| &s.name),
            pods: Named::from_list(std::mem::take(&mut cfg.pod_policies), |p| &p.pod),
        }
    }
}

impl PolicyConfig {
    /// Whether nothing differs from `old` (cheap when the two share their maps).
    pub fn same_as(&self, old: &PolicyConfig) -> bool {
        self.sets.changed_since(&old.sets).is_empty()
            && self.pods.changed_since(&old.pods).is_empty()
            && self.sets.has_dups() == old.sets.has_dups()
            && self.pods.has_dups() == old.pods.has_dups()
    }
}

impl ConfigState {
    pub fn new(mut cfg: NodeConfig) -> Self {
        let services = ServiceSet::from_list(std::mem::take(&mut cfg.services));
        let policy = PolicyConfig::take(&mut cfg);
        ConfigState {
            base: Arc::new(cfg),
            services,
            policy,
        }
    }

    /// The whole configuration (a copy: for dumps and full replaces, not per change).
    pub fn to_node_config(&self) -> NodeConfig {
        let mut c = NodeConfig::clone(&self.base);
        c.services = self
            .services
            .in_order()
            .iter()
            .map(|s| Service::clone(s))
            .collect();
        c.address_sets = self
            .policy
            .sets
            .in_order()
            .iter()
            .map(|s| AddressSet::clone(s))
            .collect();
        c.pod_policies = self
            .policy
            .pods
            .in_order()
            .iter()
            .map(|p| PodPolicy::clone(p))
            .collect();
        c
    }
}

/// The Services of a configuration by `namespace/name`, in the order they were added (a
/// replaced Service moves to the end, as a new one is added there). Cloning shares it; a
/// change copies one shard.
#[derive(Clone, Debug, Default)]
pub struct ServiceSet {
    /// name -> (position, Service).
    by_name: ShardedMap<Arc<str>, (u64, Arc<Service>)>,
    /// Services of a list whose name came earlier in it: kept (never published) so that
    /// the build reports them as defined twice.
    dups: Vec<(u64, Arc<Service>)>,
    next: u64,
    /// (health_check_node_port, name) of the Services that have one (few; copied when one
    /// of them changes): what the uplink filter and the health-check listener read.
    health_checks: Arc<BTreeSet<(u16, Arc<str>)>>,
}

impl ServiceSet {
    pub fn from_list(list: Vec<Service>) -> Self {
        let mut set = ServiceSet::default();
        for s in list {
            let name: Arc<str> = super::services::service_name(&s).into();
            if set.contains(&name) {
                set.dups.push((set.next, Arc::new(s)));
                set.next += 1;
            } else {
                set.insert(name, Arc::new(s));
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.by_name.len() + self.dups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether Service `namespace/name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Service>> {
        self.by_name.get(name).map(|(_, s)| s)
    }

    /// Adds or replaces Service `name` (its `namespace/name`), placing it last.
    pub fn insert(&mut self, name: Arc<str>, s: Arc<Service>) {
        let hc = s.health_check_node_port;
        if let Some((_, old)) = self.by_name.insert(name.clone(), (self.next, s)) {
            self.forget_health_check(&old, &name);
        }
        if let Some(p) = hc {
            Arc::make_mut(&mut self.health_checks).insert((p, name));
        }
        self.next += 1;
    }

    /// Removes Service `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.by_name.remove(name) {
            Some((_, old)) => {
                self.forget_health_check(&old, name);
                true
            }
            None => false,
        }
    }

    fn forget_health_check(&mut self, old: &Service, name: &str) {
        if let Some(p) = old.health_check_node_port {
            Arc::make_mut(&mut self.health_checks).remove(&(p, Arc::from(name)));
        }
    }

    /// Every Service, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.by_name
            .iter()
            .map(|(_, (_, s))| s)
            .chain(self.dups.iter().map(|(_, s)| s))
    }

    /// (health_check_node_port, `namespace/name`) of every Service that has one, sorted.
    pub fn health_checks(&self) -> impl Iterator<Item = (u16, &Arc<str>)> {
        self.health_checks.iter().map(|(p, n)| (*p, n))
    }

    /// Every Service in order (O(n log n): for full builds and dumps, not per change).
    pub fn in_order(&self) -> Vec<Arc<Service>> {
        let mut v: Vec<(u64, Arc<Service>)> = self
            .by_name
            .iter()
            .map(|(_, (i, s))| (*i, s.clone()))
            .chain(self.dups.iter().cloned())
            .collect();
        v.sort_unstable_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, s)| s).collect()
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
