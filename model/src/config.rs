//! The node configuration file (TOML), as written by operators or the controller.
//!
//! Parsing checks syntax; `tables::build` checks meaning (overlaps, unknown names) and
//! reports every problem with the section it came from.

use crate::{Mac, Prefix};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::Path;

pub mod policy;
pub mod services;
pub use policy::{
    AddressSet, Established, PodPolicy, PolicyDirection, PolicyPort, PolicyRule, PolicySettings,
};
pub use services::{NatSettings, Service};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlay {
    /// flannel-compatible VXLAN (VNI 1, UDP 8472 by default).
    Vxlan,
    /// Calico-style IP-in-IP (protocol 4).
    Ipip,
    /// flannel host-gw: routed to the peer node's MAC, no encapsulation.
    HostGw,
}

impl Overlay {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlay::Vxlan => "vxlan",
            Overlay::Ipip => "ipip",
            Overlay::HostGw => "host-gw",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: Node,
    pub uplink: Uplink,
    #[serde(default)]
    pub host: Option<HostPort>,
    #[serde(default)]
    pub vxlan: VxlanSettings,
    #[serde(default)]
    pub ipip: IpipSettings,
    #[serde(default)]
    pub icmp: IcmpSettings,
    #[serde(default, rename = "pod")]
    pub pods: Vec<Pod>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<Peer>,
    #[serde(default, rename = "neighbour")]
    pub neighbours: Vec<Neighbour>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Service NAT and conntrack settings (see `services`).
    #[serde(default)]
    pub nat: NatSettings,
    #[serde(default, rename = "service")]
    pub services: Vec<Service>,
    /// NetworkPolicy settings (see `policy`).
    #[serde(default)]
    pub policy: PolicySettings,
    #[serde(default, rename = "address_set")]
    pub address_sets: Vec<AddressSet>,
    #[serde(default, rename = "pod_policy")]
    pub pod_policies: Vec<PodPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// The node's underlay address (on the uplink).
    pub address: Ipv4Addr,
    /// This node's pod subnet, e.g. 10.244.1.0/24.
    pub pod_cidr: Prefix,
    /// The whole cluster's pod network, e.g. 10.244.0.0/16 (informational; routes come from peers).
    #[serde(default)]
    pub cluster_cidr: Option<Prefix>,
    /// The pods' default gateway; defaults to the first address of `pod_cidr`.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// MAC the gateway answers ARP with.
    pub gateway_mac: Mac,
    /// This node's VTEP MAC (inner source MAC of VXLAN frames; flannel.1's MAC).
    #[serde(default)]
    pub vtep_mac: Option<Mac>,
    pub overlay: Overlay,
    /// Answer ARP for same-node pods with the pod's MAC instead of flooding the request.
    #[serde(default)]
    pub proxy_arp: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    pub name: String,
    pub mac: Mac,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Next hop of the default route out of the uplink.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

/// The port into the node's own network stack (the job of cni0's address / cilium_host).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPort {
    pub name: String,
    /// MAC of the kernel side of the host port.
    pub mac: Mac,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanSettings {
    #[serde(default = "default_vxlan_port")]
    pub port: u16,
    #[serde(default = "default_vni")]
    pub vni: u32,
    #[serde(default = "default_ttl")]
    pub ttl: u8,
}

impl Default for VxlanSettings {
    fn default() -> Self {
        VxlanSettings {
            port: default_vxlan_port(),
            vni: default_vni(),
            ttl: default_ttl(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpipSettings {
    #[serde(default = "default_ttl")]
    pub ttl: u8,
}

impl Default for IpipSettings {
    fn default() -> Self {
        IpipSettings { ttl: default_ttl() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpSettings {
    /// ICMP errors per second that one worker may send (token bucket rate).
    #[serde(default = "default_icmp_rate")]
    pub errors_per_sec: u32,
    /// Token bucket depth.
    #[serde(default = "default_icmp_burst")]
    pub burst: u32,
}

impl Default for IcmpSettings {
    fn default() -> Self {
        IcmpSettings {
            errors_per_sec: default_icmp_rate(),
            burst: default_icmp_burst(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// Name of the pod (namespace/name or any label), shown in dumps.
    pub name: String,
    /// The switch-side interface (host end of the pod's veth).
    pub port: String,
    pub ip: Ipv4Addr,
    /// The pod's own MAC (inside its namespace).
    pub mac: Mac,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Accept frames tagged with this VLAN on the port (tag stripped on input, pushed on output).
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The port carries TCP super-frames (GSO) both ways: multi-buffer AF_XDP with an
    /// `xdp.frags` program, the pod keeps its GSO and checksum offloads; podswitch cuts
    /// super-frames to the path (no MSS clamping of the pod's SYNs) and hands super-frames
    /// to it whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gso: bool,
    /// The pod is reached through a tap device instead of a veth: the device is the pod's
    /// own interface, and podswitchd holds its file descriptor (opened with virtio-net
    /// headers, as VPP gives pods). Super-frames cross it whole with their segment size and
    /// partial checksums, whatever the pod's MTU, so a tap port always carries super-frames
    /// (`gso` is implied). `port` then only names the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<PodTap>,
    /// The Kubernetes Pod behind the port (from the CNI plugin's `K8S_POD_*` arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<PodRef>,
    /// The CNI attachment that made the port (for the plugin's CHECK and GC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// Where a pod's tap device is: its network namespace (a `/var/run/netns/<name>` or
/// `/proc/<pid>/ns/net` path) and its name there. The device is made persistent by whoever
/// creates it (podswitch-cni), so it outlives a podswitchd restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodTap {
    pub netns: String,
    pub ifname: String,
}

/// A Kubernetes Pod's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub uid: Option<String>,
}

/// A CNI attachment: the runtime's container ID and the interface name inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    /// The peer's underlay address.
    pub address: Ipv4Addr,
    pub pod_cidr: Prefix,
    /// The peer's VTEP MAC (its flannel.1 MAC); required for VXLAN.
    #[serde(default)]
    pub vtep_mac: Option<Mac>,
    /// Overrides the node's overlay for this peer (mixed mode: host-gw on the same segment).
    #[serde(default)]
    pub overlay: Option<Overlay>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub prefix: Prefix,
    /// Next hop on the uplink (resolved through `neighbour` entries).
    #[serde(default)]
    pub via: Option<Ipv4Addr>,
    /// Send to the host port (the node's own stack).
    #[serde(default)]
    pub to_host: bool,
}

fn default_mtu() -> u16 {
    1500
}
fn default_vxlan_port() -> u16 {
    8472
}
fn default_vni() -> u32 {
    1
}
fn default_ttl() -> u8 {
    64
}
fn default_icmp_rate() -> u32 {
    1000
}
fn default_icmp_burst() -> u32 {
    50
}

impl NodeConfig {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.node
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(self.node.pod_cidr.addr + 1))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}
