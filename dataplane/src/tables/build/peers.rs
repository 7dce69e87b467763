//! The peer table: remote nodes with their encapsulation headers prebuilt. Reads `node`,
//! `uplink`, `vxlan`, `ipip`, `peers` and the neighbour table.

use super::overlay_overhead;
use crate::config::{NodeConfig, Overlay};
use crate::tables::PeerEntry;
use crate::tables::fasthash::FastMap;
use crate::tables::lpm::{Prefix, overlaps};
use crate::wire::{Mac, ethernet, ipv4, udp, vxlan};
use std::sync::Arc;

pub(super) struct Peers {
    pub peers: Arc<Vec<PeerEntry>>,
    pub by_addr: Arc<FastMap<[u8; 4], u16>>,
}

/// Whether the configuration inputs of [`build`] are the same in both.
pub(super) fn same_inputs(a: &NodeConfig, b: &NodeConfig) -> bool {
    a.node == b.node
        && a.uplink == b.uplink
        && a.vxlan == b.vxlan
        && a.ipip == b.ipip
        && a.peers == b.peers
}

pub(super) fn build(
    cfg: &NodeConfig,
    neigh: &FastMap<[u8; 4], Mac>,
    errs: &mut Vec<String>,
) -> Peers {
    let n = &cfg.node;
    let gw_mac = cfg
        .uplink
        .gateway
        .and_then(|g| neigh.get(&g.octets()).copied());
    let mut peers: Vec<PeerEntry> = Vec::new();
    let mut peer_by_addr: FastMap<[u8; 4], u16> = FastMap::default();
    let mut cidrs: Vec<(Prefix, String)> = vec![(n.pod_cidr, format!("node {}", n.name))];
    for p in &cfg.peers {
        let overlay = p.overlay.unwrap_or(n.overlay);
        if p.address == n.address {
            errs.push(format!(
                "peer {:?}: address {} is this node's address",
                p.name, p.address
            ));
        }
        for (c, who) in &cidrs {
            if overlaps(*c, p.pod_cidr) {
                errs.push(format!(
                    "peer {:?}: pod_cidr {} overlaps {who}'s {c}",
                    p.name, p.pod_cidr
                ));
            }
        }
        cidrs.push((p.pod_cidr, format!("peer {}", p.name)));
        if overlay == Overlay::Vxlan && p.vtep_mac.is_none() {
            errs.push(format!(
                "peer {:?}: vtep_mac is required with the vxlan overlay",
                p.name
            ));
        }
        let underlay_mac = neigh.get(&p.address.octets()).copied().or(gw_mac);
        let idx = peers.len() as u16;
        if peer_by_addr.insert(p.address.octets(), idx).is_some() {
            errs.push(format!(
                "peer {:?}: address {} is used by another peer",
                p.name, p.address
            ));
        }
        let dmac = underlay_mac.unwrap_or(Mac::ZERO);
        peers.push(PeerEntry {
            name: p.name.clone(),
            address: p.address.octets(),
            pod_cidr: p.pod_cidr,
            overlay,
            vtep_mac: p.vtep_mac,
            underlay_mac,
            vxlan_template: vxlan_template(cfg, dmac, p.address.octets()),
            ipip_template: ipip_template(cfg, dmac, p.address.octets()),
            mtu: cfg.uplink.mtu.saturating_sub(overlay_overhead(overlay)),
        });
    }
    Peers {
        peers: Arc::new(peers),
        by_addr: Arc::new(peer_by_addr),
    }
}

fn vxlan_template(cfg: &NodeConfig, dmac: Mac, dst: [u8; 4]) -> [u8; 50] {
    let mut t = [0u8; 50];
    ethernet::emit(
        &mut t[0..14],
        dmac,
        cfg.uplink.mac,
        ethernet::ETHERTYPE_IPV4,
    );
    ipv4::emit(
        &mut t[14..34],
        0,
        0,
        0,
        ipv4::FLAG_DF,
        cfg.vxlan.ttl,
        ipv4::PROTO_UDP,
        cfg.node.address.octets(),
        dst,
    );
    udp::emit(&mut t[34..42], 0, cfg.vxlan.port, 0);
    vxlan::emit(&mut t[42..50], cfg.vxlan.vni);
    t
}

fn ipip_template(cfg: &NodeConfig, dmac: Mac, dst: [u8; 4]) -> [u8; 34] {
    let mut t = [0u8; 34];
    ethernet::emit(
        &mut t[0..14],
        dmac,
        cfg.uplink.mac,
        ethernet::ETHERTYPE_IPV4,
    );
    ipv4::emit(
        &mut t[14..34],
        0,
        0,
        0,
        ipv4::FLAG_DF,
        cfg.ipip.ttl,
        ipv4::PROTO_IPIP,
        cfg.node.address.octets(),
        dst,
    );
    t
}
