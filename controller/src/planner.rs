//! From the cluster state to what this node's podswitchd should hold: its base
//! configuration (from its own Node), its peers (the other Nodes) and its Services. Each
//! Service is translated again only when it, one of its slices, or the set of peers changed.

use crate::netconf::NetConf;
use crate::nodes::{self, NodePeer};
use crate::services::{self, Context, Translated};
use crate::state::{ClusterState, Key};
use crate::template::NodeTemplate;
use podswitch_model::config::services::Service;
use podswitch_model::config::{NodeConfig, Peer};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// An object the controller refuses, with the reason (shown in `status`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    pub kind: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct Planner {
    pub template: NodeTemplate,
    pub net: NetConf,
    /// The base configuration, once the own Node has a podCIDR.
    pub base: Option<NodeConfig>,
    pub base_error: Option<String>,
    pub peers: BTreeMap<String, Peer>,
    node_rejections: Vec<Rejection>,
    ignored_nodes: usize,
    translated: BTreeMap<Key, Translated>,
    /// Services refused because another one holds their NodePort.
    node_port_losers: BTreeMap<Key, String>,
    /// NetworkPolicy compiled for this node (`None` until its inputs are listed).
    pub policy: Option<crate::policy::Compiled>,
}

/// What one planning step changed.
#[derive(Debug, Default)]
pub struct Changes {
    /// Services whose desired state may differ from before.
    pub services: BTreeSet<Key>,
    /// The compiled NetworkPolicy changed.
    pub policy: bool,
}

impl Planner {
    pub fn new(template: NodeTemplate, net: NetConf) -> Self {
        Planner {
            template,
            net,
            base: None,
            base_error: None,
            peers: BTreeMap::new(),
            node_rejections: Vec::new(),
            ignored_nodes: 0,
            translated: BTreeMap::new(),
            node_port_losers: BTreeMap::new(),
            policy: None,
        }
    }

    pub fn node_name(&self) -> &str {
        &self.template.node.name
    }

    fn context(&self) -> Option<Context> {
        let base = self.base.as_ref()?;
        Some(Context {
            node_name: base.node.name.clone(),
            node_address: base.node.address,
            cluster_cidr: self.net.network,
            node_port_range: base.nat.node_port_range,
            peers: self
                .peers
                .values()
                .map(|p| (p.name.clone(), (p.address, p.pod_cidr)))
                .collect(),
        })
    }

    /// Brings the plan up to date with `st` and clears its dirty marks.
    pub fn update(&mut self, st: &mut ClusterState) -> Changes {
        let mut ch = Changes::default();
        let mut all_services = false;
        if std::mem::take(&mut st.nodes_dirty) {
            // Every Service's translation reads the context (this node, the peers).
            let before = self.context();
            self.plan_nodes(st);
            let after = self.context();
            all_services = before != after;
        }
        let dirty: Vec<Key> = if all_services {
            st.dirty_services.clear();
            self.translated
                .keys()
                .cloned()
                .chain(st.services.objects.keys().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            st.dirty_services.drain().collect()
        };
        let ctx = self.context();
        for k in dirty {
            let t = match (st.services.objects.get(&k), &ctx) {
                (Some(svc), Some(ctx)) => Some(services::translate(svc, st.slices_of(&k), ctx)),
                _ => None,
            };
            match t {
                Some(t) => {
                    self.translated.insert(k.clone(), t);
                }
                None => {
                    self.translated.remove(&k);
                }
            }
            ch.services.insert(k);
        }
        // NodePorts are the node's: the first Service (by namespace/name) keeps a contested
        // one, the others are refused until it is free again.
        let mut owner: HashMap<(u8, u16), &Key> = HashMap::new();
        let mut losers: BTreeMap<Key, String> = BTreeMap::new();
        for (k, t) in &self.translated {
            if let Translated::Program { service, .. } = t {
                for p in &service.ports {
                    let Some(np) = p.node_port else { continue };
                    match owner.get(&(p.protocol.number(), np)) {
                        Some(o) if *o != k => {
                            losers.insert(
                                k.clone(),
                                format!(
                                    "nodePort {np}/{} is already used by {}/{}",
                                    p.protocol.as_str(),
                                    o.0,
                                    o.1
                                ),
                            );
                        }
                        _ => {
                            owner.insert((p.protocol.number(), np), k);
                        }
                    }
                }
            }
        }
        for k in self.node_port_losers.keys().chain(losers.keys()) {
            if self.node_port_losers.get(k) != losers.get(k) {
                ch.services.insert(k.clone());
            }
        }
        self.node_port_losers = losers;
        ch.policy = self.update_policy(st);
        ch
    }

    fn plan_nodes(&mut self, st: &ClusterState) {
        self.node_rejections.clear();
        self.ignored_nodes = 0;
        let own = self.node_name().to_string();
        self.base_error = None;
        match st.nodes.objects.get(&(String::new(), own.clone())) {
            None => self.base_error = Some(format!("Node {own} does not exist")),
            Some(n) => match nodes::pod_cidr(n) {
                Ok(Some(cidr)) => match self.template.node_config(cidr, &self.net) {
                    Ok(c) => self.base = Some(c),
                    Err(e) => self.base_error = Some(format!("Node {own}: {e}")),
                },
                Ok(None) => self.base_error = Some(format!("Node {own} has no podCIDR yet")),
                Err(e) => self.base_error = Some(format!("Node {own}: {e}")),
            },
        }
        let mut peers = BTreeMap::new();
        for ((_, name), n) in &st.nodes.objects {
            if *name == own {
                continue;
            }
            match nodes::peer_of(n, self.net.backend, self.net.vni) {
                NodePeer::Peer(p) => {
                    peers.insert(p.name.clone(), p);
                }
                NodePeer::Ignored(_) => self.ignored_nodes += 1,
                NodePeer::Rejected(reason) => self.node_rejections.push(Rejection {
                    kind: "Node".into(),
                    name: name.clone(),
                    reason,
                }),
            }
        }
        // Two peers claiming one subnet or address: neither can be trusted.
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for p in peers.values() {
            seen.entry(p.pod_cidr.to_string())
                .or_default()
                .push(p.name.clone());
            seen.entry(p.address.to_string())
                .or_default()
                .push(p.name.clone());
        }
        for (what, names) in seen.into_iter().filter(|(_, v)| v.len() > 1) {
            for n in &names {
                peers.remove(n);
                self.node_rejections.push(Rejection {
                    kind: "Node".into(),
                    name: n.clone(),
                    reason: format!("{what} is claimed by several nodes: {}", names.join(", ")),
                });
            }
        }
        self.node_rejections.sort();
        self.peers = peers;
    }

    /// The Service this node should program under `k`, if any.
    pub fn service(&self, k: &Key) -> Option<&Service> {
        if self.node_port_losers.contains_key(k) {
            return None;
        }
        match self.translated.get(k) {
            Some(Translated::Program { service, .. }) => Some(service),
            _ => None,
        }
    }

    pub fn services(&self) -> impl Iterator<Item = (&Key, &Service)> {
        self.translated
            .keys()
            .filter_map(|k| self.service(k).map(|s| (k, s)))
    }

    /// Every refused object, with warnings about endpoints left out of programmed Services.
    pub fn rejections(&self) -> Vec<Rejection> {
        let mut v = self.node_rejections.clone();
        for (k, t) in &self.translated {
            let name = format!("{}/{}", k.0, k.1);
            match t {
                Translated::Reject(reason) => v.push(Rejection {
                    kind: "Service".into(),
                    name,
                    reason: reason.clone(),
                }),
                Translated::Program { warnings, .. } => {
                    for w in warnings {
                        v.push(Rejection {
                            kind: "EndpointSlice".into(),
                            name: name.clone(),
                            reason: w.clone(),
                        });
                    }
                }
                Translated::Skip(_) => {}
            }
        }
        v.extend(
            self.policy
                .iter()
                .flat_map(|p| p.rejections.iter().cloned()),
        );
        for (k, reason) in &self.node_port_losers {
            v.push(Rejection {
                kind: "Service".into(),
                name: format!("{}/{}", k.0, k.1),
                reason: reason.clone(),
            });
        }
        v
    }

    pub fn skipped_services(&self) -> usize {
        self.translated
            .values()
            .filter(|t| matches!(t, Translated::Skip(_)))
            .count()
    }

    pub fn ignored_nodes(&self) -> usize {
        self.ignored_nodes
    }
}
