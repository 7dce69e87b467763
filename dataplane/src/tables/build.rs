//! Builds a [`Snapshot`] from a configuration, one builder per table, validating it as a
//! whole.
//!
//! | table | builder | reads |
//! | --- | --- | --- |
//! | ports, MACs | `ports` | node, uplink, host, pods |
//! | neighbours | `neighbours` | neighbours, learned neighbours |
//! | peers (with their encapsulation templates) | `peers` | node, uplink, vxlan, ipip, peers; the neighbour table |
//! | FIB | `fib` | node, uplink, host, routes; the port, peer and neighbour tables |
//! | Services, NAT | `services` | nat, node, peers (the context); each Service |
//! | NetworkPolicy | `policy` (`tables/policy.rs`, `tables/policy_compile.rs`) | policy, pods; the port table; each address set and pod policy (only those that changed are compiled, only the pods naming a changed set recompiled, and in those only the port classes holding a changed rule) |
//!
//! [`rebuild`] runs a builder only when what it reads differs from what the previous
//! snapshot was built from (configuration sections by value, tables by `Arc` identity), and
//! shares the previous table otherwise. The Service table is updated per Service.

mod fib;
mod neighbours;
mod peers;
mod ports;

use super::services::{self, ServiceTable};
use super::snapshot::*;
use crate::config::{Neighbour, NodeConfig, Overlay, Service};
use crate::limits::{MAX_FRAME, MAX_OWNED_PREFIXES};
use crate::wire::{ipv4, vxlan};
use std::net::Ipv4Addr;
use std::sync::Arc;

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
/// the configured ones: a configured `[[neighbour]]` always wins. Builds every table.
pub fn build_with_learned(
    cfg: &NodeConfig,
    learned: &[Neighbour],
    generation: u64,
) -> Result<Snapshot, String> {
    rebuild(
        None,
        ConfigState::new(cfg.clone()),
        None,
        learned,
        generation,
    )
}

/// The Services a change touched: replaced or added (`upserts`) and removed (`removed`,
/// `namespace/name`). Each name appears once.
#[derive(Debug, Default, Clone)]
pub struct ServiceDelta {
    pub upserts: Vec<Arc<Service>>,
    pub removed: Vec<String>,
}

impl ServiceDelta {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty()
    }
}

/// Builds the snapshot of `cfg`, reusing from `prev` every table whose inputs are unchanged.
/// `services` says which Services differ from `prev`'s (`None`: unknown, so all of them are
/// rebuilt). On error returns every problem found, one per line.
pub fn rebuild(
    prev: Option<&Snapshot>,
    cfg: ConfigState,
    services: Option<&ServiceDelta>,
    learned: &[Neighbour],
    generation: u64,
) -> Result<Snapshot, String> {
    let c: &NodeConfig = &cfg.base;
    let mut errs: Vec<String> = Vec::new();
    check_node(c, &mut errs);
    let old = prev.map(|p| (p, &*p.config.base));

    let ports = match old {
        Some((p, o)) if ports::same_inputs(o, c) => ports::Ports {
            ports: p.ports.clone(),
            uplink: p.uplink,
            host: p.host,
            macs: p.macs.clone(),
        },
        _ => ports::build(c, &mut errs),
    };

    let learned = neighbours::usable_learned(c, learned);
    let neigh = match old {
        Some((p, o)) if o.neighbours == c.neighbours && *p.learned_neighbours == learned => {
            neighbours::Neighbours {
                configured: p.neighbours.clone(),
                learned: p.learned_neighbours.clone(),
                macs: p.neighbour_macs.clone(),
            }
        }
        _ => neighbours::build(c, learned, &mut errs),
    };

    let peers = match old {
        Some((p, o)) if peers::same_inputs(o, c) && Arc::ptr_eq(&p.neighbour_macs, &neigh.macs) => {
            peers::Peers {
                peers: p.peers.clone(),
                by_addr: p.peer_by_addr.clone(),
            }
        }
        _ => peers::build(c, &neigh.macs, &mut errs),
    };

    let fib = match old {
        Some((p, o))
            if fib::same_inputs(o, c)
                && Arc::ptr_eq(&p.ports, &ports.ports)
                && Arc::ptr_eq(&p.peers, &peers.peers)
                && Arc::ptr_eq(&p.neighbour_macs, &neigh.macs) =>
        {
            fib::Fib {
                fib: p.fib.clone(),
                routes: p.routes.clone(),
            }
        }
        _ => fib::build(
            c,
            fib::Inputs {
                ports: &ports.ports,
                uplink: ports.uplink,
                host: ports.host,
                peers: &peers.peers,
                neigh: &neigh.macs,
            },
            &mut errs,
        ),
    };

    let (svc, nat): (Arc<ServiceTable>, _) = match (old, services) {
        (Some((p, o)), Some(d)) if services::same_context(o, c) => {
            if d.is_empty() {
                (p.services.clone(), p.nat.clone())
            } else {
                let t = p.services.update(c, &d.upserts, &d.removed, &mut errs);
                (Arc::new(t), p.nat.clone())
            }
        }
        _ => {
            let (t, n) = services::build(c, &cfg.services.in_order(), &mut errs);
            (Arc::new(t), Arc::new(n))
        }
    };
    let policy = match old {
        Some((p, o))
            if o.policy == c.policy
                && o.pods == c.pods
                && Arc::ptr_eq(&p.ports, &ports.ports)
                && cfg.policy.same_as(&p.config.policy) =>
        {
            p.policy.clone()
        }
        _ => Arc::new(super::policy::build(
            &super::policy::Inputs {
                settings: &c.policy,
                pods: &c.pods,
                ports: &ports.ports,
                policy: &cfg.policy,
            },
            prev.map(|p| (&*p.policy, &p.config.policy)),
            &mut errs,
        )),
    };
    // The uplink XDP program steers external/LoadBalancer IPs through a prefix map of fixed
    // capacity (with the pod CIDR): a configuration it cannot hold is refused, never
    // half-steered.
    let owned = svc.external_count();
    if owned + 1 > MAX_OWNED_PREFIXES {
        errs.push(format!(
            "{owned} distinct external/LoadBalancer IPs: the uplink filter holds at most {} (plus node.pod_cidr)",
            MAX_OWNED_PREFIXES - 1
        ));
    }
    if !errs.is_empty() {
        return Err(errs.join("\n"));
    }
    let n = &c.node;
    Ok(Snapshot {
        generation,
        node: NodeInfo {
            name: n.name.clone(),
            address: n.address.octets(),
            gateway: c.gateway().octets(),
            gateway_mac: n.gateway_mac,
            vtep_mac: n.vtep_mac.unwrap_or(n.gateway_mac),
            pod_cidr: n.pod_cidr,
            overlay: n.overlay,
            proxy_arp: n.proxy_arp,
            vxlan: c.vxlan.clone(),
            ipip_ttl: c.ipip.ttl,
            icmp: c.icmp.clone(),
        },
        ports: ports.ports,
        uplink: ports.uplink,
        host: ports.host,
        macs: ports.macs,
        fib: fib.fib,
        routes: fib.routes,
        peers: peers.peers,
        peer_by_addr: peers.by_addr,
        neighbours: neigh.configured,
        learned_neighbours: neigh.learned,
        neighbour_macs: neigh.macs,
        services: svc,
        nat,
        policy,
        config: cfg,
    })
}

/// Node-wide checks no single table owns (cheap: run on every build).
fn check_node(cfg: &NodeConfig, errs: &mut Vec<String>) {
    let n = &cfg.node;
    let gateway = cfg.gateway();
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
    if !(576 + 50..=MAX_FRAME as u16 - 14).contains(&cfg.uplink.mtu) {
        errs.push(format!(
            "uplink.mtu {} must be between 626 and {}",
            cfg.uplink.mtu,
            MAX_FRAME - 14
        ));
    }
}
