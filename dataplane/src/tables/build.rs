//! Builds a [`Snapshot`] from a [`NodeConfig`], validating it as a whole.

use super::fasthash::FastMap;
use super::lpm::{Lpm, Prefix};
use super::snapshot::*;
use crate::config::{Neighbour, NodeConfig, Overlay};
use crate::wire::{Mac, ethernet, ipv4, udp, vxlan};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Encapsulation overhead of an overlay, in bytes of IPv4 MTU.
pub fn overlay_overhead(o: Overlay) -> u16 {
    match o {
        Overlay::Vxlan => vxlan::OVERHEAD as u16,
        Overlay::Ipip => ipv4::MIN_HEADER_LEN as u16,
        Overlay::HostGw => 0,
    }
}

/// Validates `cfg` and builds the snapshot; on error returns every problem found, one per line.
pub fn build(cfg: &NodeConfig, generation: u64) -> Result<Snapshot, String> {
    build_with_learned(cfg, &[], generation)
}

/// Underlay next hops the configuration needs a MAC for but does not give one: peer node
/// addresses, the uplink gateway and `via` next hops without a `[[neighbour]]` entry. The
/// daemon resolves these through the kernel's ARP on the uplink (`daemon::neigh`).
pub fn unresolved_next_hops(cfg: &NodeConfig) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = cfg
        .peers
        .iter()
        .map(|p| p.address)
        .chain(cfg.uplink.gateway)
        .chain(cfg.routes.iter().filter_map(|r| r.via))
        .filter(|ip| !cfg.neighbours.iter().any(|n| n.ip == *ip))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// As [`build`], with neighbours learned at run time (kernel ARP on the uplink) added under
/// the configured ones: a configured `[[neighbour]]` always wins.
pub fn build_with_learned(
    cfg: &NodeConfig,
    learned: &[Neighbour],
    generation: u64,
) -> Result<Snapshot, String> {
    let mut errs: Vec<String> = Vec::new();
    let n = &cfg.node;
    let gateway = cfg.gateway();
    let vtep_mac = n.vtep_mac.unwrap_or(n.gateway_mac);
    let uses_vxlan =
        n.overlay == Overlay::Vxlan || cfg.peers.iter().any(|p| p.overlay == Some(Overlay::Vxlan));

    if !n.pod_cidr.contains(u32::from(gateway)) {
        errs.push(format!(
            "node.gateway {gateway} is outside node.pod_cidr {}",
            n.pod_cidr
        ));
    }
    if n.pod_cidr.contains(u32::from(n.address)) {
        errs.push(format!(
            "node.address {} is inside the pod subnet {}",
            n.address, n.pod_cidr
        ));
    }
    if uses_vxlan && n.vtep_mac.is_none() {
        errs.push("node.vtep_mac is required with the vxlan overlay".into());
    }
    if n.gateway_mac.is_multicast() || n.gateway_mac.is_zero() {
        errs.push(format!(
            "node.gateway_mac {} must be a unicast MAC",
            n.gateway_mac
        ));
    }
    if cfg.vxlan.vni >= 1 << 24 {
        errs.push(format!(
            "vxlan.vni {} does not fit in 24 bits",
            cfg.vxlan.vni
        ));
    }
    if cfg.vxlan.port == 0 {
        errs.push("vxlan.port must not be 0".into());
    }
    if cfg.vxlan.ttl == 0 || cfg.ipip.ttl == 0 {
        errs.push("outer TTL must be at least 1".into());
    }
    if !(576 + 50..=crate::pipeline::batch::MAX_FRAME as u16 - 14).contains(&cfg.uplink.mtu) {
        errs.push(format!(
            "uplink.mtu {} must be between 626 and {}",
            cfg.uplink.mtu,
            crate::pipeline::batch::MAX_FRAME - 14
        ));
    }

    // Ports: uplink first (id 0), then the host port, then pods in file order.
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
        &mut errs,
        PortEntry {
            id: 0,
            name: cfg.uplink.name.clone(),
            kind: PortKind::Uplink,
            mac: cfg.uplink.mac,
            ip: Some(n.address.octets()),
            mtu: cfg.uplink.mtu,
            vlan: None,
            label: "uplink".into(),
        },
    );
    let host = cfg.host.as_ref().map(|h| {
        add_port(
            &mut ports,
            &mut errs,
            PortEntry {
                id: 0,
                name: h.name.clone(),
                kind: PortKind::Host,
                mac: h.mac,
                ip: None,
                mtu: h.mtu,
                vlan: None,
                label: "host".into(),
            },
        )
    });
    let mut macs: FastMap<Mac, PortId> = FastMap::default();
    if let (Some(h), Some(hc)) = (host, cfg.host.as_ref()) {
        macs.insert(hc.mac, h);
    }
    let mut pod_ips: HashSet<Ipv4Addr> = HashSet::new();
    let mut pod_ports: Vec<(Ipv4Addr, PortId, &str)> = Vec::new();
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
        if !(68..=crate::pipeline::batch::MAX_FRAME as u16 - 18).contains(&p.mtu) {
            errs.push(format!("pod {:?}: mtu {} is out of range", p.name, p.mtu));
        }
        if let Some(v) = p.vlan
            && (v == 0 || v >= 4095)
        {
            errs.push(format!("pod {:?}: vlan {v} must be 1..4094", p.name));
        }
        let id = add_port(
            &mut ports,
            &mut errs,
            PortEntry {
                id: 0,
                name: p.port.clone(),
                kind: PortKind::Pod,
                mac: p.mac,
                ip: Some(p.ip.octets()),
                mtu: p.mtu,
                vlan: p.vlan,
                label: p.name.clone(),
            },
        );
        if macs.insert(p.mac, id).is_some() {
            errs.push(format!(
                "pod {:?}: mac {} is used by another port",
                p.name, p.mac
            ));
        }
        pod_ports.push((p.ip, id, &p.name));
    }

    // Neighbours: learned ones first, configured ones over them.
    let mut neigh: FastMap<[u8; 4], Mac> = FastMap::default();
    let learned: Vec<(Ipv4Addr, Mac)> = learned
        .iter()
        .filter(|l| !cfg.neighbours.iter().any(|n| n.ip == l.ip))
        .filter(|l| !l.mac.is_multicast() && !l.mac.is_zero())
        .map(|l| (l.ip, l.mac))
        .collect();
    for (ip, mac) in &learned {
        neigh.insert(ip.octets(), *mac);
    }
    for nb in &cfg.neighbours {
        if nb.mac.is_multicast() || nb.mac.is_zero() {
            errs.push(format!(
                "neighbour {}: mac {} must be unicast",
                nb.ip, nb.mac
            ));
        }
        neigh.insert(nb.ip.octets(), nb.mac);
    }
    let gw_mac = cfg
        .uplink
        .gateway
        .and_then(|g| neigh.get(&g.octets()).copied());

    // Peers.
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

    // FIB, lowest priority first: for an equal prefix the later entry wins.
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
    for (i, p) in peers.iter().enumerate() {
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
    for (ip, port, name) in &pod_ports {
        let pe = &ports[usize::from(*port)];
        routes.push(RouteEntry {
            prefix: Prefix::new(ip.octets(), 32).unwrap_or(Prefix { addr: 0, len: 32 }),
            target: RouteTarget::Pod { port: *port },
            out_port: Some(*port),
            dst_mac: pe.mac,
            src_mac: n.gateway_mac,
            mtu: pe.mtu,
            origin: format!("pod {name}"),
        });
    }

    let (services, nat) = super::services::build(cfg, &mut errs);
    // The uplink XDP program steers external/LoadBalancer IPs through a prefix map of fixed
    // capacity (with the pod CIDR): a configuration it cannot hold is refused, never
    // half-steered.
    let owned: HashSet<Ipv4Addr> = cfg
        .services
        .iter()
        .flat_map(|s| s.external_ips.iter().chain(&s.load_balancer_ips).copied())
        .collect();
    let max_owned = crate::port::xdp_prog::MAX_OWNED_PREFIXES;
    if owned.len() + 1 > max_owned {
        errs.push(format!(
            "{} distinct external/LoadBalancer IPs: the uplink filter holds at most {} (plus node.pod_cidr)",
            owned.len(),
            max_owned - 1
        ));
    }
    if !errs.is_empty() {
        return Err(errs.join("\n"));
    }
    let fib_entries: Vec<(Prefix, u32)> = routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.prefix, i as u32))
        .collect();
    let fib = Lpm::build(&fib_entries);
    Ok(Snapshot {
        generation,
        node: NodeInfo {
            name: n.name.clone(),
            address: n.address.octets(),
            gateway: gateway.octets(),
            gateway_mac: n.gateway_mac,
            vtep_mac,
            pod_cidr: n.pod_cidr,
            overlay: n.overlay,
            proxy_arp: n.proxy_arp,
            vxlan: cfg.vxlan.clone(),
            ipip_ttl: cfg.ipip.ttl,
            icmp: cfg.icmp.clone(),
        },
        ports,
        uplink,
        host,
        macs,
        fib,
        routes,
        peers,
        peer_by_addr,
        neighbours: cfg.neighbours.iter().map(|n| (n.ip, n.mac)).collect(),
        learned_neighbours: learned,
        services,
        nat,
        config: cfg.clone(),
    })
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

pub(crate) fn overlaps(a: Prefix, b: Prefix) -> bool {
    let l = a.len.min(b.len);
    let m = super::lpm::mask(l);
    a.addr & m == b.addr & m
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
