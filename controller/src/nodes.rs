//! Nodes, the way flannel's kube subnet manager sees them: a node's pod subnet is its
//! `spec.podCIDR`, its lease is a set of `flannel.alpha.coreos.com/` annotations. A peer is
//! every other Node with a podCIDR and those annotations; a Node without
//! `kube-subnet-manager: "true"` is ignored, as flannel ignores it.

use crate::netconf::parse_backend;
use k8s_openapi::api::core::v1::Node;
use podswitch_model::config::{Overlay, Peer};
use podswitch_model::{Mac, Prefix};
use serde::Deserialize;
use std::net::Ipv4Addr;

pub const PREFIX: &str = "flannel.alpha.coreos.com/";
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const PUBLIC_IP_OVERWRITE: &str = "flannel.alpha.coreos.com/public-ip-overwrite";
pub const SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// What a Node contributes: a peer, nothing (not a flannel-style node, or not ready yet),
/// or a rejection naming what is wrong with it.
#[derive(Debug, Clone)]
pub enum NodePeer {
    Peer(Peer),
    /// Not a peer, and not an error: the reason is shown in `status`.
    Ignored(String),
    Rejected(String),
}

#[derive(Deserialize)]
struct VxlanData {
    #[serde(rename = "VNI")]
    vni: Option<u32>,
    #[serde(rename = "VtepMAC")]
    vtep_mac: Option<String>,
}

/// The pod subnet of a Node (IPv4 of `spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidr(node: &Node) -> Result<Option<Prefix>, String> {
    let spec = match &node.spec {
        Some(s) => s,
        None => return Ok(None),
    };
    let mut all: Vec<&String> = spec.pod_cidrs.iter().flatten().collect();
    if all.is_empty() {
        all.extend(spec.pod_cidr.iter());
    }
    for c in all {
        if c.contains(':') {
            continue; // the IPv6 half of a dual-stack node
        }
        return c
            .parse::<Prefix>()
            .map(Some)
            .map_err(|e| format!("spec.podCIDR {c:?}: {e}"));
    }
    Ok(None)
}

/// Turns another Node into a peer of this node (whose overlay is `own`).
pub fn peer_of(node: &Node, own: Overlay, own_vni: u32) -> NodePeer {
    let name = node.metadata.name.clone().unwrap_or_default();
    let ann = node.metadata.annotations.clone().unwrap_or_default();
    if ann.get(SUBNET_MANAGER).map(String::as_str) != Some("true") {
        return NodePeer::Ignored(format!("no {SUBNET_MANAGER}=\"true\" annotation"));
    }
    let pod_cidr = match pod_cidr(node) {
        Ok(Some(p)) => p,
        Ok(None) => return NodePeer::Ignored("no podCIDR yet".into()),
        Err(e) => return NodePeer::Rejected(e),
    };
    let ip_text = ann
        .get(PUBLIC_IP_OVERWRITE)
        .or_else(|| ann.get(PUBLIC_IP))
        .cloned();
    let address: Ipv4Addr = match ip_text.as_deref().map(str::parse) {
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            return NodePeer::Rejected(format!(
                "{PUBLIC_IP} {:?} is not an IPv4 address",
                ip_text.unwrap_or_default()
            ));
        }
        None => return NodePeer::Ignored(format!("no {PUBLIC_IP} annotation yet")),
    };
    let backend = match ann.get(BACKEND_TYPE) {
        None => return NodePeer::Ignored(format!("no {BACKEND_TYPE} annotation yet")),
        Some(t) => match parse_backend(t) {
            Ok(b) => b,
            Err(e) => return NodePeer::Rejected(format!("{BACKEND_TYPE}: {e}")),
        },
    };
    let data = ann.get(BACKEND_DATA).map(String::as_str).unwrap_or("null");
    let mut vtep_mac = None;
    if backend == Overlay::Vxlan {
        let d: VxlanData = match serde_json::from_str(data) {
            Ok(d) => d,
            Err(e) => return NodePeer::Rejected(format!("{BACKEND_DATA} {data:?}: {e}")),
        };
        match d.vtep_mac.as_deref().map(str::parse::<Mac>) {
            Some(Ok(m)) => vtep_mac = Some(m),
            Some(Err(e)) => return NodePeer::Rejected(format!("{BACKEND_DATA}: VtepMAC: {e}")),
            None => return NodePeer::Rejected(format!("{BACKEND_DATA} {data:?}: no VtepMAC")),
        }
        if let Some(v) = d.vni
            && v != own_vni
        {
            return NodePeer::Rejected(format!(
                "{BACKEND_DATA}: VNI {v} differs from this cluster's VNI {own_vni}"
            ));
        }
    }
    NodePeer::Peer(Peer {
        name,
        address,
        pod_cidr,
        vtep_mac,
        overlay: (backend != own).then_some(backend),
    })
}

/// flannel's lease annotations for this node, as flanneld writes them.
pub fn own_annotations(
    backend: Overlay,
    vni: u32,
    vtep_mac: Option<Mac>,
    public_ip: Ipv4Addr,
) -> serde_json::Map<String, serde_json::Value> {
    let data = match (backend, vtep_mac) {
        (Overlay::Vxlan, Some(m)) => format!("{{\"VNI\":{vni},\"VtepMAC\":\"{m}\"}}"),
        _ => "null".to_string(),
    };
    let mut m = serde_json::Map::new();
    m.insert(BACKEND_TYPE.into(), backend.as_str().into());
    m.insert(BACKEND_DATA.into(), data.into());
    m.insert(SUBNET_MANAGER.into(), "true".into());
    m.insert(PUBLIC_IP.into(), public_ip.to_string().into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ann: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_,_>>()},
            "spec": {"podCIDR": cidr},
        }))
        .unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        (SUBNET_MANAGER, "true"),
        (BACKEND_TYPE, "vxlan"),
        (BACKEND_DATA, r#"{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}"#),
        (PUBLIC_IP, "192.168.1.11"),
    ];

    #[test]
    fn a_flannel_node_is_a_peer() {
        match peer_of(
            &node("node2", Some("10.244.2.0/24"), &GOOD),
            Overlay::Vxlan,
            1,
        ) {
            NodePeer::Peer(p) => {
                assert_eq!(p.name, "node2");
                assert_eq!(p.address, Ipv4Addr::new(192, 168, 1, 11));
                assert_eq!(p.pod_cidr.to_string(), "10.244.2.0/24");
                assert_eq!(p.vtep_mac.unwrap().to_string(), "aa:bb:cc:dd:ee:02");
                assert_eq!(p.overlay, None);
            }
            other => panic!("{other:?}"),
        }
        // A host-gw node in a vxlan cluster keeps its own backend (mixed mode).
        let hg = [
            (SUBNET_MANAGER, "true"),
            (BACKEND_TYPE, "host-gw"),
            (BACKEND_DATA, "null"),
            (PUBLIC_IP, "192.168.1.12"),
        ];
        match peer_of(
            &node("node3", Some("10.244.3.0/24"), &hg),
            Overlay::Vxlan,
            1,
        ) {
            NodePeer::Peer(p) => assert_eq!(p.overlay, Some(Overlay::HostGw)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nodes_that_are_not_peers() {
        let ign = |n: &Node| matches!(peer_of(n, Overlay::Vxlan, 1), NodePeer::Ignored(_));
        assert!(ign(&node("cp", Some("10.244.0.0/24"), &[])));
        assert!(ign(&node("n", None, &GOOD)));
        let rej = |ann: &[(&str, &str)]| match peer_of(
            &node("bad", Some("10.244.9.0/24"), ann),
            Overlay::Vxlan,
            1,
        ) {
            NodePeer::Rejected(e) => e,
            other => panic!("{other:?}"),
        };
        let mut a = GOOD;
        a[2] = (BACKEND_DATA, "{garbage");
        assert!(rej(&a).contains("backend-data"));
        a[2] = (BACKEND_DATA, r#"{"VNI":1,"VtepMAC":"zz"}"#);
        assert!(rej(&a).contains("VtepMAC"));
        a = GOOD;
        a[1] = (BACKEND_TYPE, "wireguard");
        assert!(rej(&a).contains("wireguard"));
        a = GOOD;
        a[3] = (PUBLIC_IP, "fe80::1");
        assert!(rej(&a).contains("public-ip"));
    }

    #[test]
    fn own_annotations_are_flannels() {
        let m = own_annotations(
            Overlay::Vxlan,
            1,
            Some("02:00:0a:f4:01:ff".parse().unwrap()),
            Ipv4Addr::new(192, 168, 1, 10),
        );
        assert_eq!(
            m[BACKEND_DATA],
            r#"{"VNI":1,"VtepMAC":"02:00:0a:f4:01:ff"}"#
        );
        assert_eq!(m[BACKEND_TYPE], "vxlan");
        assert_eq!(m[SUBNET_MANAGER], "true");
        assert_eq!(m[PUBLIC_IP], "192.168.1.10");
    }
}
