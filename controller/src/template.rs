//! The node template: what only the node itself knows (its interfaces and MACs), in the node
//! configuration's own TOML keys. The cluster supplies the rest: the pod subnet from
//! `node.spec.podCIDR`, the cluster network and the overlay from net-conf.json.

use crate::netconf::NetConf;
use podswitch_model::Mac;
use podswitch_model::Prefix;
use podswitch_model::config::services::NatSettings;
use podswitch_model::config::{
    HostPort, IcmpSettings, IpipSettings, NodeConfig, Uplink, VxlanSettings,
};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTemplate {
    pub node: TemplateNode,
    pub uplink: Uplink,
    #[serde(default)]
    pub host: Option<HostPort>,
    #[serde(default)]
    pub icmp: IcmpSettings,
    #[serde(default)]
    pub ipip: IpipSettings,
    /// Service CIDR, NodePort range, masquerade and conntrack settings.
    #[serde(default)]
    pub nat: NatSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateNode {
    /// The Node object's name.
    pub name: String,
    /// The node's underlay address; flannel's `public-ip`.
    pub address: Ipv4Addr,
    pub gateway_mac: Mac,
    #[serde(default)]
    pub vtep_mac: Option<Mac>,
    #[serde(default)]
    pub proxy_arp: bool,
    /// Outer TTL of VXLAN packets (default 64).
    #[serde(default)]
    pub vxlan_ttl: Option<u8>,
}

impl NodeTemplate {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The node's configuration without pods, peers or Services (those follow the cluster).
    pub fn node_config(&self, pod_cidr: Prefix, net: &NetConf) -> Result<NodeConfig, String> {
        if !net.network.contains(pod_cidr.addr) || pod_cidr.len < net.network.len {
            return Err(format!(
                "the node's podCIDR {pod_cidr} is not inside the cluster network {}",
                net.network
            ));
        }
        let d = VxlanSettings::default();
        let vxlan = VxlanSettings {
            vni: net.vni,
            port: net.port,
            ttl: self.node.vxlan_ttl.unwrap_or(d.ttl),
        };
        serde_json::from_value(serde_json::json!({
            "node": {
                "name": self.node.name,
                "address": self.node.address,
                "pod_cidr": pod_cidr,
                "cluster_cidr": net.network,
                "gateway_mac": self.node.gateway_mac,
                "vtep_mac": self.node.vtep_mac,
                "overlay": net.backend,
                "proxy_arp": self.node.proxy_arp,
            },
            "uplink": self.uplink,
            "host": self.host,
            "vxlan": vxlan,
            "ipip": self.ipip,
            "icmp": self.icmp,
            "nat": self.nat,
        }))
        .map_err(|e| format!("node template: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"
[node]
name = "node1"
address = "192.168.1.10"
gateway_mac = "02:00:0a:f4:01:01"
vtep_mac = "02:00:0a:f4:01:ff"
[uplink]
name = "eth0"
mac = "02:00:c0:a8:01:10"
[host]
name = "psw-host"
mac = "02:00:0a:f4:01:fe"
"#;

    #[test]
    fn fills_what_the_cluster_knows() {
        let t: NodeTemplate = toml::from_str(T).unwrap();
        let net =
            NetConf::parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}"#)
                .unwrap();
        let c = t
            .node_config("10.244.1.0/24".parse().unwrap(), &net)
            .unwrap();
        assert_eq!(c.node.pod_cidr.to_string(), "10.244.1.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(c.node.cluster_cidr.unwrap().to_string(), "10.244.0.0/16");
        assert_eq!(c.uplink.name, "eth0");
        assert!(c.pods.is_empty() && c.peers.is_empty() && c.services.is_empty());
        // It round-trips as the daemon's TOML.
        NodeConfig::from_toml(&c.to_toml()).unwrap();
        let e = t
            .node_config("10.245.1.0/24".parse().unwrap(), &net)
            .unwrap_err();
        assert!(e.contains("not inside the cluster network"), "{e}");
    }
}
