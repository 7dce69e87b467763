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
    #[serde(default, rename = "type", skip_serializing_if = "is_default")]
    pub kind: ServiceType,
    /// The ClusterIP (inside `nat.service_cidr`); `None` for a headless Service (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub session_affinity: SessionAffinity,
    /// ClientIP affinity timeout in seconds (Kubernetes default 10800).
    #[serde(
        default = "default_affinity_timeout",
        skip_serializing_if = "is_default_affinity_timeout"
    )]
    pub session_affinity_timeout: u32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub external_traffic_policy: TrafficPolicy,
    #[serde(default, skip_serializing_if = "is_default")]
    pub internal_traffic_policy: TrafficPolicy,
    /// healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local): TCP port of the node
    /// address where podswitchd answers HTTP with the number of local endpoints (200, or
    /// 503 when there is none), as kube-proxy does for external load balancers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// Port name (required when the Service has several ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub port: u16,
    /// Port on the endpoints; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// NodePort (NodePort and LoadBalancer Services), inside `nat.node_port_range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// Node hosting the endpoint; when absent it is derived: local if `ip` is in this node's
    /// pod_cidr, else the peer whose pod_cidr holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Per-Service-port target port overrides, by Service port name (named target ports).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ready: bool,
    /// Defaults to `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    #[serde(default, skip_serializing_if = "is_default")]
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

// Fields equal to their default are left out when a Service is written (a full sync of
// 10k Services with 10 endpoints each is then a third of the bytes to encode, send and
// read); reading fills them in again, so what is read back is equal.
fn is_true(b: &bool) -> bool {
    *b
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
fn is_default_affinity_timeout(t: &u32) -> bool {
    *t == default_affinity_timeout()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults are left out when written and come back when read; anything else is kept.
    #[test]
    fn written_without_defaults_and_read_back_equal() {
        let plain: Service = serde_json::from_str(
            r#"{"name":"web","cluster_ip":"10.96.0.10","ports":[{"port":80}],"endpoints":[{"ip":"10.244.1.10"}]}"#,
        )
        .expect("plain Service");
        let json = serde_json::to_string(&plain).expect("write");
        assert_eq!(
            json,
            r#"{"name":"web","namespace":"default","cluster_ip":"10.96.0.10","ports":[{"protocol":"tcp","port":80}],"endpoints":[{"ip":"10.244.1.10"}]}"#
        );
        let full: Service = serde_json::from_str(
            r#"{"name":"lb","namespace":"n","type":"LoadBalancer","cluster_ip":"10.96.0.11",
                "ports":[{"name":"h","protocol":"udp","port":53,"target_port":5353,"node_port":30053}],
                "external_ips":["198.51.100.1"],"load_balancer_ips":["198.51.100.2"],
                "session_affinity":"ClientIP","session_affinity_timeout":60,
                "external_traffic_policy":"Local","internal_traffic_policy":"Local",
                "health_check_node_port":30100,
                "endpoints":[{"ip":"10.244.1.10","node":"node1","ports":{"h":5354},"ready":false,"serving":true,"terminating":true}]}"#,
        )
        .expect("full Service");
        for s in [&plain, &full] {
            let json = serde_json::to_string(s).expect("write");
            assert_eq!(&serde_json::from_str::<Service>(&json).expect("read"), s);
            let toml = toml::to_string(s).expect("write toml");
            assert_eq!(&toml::from_str::<Service>(&toml).expect("read toml"), s);
        }
        let json = serde_json::to_string(&full).expect("write");
        for field in [
            "session_affinity_timeout",
            "terminating",
            "serving",
            "ready",
            "node",
        ] {
            assert!(json.contains(field), "{field} kept: {json}");
        }
    }
}
