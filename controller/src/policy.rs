//! NetworkPolicies (networking.k8s.io/v1) compiled for this node's pods: selectors resolved
//! against Pods and Namespaces into shared address sets, named ports into numbers, and per
//! local pod the ingress and egress sections the dataplane enforces
//! (`podswitch_model::config::{AddressSet, PodPolicy}`).
//!
//! - A policy isolates the pods its podSelector picks in its namespace, in the directions of
//!   `policyTypes` (default: Ingress, plus Egress when it has egress rules).
//! - Peers: podSelector alone = the policy's namespace; namespaceSelector; both in one peer =
//!   AND; separate peers = OR; ipBlock with except; no peers = any address.
//! - Named ports resolve per destination pod: for ingress against the local pod's container
//!   ports; for egress against each peer pod's, so such a rule is split into one rule per
//!   resolved number, each with the address sets of the pods that resolve to it. A name no
//!   pod exposes matches nothing.
//! - Address sets are named by a hash of what defines them (namespace and pod selector, or
//!   the ipBlock), so identical peers share one set, and a label change only changes the
//!   sets' contents, not the rules that name them.
//! - Host-network pods, pods without an IPv4 address and finished pods are in no set.
//! - A policy with bad input (ipBlock except outside its cidr, SCTP, an unknown protocol,
//!   a bad selector) is reported and skipped as a whole; the others are unaffected.

use crate::planner::Rejection;
use crate::selector::Selector;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Namespace, Pod, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use podswitch_model::Prefix;
use podswitch_model::config::services::Protocol;
use podswitch_model::config::{AddressSet, PodPolicy, PolicyDirection, PolicyPort, PolicyRule};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What policy needs to know of a Pod; two Pods with equal facts compile the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node: Option<String>,
    /// None: host network, finished, or no IPv4 address yet: in no set, not compiled for.
    pub ip: Option<Ipv4Addr>,
    /// Named container ports: (name, protocol, number).
    pub ports: Vec<(String, Protocol, u16)>,
}

fn protocol_of(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

impl PodFacts {
    pub fn of(p: &Pod) -> PodFacts {
        let spec = p.spec.as_ref();
        let status = p.status.as_ref();
        let finished = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let host = spec.and_then(|s| s.host_network).unwrap_or(false);
        let ip = status
            .and_then(|s| {
                s.pod_ip
                    .iter()
                    .chain(s.pod_ips.iter().flatten().map(|i| &i.ip))
                    .find_map(|a| a.parse::<Ipv4Addr>().ok())
            })
            .filter(|_| !host && !finished);
        let mut ports = Vec::new();
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            for cp in c.ports.iter().flatten() {
                let (Some(name), Some(proto), Ok(n)) = (
                    cp.name.as_ref(),
                    protocol_of(cp.protocol.as_deref()),
                    u16::try_from(cp.container_port),
                ) else {
                    continue;
                };
                ports.push((name.clone(), proto, n));
            }
        }
        PodFacts {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            labels: p.labels().clone(),
            node: spec.and_then(|s| s.node_name.clone()),
            ip,
            ports,
        }
    }

    fn port(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|(n, p, _)| n == name && *p == proto)
            .map(|x| x.2)
    }
}

/// The Pod with only what policy reads kept (the all-pods store holds every Pod of the
/// cluster: no managed fields, annotations, volumes or conditions).
pub fn slim(p: Pod) -> Pod {
    let spec = p.spec.map(|s| PodSpec {
        node_name: s.node_name,
        host_network: s.host_network,
        containers: s
            .containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                ports: c.ports.map(|ps| {
                    ps.into_iter()
                        .filter(|p| p.name.is_some())
                        .map(|p| ContainerPort {
                            name: p.name,
                            protocol: p.protocol,
                            container_port: p.container_port,
                            ..ContainerPort::default()
                        })
                        .collect()
                }),
                ..Container::default()
            })
            .collect(),
        ..PodSpec::default()
    });
    let status = p.status.map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        ..PodStatus::default()
    });
    Pod {
        metadata: ObjectMeta {
            name: p.metadata.name,
            namespace: p.metadata.namespace,
            labels: p.metadata.labels,
            resource_version: p.metadata.resource_version,
            uid: p.metadata.uid,
            ..ObjectMeta::default()
        },
        spec,
        status,
    }
}

/// A namespace's labels (with its name label, which the API server always sets).
pub fn namespace_labels(n: &Namespace) -> BTreeMap<String, String> {
    let mut l = n.labels().clone();
    l.entry(NAMESPACE_NAME_LABEL.into())
        .or_insert_with(|| n.name_any());
    l
}

/// What this node's podswitchd should hold for NetworkPolicy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Compiled {
    pub sets: BTreeMap<String, AddressSet>,
    /// By pod name (`namespace/name`, as the CNI plugin names pods in the daemon).
    pub pods: BTreeMap<String, PodPolicy>,
    pub rejections: Vec<Rejection>,
    /// Policies compiled (not rejected).
    pub policies: usize,
}

enum NsMatch {
    Own(String),
    Sel(Selector),
}

enum Peer {
    Pods {
        key: String,
        ns: NsMatch,
        pods: Option<Selector>,
    },
    Block(AddressSet),
}

enum PortSpec {
    Num(PolicyPort),
    Named(String, Protocol),
}

struct Rule {
    index: u32,
    /// None: any address.
    peers: Option<Vec<Peer>>,
    ports: Vec<PortSpec>,
}

struct Parsed {
    key: String,
    namespace: String,
    select: Selector,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

fn parse_port(p: &NetworkPolicyPort) -> Result<PortSpec, String> {
    let proto = match p.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => return Err("protocol SCTP is not supported".into()),
        other => return Err(format!("unknown protocol {other:?}")),
    };
    let end = match p.end_port {
        None => None,
        Some(e) => Some(
            u16::try_from(e)
                .ok()
                .filter(|e| *e > 0)
                .ok_or_else(|| format!("endPort {e} is out of range"))?,
        ),
    };
    match &p.port {
        None if end.is_some() => Err("endPort without port".into()),
        None => Ok(PortSpec::Num(PolicyPort {
            protocol: proto,
            port: None,
            end_port: None,
        })),
        Some(IntOrString::Int(n)) => {
            let n = u16::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("port {n} is out of range"))?;
            if let Some(e) = end
                && e < n
            {
                return Err(format!("endPort {e} is below port {n}"));
            }
            Ok(PortSpec::Num(PolicyPort {
                protocol: proto,
                port: Some(n),
                end_port: end.filter(|e| *e != n),
            }))
        }
        Some(IntOrString::String(s)) if end.is_some() => {
            Err(format!("endPort with the named port {s:?}"))
        }
        Some(IntOrString::String(s)) => Ok(PortSpec::Named(s.clone(), proto)),
    }
}

fn parse_block(cidr: &str, except: &[String]) -> Result<AddressSet, String> {
    // The dataplane is IPv4: an IPv6 block matches none of its addresses.
    if cidr.contains(':') {
        return Ok(AddressSet {
            name: String::new(),
            prefixes: Vec::new(),
            except: Vec::new(),
        });
    }
    let c: Prefix = cidr
        .parse()
        .map_err(|e| format!("ipBlock cidr {cidr:?}: {e}"))?;
    let mut ex = Vec::new();
    for e in except {
        if e.contains(':') {
            return Err(format!("ipBlock except {e:?} is outside its cidr {cidr}"));
        }
        let p: Prefix = e
            .parse()
            .map_err(|err| format!("ipBlock except {e:?}: {err}"))?;
        if p.len < c.len || !c.contains(p.addr) {
            return Err(format!("ipBlock except {e} is outside its cidr {cidr}"));
        }
        ex.push(p);
    }
    ex.sort();
    ex.dedup();
    Ok(AddressSet {
        name: String::new(),
        prefixes: vec![c],
        except: ex,
    })
}

fn parse_peer(ns: &str, p: &NetworkPolicyPeer) -> Result<Peer, String> {
    if let Some(b) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            return Err("a peer with ipBlock cannot have selectors".into());
        }
        return Ok(Peer::Block(parse_block(
            &b.cidr,
            b.except.as_deref().unwrap_or_default(),
        )?));
    }
    let pods = p
        .pod_selector
        .as_ref()
        .map(|s| Selector::parse(s).map_err(|e| format!("peer podSelector: {e}")))
        .transpose()?;
    let nsm = match &p.namespace_selector {
        Some(s) => {
            NsMatch::Sel(Selector::parse(s).map_err(|e| format!("peer namespaceSelector: {e}"))?)
        }
        None if pods.is_none() => {
            return Err("a peer needs a podSelector, a namespaceSelector or an ipBlock".into());
        }
        None => NsMatch::Own(ns.to_string()),
    };
    let key = format!(
        "{} pods {}",
        match &nsm {
            NsMatch::Own(n) => format!("namespace {n}"),
            NsMatch::Sel(s) => format!("namespaces {}", s.canonical()),
        },
        pods.as_ref().map_or("*".into(), Selector::canonical)
    );
    Ok(Peer::Pods { key, ns: nsm, pods })
}

fn parse_rules<'a>(
    ns: &str,
    rules: impl Iterator<
        Item = (
            Option<&'a Vec<NetworkPolicyPeer>>,
            Option<&'a Vec<NetworkPolicyPort>>,
        ),
    >,
    dir: &str,
) -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    for (i, (peers, ports)) in rules.enumerate() {
        let ctx = |e: String| format!("{dir} rule {i}: {e}");
        let peers = match peers {
            Some(v) if !v.is_empty() => Some(
                v.iter()
                    .map(|p| parse_peer(ns, p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ctx)?,
            ),
            _ => None,
        };
        let ports = ports
            .into_iter()
            .flatten()
            .map(parse_port)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ctx)?;
        out.push(Rule {
            index: i as u32,
            peers,
            ports,
        });
    }
    Ok(out)
}

fn parse(np: &NetworkPolicy) -> Result<Parsed, String> {
    let namespace = np.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", np.name_any());
    let spec = np.spec.clone().unwrap_or_default();
    let select = match &spec.pod_selector {
        Some(s) => Selector::parse(s).map_err(|e| format!("podSelector: {e}"))?,
        None => Selector::default(),
    };
    let has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
    let (mut ing, mut eg) = (false, false);
    match &spec.policy_types {
        Some(t) if !t.is_empty() => {
            for t in t {
                match t.as_str() {
                    "Ingress" => ing = true,
                    "Egress" => eg = true,
                    other => return Err(format!("unknown policyType {other:?}")),
                }
            }
        }
        _ => (ing, eg) = (true, has_egress),
    }
    let ingress = parse_rules(
        &namespace,
        spec.ingress
            .iter()
            .flatten()
            .map(|r| (r.from.as_ref(), r.ports.as_ref())),
        "ingress",
    )?;
    let egress = parse_rules(
        &namespace,
        spec.egress
            .iter()
            .flatten()
            .map(|r| (r.to.as_ref(), r.ports.as_ref())),
        "egress",
    )?;
    Ok(Parsed {
        key,
        namespace,
        select,
        ingress: ing.then_some(ingress),
        egress: eg.then_some(egress),
    })
}

/// 64-bit FNV-1a: stable across builds and runs (set names outlive a controller restart).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Compiler<'a> {
    pods: &'a [PodFacts],
    by_ns: HashMap<&'a str, Vec<usize>>,
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    sets: BTreeMap<String, AddressSet>,
    resolved: HashMap<String, Vec<usize>>,
}

impl Compiler<'_> {
    /// The pods (indices) a pod peer selects, cached by its key.
    fn resolve(&mut self, key: &str, ns: &NsMatch, pods: Option<&Selector>) -> Vec<usize> {
        if let Some(v) = self.resolved.get(key) {
            return v.clone();
        }
        let in_ns = |n: &str| self.by_ns.get(n).into_iter().flatten().copied();
        let mut v: Vec<usize> = match ns {
            NsMatch::Own(n) => in_ns(n).collect(),
            NsMatch::Sel(s) => {
                let mut names: Vec<&str> = self.by_ns.keys().copied().collect();
                names.sort_unstable();
                names
                    .into_iter()
                    .filter(|n| {
                        let l = self.namespaces.get(*n).cloned().unwrap_or_else(|| {
                            BTreeMap::from([(NAMESPACE_NAME_LABEL.into(), n.to_string())])
                        });
                        s.matches(&l)
                    })
                    .flat_map(in_ns)
                    .collect()
            }
        };
        if let Some(s) = pods {
            v.retain(|i| s.matches(&self.pods[*i].labels));
        }
        self.resolved.insert(key.to_string(), v.clone());
        v
    }

    fn set_name(kind: &str, key: &str) -> String {
        format!("{kind}-{:016x}", fnv(key))
    }

    fn add_set(&mut self, kind: &str, key: &str, mut s: AddressSet) -> String {
        let name = Self::set_name(kind, key);
        s.name = name.clone();
        self.sets.insert(name.clone(), s);
        name
    }

    fn pod_set(&mut self, key: &str, members: &[usize]) -> String {
        // One key, one content within a compile: built once, then only named.
        let name = Self::set_name("pods", key);
        if self.sets.contains_key(&name) {
            return name;
        }
        let mut prefixes: Vec<Prefix> = members
            .iter()
            .filter_map(|i| self.pods[*i].ip)
            .map(|ip| Prefix::new(ip.octets(), 32).unwrap_or(Prefix { addr: 0, len: 32 }))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        self.add_set(
            "pods",
            key,
            AddressSet {
                name: String::new(),
                prefixes,
                except: Vec::new(),
            },
        )
    }

    fn peer_set(&mut self, p: &Peer) -> String {
        match p {
            Peer::Block(b) => {
                let key = format!(
                    "ipblock {:?} except {:?}",
                    b.prefixes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                    b.except.iter().map(ToString::to_string).collect::<Vec<_>>()
                );
                self.add_set("ipblock", &key, b.clone())
            }
            Peer::Pods { key, .. } if self.sets.contains_key(&Self::set_name("pods", key)) => {
                Self::set_name("pods", key)
            }
            Peer::Pods { key, ns, pods } => {
                let m = self.resolve(key, ns, pods.as_ref());
                self.pod_set(key, &m)
            }
        }
    }

    /// The dataplane rules for one policy rule. `local`: the destination pod for ingress
    /// (named ports resolve against it); None for egress (they resolve per peer pod).
    fn rules(&mut self, policy: &str, r: &Rule, local: Option<&PodFacts>) -> Vec<PolicyRule> {
        let mk = |peers: Vec<String>, ports: Vec<PolicyPort>| PolicyRule {
            policy: policy.to_string(),
            rule: r.index,
            peers,
            ports,
        };
        let mut numeric = Vec::new();
        let mut named = Vec::new();
        for p in &r.ports {
            match p {
                PortSpec::Num(p) => numeric.push(*p),
                PortSpec::Named(n, proto) => named.push((n.as_str(), *proto)),
            }
        }
        let all_peers = |c: &mut Self| -> Vec<String> {
            r.peers.iter().flatten().map(|p| c.peer_set(p)).collect()
        };
        if named.is_empty() {
            return vec![mk(all_peers(self), numeric)];
        }
        let mut out = Vec::new();
        if let Some(pod) = local {
            let mut ports = numeric;
            for (n, proto) in named {
                if let Some(num) = pod.port(n, proto) {
                    ports.push(PolicyPort {
                        protocol: proto,
                        port: Some(num),
                        end_port: None,
                    });
                }
            }
            // Only unresolved names: the rule matches nothing.
            if !ports.is_empty() {
                out.push(mk(all_peers(self), ports));
            }
            return out;
        }
        if !numeric.is_empty() {
            out.push(mk(all_peers(self), numeric));
        }
        // Egress to named ports: only pods can resolve a name (ipBlock peers cannot).
        let groups: Vec<(String, Vec<usize>)> = match &r.peers {
            None => vec![("all pods".into(), (0..self.pods.len()).collect())],
            Some(ps) => ps
                .iter()
                .filter_map(|p| match p {
                    Peer::Pods { key, ns, pods } => {
                        Some((key.clone(), self.resolve(key, ns, pods.as_ref())))
                    }
                    Peer::Block(_) => None,
                })
                .collect(),
        };
        for (n, proto) in named {
            let mut by_num: BTreeMap<u16, Vec<String>> = BTreeMap::new();
            for (key, members) in &groups {
                let mut per: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
                for i in members {
                    if let Some(num) = self.pods[*i].port(n, proto) {
                        per.entry(num).or_default().push(*i);
                    }
                }
                for (num, m) in per {
                    let k = format!("{key} port {n}/{}={num}", proto.as_str());
                    let name = self.pod_set(&k, &m);
                    by_num.entry(num).or_default().push(name);
                }
            }
            for (num, sets) in by_num {
                out.push(mk(
                    sets,
                    vec![PolicyPort {
                        protocol: proto,
                        port: Some(num),
                        end_port: None,
                    }],
                ));
            }
        }
        out
    }
}

/// Compiles every policy for the pods of `node`. `namespaces`: labels by namespace name.
pub fn compile<'a>(
    policies: impl IntoIterator<Item = &'a NetworkPolicy>,
    pods: &[PodFacts],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    node: &str,
) -> Compiled {
    let mut out = Compiled::default();
    let mut by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut local_by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in pods.iter().enumerate() {
        if p.ip.is_none() {
            continue;
        }
        by_ns.entry(p.namespace.as_str()).or_default().push(i);
        if p.node.as_deref() == Some(node) {
            local_by_ns.entry(p.namespace.as_str()).or_default().push(i);
        }
    }
    let mut c = Compiler {
        pods,
        by_ns,
        namespaces,
        sets: BTreeMap::new(),
        resolved: HashMap::new(),
    };
    let mut parsed: Vec<Parsed> = Vec::new();
    for np in policies {
        match parse(np) {
            Ok(p) => parsed.push(p),
            Err(reason) => out.rejections.push(Rejection {
                kind: "NetworkPolicy".into(),
                name: format!("{}/{}", np.namespace().unwrap_or_default(), np.name_any()),
                reason,
            }),
        }
    }
    parsed.sort_by(|a, b| a.key.cmp(&b.key));
    out.policies = parsed.len();
    for p in &parsed {
        let selected: Vec<usize> = local_by_ns
            .get(p.namespace.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|i| p.select.matches(&pods[*i].labels))
            .collect();
        if selected.is_empty() {
            continue;
        }
        // Egress rules do not depend on the selected pod: compiled once.
        let egress: Option<Vec<PolicyRule>> = p.egress.as_ref().map(|rules| {
            rules
                .iter()
                .flat_map(|r| c.rules(&p.key, r, None))
                .collect()
        });
        for i in selected {
            let pod = &pods[i];
            let name = format!("{}/{}", pod.namespace, pod.name);
            let ingress: Option<Vec<PolicyRule>> = p.ingress.as_ref().map(|rules| {
                rules
                    .iter()
                    .flat_map(|r| c.rules(&p.key, r, Some(pod)))
                    .collect()
            });
            let e = out.pods.entry(name.clone()).or_insert_with(|| PodPolicy {
                pod: name,
                ingress: None,
                egress: None,
            });
            for (dir, rules) in [(&mut e.ingress, ingress), (&mut e.egress, egress.clone())] {
                if let Some(rules) = rules {
                    let d = dir.get_or_insert_with(PolicyDirection::default);
                    d.policies.push(p.key.clone());
                    d.rules.extend(rules);
                }
            }
        }
    }
    out.sets = c.sets;
    out.rejections.sort();
    out
}
