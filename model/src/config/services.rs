//! The `[[service]]` and `[nat]` sections of the node configuration: Kubernetes Services
//! with their endpoints (as kube-proxy sees them), and the NAT / conntrack settings.
//!
//! Parsing checks syntax; `tables::services` validates meaning and builds the lookup tables.

use crate::Prefix;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP,
}

/// externalTrafficPolicy / internalTrafficPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default, rename = "type")]
    pub kind: ServiceType,
    /// The ClusterIP (inside `nat.service_cidr`); `None` for a headless Service (ignored).
    #[serde(default)]
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub external_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub load_balancer_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub session_affinity: SessionAffinity,
    /// ClientIP affinity timeout in seconds (Kubernetes default 10800).
    #[serde(default = "default_affinity_timeout")]
    pub session_affinity_timeout: u32,
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    #[serde(default)]
    pub internal_traffic_policy: TrafficPolicy,
    /// healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local): TCP port of the node
    /// address where podswitchd answers HTTP with the number of local endpoints (200, or
    /// 503 when there is none), as kube-proxy does for external load balancers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<u16>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// Port name (required when the Service has several ports).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub port: u16,
    /// Port on the endpoints; defaults to `port`.
    #[serde(default)]
    pub target_port: Option<u16>,
    /// NodePort (NodePort and LoadBalancer Services), inside `nat.node_port_range`.
    #[serde(default)]
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// Node hosting the endpoint; when absent it is derived: local if `ip` is in this node's
    /// pod_cidr, else the peer whose pod_cidr holds it.
    #[serde(default)]
    pub node: Option<String>,
    /// Per-Service-port target port overrides, by Service port name (named target ports).
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    #[serde(default = "yes")]
    pub ready: bool,
    /// Defaults to `ready`.
    #[serde(default)]
    pub serving: Option<bool>,
    #[serde(default)]
    pub terminating: bool,
}

impl Endpoint {
    pub fn serving(&self) -> bool {
        self.serving.unwrap_or(self.ready)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatSettings {
    /// Range ClusterIPs come from; packets to it matching no Service port are dropped.
    #[serde(default = "default_service_cidr")]
    pub service_cidr: Prefix,
    /// Inclusive NodePort range.
    #[serde(default = "default_node_port_range")]
    pub node_port_range: [u16; 2],
    /// SNAT pod traffic leaving through the uplink to non-cluster destinations.
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// Inclusive source-port (ICMP identifier) range for SNAT; the default stays clear of
    /// the kernel's ephemeral ports so replies to the node address on it are the switch's.
    #[serde(default = "default_snat_ports")]
    pub snat_port_range: [u16; 2],
    /// Hard cap on conntrack entries (fixed when the conntrack table is created).
    #[serde(default = "default_ct_max")]
    pub conntrack_max: u32,
    #[serde(default)]
    pub timeouts: Timeouts,
}

impl Default for NatSettings {
    fn default() -> Self {
        NatSettings {
            service_cidr: default_service_cidr(),
            node_port_range: default_node_port_range(),
            masquerade: true,
            snat_port_range: default_snat_ports(),
            conntrack_max: default_ct_max(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Conntrack timeouts in seconds; the defaults are the Linux kernel's (with kube-proxy's
/// 86400 s for established TCP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    /// UDP flow that has not seen a reply.
    pub udp: u32,
    /// UDP flow that has seen traffic both ways.
    pub udp_stream: u32,
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 86400,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_namespace() -> String {
    "default".into()
}
fn default_affinity_timeout() -> u32 {
    10800
}
fn default_service_cidr() -> Prefix {
    Prefix {
        addr: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
        len: 12,
    }
}
fn default_node_port_range() -> [u16; 2] {
    [30000, 32767]
}
fn default_snat_ports() -> [u16; 2] {
    [61000, 65535]
}
fn default_ct_max() -> u32 {
    524_288
}
