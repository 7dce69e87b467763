//! The controller's copy of the cluster: the objects of each watched kind, kept current from
//! the watch streams, and the set of Services whose translation is out of date.
//!
//! A relist (the first list, or one after `410 Gone`) arrives as `Init`, the objects, then
//! `InitDone`: the new list replaces the kind's map at `InitDone` in one step, and whatever
//! did not reappear counts as deleted.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// namespace/name
pub type Key = (String, String);

pub fn key_of<K: ResourceExt>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// One watch event, of any kind.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "an event is moved once, through the channel; boxing would allocate per event"
)]
pub enum Event {
    Node(Change<Node>),
    Service(Change<Service>),
    Slice(Change<EndpointSlice>),
    Pod(Change<Pod>),
    /// NetworkPolicy inputs: every policy, namespace and (slimmed) pod of the cluster.
    NetworkPolicy(Change<NetworkPolicy>),
    Namespace(Change<Namespace>),
    AnyPod(Change<Pod>),
    /// A watch failed (it backs off and retries); counted in `status`.
    WatchError(&'static str, String),
}

#[derive(Debug)]
pub enum Change<K> {
    Apply(K),
    Delete(K),
    /// A relist begins: objects follow as `Listed`, then `ListDone`.
    ListStart,
    Listed(K),
    ListDone,
}

impl<K> Change<K> {
    pub fn map<L>(self, f: impl FnOnce(K) -> L) -> Change<L> {
        match self {
            Change::Apply(o) => Change::Apply(f(o)),
            Change::Delete(o) => Change::Delete(f(o)),
            Change::ListStart => Change::ListStart,
            Change::Listed(o) => Change::Listed(f(o)),
            Change::ListDone => Change::ListDone,
        }
    }
}

/// A kind's objects, with the relist buffer.
#[derive(Debug)]
pub struct Store<K> {
    pub objects: BTreeMap<Key, K>,
    relist: Option<BTreeMap<Key, K>>,
    /// At least one full list has been seen.
    pub synced: bool,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }
}

/// What a change did to a store: the keys whose object changed (or vanished), and whether a
/// relist completed.
#[derive(Debug, Default)]
pub struct Touched {
    pub keys: Vec<Key>,
    pub relisted: bool,
}

impl<K: ResourceExt + Clone> Store<K> {
    /// Applies one change; `old` objects are returned through `on_remove` (slices need it).
    pub fn apply(&mut self, c: Change<K>, mut on_remove: impl FnMut(&K)) -> Touched {
        let mut t = Touched::default();
        match c {
            Change::Apply(o) => {
                let k = key_of(&o);
                if let Some(old) = self.objects.insert(k.clone(), o) {
                    on_remove(&old);
                }
                t.keys.push(k);
            }
            Change::Delete(o) => {
                let k = key_of(&o);
                if let Some(old) = self.objects.remove(&k) {
                    on_remove(&old);
                }
                t.keys.push(k);
            }
            Change::ListStart => self.relist = Some(BTreeMap::new()),
            Change::Listed(o) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key_of(&o), o);
            }
            Change::ListDone => {
                let new = self.relist.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, new);
                let mut keys: BTreeSet<Key> = BTreeSet::new();
                for (k, o) in &old {
                    on_remove(o);
                    keys.insert(k.clone());
                }
                keys.extend(self.objects.keys().cloned());
                t.keys = keys.into_iter().collect();
                t.relisted = true;
                self.synced = true;
            }
        }
        t
    }
}

/// Every watched kind, and the Services to translate again.
#[derive(Debug, Default)]
pub struct ClusterState {
    pub nodes: Store<Node>,
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub pods: Store<Pod>,
    pub netpols: Store<NetworkPolicy>,
    pub namespaces: Store<Namespace>,
    /// Every Pod of the cluster, slimmed to what policy reads (`policy::slim`).
    pub all_pods: Store<Pod>,
    /// A policy, or a namespace's labels, or a pod's policy facts changed.
    pub policy_dirty: bool,
    /// Service -> its slices (by the `kubernetes.io/service-name` label).
    slice_index: HashMap<Key, BTreeSet<Key>>,
    /// Services whose object or slices changed since the last sync.
    pub dirty_services: HashSet<Key>,
    /// Nodes changed: peers (and with them every Service's endpoints) are recomputed.
    pub nodes_dirty: bool,
    /// A relist happened: compare everything with the daemon at the next sync.
    pub full_compare: bool,
    pub watch_errors: u64,
    pub last_watch_error: Option<String>,
}

/// The Service a slice belongs to.
pub fn slice_service(s: &EndpointSlice) -> Option<Key> {
    let name = s.labels().get(crate::services::SERVICE_NAME_LABEL)?;
    Some((s.namespace().unwrap_or_default(), name.clone()))
}

impl ClusterState {
    pub fn synced(&self) -> bool {
        self.nodes.synced && self.services.synced && self.slices.synced && self.pods.synced
    }

    /// The NetworkPolicy inputs have all been listed once.
    pub fn policy_synced(&self) -> bool {
        self.netpols.synced && self.namespaces.synced && self.all_pods.synced
    }

    /// Something waits for a sync.
    pub fn pending(&self) -> usize {
        self.dirty_services.len()
            + usize::from(self.nodes_dirty)
            + usize::from(self.full_compare)
            + usize::from(self.policy_dirty)
    }

    pub fn apply(&mut self, ev: Event) {
        match ev {
            Event::Node(c) => {
                let t = self.nodes.apply(c, |_| {});
                self.nodes_dirty |= !t.keys.is_empty() || t.relisted;
                self.full_compare |= t.relisted;
            }
            Event::Service(c) => {
                let t = self.services.apply(c, |_| {});
                self.dirty_services.extend(t.keys);
                self.full_compare |= t.relisted;
            }
            Event::Slice(c) => {
                // Both the old and the new owner of a slice are dirty (a relabelled slice
                // moves its endpoints between Services).
                let mut removed: Vec<(Key, Key)> = Vec::new();
                let added = match &c {
                    Change::Apply(s) => slice_service(s).map(|o| (o, key_of(s))),
                    _ => None,
                };
                let t = self.slices.apply(c, |old| {
                    removed.extend(slice_service(old).map(|o| (o, key_of(old))))
                });
                for (owner, sk) in removed {
                    if let Some(set) = self.slice_index.get_mut(&owner) {
                        set.remove(&sk);
                        if set.is_empty() {
                            self.slice_index.remove(&owner);
                        }
                    }
                    self.dirty_services.insert(owner);
                }
                if let Some((owner, sk)) = added {
                    self.slice_index
                        .entry(owner.clone())
                        .or_default()
                        .insert(sk);
                    self.dirty_services.insert(owner);
                }
                if t.relisted {
                    self.slice_index.clear();
                    for (k, s) in &self.slices.objects {
                        if let Some(o) = slice_service(s) {
                            self.slice_index
                                .entry(o.clone())
                                .or_default()
                                .insert(k.clone());
                            self.dirty_services.insert(o);
                        }
                    }
                    self.full_compare = true;
                }
            }
            Event::Pod(c) => {
                let t = self.pods.apply(c, |_| {});
                self.full_compare |= t.relisted;
            }
            Event::NetworkPolicy(c) => {
                let t = self.netpols.apply(c, |_| {});
                self.policy_dirty |= !t.keys.is_empty() || t.relisted;
            }
            Event::Namespace(c) => self.apply_namespace(c),
            Event::AnyPod(c) => self.apply_any_pod(c),
            Event::WatchError(kind, e) => {
                self.watch_errors += 1;
                self.last_watch_error = Some(format!("{kind}: {e}"));
            }
        }
    }

    /// The slices of one Service.
    pub fn slices_of<'a>(&'a self, svc: &Key) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.slice_index
            .get(svc)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.objects.get(k))
    }
}

impl ClusterState {
    /// Policy is recomputed only when a namespace's labels changed (or it came or went).
    fn apply_namespace(&mut self, c: Change<Namespace>) {
        let new = match &c {
            Change::Apply(n) => Some(crate::policy::namespace_labels(n)),
            _ => None,
        };
        let mut old = None;
        let t = self
            .namespaces
            .apply(c, |o| old = Some(crate::policy::namespace_labels(o)));
        self.policy_dirty |= t.relisted || (!t.keys.is_empty() && old != new);
    }

    /// Policy is recomputed only when a pod's policy facts (labels, address, node, named
    /// ports) changed: status updates of other kinds do not count.
    fn apply_any_pod(&mut self, c: Change<Pod>) {
        let new = match &c {
            Change::Apply(p) => Some(crate::policy::PodFacts::of(p)),
            _ => None,
        };
        let mut old = None;
        let t = self
            .all_pods
            .apply(c, |o| old = Some(crate::policy::PodFacts::of(o)));
        let addressed =
            |f: &Option<crate::policy::PodFacts>| f.as_ref().is_some_and(|f| f.ip.is_some());
        self.policy_dirty |= t.relisted
            || (!t.keys.is_empty() && old != new && (addressed(&old) || addressed(&new)));
    }
}
