//! The FIB: routes with their adjacency resolved, and the LPM trie over them. Reads `node`,
//! `uplink`, `host`, `routes`, and the port, peer and neighbour tables.

use crate::config::{NodeConfig, Overlay};
use crate::tables::fasthash::FastMap;
use crate::tables::lpm::{Lpm, Prefix};
use crate::tables::{PeerEntry, PortEntry, PortId, PortKind, RouteEntry, RouteTarget};
use crate::wire::Mac;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub(super) struct Fib {
    pub fib: Arc<Lpm>,
    pub routes: Arc<Vec<RouteEntry>>,
}

/// Whether the configuration inputs of [`build`] are the same in both.
pub(super) fn same_inputs(a: &NodeConfig, b: &NodeConfig) -> bool {
    a.node == b.node && a.uplink == b.uplink && a.host == b.host && a.routes == b.routes
}

/// The tables the FIB reads besides the configuration.
pub(super) struct Inputs<'a> {
    pub ports: &'a [PortEntry],
    pub uplink: PortId,
    pub host: Option<PortId>,
    pub peers: &'a [PeerEntry],
    pub neigh: &'a FastMap<[u8; 4], Mac>,
}

/// Entries lowest priority first: for an equal prefix the later entry wins.
pub(super) fn build(cfg: &NodeConfig, t: Inputs<'_>, errs: &mut Vec<String>) -> Fib {
    let n = &cfg.node;
    let (uplink, host, neigh) = (t.uplink, t.host, t.neigh);
    let gateway = cfg.gateway();
    let vtep_mac = n.vtep_mac.unwrap_or(n.gateway_mac);
    let mut routes: Vec<RouteEntry> = Vec::new();
    let uplink_mtu = cfg.uplink.mtu;
    let via = |nh: Ipv4Addr, prefix: Prefix, origin: String| RouteEntry {
        prefix,
        target: RouteTarget::Via {
            neighbour: nh.octets(),
        },
        out_port: neigh.get(&nh.octets()).map(|_| uplink),
        dst_mac: neigh.get(&nh.octets()).copied().unwrap_or(Mac::ZERO),
        src_mac: cfg.uplink.mac,
        mtu: uplink_mtu,
        origin,
    };
    if let Some(g) = cfg.uplink.gateway {
        routes.push(via(g, Prefix { addr: 0, len: 0 }, "uplink.gateway".into()));
    }
    for r in &cfg.routes {
        match (r.via, r.to_host) {
            (Some(nh), false) => routes.push(via(nh, r.prefix, format!("route {}", r.prefix))),
            (None, true) => match (host, cfg.host.as_ref()) {
                (Some(h), Some(hc)) => routes.push(host_route(
                    r.prefix,
                    h,
                    hc.mac,
                    n.gateway_mac,
                    hc.mtu,
                    format!("route {}", r.prefix),
                )),
                _ => errs.push(format!("route {}: to_host needs a [host] port", r.prefix)),
            },
            _ => errs.push(format!(
                "route {}: give exactly one of `via` or `to_host = true`",
                r.prefix
            )),
        }
    }
    for (i, p) in t.peers.iter().enumerate() {
        let (out_port, dst_mac, src_mac) = match p.overlay {
            Overlay::Vxlan => (
                p.underlay_mac.map(|_| uplink),
                p.vtep_mac.unwrap_or(Mac::ZERO),
                vtep_mac,
            ),
            Overlay::Ipip | Overlay::HostGw => (
                p.underlay_mac.map(|_| uplink),
                p.underlay_mac.unwrap_or(Mac::ZERO),
                cfg.uplink.mac,
            ),
        };
        // The peer's pod subnet, and the peer node itself: node-to-remote-pod traffic and its
        // replies cross the overlay both ways, so the tunnel source checks hold.
        let node_prefix = Prefix::new(p.address, 32).unwrap_or(Prefix { addr: 0, len: 32 });
        for (prefix, what) in [(p.pod_cidr, "pods"), (node_prefix, "node")] {
            routes.push(RouteEntry {
                prefix,
                target: RouteTarget::Peer { peer: i as u16 },
                out_port,
                dst_mac,
                src_mac,
                mtu: p.mtu,
                origin: format!("peer {} {what} ({})", p.name, p.overlay.as_str()),
            });
        }
    }
    routes.push(RouteEntry {
        prefix: n.pod_cidr,
        target: RouteTarget::NoSuchPod,
        out_port: None,
        dst_mac: Mac::ZERO,
        src_mac: n.gateway_mac,
        mtu: 0,
        origin: "node.pod_cidr".into(),
    });
    let host_mtu = cfg.host.as_ref().map_or(1500, |h| h.mtu);
    let host_mac = cfg.host.as_ref().map_or(Mac::ZERO, |h| h.mac);
    routes.push(RouteEntry {
        prefix: Prefix::new(n.address.octets(), 32).unwrap_or(Prefix { addr: 0, len: 32 }),
        target: RouteTarget::NodeAddress,
        out_port: host,
        dst_mac: host_mac,
        src_mac: n.gateway_mac,
        mtu: host_mtu,
        origin: "node.address".into(),
    });
    routes.push(RouteEntry {
        prefix: Prefix::new(gateway.octets(), 32).unwrap_or(Prefix { addr: 0, len: 32 }),
        target: RouteTarget::Gateway,
        out_port: None,
        dst_mac: Mac::ZERO,
        src_mac: n.gateway_mac,
        mtu: 0,
        origin: "node.gateway".into(),
    });
    for pe in t.ports.iter().filter(|p| p.kind == PortKind::Pod) {
        let ip = pe.ip.unwrap_or([0; 4]);
        routes.push(RouteEntry {
            prefix: Prefix::new(ip, 32).unwrap_or(Prefix { addr: 0, len: 32 }),
            target: RouteTarget::Pod { port: pe.id },
            out_port: Some(pe.id),
            dst_mac: pe.mac,
            src_mac: n.gateway_mac,
            mtu: pe.mtu,
            origin: format!("pod {}", pe.label),
        });
    }
    let fib_entries: Vec<(Prefix, u32)> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.prefix, i as u32))
        .collect();
    Fib {
        fib: Arc::new(Lpm::build(&fib_entries)),
        routes: Arc::new(routes),
    }
}

fn host_route(
    prefix: Prefix,
    port: PortId,
    mac: Mac,
    src: Mac,
    mtu: u16,
    origin: String,
) -> RouteEntry {
    RouteEntry {
        prefix,
        target: RouteTarget::Host,
        out_port: Some(port),
        dst_mac: mac,
        src_mac: src,
        mtu,
        origin,
    }
}
