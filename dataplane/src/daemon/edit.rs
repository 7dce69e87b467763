//! The configuration changes of one publish, applied to copies made on first need: a
//! Service, address set or pod policy change copies no other one (only a shard of the map
//! holding them), and a change of anything else copies none of them.

use super::protocol::Request;
use crate::config::{NodeConfig, Service};
use crate::tables::build::ServiceDelta;
use crate::tables::services::service_name;
use crate::tables::snapshot::{ConfigState, PolicyConfig, ServiceSet};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) struct Edit<'a> {
    cur: &'a ConfigState,
    /// Everything but the Services, once something in it changed.
    base: Option<NodeConfig>,
    /// The Services a `Replace` brought (then every Service is rebuilt).
    replaced: Option<ServiceSet>,
    /// Address sets and pod policies, once one of them changed.
    policy: Option<PolicyConfig>,
    /// Service changes by `namespace/name` in request order; `None`: removed.
    svc: Vec<(String, Option<Arc<Service>>)>,
    svc_at: HashMap<String, usize>,
}

impl<'a> Edit<'a> {
    pub fn new(cur: &'a ConfigState) -> Self {
        Edit {
            cur,
            base: None,
            replaced: None,
            policy: None,
            svc: Vec::new(),
            svc_at: HashMap::new(),
        }
    }

    fn base(&mut self) -> &mut NodeConfig {
        self.base
            .get_or_insert_with(|| NodeConfig::clone(&self.cur.base))
    }

    fn policy(&mut self) -> &mut PolicyConfig {
        self.policy.get_or_insert_with(|| self.cur.policy.clone())
    }

    fn set_service(&mut self, name: String, s: Option<Arc<Service>>) {
        match self.svc_at.get(&name) {
            Some(&i) => self.svc[i].1 = s,
            None => {
                self.svc_at.insert(name.clone(), self.svc.len());
                self.svc.push((name, s));
            }
        }
    }

    /// Whether Service `name` exists with the changes so far.
    fn has_service(&self, name: &str) -> bool {
        if let Some(&i) = self.svc_at.get(name) {
            return self.svc[i].1.is_some();
        }
        self.replaced
            .as_ref()
            .unwrap_or(&self.cur.services)
            .contains(name)
    }

    /// Applies one change; an error names what is wrong and changes nothing published.
    pub fn apply(&mut self, req: Request) -> Result<(), String> {
        match req {
            Request::Replace { config } => {
                let mut new = NodeConfig::from_toml(&config)?;
                self.replaced = Some(ServiceSet::from_list(std::mem::take(&mut new.services)));
                self.policy = Some(PolicyConfig::take(&mut new));
                self.base = Some(new);
                self.svc.clear();
                self.svc_at.clear();
            }
            Request::AddPod { pod } => {
                let c = self.base();
                if c.pods.iter().any(|p| p.name == pod.name) {
                    return Err(format!("pod {:?} exists", pod.name));
                }
                c.pods.push(pod);
            }
            Request::RemovePod { name } => {
                let c = self.base();
                let gone: Vec<String> = c
                    .pods
                    .iter()
                    .filter(|p| p.name == name || p.port == name)
                    .map(|p| p.name.clone())
                    .collect();
                remove_where(
                    &mut c.pods,
                    |p| p.name == name || p.port == name,
                    || format!("no pod {name:?}"),
                )?;
                // A pod's policy goes with it: a CNI DEL must not wait for the controller.
                for pod in &gone {
                    if self
                        .policy
                        .as_ref()
                        .unwrap_or(&self.cur.policy)
                        .pods
                        .contains(pod)
                    {
                        self.policy().pods.remove(pod);
                    }
                }
            }
            Request::AddRoute { route } => {
                let c = self.base();
                c.routes.retain(|r| r.prefix != route.prefix);
                c.routes.push(route);
            }
            Request::RemoveRoute { prefix } => remove_where(
                &mut self.base().routes,
                |r| r.prefix == prefix,
                || format!("no route {prefix}"),
            )?,
            Request::AddPeer { peer } => {
                let c = self.base();
                c.peers.retain(|p| p.name != peer.name);
                c.peers.push(peer);
            }
            Request::RemovePeer { name } => remove_where(
                &mut self.base().peers,
                |p| p.name == name,
                || format!("no peer {name:?}"),
            )?,
            Request::AddService { service } => {
                self.set_service(service_name(&service), Some(Arc::new(service)));
            }
            Request::RemoveService { namespace, name } => {
                let key = format!("{namespace}/{name}");
                if !self.has_service(&key) {
                    return Err(format!("no service {key}"));
                }
                self.set_service(key, None);
            }
            Request::AddNeighbour { neighbour } => {
                let c = self.base();
                c.neighbours.retain(|n| n.ip != neighbour.ip);
                c.neighbours.push(neighbour);
            }
            Request::RemoveNeighbour { ip } => remove_where(
                &mut self.base().neighbours,
                |x| x.ip == ip,
                || format!("no neighbour {ip}"),
            )?,
            Request::AddAddressSet { set } => {
                self.policy()
                    .sets
                    .insert(set.name.as_str().into(), Arc::new(set));
            }
            Request::RemoveAddressSet { name } => {
                if !self.policy().sets.remove(&name) {
                    return Err(format!("no address set {name:?}"));
                }
            }
            Request::SetPodPolicy { policy } => {
                self.policy()
                    .pods
                    .insert(policy.pod.as_str().into(), Arc::new(policy));
            }
            Request::RemovePodPolicy { pod } => {
                if !self.policy().pods.remove(&pod) {
                    return Err(format!("no policy for pod {pod:?}"));
                }
            }
            other => {
                let v = serde_json::to_value(&other).unwrap_or_default();
                let cmd = v.get("cmd").and_then(|c| c.as_str()).unwrap_or("?");
                return Err(format!("{cmd:?} is not a configuration change"));
            }
        }
        Ok(())
    }

    /// The new configuration and which Services changed (`None`: all may have, after a
    /// `Replace`). Copies only the shards of the Service set the changes write.
    pub fn finish(self) -> (ConfigState, Option<ServiceDelta>) {
        let base = match self.base {
            Some(b) => Arc::new(b),
            None => self.cur.base.clone(),
        };
        let full = self.replaced.is_some();
        let mut services = self.replaced.unwrap_or_else(|| self.cur.services.clone());
        let mut delta = ServiceDelta::default();
        for (name, s) in self.svc {
            match s {
                Some(s) => {
                    services.insert(name.into(), s.clone());
                    delta.upserts.push(s);
                }
                None => {
                    services.remove(&name);
                    delta.removed.push(name);
                }
            }
        }
        let policy = self.policy.unwrap_or_else(|| self.cur.policy.clone());
        (
            ConfigState {
                base,
                services,
                policy,
            },
            (!full).then_some(delta),
        )
    }
}

/// Removes the items matching `gone`; an error naming the item when nothing matched.
fn remove_where<T>(
    v: &mut Vec<T>,
    gone: impl Fn(&T) -> bool,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    let n = v.len();
    v.retain(|x| !gone(x));
    if v.len() == n { Err(what()) } else { Ok(()) }
}
