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
//! rules (atomics, counted only when rules are evaluated: a flow's first packet, a denial).
//! They survive publishes that leave the pod's rules alone, and a recompilation carries them
//! over for every rule it keeps (a new rule starts at zero).

use super::cow::ShardedMap;
use super::fasthash::FastMap;
use super::policy_compile::{self, Diff, Prior, Sets};
use super::snapshot::PolicyConfig;
use super::{PortEntry, PortId};
pub use crate::config::Established;
use crate::config::{AddressSet, Pod, PodPolicy, PolicyDirection, PolicyRule, PolicySettings};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// "No pod" in `by_port`.
pub(super) const NONE: u32 = u32::MAX;
/// Most rules a pod's direction may have (rule ids share a `u64` with a range bound while
/// compiling).
pub const MAX_RULES: usize = 1 << 30;
const RULE_MASK: u64 = MAX_RULES as u64 - 1;
const START: u64 = 1 << 30;

/// An address set as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSet {
    pub source: Arc<AddressSet>,
    pub ranges: Vec<(u32, u32)>,
}

impl CompiledSet {
    pub fn compile(s: &Arc<AddressSet>) -> Self {
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
            source: Arc::clone(s),
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeRules {
    starts: Vec<u32>,
    ends: Vec<u32>,
    rules: Vec<u32>,
}

impl RangeRules {
    /// Builds from (first, last, rule) triples, which may overlap: the lowest rule wins.
    /// `active` is scratch space, all zero (and left so), indexed by rule.
    ///
    /// A sweep over the range bounds, each packed into one `u64` (point, end-before-start,
    /// rule) so that the sort, the bulk of the work for a pod with 10,000 rules, compares
    /// integers; the rules covering the current point sit in a min-heap, removed lazily
    /// once their count of open ranges falls to zero.
    pub(super) fn build(t: Vec<(u32, u32, u32)>, active: &mut Vec<u32>) -> Self {
        let mut ev: Vec<u64> = Vec::with_capacity(t.len() * 2);
        let mut most = 0;
        for &(a, b, r) in &t {
            let r = u64::from(r) & RULE_MASK;
            ev.push(u64::from(a) << 31 | START | r);
            ev.push((u64::from(b) + 1) << 31 | r);
            most = most.max(r as usize);
        }
        drop(t);
        if active.len() <= most {
            active.resize(most + 1, 0);
        }
        ev.sort_unstable();
        let mut heap: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
        let mut out = RangeRules::default();
        let mut k = 0;
        while k < ev.len() {
            let at = ev[k] >> 31;
            while k < ev.len() && ev[k] >> 31 == at {
                let r = (ev[k] & RULE_MASK) as u32;
                let c = &mut active[r as usize];
                if ev[k] & START != 0 {
                    if *c == 0 {
                        heap.push(Reverse(r));
                    }
                    *c += 1;
                } else {
                    *c = c.saturating_sub(1);
                }
                k += 1;
            }
            while heap.peek().is_some_and(|r| active[r.0 as usize] == 0) {
                heap.pop();
            }
            let Some(next) = ev.get(k).map(|e| e >> 31) else {
                break;
            };
            if let Some(&Reverse(r)) = heap.peek() {
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

    /// The same table with each rule id mapped by `f`, which must keep their order.
    pub(super) fn relabel(&self, f: impl Fn(u32) -> u32) -> Self {
        RangeRules {
            starts: self.starts.clone(),
            ends: self.ends.clone(),
            rules: self.rules.iter().map(|&r| f(r)).collect(),
        }
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
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PortClasses {
    pub(super) bounds: Vec<u32>,
    /// Index into `tables`, or `NONE` when no rule with ports covers the class.
    pub(super) class: Vec<u32>,
    /// One table per distinct set of rules covering a class (shared with the previous
    /// compilation when none of those rules changed).
    pub tables: Vec<Arc<RangeRules>>,
    /// The ids of the rules in each table, ascending.
    pub(super) keys: Vec<policy_compile::Key>,
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
            (t != NONE).then(|| {
                (
                    self.bounds[k] as u16,
                    last as u16,
                    &*self.tables[t as usize],
                )
            })
        })
    }
}

/// A rule as dumps and traces name it, with its counter.
#[derive(Debug, Clone, Copy)]
pub struct RuleRef<'a> {
    pub rule: &'a PolicyRule,
    /// Packets (flows' first packets) this rule allowed.
    pub allowed: &'a AtomicU64,
}

/// One direction of one pod.
#[derive(Debug)]
pub struct DirRules {
    /// The pod policy this direction was compiled from (shared, not copied: a pod may
    /// have 10,000 rules).
    pub(super) source: Arc<PodPolicy>,
    pub(super) egress: bool,
    /// Per rule of the section: packets (flows' first packets) it allowed.
    pub(super) allowed: Box<[AtomicU64]>,
    /// Rules without ports (any protocol, any port), and their ids.
    pub any_port: Arc<RangeRules>,
    pub(super) any_port_key: policy_compile::Key,
    pub tcp: PortClasses,
    pub udp: PortClasses,
    /// Every rule's peers whatever its ports (non-first fragments carry no ports).
    pub any_rule: Arc<RangeRules>,
    pub denied: AtomicU64,
}

/// A section with no policy and no rule (never the section of a compiled direction).
static NO_SECTION: PolicyDirection = PolicyDirection {
    policies: Vec::new(),
    rules: Vec::new(),
};

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

    /// The configuration section compiled.
    pub fn section(&self) -> &PolicyDirection {
        let d = if self.egress {
            &self.source.egress
        } else {
            &self.source.ingress
        };
        d.as_ref().unwrap_or(&NO_SECTION)
    }

    /// Policies selecting the pod for this direction.
    pub fn policies(&self) -> &[String] {
        &self.section().policies
    }

    /// The rules in order, with their counters.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = RuleRef<'_>> {
        self.section()
            .rules
            .iter()
            .zip(self.allowed.iter())
            .map(|(rule, allowed)| RuleRef { rule, allowed })
    }

    /// Whether `other` compiled the same section into the same tables (an incremental
    /// compilation against one from scratch, in tests).
    pub fn same_tables(&self, other: &DirRules) -> bool {
        self.egress == other.egress
            && self.section() == other.section()
            && self.any_port_key == other.any_port_key
            && self.any_port == other.any_port
            && self.tcp == other.tcp
            && self.udp == other.udp
            && self.any_rule == other.any_rule
    }

    /// Counts a verdict.
    #[inline]
    pub fn count(&self, v: Verdict) {
        let c = match v {
            Some(r) => match self.allowed.get(r as usize) {
                Some(c) => c,
                None => return,
            },
            None => &self.denied,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The rule that allowed, as `namespace/name rule N`.
    pub fn describe(&self, v: Verdict) -> String {
        let d = self.section();
        match v.and_then(|r| d.rules.get(r as usize)) {
            Some(r) => format!("allowed by {} rule {}", r.policy, r.rule),
            None if d.policies.is_empty() => "no policy selecting the pod allowed it".into(),
            None => format!(
                "no policy selecting the pod allowed it (selected by {})",
                d.policies.join(", ")
            ),
        }
    }
}

/// A local pod's compiled policy.
#[derive(Debug)]
pub struct PodRules {
    pub source: Arc<PodPolicy>,
    pub ip: [u8; 4],
    pub ingress: Option<DirRules>,
    pub egress: Option<DirRules>,
    /// The address sets the rules name, with the number of times they do: a change to one
    /// of them recompiles the pod (and only the pods that name it).
    uses: Arc<FastMap<Arc<str>, u32>>,
}

/// The policy table of a snapshot.
#[derive(Debug, Default)]
pub struct PolicyTable {
    pub established: Established,
    /// Compiled address sets by name (copy-on-write: a publish copies one shard).
    pub sets: ShardedMap<Arc<str>, Arc<CompiledSet>>,
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

/// What the policy table is built from.
pub struct Inputs<'a> {
    pub settings: &'a PolicySettings,
    pub pods: &'a [Pod],
    /// The snapshot's port list (pod ports carry the pod name as label).
    pub ports: &'a [PortEntry],
    pub policy: &'a PolicyConfig,
}

/// Validates the policy sections and compiles them. With `prev` (the previous table and
/// the sections it was built from), only the address sets that differ are compiled, only
/// the pods whose policy, address or sets changed are recompiled, and a recompiled pod
/// rebuilds only the port classes holding a changed rule (`policy_compile`): a publish
/// costs the change, not the 10,000 sets and rules around it. Without `prev` (or when a
/// name is given twice, which only a full pass reports), every set is looked at, reusing
/// equal ones from `prev`.
pub fn build(
    inp: &Inputs<'_>,
    prev: Option<(&PolicyTable, &PolicyConfig)>,
    errs: &mut Vec<String>,
) -> PolicyTable {
    let cfg = inp.policy;
    let incremental = prev.filter(|_| !cfg.sets.has_dups() && !cfg.pods.has_dups());
    let (sets, changed) = match incremental {
        Some((t, old)) => {
            let changed = cfg.sets.changed_since(&old.sets);
            let mut sets = t.sets.clone();
            for name in &changed {
                match cfg.sets.get(name) {
                    Some(s) => {
                        if name.is_empty() {
                            errs.push("address_set: empty name".into());
                        }
                        sets.insert(name.clone(), Arc::new(CompiledSet::compile(s)));
                    }
                    None => {
                        sets.remove(&**name);
                    }
                }
            }
            (sets, changed)
        }
        None => {
            let sets = all_sets(cfg, prev.map(|p| p.0), errs);
            let changed = prev.map_or_else(Vec::new, |p| changed_between(&p.0.sets, &sets));
            (sets, changed)
        }
    };
    let changed = ChangedSets::new(&changed);
    let changed_pods: Option<HashSet<Arc<str>>> =
        incremental.map(|(_, old)| cfg.pods.changed_since(&old.pods).into_iter().collect());
    let prev_pods: HashMap<&str, &Arc<PodRules>> = prev
        .map(|p| {
            p.0.pods
                .iter()
                .map(|r| (r.source.pod.as_str(), r))
                .collect()
        })
        .unwrap_or_default();
    let pods: HashMap<&str, &Pod> = inp.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let pod_ports: HashMap<(&str, [u8; 4]), PortId> = inp
        .ports
        .iter()
        .filter_map(|p| Some(((p.label.as_str(), p.ip?), p.id)))
        .collect();
    let mut t = PolicyTable {
        established: inp.settings.established,
        by_port: vec![NONE; inp.ports.len()],
        ..PolicyTable::default()
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let all = cfg.pods.in_order();
    for pp in &all {
        let name = pp.pod.as_str();
        if !seen.insert(name) {
            errs.push(format!("pod_policy {name:?}: defined twice"));
            continue;
        }
        let Some(pod) = pods.get(name) else {
            errs.push(format!("pod_policy {name:?}: no such pod"));
            continue;
        };
        let ip = pod.ip.octets();
        let old = prev_pods.get(name).copied();
        let reuse = old.filter(|p| {
            let same_policy = match &changed_pods {
                Some(pods) => !pods.contains(name),
                None => Arc::ptr_eq(&p.source, pp) || p.source == *pp,
            };
            p.ip == ip && same_policy && !changed.any_in(&p.uses)
        });
        let rules = match reuse {
            Some(r) => Arc::clone(r),
            None => match compile_pod(pp, ip, &sets, &changed, old.map(|p| &**p), errs) {
                Some(r) => Arc::new(r),
                None => continue,
            },
        };
        let idx = t.pods.len() as u32;
        t.by_ip.insert(ip, idx);
        if let Some(&port) = pod_ports.get(&(name, ip)) {
            t.by_port[usize::from(port)] = idx;
        }
        t.pods.push(rules);
    }
    t.sets = sets;
    t
}

/// Every address set compiled (or reused from `prev` when equal), checking names.
fn all_sets(
    cfg: &PolicyConfig,
    prev: Option<&PolicyTable>,
    errs: &mut Vec<String>,
) -> ShardedMap<Arc<str>, Arc<CompiledSet>> {
    let mut sets = ShardedMap::default();
    for s in cfg.sets.in_order() {
        if s.name.is_empty() {
            errs.push("address_set: empty name".into());
            continue;
        }
        let c = match prev.and_then(|p| p.sets.get(s.name.as_str())) {
            Some(c) if Arc::ptr_eq(&c.source, &s) || *c.source == *s => c.clone(),
            _ => Arc::new(CompiledSet::compile(&s)),
        };
        if sets.insert(Arc::from(s.name.as_str()), c).is_some() {
            errs.push(format!("address_set {:?}: defined twice", s.name));
        }
    }
    sets
}

/// The names of the sets that are not the very same compiled set in `old` and `new`.
fn changed_between(old: &Sets, new: &Sets) -> Vec<Arc<str>> {
    let mut v: Vec<Arc<str>> = new
        .iter()
        .filter(|(n, c)| old.get(&***n).is_none_or(|o| !Arc::ptr_eq(o, c)))
        .map(|(n, _)| n.clone())
        .collect();
    v.extend(
        old.iter()
            .filter(|(n, _)| !new.contains_key(&***n))
            .map(|(n, _)| n.clone()),
    );
    v
}

/// The names of the address sets that changed in a publish.
struct ChangedSets<'a> {
    names: &'a [Arc<str>],
    /// The same, hashed, when there are many.
    many: Option<HashSet<&'a str>>,
}

impl<'a> ChangedSets<'a> {
    fn new(names: &'a [Arc<str>]) -> Self {
        let many = (names.len() > 8).then(|| names.iter().map(|n| &**n).collect());
        ChangedSets { names, many }
    }

    fn contains(&self, name: &str) -> bool {
        match &self.many {
            Some(h) => h.contains(name),
            None => self.names.iter().any(|n| **n == *name),
        }
    }

    /// Whether a rule names one of them.
    fn named_by(&self, r: &PolicyRule) -> bool {
        !self.names.is_empty() && r.peers.iter().any(|p| self.contains(p))
    }

    /// Whether one of them is in `uses`.
    fn any_in(&self, uses: &FastMap<Arc<str>, u32>) -> bool {
        self.names.iter().any(|n| uses.contains_key(n))
    }
}

/// Validates one pod's policy against the sets and compiles it, from `prior` (the pod's
/// previous compilation) for the rules that did not change; `None` after naming every
/// problem in `errs`. Only the changed rules (and those naming a changed set) are
/// validated again: the others were valid over the same sets.
fn compile_pod(
    pp: &Arc<PodPolicy>,
    ip: [u8; 4],
    sets: &Sets,
    changed: &ChangedSets<'_>,
    prior: Option<&PodRules>,
    errs: &mut Vec<String>,
) -> Option<PodRules> {
    let name = &pp.pod;
    let mut ok = true;
    let mut uses = prior.map(|p| p.uses.clone()).unwrap_or_default();
    let mut dirs: [Option<Prior<'_>>; 2] = [None, None];
    for (k, (dir, egress)) in [("ingress", false), ("egress", true)]
        .into_iter()
        .enumerate()
    {
        let old = prior.and_then(|p| if egress { &p.egress } else { &p.ingress }.as_ref());
        let new = policy_compile::section(pp, egress);
        let diff = match (old, new) {
            (Some(o), Some(d)) => {
                Diff::between(&o.section().rules, &d.rules, Arc::ptr_eq(&o.source, pp))
            }
            (_, d) => Diff::none(d.map_or(0, |d| d.rules.len())),
        };
        if let Some(o) = old {
            let o = &o.section().rules;
            let gone = if new.is_some() {
                diff.old_rules()
            } else {
                0..o.len()
            };
            for p in o[gone].iter().flat_map(|r| &r.peers) {
                let u = Arc::make_mut(&mut uses);
                if let Some(c) = u.get_mut(p.as_str()) {
                    *c -= 1;
                    if *c == 0 {
                        u.remove(p.as_str());
                    }
                }
            }
        }
        let Some(d) = new else { continue };
        if d.rules.len() > MAX_RULES {
            errs.push(format!(
                "pod_policy {name:?} {dir}: {} rules, at most {MAX_RULES}",
                d.rules.len()
            ));
            ok = false;
            continue;
        }
        let fresh = diff.new_rules();
        let mut dirty = vec![false; d.rules.len()];
        for (i, r) in d.rules.iter().enumerate() {
            let is_new = fresh.contains(&i);
            if !is_new && !changed.named_by(r) {
                continue;
            }
            dirty[i] = true;
            let u = is_new.then(|| Arc::make_mut(&mut uses));
            ok &= validate(name, dir, r, sets, u, errs);
        }
        dirs[k] = Some(Prior { old, diff, dirty });
    }
    if !ok {
        return None;
    }
    let [ingress, egress] = dirs;
    Some(PodRules {
        source: pp.clone(),
        ip,
        ingress: ingress.map(|p| policy_compile::compile(pp, false, sets, &p)),
        egress: egress.map(|p| policy_compile::compile(pp, true, sets, &p)),
        uses,
    })
}

/// Checks one rule (its policy name, peer sets and ports), naming each problem in `errs`;
/// counts its peers in `uses` when given.
fn validate(
    pod: &str,
    dir: &str,
    r: &PolicyRule,
    sets: &Sets,
    mut uses: Option<&mut FastMap<Arc<str>, u32>>,
    errs: &mut Vec<String>,
) -> bool {
    let mut ok = true;
    let what = || format!("pod_policy {pod:?} {dir} rule {} {}", r.policy, r.rule);
    if !r.policy.contains('/') {
        errs.push(format!("{}: policy must be namespace/name", what()));
        ok = false;
    }
    for p in &r.peers {
        match sets.get_key_value(p.as_str()) {
            Some((k, _)) => {
                if let Some(u) = uses.as_deref_mut() {
                    match u.get_mut(p.as_str()) {
                        Some(c) => *c += 1,
                        None => {
                            u.insert(k.clone(), 1);
                        }
                    }
                }
            }
            None => {
                errs.push(format!("{}: no address_set {p:?}", what()));
                ok = false;
            }
        }
    }
    for p in &r.ports {
        match (p.port, p.end_port) {
            (None, Some(_)) => {
                errs.push(format!("{}: end_port without port", what()));
                ok = false;
            }
            (Some(a), Some(e)) if e < a => {
                errs.push(format!("{}: end_port {e} is below port {a}", what()));
                ok = false;
            }
            _ => {}
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyPort;
    use crate::config::services::Protocol;

    fn set(name: &str, p: &[&str], e: &[&str]) -> Arc<AddressSet> {
        Arc::new(AddressSet {
            name: name.into(),
            prefixes: p.iter().map(|s| s.parse().unwrap()).collect(),
            except: e.iter().map(|s| s.parse().unwrap()).collect(),
        })
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn lowest_rule_wins_over_overlapping_ranges() {
        // Pseudo-random overlapping ranges over a small space, against a direct answer.
        let mut x: u32 = 12345;
        let mut next = |m: u32| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 8) % m
        };
        let mut scratch = Vec::new();
        for _ in 0..50 {
            let tri: Vec<(u32, u32, u32)> = (0..next(12) + 1)
                .map(|_| {
                    let a = next(64);
                    (a, a + next(16), next(6))
                })
                .collect();
            let r = RangeRules::build(tri.clone(), &mut scratch);
            for a in 0..90 {
                let want = tri
                    .iter()
                    .filter(|t| t.0 <= a && a <= t.1)
                    .map(|t| t.2)
                    .min()
                    .unwrap_or(NONE);
                assert_eq!(r.lookup(a), want, "address {a} in {tri:?}");
            }
            assert!(scratch.iter().all(|&c| c == 0));
        }
        let whole = RangeRules::build(vec![(0, u32::MAX, 3), (5, 5, 1)], &mut scratch);
        assert_eq!(
            (whole.lookup(0), whole.lookup(5), whole.lookup(u32::MAX)),
            (3, 1, 3)
        );
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
        let mut sets = Sets::default();
        sets.insert("a".into(), a);
        sets.insert("b".into(), b);
        let pp = Arc::new(PodPolicy {
            pod: "pod".into(),
            ingress: Some(d),
            egress: None,
        });
        let prior = Prior {
            old: None,
            diff: Diff::none(2),
            dirty: vec![true; 2],
        };
        let r = policy_compile::compile(&pp, false, &sets, &prior);
        assert_eq!(r.rules().len(), 2);
        assert_eq!(r.describe(Some(1)), "allowed by ns/q rule 1");
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
