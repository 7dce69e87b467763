//! NetworkPolicy, compiled per local pod for a lookup whose cost does not grow with the
//! number of policies.
//!
//! Each address set becomes sorted disjoint address ranges. Each direction of a pod
//! (ingress, egress) becomes, per protocol (TCP, UDP), a partition of the port space into
//! classes (binary search over the class bounds); each class owns sorted disjoint address
//! ranges labelled with the first rule (in the pod's rule order) that allows that address
//! on that port. Rules without ports share one more range list, valid for every protocol.
//! A verdict is therefore two binary searches over ranges plus one over the port bounds:
//! O(log n), never a walk over rules (the Antrea conjunction idea, precomputed).
//!
//! Per rule "allowed" and per pod and direction "denied" counters live beside the compiled
//! rules (atomics, counted only when rules are evaluated: a flow's first packet, a denial),
//! so they survive publishes that leave the pod's rules alone.

use super::PortId;
use super::fasthash::FastMap;
pub use crate::config::Established;
use crate::config::{
    AddressSet, NodeConfig, PodPolicy, PolicyDirection, PolicyRule, services::Protocol,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// "No pod" in `by_port`.
const NONE: u32 = u32::MAX;

/// An address set as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSet {
    pub source: AddressSet,
    pub ranges: Vec<(u32, u32)>,
}

impl CompiledSet {
    pub fn compile(s: &AddressSet) -> Self {
        let take = |v: &[super::lpm::Prefix]| {
            normalise(
                v.iter()
                    .map(|p| (p.addr, p.addr | !super::lpm::mask(p.len)))
                    .collect(),
            )
        };
        let plus = take(&s.prefixes);
        let minus = take(&s.except);
        CompiledSet {
            source: s.clone(),
            ranges: subtract(&plus, &minus),
        }
    }

    pub fn contains(&self, a: u32) -> bool {
        let i = self.ranges.partition_point(|r| r.0 <= a);
        i > 0 && self.ranges[i - 1].1 >= a
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalise(mut v: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    v.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(l) if u64::from(a) <= u64::from(l.1) + 1 => l.1 = l.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `plus` minus `minus`, both normalised.
fn subtract(plus: &[(u32, u32)], minus: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(a, b) in plus {
        let mut start = u64::from(a);
        let end = u64::from(b);
        while j < minus.len() && u64::from(minus[j].1) < start {
            j += 1;
        }
        let mut k = j;
        while start <= end {
            match minus.get(k) {
                Some(&(ma, mb)) if u64::from(ma) <= end => {
                    if u64::from(ma) > start {
                        out.push((start as u32, ma - 1));
                    }
                    start = start.max(u64::from(mb) + 1);
                    k += 1;
                }
                _ => {
                    out.push((start as u32, end as u32));
                    break;
                }
            }
        }
    }
    out
}

/// Disjoint sorted address ranges, each with the first rule that allows it.
#[derive(Debug, Default, Clone)]
pub struct RangeRules {
    starts: Vec<u32>,
    ends: Vec<u32>,
    rules: Vec<u32>,
}

impl RangeRules {
    /// Builds from (first, last, rule) triples, which may overlap: the lowest rule wins.
    fn build(mut t: Vec<(u32, u32, u32)>) -> Self {
        let mut ev: Vec<(u64, bool, u32)> = Vec::with_capacity(t.len() * 2);
        for &(a, b, r) in &t {
            ev.push((u64::from(a), true, r));
            ev.push((u64::from(b) + 1, false, r));
        }
        t.clear();
        // Ends before starts at the same point.
        ev.sort_unstable_by_key(|e| (e.0, e.1));
        let mut active: BTreeMap<u32, u32> = BTreeMap::new();
        let mut out = RangeRules::default();
        let mut k = 0;
        while k < ev.len() {
            let at = ev[k].0;
            while k < ev.len() && ev[k].0 == at {
                let (_, start, r) = ev[k];
                if start {
                    *active.entry(r).or_default() += 1;
                } else if let Some(c) = active.get_mut(&r) {
                    *c -= 1;
                    if *c == 0 {
                        active.remove(&r);
                    }
                }
                k += 1;
            }
            let Some(next) = ev.get(k).map(|e| e.0) else {
                break;
            };
            if let Some((&r, _)) = active.first_key_value() {
                let (a, b) = (at as u32, (next - 1) as u32);
                let n = out.starts.len();
                if n > 0 && out.rules[n - 1] == r && u64::from(out.ends[n - 1]) + 1 == at {
                    out.ends[n - 1] = b;
                } else {
                    out.starts.push(a);
                    out.ends.push(b);
                    out.rules.push(r);
                }
            }
        }
        out
    }

    #[inline]
    fn lookup(&self, a: u32) -> u32 {
        let i = self.starts.partition_point(|&s| s <= a);
        if i > 0 && self.ends[i - 1] >= a {
            self.rules[i - 1]
        } else {
            NONE
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// (first, last, rule) of each range, for dumps.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.starts.len()).map(|i| (self.starts[i], self.ends[i], self.rules[i]))
    }
}

/// One protocol's port classes: class `k` covers ports `bounds[k]..bounds[k+1]`.
#[derive(Debug, Default, Clone)]
pub struct PortClasses {
    bounds: Vec<u32>,
    /// Index into `tables`, or `NONE` when no rule with ports covers the class.
    class: Vec<u32>,
    pub tables: Vec<RangeRules>,
}

impl PortClasses {
    #[inline]
    fn lookup(&self, port: u16, addr: u32) -> u32 {
        let k = self.bounds.partition_point(|&b| b <= u32::from(port));
        match self.class.get(k.wrapping_sub(1)) {
            Some(&t) if t != NONE => self.tables[t as usize].lookup(addr),
            _ => NONE,
        }
    }

    /// (first port, last port, table) of each class with rules, for dumps.
    pub fn classes(&self) -> impl Iterator<Item = (u16, u16, &RangeRules)> + '_ {
        (0..self.class.len()).filter_map(|k| {
            let t = self.class[k];
            let last = self.bounds.get(k + 1).map_or(65535, |&b| b - 1);
            (t != NONE).then(|| (self.bounds[k] as u16, last as u16, &self.tables[t as usize]))
        })
    }
}

/// A rule as dumps and traces name it.
#[derive(Debug)]
pub struct RuleRef {
    pub rule: PolicyRule,
    /// Packets (flows' first packets) this rule allowed.
    pub allowed: AtomicU64,
}

/// One direction of one pod.
#[derive(Debug)]
pub struct DirRules {
    /// Policies selecting the pod for this direction.
    pub policies: Vec<String>,
    pub rules: Vec<RuleRef>,
    /// Rules without ports (any protocol, any port).
    pub any_port: RangeRules,
    pub tcp: PortClasses,
    pub udp: PortClasses,
    /// Every rule's peers whatever its ports (non-first fragments carry no ports).
    pub any_rule: RangeRules,
    pub denied: AtomicU64,
}

/// A verdict: the index of the allowing rule in `DirRules::rules`, or none.
pub type Verdict = Option<u32>;

impl DirRules {
    /// The first rule allowing `addr` (the peer) with `proto`/`port` (the destination port);
    /// `port` `None` for a non-first fragment.
    #[inline]
    pub fn check(&self, proto: u8, port: Option<u16>, addr: u32) -> Verdict {
        let Some(port) = port else {
            return Some(self.any_rule.lookup(addr)).filter(|&r| r != NONE);
        };
        let a = self.any_port.lookup(addr);
        let b = match proto {
            6 => self.tcp.lookup(port, addr),
            17 => self.udp.lookup(port, addr),
            _ => NONE,
        };
        Some(a.min(b)).filter(|&r| r != NONE)
    }

    fn compile(d: &PolicyDirection, sets: &HashMap<&str, &Arc<CompiledSet>>) -> Self {
        let peers_of = |r: &PolicyRule, id: u32, out: &mut Vec<(u32, u32, u32)>| {
            if r.peers.is_empty() {
                out.push((0, u32::MAX, id));
            }
            for p in &r.peers {
                if let Some(s) = sets.get(p.as_str()) {
                    out.extend(s.ranges.iter().map(|&(a, b)| (a, b, id)));
                }
            }
        };
        let mut any = Vec::new();
        let mut all = Vec::new();
        for (id, r) in d.rules.iter().enumerate() {
            peers_of(r, id as u32, &mut all);
            if r.ports.is_empty() {
                peers_of(r, id as u32, &mut any);
            }
        }
        let classes = |proto: Protocol| {
            // Port intervals of the rules with ports of this protocol.
            let mut ev: Vec<(u32, bool, u32)> = Vec::new();
            for (id, r) in d.rules.iter().enumerate() {
                for p in r.ports.iter().filter(|p| p.protocol == proto) {
                    let (lo, hi) = p.range();
                    ev.push((u32::from(lo), true, id as u32));
                    ev.push((u32::from(hi) + 1, false, id as u32));
                }
            }
            ev.sort_unstable_by_key(|e| (e.0, e.1));
            let mut pc = PortClasses::default();
            let mut seen: HashMap<Vec<u32>, u32> = HashMap::new();
            let mut active: BTreeMap<u32, u32> = BTreeMap::new();
            let mut k = 0;
            if ev.first().is_none_or(|e| e.0 > 0) {
                pc.bounds.push(0);
                pc.class.push(NONE);
            }
            while k < ev.len() {
                let at = ev[k].0;
                while k < ev.len() && ev[k].0 == at {
                    let (_, start, r) = ev[k];
                    if start {
                        *active.entry(r).or_default() += 1;
                    } else if let Some(c) = active.get_mut(&r) {
                        *c -= 1;
                        if *c == 0 {
                            active.remove(&r);
                        }
                    }
                    k += 1;
                }
                if at > 65535 {
                    break;
                }
                let ids: Vec<u32> = active.keys().copied().collect();
                let t = if ids.is_empty() {
                    NONE
                } else if let Some(&t) = seen.get(&ids) {
                    t
                } else {
                    let mut tri = Vec::new();
                    for &id in &ids {
                        peers_of(&d.rules[id as usize], id, &mut tri);
                    }
                    let t = pc.tables.len() as u32;
                    pc.tables.push(RangeRules::build(tri));
                    seen.insert(ids, t);
                    t
                };
                if pc.class.last() == Some(&t) {
                    continue;
                }
                pc.bounds.push(at);
                pc.class.push(t);
            }
            pc
        };
        DirRules {
            policies: d.policies.clone(),
            rules: d
                .rules
                .iter()
                .map(|r| RuleRef {
                    rule: r.clone(),
                    allowed: AtomicU64::new(0),
                })
                .collect(),
            any_port: RangeRules::build(any),
            tcp: classes(Protocol::Tcp),
            udp: classes(Protocol::Udp),
            any_rule: RangeRules::build(all),
            denied: AtomicU64::new(0),
        }
    }

    /// Counts a verdict.
    #[inline]
    pub fn count(&self, v: Verdict) {
        let c = match v {
            Some(r) => match self.rules.get(r as usize) {
                Some(r) => &r.allowed,
                None => return,
            },
            None => &self.denied,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The rule that allowed, as `namespace/name rule N`.
    pub fn describe(&self, v: Verdict) -> String {
        match v.and_then(|r| self.rules.get(r as usize)) {
            Some(r) => format!("allowed by {} rule {}", r.rule.policy, r.rule.rule),
            None if self.policies.is_empty() => "no policy selecting the pod allowed it".into(),
            None => format!(
                "no policy selecting the pod allowed it (selected by {})",
                self.policies.join(", ")
            ),
        }
    }
}

/// A local pod's compiled policy.
#[derive(Debug)]
pub struct PodRules {
    pub source: PodPolicy,
    pub ip: [u8; 4],
    pub ingress: Option<DirRules>,
    pub egress: Option<DirRules>,
    /// The compiled sets the rules were built from (reuse is by identity).
    sets: Vec<Arc<CompiledSet>>,
}

/// The policy table of a snapshot.
#[derive(Debug, Default)]
pub struct PolicyTable {
    pub established: Established,
    pub sets: HashMap<String, Arc<CompiledSet>>,
    pub pods: Vec<Arc<PodRules>>,
    /// Pod index by the pod's address (the ingress side, after DNAT).
    by_ip: FastMap<[u8; 4], u32>,
    /// Pod index by port id (the egress side); `NONE` when the port has no policy.
    by_port: Vec<u32>,
}

impl PolicyTable {
    /// No pod selected by any policy: the stage is skipped.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    #[inline]
    pub fn by_port(&self, p: PortId) -> Option<&PodRules> {
        match self.by_port.get(usize::from(p)) {
            Some(&i) if i != NONE => self.pods.get(i as usize).map(|p| &**p),
            _ => None,
        }
    }

    #[inline]
    pub fn by_ip(&self, a: [u8; 4]) -> Option<&PodRules> {
        self.by_ip
            .get(&a)
            .and_then(|&i| self.pods.get(i as usize))
            .map(|p| &**p)
    }

    /// Whether a flow from `src` to `dst` (after translation; `orig_src` before SNAT) is
    /// allowed by the egress rules of a local source pod and the ingress rules of a local
    /// destination pod (`cut` at publish time).
    pub fn flow_allowed(
        &self,
        proto: u8,
        orig_src: [u8; 4],
        src: [u8; 4],
        dst: [u8; 4],
        dport: u16,
    ) -> bool {
        let port = Some(dport);
        let eg = self
            .by_ip(orig_src)
            .and_then(|p| p.egress.as_ref())
            .is_none_or(|d| d.check(proto, port, u32::from_be_bytes(dst)).is_some());
        let ing = self
            .by_ip(dst)
            .and_then(|p| p.ingress.as_ref())
            .is_none_or(|d| d.check(proto, port, u32::from_be_bytes(src)).is_some());
        eg && ing
    }
}

/// Validates the policy sections and compiles them, reusing from `prev` the sets and pods
/// whose inputs are unchanged. `ports`: the snapshot's port list (pod ports carry the pod
/// name as label).
pub fn build(
    cfg: &NodeConfig,
    ports: &[super::PortEntry],
    prev: Option<&PolicyTable>,
    errs: &mut Vec<String>,
) -> PolicyTable {
    let mut sets: HashMap<String, Arc<CompiledSet>> =
        HashMap::with_capacity(cfg.address_sets.len());
    for s in &cfg.address_sets {
        if s.name.is_empty() {
            errs.push("address_set: empty name".into());
            continue;
        }
        let c = match prev.and_then(|p| p.sets.get(&s.name)) {
            Some(c) if c.source == *s => c.clone(),
            _ => Arc::new(CompiledSet::compile(s)),
        };
        if sets.insert(s.name.clone(), c).is_some() {
            errs.push(format!("address_set {:?}: defined twice", s.name));
        }
    }
    let prev_pods: HashMap<&str, &Arc<PodRules>> = prev
        .map(|p| p.pods.iter().map(|r| (r.source.pod.as_str(), r)).collect())
        .unwrap_or_default();
    let mut t = PolicyTable {
        established: cfg.policy.established,
        by_port: vec![NONE; ports.len()],
        ..PolicyTable::default()
    };
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for pp in &cfg.pod_policies {
        let name = &pp.pod;
        if seen.insert(name.as_str(), ()).is_some() {
            errs.push(format!("pod_policy {name:?}: defined twice"));
            continue;
        }
        let Some(pod) = cfg.pods.iter().find(|p| p.name == *name) else {
            errs.push(format!("pod_policy {name:?}: no such pod"));
            continue;
        };
        let mut ok = true;
        let mut used: Vec<Arc<CompiledSet>> = Vec::new();
        for (dir, d) in [("ingress", &pp.ingress), ("egress", &pp.egress)] {
            let Some(d) = d else { continue };
            for r in &d.rules {
                let what = format!("pod_policy {name:?} {dir} rule {} {}", r.policy, r.rule);
                if !r.policy.contains('/') {
                    errs.push(format!("{what}: policy must be namespace/name"));
                    ok = false;
                }
                for p in &r.peers {
                    match sets.get(p) {
                        Some(s) => used.push(s.clone()),
                        None => {
                            errs.push(format!("{what}: no address_set {p:?}"));
                            ok = false;
                        }
                    }
                }
                for p in &r.ports {
                    match (p.port, p.end_port) {
                        (None, Some(_)) => {
                            errs.push(format!("{what}: end_port without port"));
                            ok = false;
                        }
                        (Some(a), Some(e)) if e < a => {
                            errs.push(format!("{what}: end_port {e} is below port {a}"));
                            ok = false;
                        }
                        _ => {}
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        let ip = pod.ip.octets();
        let reuse = prev_pods.get(name.as_str()).filter(|p| {
            p.source == *pp
                && p.ip == ip
                && p.sets.len() == used.len()
                && p.sets.iter().zip(&used).all(|(a, b)| Arc::ptr_eq(a, b))
        });
        let rules = match reuse {
            Some(r) => Arc::clone(r),
            None => {
                let by_name: HashMap<&str, &Arc<CompiledSet>> =
                    used.iter().map(|s| (s.source.name.as_str(), s)).collect();
                Arc::new(PodRules {
                    source: pp.clone(),
                    ip,
                    ingress: pp.ingress.as_ref().map(|d| DirRules::compile(d, &by_name)),
                    egress: pp.egress.as_ref().map(|d| DirRules::compile(d, &by_name)),
                    sets: used,
                })
            }
        };
        let idx = t.pods.len() as u32;
        t.by_ip.insert(ip, idx);
        if let Some(port) = ports.iter().find(|p| p.label == *name && p.ip == Some(ip)) {
            t.by_port[usize::from(port.id)] = idx;
        }
        t.pods.push(rules);
    }
    t.sets = sets;
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyPort;

    fn set(name: &str, p: &[&str], e: &[&str]) -> AddressSet {
        AddressSet {
            name: name.into(),
            prefixes: p.iter().map(|s| s.parse().unwrap()).collect(),
            except: e.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn except_cuts_holes() {
        let s = CompiledSet::compile(&set("x", &["10.0.0.0/8"], &["10.1.0.0/16", "10.2.3.4/32"]));
        assert!(s.contains(ip("10.0.0.1")));
        assert!(!s.contains(ip("10.1.2.3")));
        assert!(!s.contains(ip("10.2.3.4")));
        assert!(s.contains(ip("10.2.3.5")));
        assert!(!s.contains(ip("11.0.0.0")));
        assert_eq!(s.ranges.len(), 3);
    }

    #[test]
    fn first_rule_wins_per_port_class() {
        let a = Arc::new(CompiledSet::compile(&set("a", &["10.0.0.0/24"], &[])));
        let b = Arc::new(CompiledSet::compile(&set("b", &["10.0.0.128/25"], &[])));
        let d = PolicyDirection {
            policies: vec!["ns/p".into()],
            rules: vec![
                PolicyRule {
                    policy: "ns/p".into(),
                    rule: 0,
                    peers: vec!["a".into()],
                    ports: vec![PolicyPort {
                        protocol: Protocol::Tcp,
                        port: Some(80),
                        end_port: Some(90),
                    }],
                },
                PolicyRule {
                    policy: "ns/q".into(),
                    rule: 1,
                    peers: vec!["b".into()],
                    ports: vec![],
                },
            ],
        };
        let sets: HashMap<&str, &Arc<CompiledSet>> = [("a", &a), ("b", &b)].into_iter().collect();
        let r = DirRules::compile(&d, &sets);
        assert_eq!(r.check(6, Some(85), ip("10.0.0.200")), Some(0));
        assert_eq!(r.check(6, Some(91), ip("10.0.0.200")), Some(1));
        assert_eq!(r.check(6, Some(91), ip("10.0.0.1")), None);
        assert_eq!(r.check(17, Some(85), ip("10.0.0.1")), None);
        assert_eq!(r.check(1, Some(0), ip("10.0.0.129")), Some(1));
        assert_eq!(r.check(6, None, ip("10.0.0.1")), Some(0));
        assert_eq!(r.check(6, Some(80), ip("10.0.0.1")), Some(0));
        assert_eq!(r.check(6, Some(79), ip("10.0.0.1")), None);
    }
}
