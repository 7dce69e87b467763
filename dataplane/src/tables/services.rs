//! The Service table of the snapshot: frontends (ClusterIP, externalIPs, LoadBalancer IPs,
//! NodePorts) to Service ports, each with its endpoint set and Maglev tables.
//!
//! Lookups are one hash-map probe whatever the number of Services (kube-proxy's iptables
//! mode walks a chain per Service instead).

use super::cow::{PagedVec, ShardedMap};
use super::fasthash::{FastMap, FastSet};
use super::lpm::{Prefix, overlaps};
use super::maglev;
use crate::config::NodeConfig;
use crate::config::services::{Service, ServiceType, SessionAffinity, Timeouts, TrafficPolicy};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

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
    /// Maglev table over the local backends only (values index `backends`); built only
    /// when a Local traffic policy can use it (`external_local` or `internal_local`),
    /// empty otherwise.
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

/// The Service table. The pipeline reads `ports`, `frontends` and `node_ports`; the rest is
/// the control side's record of what each Service put in, so that one Service is replaced
/// or removed alone ([`ServiceTable::update`]) instead of rebuilding the table.
///
/// Its vectors and maps are copy-on-write in pages and shards (`tables::cow`): the copy a
/// change makes shares everything but the few pages and shards that change writes, so a
/// change costs in proportion to the Services it touches, not to the table.
#[derive(Debug, Default, Clone)]
pub struct ServiceTable {
    pub ports: PagedVec<Arc<ServicePortEntry>>,
    /// ClusterIP / externalIP / LoadBalancer IP frontends.
    pub frontends: ShardedMap<u64, (u32, Frontend)>,
    /// NodePorts, keyed by `frontend_key([0; 4], port, proto)`.
    pub node_ports: ShardedMap<u64, u32>,
    /// Every frontend and endpoint address with the number of Services using it as each:
    /// what nat44-in checks (through [`ServiceTable::addr_kind`]) when a fragment without
    /// ports may belong to a translated flow.
    addrs: ShardedMap<[u8; 4], AddrUse>,
    /// externalIPs and LoadBalancer IPs, with the number of Services using each (few: the
    /// uplink filter holds at most `MAX_OWNED_PREFIXES`), copied only when one changes.
    external: Arc<FastMap<[u8; 4], u32>>,
    /// Per Service (`namespace/name`): what it put in the table.
    services: ShardedMap<Arc<str>, Arc<ServiceRecord>>,
    /// Per entry of `ports`: the Service it belongs to.
    slot_owner: PagedVec<Arc<str>>,
}

/// How many Services use an address as a frontend and as an endpoint.
#[derive(Debug, Default, Clone, Copy)]
struct AddrUse {
    frontend: u32,
    endpoint: u32,
}

/// What one Service put in the table.
#[derive(Debug, Clone)]
struct ServiceRecord {
    /// Its entries in `ServiceTable::ports`, in the order of the Service's ports.
    slots: Vec<u32>,
    /// (frontend key, kind, index of the Service port); NodePorts included.
    frontends: Vec<(u64, Frontend, u16)>,
    frontend_addrs: Vec<[u8; 4]>,
    endpoint_addrs: Vec<[u8; 4]>,
    external: Vec<[u8; 4]>,
}

/// One Service built and checked on its own, not yet in a table.
struct BuiltService {
    ports: Vec<ServicePortEntry>,
    /// (frontend key, kind, index of the Service port, protocol name for messages).
    frontends: Vec<(u64, Frontend, u16, &'static str)>,
    /// Its health-check port as a NodePort frontend key, which no NodePort may hold.
    health_check: Option<(u64, u16)>,
    frontend_addrs: Vec<[u8; 4]>,
    endpoint_addrs: Vec<[u8; 4]>,
    external: Vec<[u8; 4]>,
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
        self.addrs.get(&a).map_or(0, |u| {
            (if u.frontend > 0 { ADDR_FRONTEND } else { 0 })
                | (if u.endpoint > 0 { ADDR_ENDPOINT } else { 0 })
        })
    }

    /// The distinct externalIPs and LoadBalancer IPs of all Services.
    pub fn external_ips(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self.external.keys().map(|a| Ipv4Addr::from(*a)).collect();
        v.sort();
        v
    }

    /// The number of distinct externalIPs and LoadBalancer IPs.
    pub fn external_count(&self) -> usize {
        self.external.len()
    }

    /// The number of Services in the table.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Names (`namespace/name:port`) of the Service ports a Service has in the table.
    pub fn ports_of(&self, service: &str) -> impl Iterator<Item = &ServicePortEntry> {
        self.services
            .get(service)
            .into_iter()
            .flat_map(|r| r.slots.iter().map(|&i| &*self.ports[i as usize]))
    }

    /// The frontend keys a Service holds (NodePorts as `frontend_key([0; 4], port, proto)`).
    pub fn frontend_keys_of(&self, service: &str) -> Vec<u64> {
        self.services
            .get(service)
            .map(|r| r.frontends.iter().map(|f| f.0).collect())
            .unwrap_or_default()
    }

    /// A copy of this table with Services replaced (`upserts`, by namespace/name) and
    /// removed (`removed`, `namespace/name`), checked against the same context (`cfg`'s
    /// node, peers and `[nat]`, which must be the ones this table was built with). The
    /// other Services' entries are shared, not rebuilt. Problems go to `errs`.
    pub fn update(
        &self,
        cfg: &NodeConfig,
        upserts: &[Arc<Service>],
        removed: &[String],
        errs: &mut Vec<String>,
    ) -> ServiceTable {
        let mut t = self.clone();
        for name in removed {
            t.remove(name);
        }
        // Problems are reported in request order, as if built one after the other.
        for (name, built, build_errs) in build_services(cfg, upserts) {
            t.remove(&name);
            errs.extend(build_errs);
            if let Some(b) = built {
                t.insert(name.into(), b, errs);
            }
        }
        t
    }

    /// Removes a Service's entries; nothing if it is not in the table.
    fn remove(&mut self, name: &str) {
        let Some(rec) = self.services.remove(name) else {
            return;
        };
        for &(key, f, _) in &rec.frontends {
            if f == Frontend::NodePort {
                self.node_ports.remove(&key);
            } else {
                self.frontends.remove(&key);
            }
        }
        for a in &rec.frontend_addrs {
            self.addr_release(*a, true);
        }
        for a in &rec.endpoint_addrs {
            self.addr_release(*a, false);
        }
        if !rec.external.is_empty() {
            let external = Arc::make_mut(&mut self.external);
            for a in &rec.external {
                if let Some(n) = external.get_mut(a) {
                    *n -= 1;
                    if *n == 0 {
                        external.remove(a);
                    }
                }
            }
        }
        // Highest slot first: the entry moved into a freed slot is never one of ours.
        let mut slots = rec.slots.clone();
        slots.sort_unstable_by(|a, b| b.cmp(a));
        for s in slots {
            let last = self.ports.len() as u32 - 1;
            self.ports.swap_remove(s as usize);
            self.slot_owner.swap_remove(s as usize);
            if s != last {
                self.moved(last, s);
            }
        }
    }

    /// The entry at slot `from` now sits at `to`: repoint its Service's record and frontends.
    fn moved(&mut self, from: u32, to: u32) {
        let owner = self.slot_owner[to as usize].clone();
        let Some(rec) = self.services.get_mut(&owner) else {
            return;
        };
        let rec = Arc::make_mut(rec);
        let Some(port) = rec.slots.iter().position(|&x| x == from) else {
            return;
        };
        rec.slots[port] = to;
        for &(key, f, p) in &rec.frontends {
            if usize::from(p) != port {
                continue;
            }
            if f == Frontend::NodePort {
                self.node_ports.insert(key, to);
            } else {
                self.frontends.insert(key, (to, f));
            }
        }
    }

    fn addr_release(&mut self, a: [u8; 4], frontend: bool) {
        if let Some(u) = self.addrs.get_mut(&a) {
            if frontend {
                u.frontend -= 1;
            } else {
                u.endpoint -= 1;
            }
            if u.frontend == 0 && u.endpoint == 0 {
                self.addrs.remove(&a);
            }
        }
    }

    /// Adds a built Service; a frontend another Service holds is refused (in `errs`).
    fn insert(&mut self, name: Arc<str>, b: BuiltService, errs: &mut Vec<String>) {
        let base = self.ports.len() as u32;
        let slots: Vec<u32> = (base..base + b.ports.len() as u32).collect();
        let mut frontends = Vec::with_capacity(b.frontends.len());
        if let Some((key, hc)) = b.health_check
            && let Some(&o) = self.node_ports.get(&key)
        {
            let owner = self
                .ports
                .get(o as usize)
                .map(|e| e.name.clone())
                .unwrap_or_default();
            errs.push(format!(
                "service {name}: health_check_node_port {hc} is already used by {owner}"
            ));
        }
        for (key, f, p, pstr) in b.frontends {
            let idx = slots[usize::from(p)];
            let taken = if f == Frontend::NodePort {
                self.node_ports.get(&key).copied()
            } else {
                self.frontends.get(&key).map(|&(i, _)| i)
            };
            if let Some(o) = taken {
                let owner = self
                    .ports
                    .get(o as usize)
                    .map(|e| e.name.clone())
                    .or_else(|| b.ports.get((o - base) as usize).map(|e| e.name.clone()))
                    .unwrap_or_default();
                let what = describe_frontend(key, f, pstr);
                errs.push(format!("service {name}: {what} is already used by {owner}"));
                continue;
            }
            if f == Frontend::NodePort {
                self.node_ports.insert(key, idx);
            } else {
                self.frontends.insert(key, (idx, f));
            }
            frontends.push((key, f, p));
        }
        for a in &b.frontend_addrs {
            self.addrs.entry_or_default(*a).frontend += 1;
        }
        for a in &b.endpoint_addrs {
            self.addrs.entry_or_default(*a).endpoint += 1;
        }
        if !b.external.is_empty() {
            let external = Arc::make_mut(&mut self.external);
            for a in &b.external {
                *external.entry(*a).or_default() += 1;
            }
        }
        for e in b.ports {
            self.ports.push(Arc::new(e));
            self.slot_owner.push(name.clone());
        }
        self.services.insert(
            name,
            Arc::new(ServiceRecord {
                slots,
                frontends,
                frontend_addrs: b.frontend_addrs,
                endpoint_addrs: b.endpoint_addrs,
                external: b.external,
            }),
        );
    }
}

/// `namespace/name`, the key of a Service.
pub fn service_name(s: &Service) -> String {
    format!("{}/{}", s.namespace, s.name)
}

/// Whether Services checked against `a` would be checked the same against `b`: the node,
/// the peers (endpoints' nodes) and `[nat]`.
pub fn same_context(a: &NodeConfig, b: &NodeConfig) -> bool {
    a.node == b.node && a.peers == b.peers && a.nat == b.nat
}

/// Validates the `[nat]` section and `services` (the `[[service]]` entries of `cfg`, kept
/// apart); problems go to `errs`.
pub fn build(
    cfg: &NodeConfig,
    services: &[Arc<Service>],
    errs: &mut Vec<String>,
) -> (ServiceTable, NatInfo) {
    let info = nat_info(cfg, errs);
    let mut table = ServiceTable::default();
    for (sname, built, build_errs) in build_services(cfg, services) {
        if table.services.contains_key(sname.as_str()) {
            errs.push(format!("service {sname}: defined twice"));
            continue;
        }
        errs.extend(build_errs);
        if let Some(b) = built {
            table.insert(sname.into(), b, errs);
        }
    }
    (table, info)
}

/// Validates the `[nat]` section and resolves it for the pipeline.
pub fn nat_info(cfg: &NodeConfig, errs: &mut Vec<String>) -> NatInfo {
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
    if !cluster_cidrs.iter().any(|c| overlaps(*c, n.pod_cidr)) {
        cluster_cidrs.push(n.pod_cidr);
    }
    if overlaps(nat.service_cidr, n.pod_cidr) {
        errs.push(format!(
            "nat.service_cidr {} overlaps node.pod_cidr {}",
            nat.service_cidr, n.pod_cidr
        ));
    }
    NatInfo {
        service_cidr: nat.service_cidr,
        cluster_cidrs,
        masquerade: nat.masquerade,
        snat_ports: nat.snat_port_range,
        conntrack_max: nat.conntrack_max,
        timeouts: nat.timeouts.clone(),
    }
}

/// Upserts from which a batch is built on several threads (a full sync: the Maglev fills
/// dominate, and each Service's build reads only the configuration and the Service).
const PARALLEL_FROM: usize = 512;
/// At most this many threads build one batch.
const MAX_BUILD_THREADS: usize = 4;

/// Builds Services on their own (name, entries, problems), in order; a large batch on as
/// many threads as this process may run on (its CPU affinity), up to `MAX_BUILD_THREADS`.
#[allow(
    clippy::type_complexity,
    reason = "a tuple per Service, taken apart by the one caller"
)]
fn build_services(
    cfg: &NodeConfig,
    services: &[Arc<Service>],
) -> Vec<(String, Option<BuiltService>, Vec<String>)> {
    let one = |s: &Arc<Service>| {
        let name = service_name(s);
        let mut errs = Vec::new();
        let b = build_service(cfg, s, &name, &mut errs);
        (name, b, errs)
    };
    let threads = if services.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_BUILD_THREADS)
    };
    if threads <= 1 {
        return services.iter().map(one).collect();
    }
    let chunk = services.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let mut parts = services.chunks(chunk);
        let mine = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| sc.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<_> = mine.iter().map(one).collect();
        for h in others {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        out
    })
}

/// Checks one Service (`sname`: its `namespace/name`) and builds its entries; `None` when
/// it has problems of its own (in `errs`). Frontends held by other Services are checked
/// when it is inserted.
fn build_service(
    cfg: &NodeConfig,
    s: &Service,
    sname: &str,
    errs: &mut Vec<String>,
) -> Option<BuiltService> {
    let nat = &cfg.nat;
    let n = &cfg.node;
    let [np_lo, np_hi] = nat.node_port_range;
    let mut out = BuiltService {
        ports: Vec::new(),
        frontends: Vec::new(),
        health_check: s
            .health_check_node_port
            .map(|hc| (frontend_key([0; 4], hc, 6), hc)),
        frontend_addrs: Vec::new(),
        endpoint_addrs: Vec::new(),
        external: Vec::new(),
    };
    {
        let e0 = errs.len();
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
            // Per Service: the apiserver allocates health-check ports from the NodePort
            // range, so they do not collide with other Services' NodePorts there.
            super::health_check::validate(s, hc, nat, sname, &mut HashMap::new(), errs);
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
        let mut backends_base: Vec<(&crate::config::services::Endpoint, bool, &str)> =
            Vec::with_capacity(s.endpoints.len());
        let mut eps: FastSet<Ipv4Addr> =
            FastSet::with_capacity_and_hasher(s.endpoints.len(), Default::default());
        for e in &s.endpoints {
            if !eps.insert(e.ip) {
                errs.push(format!("service {sname}: endpoint {} listed twice", e.ip));
            }
            let a = u32::from(e.ip);
            let derived = if n.pod_cidr.contains(a) || e.ip == n.address {
                Some(n.name.as_str())
            } else {
                cfg.peers
                    .iter()
                    .find(|p| p.pod_cidr.contains(a) || p.address == e.ip)
                    .map(|p| p.name.as_str())
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
                (Some(given), _) => given.as_str(),
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
            return None;
        }
        for (pi, p) in s.ports.iter().enumerate() {
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
                    node: (*node).to_owned(),
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
            let local_policy = s.external_traffic_policy == TrafficPolicy::Local
                || s.internal_traffic_policy == TrafficPolicy::Local;
            let maglev_local: Vec<u16> = if local_policy {
                let local_ids: Vec<u64> = local_idx.iter().map(|&i| ids[usize::from(i)]).collect();
                maglev::build(&local_ids)
                    .into_iter()
                    .map(|k| local_idx[usize::from(k)])
                    .collect()
            } else {
                Vec::new()
            };
            // Whether a frontend is free is checked when the Service is inserted.
            let pstr = p.protocol.as_str();
            let mut add = |key: u64, f: Frontend| {
                out.frontends.push((key, f, pi as u16, pstr));
            };
            if let Some(ip) = s.cluster_ip {
                add(
                    frontend_key(ip.octets(), p.port, proto),
                    Frontend::ClusterIp,
                );
            }
            for ip in s.external_ips.iter().chain(&s.load_balancer_ips) {
                add(frontend_key(ip.octets(), p.port, proto), Frontend::External);
            }
            if let Some(np) = p.node_port {
                add(frontend_key([0; 4], np, proto), Frontend::NodePort);
            }
            for ip in s
                .cluster_ip
                .iter()
                .chain(&s.external_ips)
                .chain(&s.load_balancer_ips)
            {
                out.frontend_addrs.push(ip.octets());
            }
            for b in &backends {
                out.endpoint_addrs.push(b.ip);
            }
            out.ports.push(ServicePortEntry {
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
    out.external = s
        .external_ips
        .iter()
        .chain(&s.load_balancer_ips)
        .map(|ip| ip.octets())
        .collect();
    for v in [
        &mut out.frontend_addrs,
        &mut out.endpoint_addrs,
        &mut out.external,
    ] {
        v.sort_unstable();
        v.dedup();
    }
    Some(out)
}

/// A frontend for messages: `10.96.0.10:80/tcp`, `node_port 30080/tcp` (made only when
/// one is refused, not for every frontend built).
fn describe_frontend(key: u64, f: Frontend, pstr: &str) -> String {
    let port = (key >> 8) as u16;
    if f == Frontend::NodePort {
        format!("node_port {port}/{pstr}")
    } else {
        format!("{}:{port}/{pstr}", Ipv4Addr::from((key >> 24) as u32))
    }
}

/// Stable identity of a backend for Maglev (address and port).
pub fn backend_id(ip: [u8; 4], port: u16) -> u64 {
    u64::from(u32::from_be_bytes(ip)) << 16 | u64::from(port)
}
