//! The Service table of the snapshot: frontends (ClusterIP, externalIPs, LoadBalancer IPs,
//! NodePorts) to Service ports, each with its endpoint set and Maglev tables.
//!
//! Lookups are one hash-map probe whatever the number of Services (kube-proxy's iptables
//! mode walks a chain per Service instead).

use super::fasthash::FastMap;
use super::lpm::Prefix;
use super::maglev;
use crate::config::NodeConfig;
use crate::config::services::{ServiceType, SessionAffinity, Timeouts, TrafficPolicy};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// How a packet reached a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Frontend {
    ClusterIp,
    /// An externalIP or LoadBalancer ingress IP.
    External,
    NodePort,
}

impl Frontend {
    /// Whether externalTrafficPolicy applies (traffic arriving through an external frontend).
    pub fn is_external(self) -> bool {
        self != Frontend::ClusterIp
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Backend {
    #[serde(serialize_with = "ser_ip")]
    pub ip: [u8; 4],
    pub port: u16,
    /// On this node.
    pub local: bool,
    pub node: String,
    /// In the set traffic policy Cluster uses (the ready endpoints, or if none is ready the
    /// serving-and-terminating ones). A local endpoint outside it is there only as the
    /// Local policies' fallback (serving-terminating while no local endpoint is ready).
    pub cluster: bool,
}

fn ser_ip<S: serde::Serializer>(ip: &[u8; 4], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Ipv4Addr::from(*ip))
}

/// One port of one Service (the unit of load balancing).
#[derive(Debug, Clone, Serialize)]
pub struct ServicePortEntry {
    /// `namespace/name:port-name` (or `namespace/name:port` when unnamed).
    pub name: String,
    pub proto: u8,
    pub port: u16,
    pub node_port: Option<u16>,
    /// ClientIP affinity timeout.
    pub affinity_secs: Option<u32>,
    pub external_local: bool,
    pub internal_local: bool,
    /// The endpoints in use: first the cluster set (`Backend::cluster`: the ready ones, or
    /// if none is ready the serving-and-terminating), then the local fallback. The local
    /// set is every local backend: the ready local ones, or if none is ready the
    /// serving-and-terminating local ones (kube-proxy's order, per node).
    pub backends: Vec<Backend>,
    #[serde(skip)]
    pub maglev: Vec<u16>,
    /// Maglev table over the local backends only (values index `backends`).
    #[serde(skip)]
    pub maglev_local: Vec<u16>,
}

impl ServicePortEntry {
    /// Chooses a backend for a flow hash; `local_only` for the Local traffic policies.
    #[inline]
    pub fn choose(&self, hash: u32, local_only: bool) -> Option<u16> {
        maglev::pick(
            if local_only {
                &self.maglev_local
            } else {
                &self.maglev
            },
            hash,
        )
    }

    /// Whether `ip:port` is one of the backends in use.
    pub fn has_backend(&self, ip: [u8; 4], port: u16) -> bool {
        self.backends.iter().any(|b| b.ip == ip && b.port == port)
    }
}

/// NAT settings resolved for the pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct NatInfo {
    pub service_cidr: Prefix,
    /// The cluster's pod networks: traffic from them is "in-cluster".
    pub cluster_cidrs: Vec<Prefix>,
    pub masquerade: bool,
    pub snat_ports: [u16; 2],
    pub conntrack_max: u32,
    pub timeouts: Timeouts,
}

impl NatInfo {
    pub fn in_cluster(&self, a: [u8; 4]) -> bool {
        let a = u32::from_be_bytes(a);
        self.cluster_cidrs.iter().any(|p| p.contains(a))
    }
}

/// Frontend key: address, port and protocol packed into one word.
#[inline]
pub fn frontend_key(ip: [u8; 4], port: u16, proto: u8) -> u64 {
    u64::from(u32::from_be_bytes(ip)) << 24 | u64::from(port) << 8 | u64::from(proto)
}

#[derive(Debug, Default)]
pub struct ServiceTable {
    pub ports: Vec<ServicePortEntry>,
    /// ClusterIP / externalIP / LoadBalancer IP frontends.
    pub frontends: FastMap<u64, (u32, Frontend)>,
    /// NodePorts, keyed by `frontend_key([0; 4], port, proto)`.
    pub node_ports: FastMap<u64, u32>,
    /// Every frontend and endpoint address (`ADDR_FRONTEND` / `ADDR_ENDPOINT` bits): what
    /// nat44-in checks when a fragment without ports may belong to a translated flow.
    pub addrs: FastMap<[u8; 4], u8>,
}

/// `ServiceTable::addrs` bits.
pub const ADDR_FRONTEND: u8 = 1;
pub const ADDR_ENDPOINT: u8 = 2;

impl ServiceTable {
    /// The Service port a packet to `dst:dport/proto` is for; `node_addr` selects NodePorts.
    #[inline]
    pub fn lookup(
        &self,
        dst: [u8; 4],
        dport: u16,
        proto: u8,
        node_addr: [u8; 4],
    ) -> Option<(u32, Frontend)> {
        if let Some(&(i, f)) = self.frontends.get(&frontend_key(dst, dport, proto)) {
            return Some((i, f));
        }
        if dst == node_addr {
            return self
                .node_ports
                .get(&frontend_key([0; 4], dport, proto))
                .map(|&i| (i, Frontend::NodePort));
        }
        None
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The `ADDR_*` bits of an address (0: neither a frontend nor an endpoint).
    #[inline]
    pub fn addr_kind(&self, a: [u8; 4]) -> u8 {
        if self.addrs.is_empty() {
            return 0;
        }
        self.addrs.get(&a).copied().unwrap_or(0)
    }
}

/// Validates the `[nat]` section and `[[service]]` entries; problems go to `errs`.
pub fn build(cfg: &NodeConfig, errs: &mut Vec<String>) -> (ServiceTable, NatInfo) {
    let nat = &cfg.nat;
    let n = &cfg.node;
    let [np_lo, np_hi] = nat.node_port_range;
    if np_lo == 0 || np_lo > np_hi {
        errs.push(format!(
            "nat.node_port_range {np_lo}-{np_hi} must be a non-empty range above 0"
        ));
    }
    let [sp_lo, sp_hi] = nat.snat_port_range;
    if sp_lo == 0 || sp_lo > sp_hi {
        errs.push(format!(
            "nat.snat_port_range {sp_lo}-{sp_hi} must be a non-empty range above 0"
        ));
    }
    if nat.conntrack_max == 0 || nat.conntrack_max > 1 << 26 {
        errs.push(format!(
            "nat.conntrack_max {} must be between 1 and {}",
            nat.conntrack_max,
            1u32 << 26
        ));
    }
    let t = &nat.timeouts;
    for (name, v) in [
        ("tcp_syn_sent", t.tcp_syn_sent),
        ("tcp_syn_recv", t.tcp_syn_recv),
        ("tcp_established", t.tcp_established),
        ("tcp_fin_wait", t.tcp_fin_wait),
        ("tcp_close_wait", t.tcp_close_wait),
        ("tcp_last_ack", t.tcp_last_ack),
        ("tcp_time_wait", t.tcp_time_wait),
        ("tcp_close", t.tcp_close),
        ("udp", t.udp),
        ("udp_stream", t.udp_stream),
        ("icmp", t.icmp),
    ] {
        if v == 0 {
            errs.push(format!("nat.timeouts.{name} must be at least 1 second"));
        }
    }
    let mut cluster_cidrs: Vec<Prefix> = match n.cluster_cidr {
        Some(c) => vec![c],
        None => std::iter::once(n.pod_cidr)
            .chain(cfg.peers.iter().map(|p| p.pod_cidr))
            .collect(),
    };
    if !cluster_cidrs
        .iter()
        .any(|c| super::build::overlaps(*c, n.pod_cidr))
    {
        cluster_cidrs.push(n.pod_cidr);
    }
    if super::build::overlaps(nat.service_cidr, n.pod_cidr) {
        errs.push(format!(
            "nat.service_cidr {} overlaps node.pod_cidr {}",
            nat.service_cidr, n.pod_cidr
        ));
    }
    let info = NatInfo {
        service_cidr: nat.service_cidr,
        cluster_cidrs,
        masquerade: nat.masquerade,
        snat_ports: nat.snat_port_range,
        conntrack_max: nat.conntrack_max,
        timeouts: nat.timeouts.clone(),
    };

    let mut table = ServiceTable::default();
    let mut seen_svc: HashSet<String> = HashSet::new();
    let mut owner: HashMap<u64, String> = HashMap::new();
    for s in &cfg.services {
        let sname = format!("{}/{}", s.namespace, s.name);
        let e0 = errs.len();
        if !seen_svc.insert(sname.clone()) {
            errs.push(format!("service {sname}: defined twice"));
        }
        if let Some(ip) = s.cluster_ip
            && !nat.service_cidr.contains(u32::from(ip))
        {
            errs.push(format!(
                "service {sname}: cluster_ip {ip} is outside nat.service_cidr {}",
                nat.service_cidr
            ));
        }
        if s.ports.is_empty() {
            errs.push(format!("service {sname}: needs at least one port"));
        }
        if !s.load_balancer_ips.is_empty() && s.kind != ServiceType::LoadBalancer {
            errs.push(format!(
                "service {sname}: load_balancer_ips need type = \"LoadBalancer\""
            ));
        }
        if s.session_affinity == SessionAffinity::ClientIP
            && !(1..=86400).contains(&s.session_affinity_timeout)
        {
            errs.push(format!(
                "service {sname}: session_affinity_timeout {} must be 1..86400 seconds",
                s.session_affinity_timeout
            ));
        }
        if let Some(hc) = s.health_check_node_port {
            super::health_check::validate(s, hc, nat, &sname, &mut owner, errs);
        }
        let mut pnames: HashSet<&str> = HashSet::new();
        for p in &s.ports {
            if s.ports.len() > 1 && p.name.is_none() {
                errs.push(format!(
                    "service {sname}: port {} needs a name (the Service has several ports)",
                    p.port
                ));
            }
            if let Some(nm) = &p.name
                && !pnames.insert(nm)
            {
                errs.push(format!("service {sname}: port name {nm:?} is used twice"));
            }
            if p.port == 0 || p.target_port == Some(0) {
                errs.push(format!("service {sname}: port numbers must not be 0"));
            }
            match (s.kind, p.node_port) {
                (ServiceType::ClusterIP, Some(np)) => errs.push(format!(
                    "service {sname}: node_port {np} needs type NodePort or LoadBalancer"
                )),
                (ServiceType::NodePort | ServiceType::LoadBalancer, None) => errs.push(format!(
                    "service {sname}: port {} needs a node_port",
                    p.port
                )),
                (_, Some(np)) if !(np_lo..=np_hi).contains(&np) => errs.push(format!(
                    "service {sname}: node_port {np} is outside nat.node_port_range {np_lo}-{np_hi}"
                )),
                _ => {}
            }
        }
        for e in &s.endpoints {
            for k in e.ports.keys() {
                if !s
                    .ports
                    .iter()
                    .any(|p| p.name.as_deref() == Some(k.as_str()))
                {
                    errs.push(format!(
                        "service {sname}: endpoint {}: no Service port named {k:?}",
                        e.ip
                    ));
                }
            }
        }
        // Endpoints: which node, which set.
        let mut backends_base: Vec<(&crate::config::services::Endpoint, bool, String)> = Vec::new();
        let mut eps: HashSet<Ipv4Addr> = HashSet::new();
        for e in &s.endpoints {
            if !eps.insert(e.ip) {
                errs.push(format!("service {sname}: endpoint {} listed twice", e.ip));
            }
            let a = u32::from(e.ip);
            let derived = if n.pod_cidr.contains(a) || e.ip == n.address {
                Some(n.name.clone())
            } else {
                cfg.peers
                    .iter()
                    .find(|p| p.pod_cidr.contains(a) || p.address == e.ip)
                    .map(|p| p.name.clone())
            };
            let node = match (&e.node, derived) {
                (Some(given), _)
                    if *given != n.name && !cfg.peers.iter().any(|p| p.name == *given) =>
                {
                    errs.push(format!("service {sname}: endpoint {}: node {given:?} is neither this node nor a peer", e.ip));
                    continue;
                }
                (Some(given), Some(d)) if *given != d => {
                    errs.push(format!("service {sname}: endpoint {} is in {d}'s pod network, not on node {given:?}", e.ip));
                    continue;
                }
                (Some(given), _) => given.clone(),
                (None, Some(d)) => d,
                (None, None) => {
                    errs.push(format!(
                        "service {sname}: endpoint {}: not in any known pod_cidr; give its node",
                        e.ip
                    ));
                    continue;
                }
            };
            let local = node == n.name;
            backends_base.push((e, local, node));
        }
        let any_ready = backends_base.iter().any(|(e, _, _)| e.ready);
        let any_local_ready = backends_base.iter().any(|(e, l, _)| *l && e.ready);
        let in_cluster_set = |e: &crate::config::services::Endpoint| {
            if any_ready {
                e.ready
            } else {
                e.serving() && e.terminating
            }
        };
        // The cluster set first, then the local serving-terminating endpoints the Local
        // policies fall back to when no local endpoint is ready.
        let usable: Vec<_> = backends_base
            .iter()
            .filter(|(e, _, _)| in_cluster_set(e))
            .chain(backends_base.iter().filter(|(e, local, _)| {
                *local && !any_local_ready && e.serving() && e.terminating && !in_cluster_set(e)
            }))
            .collect();
        if errs.len() > e0 {
            continue;
        }
        for p in &s.ports {
            let proto = p.protocol.number();
            let pname = p.name.clone().unwrap_or_else(|| p.port.to_string());
            let target = p.target_port.unwrap_or(p.port);
            let backends: Vec<Backend> = usable
                .iter()
                .map(|(e, local, node)| Backend {
                    ip: e.ip.octets(),
                    port: p
                        .name
                        .as_ref()
                        .and_then(|nm| e.ports.get(nm).copied())
                        .unwrap_or(target),
                    local: *local,
                    node: node.clone(),
                    cluster: in_cluster_set(e),
                })
                .collect();
            let ids: Vec<u64> = backends.iter().map(|b| backend_id(b.ip, b.port)).collect();
            let cluster_ids: Vec<u64> = backends
                .iter()
                .zip(&ids)
                .filter(|(b, _)| b.cluster)
                .map(|(_, id)| *id)
                .collect();
            let local_idx: Vec<u16> = (0..backends.len() as u16)
                .filter(|&i| backends[usize::from(i)].local)
                .collect();
            let local_ids: Vec<u64> = local_idx.iter().map(|&i| ids[usize::from(i)]).collect();
            let maglev_local: Vec<u16> = maglev::build(&local_ids)
                .into_iter()
                .map(|k| local_idx[usize::from(k)])
                .collect();
            let idx = table.ports.len() as u32;
            let mut add = |key: u64, what: String, f: Frontend, errs: &mut Vec<String>| {
                if let Some(o) = owner.get(&key) {
                    errs.push(format!("service {sname}: {what} is already used by {o}"));
                } else {
                    owner.insert(key, format!("{sname}:{pname}"));
                    if f == Frontend::NodePort {
                        table.node_ports.insert(key, idx);
                    } else {
                        table.frontends.insert(key, (idx, f));
                    }
                }
            };
            let pstr = p.protocol.as_str();
            if let Some(ip) = s.cluster_ip {
                add(
                    frontend_key(ip.octets(), p.port, proto),
                    format!("{ip}:{}/{pstr}", p.port),
                    Frontend::ClusterIp,
                    errs,
                );
            }
            for ip in s.external_ips.iter().chain(&s.load_balancer_ips) {
                add(
                    frontend_key(ip.octets(), p.port, proto),
                    format!("{ip}:{}/{pstr}", p.port),
                    Frontend::External,
                    errs,
                );
            }
            if let Some(np) = p.node_port {
                add(
                    frontend_key([0; 4], np, proto),
                    format!("node_port {np}/{pstr}"),
                    Frontend::NodePort,
                    errs,
                );
            }
            for ip in s
                .cluster_ip
                .iter()
                .chain(&s.external_ips)
                .chain(&s.load_balancer_ips)
            {
                *table.addrs.entry(ip.octets()).or_default() |= ADDR_FRONTEND;
            }
            for b in &backends {
                *table.addrs.entry(b.ip).or_default() |= ADDR_ENDPOINT;
            }
            table.ports.push(ServicePortEntry {
                name: format!("{sname}:{pname}"),
                proto,
                port: p.port,
                node_port: p.node_port,
                affinity_secs: (s.session_affinity == SessionAffinity::ClientIP)
                    .then_some(s.session_affinity_timeout),
                external_local: s.external_traffic_policy == TrafficPolicy::Local,
                internal_local: s.internal_traffic_policy == TrafficPolicy::Local,
                maglev: maglev::build(&cluster_ids),
                maglev_local,
                backends,
            });
        }
    }
    (table, info)
}

/// Stable identity of a backend for Maglev (address and port).
pub fn backend_id(ip: [u8; 4], port: u16) -> u64 {
    u64::from(u32::from_be_bytes(ip)) << 16 | u64::from(port)
}
