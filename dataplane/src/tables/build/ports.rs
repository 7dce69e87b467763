//! The port table and the MAC table: uplink first (id 0), then the host port, then pods in
//! configuration order. Reads `node`, `uplink`, `host` and `pods`.

use crate::config::NodeConfig;
use crate::limits::MAX_FRAME;
use crate::tables::fasthash::FastMap;
use crate::tables::{PortEntry, PortId, PortKind};
use crate::wire::Mac;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub(super) struct Ports {
    pub ports: Arc<Vec<PortEntry>>,
    pub uplink: PortId,
    pub host: Option<PortId>,
    pub macs: Arc<FastMap<Mac, PortId>>,
}

/// Whether the inputs of [`build`] are the same in both configurations.
pub(super) fn same_inputs(a: &NodeConfig, b: &NodeConfig) -> bool {
    a.node == b.node && a.uplink == b.uplink && a.host == b.host && a.pods == b.pods
}

pub(super) fn build(cfg: &NodeConfig, errs: &mut Vec<String>) -> Ports {
    let n = &cfg.node;
    let gateway = cfg.gateway();
    let mut ports: Vec<PortEntry> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut add_port =
        |ports: &mut Vec<PortEntry>, errs: &mut Vec<String>, e: PortEntry| -> PortId {
            if !names.insert(e.name.clone()) {
                errs.push(format!("port name {:?} is used twice", e.name));
            }
            let id = ports.len() as PortId;
            ports.push(PortEntry { id, ..e });
            id
        };
    let uplink = add_port(
        &mut ports,
        errs,
        PortEntry {
            id: 0,
            name: cfg.uplink.name.clone(),
            kind: PortKind::Uplink,
            mac: cfg.uplink.mac,
            ip: Some(n.address.octets()),
            mtu: cfg.uplink.mtu,
            vlan: None,
            gso: false,
            tap: None,
            label: "uplink".into(),
        },
    );
    let host = cfg.host.as_ref().map(|h| {
        add_port(
            &mut ports,
            errs,
            PortEntry {
                id: 0,
                name: h.name.clone(),
                kind: PortKind::Host,
                mac: h.mac,
                ip: None,
                mtu: h.mtu,
                vlan: None,
                gso: false,
                tap: None,
                label: "host".into(),
            },
        )
    });
    let mut macs: FastMap<Mac, PortId> = FastMap::default();
    if let (Some(h), Some(hc)) = (host, cfg.host.as_ref()) {
        macs.insert(hc.mac, h);
    }
    let mut pod_ips: HashSet<Ipv4Addr> = HashSet::new();
    for p in &cfg.pods {
        if !n.pod_cidr.contains(u32::from(p.ip)) {
            errs.push(format!(
                "pod {:?}: ip {} is outside node.pod_cidr {}",
                p.name, p.ip, n.pod_cidr
            ));
        }
        if p.ip == gateway {
            errs.push(format!(
                "pod {:?}: ip {} is the gateway address",
                p.name, p.ip
            ));
        }
        if !pod_ips.insert(p.ip) {
            errs.push(format!(
                "pod {:?}: ip {} is used by another pod",
                p.name, p.ip
            ));
        }
        if p.mac.is_multicast() || p.mac.is_zero() || p.mac == n.gateway_mac {
            errs.push(format!(
                "pod {:?}: mac {} must be unicast and not the gateway MAC",
                p.name, p.mac
            ));
        }
        if !(68..=MAX_FRAME as u16 - 18).contains(&p.mtu) {
            errs.push(format!("pod {:?}: mtu {} is out of range", p.name, p.mtu));
        }
        if let Some(v) = p.vlan
            && (v == 0 || v >= 4095)
        {
            errs.push(format!("pod {:?}: vlan {v} must be 1..4094", p.name));
        }
        if let Some(t) = &p.tap
            && (t.netns.is_empty() || t.ifname.is_empty() || t.ifname.len() > 15)
        {
            errs.push(format!(
                "pod {:?}: tap needs a netns path and an interface name of 1-15 bytes",
                p.name
            ));
        }
        let id = add_port(
            &mut ports,
            errs,
            PortEntry {
                id: 0,
                name: p.port.clone(),
                kind: PortKind::Pod,
                mac: p.mac,
                ip: Some(p.ip.octets()),
                mtu: p.mtu,
                vlan: p.vlan,
                gso: p.gso || p.tap.is_some(),
                tap: p.tap.clone(),
                label: p.name.clone(),
            },
        );
        if macs.insert(p.mac, id).is_some() {
            errs.push(format!(
                "pod {:?}: mac {} is used by another port",
                p.name, p.mac
            ));
        }
    }
    Ports {
        ports: Arc::new(ports),
        uplink,
        host,
        macs: Arc::new(macs),
    }
}
