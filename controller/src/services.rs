//! Services and EndpointSlices into podswitch Services, with kube-proxy's semantics:
//! which objects are skipped, how slices are merged, which endpoint conditions count, how
//! named ports map to each slice's ports. Pure functions over the API types.

use k8s_openapi::api::core::v1::{Service as K8sService, ServicePort as K8sPort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podswitch_model::Prefix;
use podswitch_model::config::services::{
    Endpoint, Protocol, Service, ServicePort, ServiceType, SessionAffinity, TrafficPolicy,
};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// kube-proxy skips Services (and their slices) carrying this label: another proxy owns them.
pub const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label of headless Services' slices (the EndpointSlice controller sets it).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// What this node knows when it translates a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub node_name: String,
    pub node_address: Ipv4Addr,
    pub cluster_cidr: Prefix,
    pub node_port_range: [u16; 2],
    /// Other nodes podswitch routes to: name -> (address, pod subnet).
    pub peers: HashMap<String, (Ipv4Addr, Prefix)>,
}

/// The outcome for one Service.
#[derive(Debug, Clone)]
pub enum Translated {
    /// Program it; `warnings` name endpoints left out (bad or unreachable), with the reason.
    Program {
        service: Service,
        warnings: Vec<String>,
    },
    /// Not podswitch's to program (headless, ExternalName, another proxy's): not an error.
    Skip(String),
    /// Refused as a whole, never half-programmed: the reason names the field at fault.
    Reject(String),
}

fn protocol(p: Option<&str>) -> Result<Protocol, String> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        other => Err(format!(
            "protocol {other} is not supported (TCP and UDP are)"
        )),
    }
}

fn port16(v: i32, what: &str) -> Result<u16, String> {
    u16::try_from(v)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{what} {v} is out of range 1-65535"))
}

fn ipv4(s: &str, what: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not an IPv4 address"))
}

/// Whether a Service is one kube-proxy would program at all.
pub fn skip_reason(svc: &K8sService) -> Option<String> {
    let labels = svc.metadata.labels.as_ref();
    if let Some(v) = labels.and_then(|l| l.get(PROXY_NAME_LABEL)) {
        return Some(format!("{PROXY_NAME_LABEL}={v}: another proxy's"));
    }
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return Some("type ExternalName (DNS only)".into());
    }
    match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => Some("headless (no ClusterIP)".into()),
        _ => None,
    }
}

/// Translates one Service with its slices (those labelled with its name, in its namespace).
pub fn translate<'a>(
    svc: &K8sService,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ctx: &Context,
) -> Translated {
    if let Some(r) = skip_reason(svc) {
        return Translated::Skip(r);
    }
    match build(svc, slices, ctx) {
        Ok((service, warnings)) => Translated::Program { service, warnings },
        Err(e) => Translated::Reject(e),
    }
}

fn build<'a>(
    svc: &K8sService,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ctx: &Context,
) -> Result<(Service, Vec<String>), String> {
    let spec = svc.spec.as_ref().ok_or("no spec")?;
    let kind = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" => ServiceType::ClusterIP,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        other => return Err(format!("type {other} is not supported")),
    };
    // The IPv4 ClusterIP of a single- or dual-stack Service.
    let cluster_ips: Vec<&String> = match &spec.cluster_ips {
        Some(v) if !v.is_empty() => v.iter().collect(),
        _ => spec.cluster_ip.iter().collect(),
    };
    let cluster_ip = cluster_ips
        .iter()
        .find(|s| !s.contains(':'))
        .ok_or_else(|| "no IPv4 ClusterIP (IPv6-only Services are not supported)".to_string())
        .and_then(|s| ipv4(s, "clusterIP"))?;
    let k8s_ports = spec.ports.as_deref().unwrap_or_default();
    if k8s_ports.is_empty() {
        return Err("the Service has no ports".into());
    }
    let [np_lo, np_hi] = ctx.node_port_range;
    let mut ports = Vec::with_capacity(k8s_ports.len());
    let mut named_target: Vec<bool> = Vec::new();
    for p in k8s_ports {
        let label = p.name.clone().unwrap_or_else(|| p.port.to_string());
        let protocol = protocol(p.protocol.as_deref()).map_err(|e| format!("port {label}: {e}"))?;
        let port = port16(p.port, &format!("port {label}: port"))?;
        let target_port = match &p.target_port {
            None => None,
            Some(IntOrString::Int(t)) => Some(port16(*t, &format!("port {label}: targetPort"))?),
            Some(IntOrString::String(s)) => match s.parse::<i32>() {
                Ok(t) => Some(port16(t, &format!("port {label}: targetPort"))?),
                Err(_) => None, // a named container port: resolved per endpoint from the slices
            },
        };
        named_target.push(
            matches!(&p.target_port, Some(IntOrString::String(s)) if s.parse::<i32>().is_err()),
        );
        let node_port = match (kind, p.node_port) {
            (ServiceType::ClusterIP, _) | (_, None) | (_, Some(0)) => None,
            (_, Some(n)) => {
                let n = port16(n, &format!("port {label}: nodePort"))?;
                if !(np_lo..=np_hi).contains(&n) {
                    return Err(format!(
                        "port {label}: nodePort {n} is outside the NodePort range {np_lo}-{np_hi}"
                    ));
                }
                Some(n)
            }
        };
        if kind != ServiceType::ClusterIP && node_port.is_none() {
            return Err(format!(
                "port {label}: no nodePort (a LoadBalancer without NodePorts is not supported)"
            ));
        }
        ports.push(ServicePort {
            name: p.name.clone().filter(|n| !n.is_empty()),
            protocol,
            port,
            target_port,
            node_port,
        });
    }
    let external_ips = spec
        .external_ips
        .iter()
        .flatten()
        .filter(|s| !s.contains(':'))
        .map(|s| ipv4(s, "externalIP"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut load_balancer_ips = Vec::new();
    if kind == ServiceType::LoadBalancer {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref());
        for i in ingress.into_iter().flatten() {
            // ipMode Proxy: the load balancer proxies, the node must not short-cut the IP.
            if i.ip_mode.as_deref() == Some("Proxy") {
                continue;
            }
            if let Some(ip) = i.ip.as_deref().filter(|s| !s.contains(':')) {
                load_balancer_ips.push(ipv4(ip, "status.loadBalancer.ingress ip")?);
            }
        }
    }
    let policy = |p: Option<&str>, what: &str| match p.unwrap_or("Cluster") {
        "Cluster" => Ok(TrafficPolicy::Cluster),
        "Local" => Ok(TrafficPolicy::Local),
        other => Err(format!("{what} {other:?} is not Cluster or Local")),
    };
    let external_traffic_policy = policy(
        spec.external_traffic_policy.as_deref(),
        "externalTrafficPolicy",
    )?;
    let internal_traffic_policy = policy(
        spec.internal_traffic_policy.as_deref(),
        "internalTrafficPolicy",
    )?;
    let (session_affinity, session_affinity_timeout) = match spec.session_affinity.as_deref() {
        Some("ClientIP") => {
            let t = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800);
            let t = u32::try_from(t)
                .ok()
                .filter(|t| (1..=86400).contains(t))
                .ok_or_else(|| {
                    format!("sessionAffinityConfig timeoutSeconds {t} is out of range 1-86400")
                })?;
            (SessionAffinity::ClientIP, t)
        }
        _ => (SessionAffinity::None, 10800),
    };
    // kube-proxy answers the health check only for eTP Local LoadBalancers.
    let health_check_node_port = match spec.health_check_node_port {
        Some(n)
            if kind == ServiceType::LoadBalancer
                && external_traffic_policy == TrafficPolicy::Local =>
        {
            Some(port16(n, "healthCheckNodePort")?)
        }
        _ => None,
    };
    let (endpoints, warnings) = endpoints(k8s_ports, &ports, &named_target, slices, ctx);
    // A named targetPort on a single unnamed port: the number comes from the slices.
    if ports.len() == 1 && ports[0].name.is_none() && named_target[0] {
        ports[0].target_port = endpoints.iter().find_map(|e| e.ports.get("").copied());
    }
    let endpoints = endpoints
        .into_iter()
        .map(|mut e| {
            if ports.len() == 1 && ports[0].name.is_none() {
                e.ports.clear();
            }
            e
        })
        .collect();
    Ok((
        Service {
            name: svc.metadata.name.clone().unwrap_or_default(),
            namespace: svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            kind,
            cluster_ip: Some(cluster_ip),
            ports,
            external_ips,
            load_balancer_ips,
            session_affinity,
            session_affinity_timeout,
            external_traffic_policy,
            internal_traffic_policy,
            health_check_node_port,
            endpoints,
        },
        warnings,
    ))
}

/// The endpoints of every slice, merged (an endpoint moving between slices can be listed
/// twice for a moment: the entry with the better conditions wins), each with its port per
/// named Service port.
fn endpoints<'a>(
    k8s_ports: &[K8sPort],
    ports: &[ServicePort],
    named_target: &[bool],
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ctx: &Context,
) -> (Vec<Endpoint>, Vec<String>) {
    let mut by_ip: BTreeMap<Ipv4Addr, Endpoint> = BTreeMap::new();
    let mut warnings = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let sname = slice.metadata.name.as_deref().unwrap_or("?");
        for ep in slice.endpoints.iter().flatten() {
            // kube-proxy uses the first address of an endpoint.
            let Some(addr) = ep.addresses.first() else {
                continue;
            };
            let ip = match ipv4(addr, "address") {
                Ok(ip) => ip,
                Err(e) => {
                    warnings.push(format!("slice {sname}: {e}"));
                    continue;
                }
            };
            let on_node = ip == ctx.node_address || ctx.peers.values().any(|(a, _)| *a == ip);
            if !ctx.cluster_cidr.contains(u32::from(ip)) && !on_node {
                warnings.push(format!(
                    "slice {sname}: endpoint {ip} is outside the cluster network {} and not a node address",
                    ctx.cluster_cidr
                ));
                continue;
            }
            let node = match ep.node_name.as_deref() {
                Some(n) if n == ctx.node_name || ctx.peers.contains_key(n) => Some(n.to_string()),
                Some(n) => {
                    warnings.push(format!(
                        "slice {sname}: endpoint {ip} is on node {n}, which is not a peer of this node"
                    ));
                    continue;
                }
                None => None,
            };
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(true);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let mut eports = BTreeMap::new();
            for (i, sp) in ports.iter().enumerate() {
                let want = k8s_ports[i].name.as_deref().unwrap_or("");
                let proto = sp.protocol.as_str().to_uppercase();
                let found = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == want
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                });
                if let Some(n) = found
                    .and_then(|p| p.port)
                    .and_then(|n| u16::try_from(n).ok())
                {
                    // Numbers only where the target port is named (per endpoint); a numeric
                    // targetPort is the Service port's own.
                    if named_target[i] {
                        eports.insert(want.to_string(), n);
                    }
                }
            }
            let cand = Endpoint {
                ip,
                node,
                ports: eports,
                ready,
                serving: Some(serving),
                terminating,
            };
            let rank = |e: &Endpoint| (e.ready, e.serving(), !e.terminating);
            match by_ip.get(&ip) {
                Some(old) if rank(old) >= rank(&cand) => {}
                _ => {
                    by_ip.insert(ip, cand);
                }
            }
        }
    }
    (by_ip.into_values().collect(), warnings)
}
