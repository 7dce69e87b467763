//! Compiles one direction of a pod's policy into the tables of [`DirRules`], reusing the
//! tables of its previous compilation.
//!
//! Each port class (and the rules without ports) has one address table, shared behind an
//! `Arc` and known by the ids of the rules it holds. A table depends only on those rules'
//! peers and order, so on a recompilation a class whose rules are all unchanged (equal by
//! value, naming no changed address set) takes its previous table, relabelled when an
//! insertion or removal before it shifted the ids; only the classes holding a changed rule
//! are swept again. The any-rule table (non-first fragments) is the pointwise lowest rule of
//! all class tables, merged from them rather than from every rule's ranges. A publish that
//! changes one rule or one set therefore costs that rule's classes and one merge of the
//! (already deduplicated) class tables, not the ranges of all 10,000 rules.

use super::cow::ShardedMap;
use super::fasthash::{FastMap, WordMap};
use super::policy::{CompiledSet, DirRules, NONE, PortClasses, RangeRules};
use crate::config::{PodPolicy, PolicyDirection, PolicyRule, services::Protocol};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Compiled address sets by name.
pub(super) type Sets = ShardedMap<Arc<str>, Arc<CompiledSet>>;

/// How a direction's rules map onto those of its previous compilation: the rules before
/// `prefix`, and those from `old_tail` (old ids) / `new_tail` (new ids) on, are equal by
/// value; the tail is shifted by what was inserted or removed between, and the rules
/// between are new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Diff {
    prefix: u32,
    old_tail: u32,
    new_tail: u32,
}

impl Diff {
    /// No previous compilation: every rule is new.
    pub fn none(new_len: usize) -> Self {
        Diff {
            prefix: 0,
            old_tail: 0,
            new_tail: new_len as u32,
        }
    }

    /// Compares the two lists (`same`: known equal, one shared section). O(n) comparisons
    /// by value, stopping at the first difference from either end.
    pub fn between(old: &[PolicyRule], new: &[PolicyRule], same: bool) -> Self {
        let (p, s) = if same {
            (new.len(), 0)
        } else {
            let p = old.iter().zip(new).take_while(|(a, b)| a == b).count();
            let s = old[p..]
                .iter()
                .rev()
                .zip(new[p..].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            (p, s)
        };
        Diff {
            prefix: p as u32,
            old_tail: (old.len() - s) as u32,
            new_tail: (new.len() - s) as u32,
        }
    }

    /// The old id of new rule `new`, when it is unchanged.
    #[inline]
    pub fn old_of(&self, new: u32) -> Option<u32> {
        if new < self.prefix {
            Some(new)
        } else if new >= self.new_tail {
            Some(new - self.new_tail + self.old_tail)
        } else {
            None
        }
    }

    /// The new id of old rule `old`, which must be unchanged.
    #[inline]
    fn new_of(&self, old: u32) -> u32 {
        if old < self.prefix {
            old
        } else {
            old - self.old_tail + self.new_tail
        }
    }

    /// The new rules that are not in the old list.
    pub fn new_rules(&self) -> Range<usize> {
        self.prefix as usize..self.new_tail as usize
    }

    /// The old rules that are not in the new list.
    pub fn old_rules(&self) -> Range<usize> {
        self.prefix as usize..self.old_tail as usize
    }

    /// Whether the two lists are equal.
    pub fn is_identity(&self) -> bool {
        self.prefix == self.old_tail && self.prefix == self.new_tail
    }
}

/// The previous compilation of a direction (if any) and which rules must be swept again.
pub(super) struct Prior<'a> {
    pub old: Option<&'a DirRules>,
    pub diff: Diff,
    /// Per new rule: not in the old list, or naming an address set that changed.
    pub dirty: Vec<bool>,
}

/// The section of direction `egress` (else ingress) of `pp`.
pub(super) fn section(pp: &PodPolicy, egress: bool) -> Option<&PolicyDirection> {
    if egress {
        pp.egress.as_ref()
    } else {
        pp.ingress.as_ref()
    }
}

/// Rule `id`'s peer ranges as (first, last, id); a rule without peers allows every
/// address. Peers were checked to exist when the rule was validated.
fn peers_of(r: &PolicyRule, id: u32, sets: &Sets, out: &mut Vec<(u32, u32, u32)>) {
    if r.peers.is_empty() {
        out.push((0, u32::MAX, id));
    }
    for p in &r.peers {
        if let Some(s) = sets.get(p.as_str()) {
            out.extend(s.ranges.iter().map(|&(a, b)| (a, b, id)));
        }
    }
}

/// Rule ids of a table, ascending (shared by the port classes and the compilations that
/// hold the table).
pub(super) type Key = Arc<[u32]>;

/// Builds or reuses the address table of a group of rules.
struct Tables<'a> {
    rules: &'a [PolicyRule],
    sets: &'a Sets,
    prior: &'a Prior<'a>,
    /// The previous compilation's tables by their rule ids (after an insertion or removal).
    old: WordMap<&'a [u32], &'a Arc<RangeRules>>,
    /// Tables of this compilation by rule ids (TCP and UDP classes holding the same
    /// rules share one).
    made: WordMap<Key, Arc<RangeRules>>,
    scratch: Vec<u32>,
    /// Old ids of the rules of the table being looked up.
    old_ids: Vec<u32>,
}

impl<'a> Tables<'a> {
    fn new(rules: &'a [PolicyRule], sets: &'a Sets, prior: &'a Prior<'a>) -> Self {
        let mut old = WordMap::default();
        // Only an insertion or removal needs the old tables by rule ids; with the same
        // rules the classes are the old ones (`same_classes`).
        if let Some(o) = prior.old.filter(|_| !prior.diff.is_identity()) {
            old.insert(&*o.any_port_key, &o.any_port);
            for pc in [&o.tcp, &o.udp] {
                for (k, t) in pc.keys.iter().zip(&pc.tables) {
                    old.insert(&**k, t);
                }
            }
        }
        Tables {
            rules,
            sets,
            prior,
            old,
            made: WordMap::default(),
            scratch: vec![0; rules.len()],
            old_ids: Vec::new(),
        }
    }

    /// The table of rules `ids`, and its key.
    fn get(&mut self, ids: &[u32]) -> (Key, Arc<RangeRules>) {
        if let Some((k, t)) = self.made.get_key_value(ids) {
            return (Arc::clone(k), Arc::clone(t));
        }
        let t = match self.reuse(ids) {
            Some(t) => t,
            None => self.build(ids),
        };
        let k: Key = ids.into();
        self.made.insert(Arc::clone(&k), Arc::clone(&t));
        (k, t)
    }

    /// The table of rules `ids`, swept from their peers' ranges.
    fn build(&mut self, ids: &[u32]) -> Arc<RangeRules> {
        let mut tri = Vec::new();
        for &id in ids {
            peers_of(&self.rules[id as usize], id, self.sets, &mut tri);
        }
        Arc::new(RangeRules::build(tri, &mut self.scratch))
    }

    /// `old`'s classes (the rules and their ports are the same), with the tables holding a
    /// rule that names a changed set swept again.
    fn same_classes(&mut self, old: &PortClasses) -> PortClasses {
        let mut pc = old.clone();
        for (k, t) in pc.keys.iter().zip(pc.tables.iter_mut()) {
            if k.iter().any(|&id| self.prior.dirty[id as usize]) {
                *t = match self.made.get(k) {
                    Some(t) => Arc::clone(t),
                    None => {
                        let n = self.build(k);
                        self.made.insert(Arc::clone(k), Arc::clone(&n));
                        n
                    }
                };
            }
        }
        pc
    }

    /// The previous compilation's table of the same rules, when none of them changed.
    fn reuse(&mut self, ids: &[u32]) -> Option<Arc<RangeRules>> {
        let p = self.prior;
        p.old?;
        self.old_ids.clear();
        for &id in ids {
            if p.dirty[id as usize] {
                return None;
            }
            self.old_ids.push(p.diff.old_of(id)?);
        }
        let t = self.old.get(&*self.old_ids)?;
        Some(if self.old_ids == ids {
            Arc::clone(t)
        } else {
            Arc::new(t.relabel(|o| p.diff.new_of(o)))
        })
    }
}

/// One protocol's port classes: a sweep over the port ranges of the rules naming it, each
/// class getting the table of the rules covering it.
fn port_classes(rules: &[PolicyRule], proto: Protocol, tables: &mut Tables<'_>) -> PortClasses {
    // (port, start, rule) packed so that the sort compares integers.
    let mut ev: Vec<u64> = Vec::new();
    for (id, r) in rules.iter().enumerate() {
        for p in r.ports.iter().filter(|p| p.protocol == proto) {
            let (lo, hi) = p.range();
            ev.push(u64::from(lo) << 32 | 1 << 31 | id as u64);
            ev.push((u64::from(hi) + 1) << 32 | id as u64);
        }
    }
    ev.sort_unstable();
    let mut pc = PortClasses::default();
    let mut seen: WordMap<Key, u32> = WordMap::default();
    // Open port ranges per rule, and the rules with one open (ascending).
    let mut open: Vec<u32> = vec![0; rules.len()];
    let mut active: Vec<u32> = Vec::new();
    let mut k = 0;
    if ev.first().is_none_or(|e| e >> 32 > 0) {
        pc.bounds.push(0);
        pc.class.push(NONE);
    }
    while k < ev.len() {
        let at = (ev[k] >> 32) as u32;
        while k < ev.len() && (ev[k] >> 32) as u32 == at {
            let r = (ev[k] & 0x7fff_ffff) as u32;
            let c = &mut open[r as usize];
            if ev[k] & 1 << 31 != 0 {
                *c += 1;
                if *c == 1
                    && let Err(i) = active.binary_search(&r)
                {
                    active.insert(i, r);
                }
            } else if *c > 0 {
                *c -= 1;
                if *c == 0
                    && let Ok(i) = active.binary_search(&r)
                {
                    active.remove(i);
                }
            }
            k += 1;
        }
        if at > 65535 {
            break;
        }
        let ids = &active;
        let t = if ids.is_empty() {
            NONE
        } else if let Some(&t) = seen.get(&ids[..]) {
            t
        } else {
            let t = pc.tables.len() as u32;
            let (key, table) = tables.get(ids);
            pc.tables.push(table);
            pc.keys.push(Arc::clone(&key));
            seen.insert(key, t);
            t
        };
        if pc.class.last() == Some(&t) {
            continue;
        }
        pc.bounds.push(at);
        pc.class.push(t);
    }
    pc
}

/// Compiles direction `egress` (else ingress) of `pp`, whose rules were validated, taking
/// from `prior` every table none of whose rules changed.
pub(super) fn compile(
    pp: &Arc<PodPolicy>,
    egress: bool,
    sets: &Sets,
    prior: &Prior<'_>,
) -> DirRules {
    let rules: &[PolicyRule] = section(pp, egress).map_or(&[], |d| &d.rules);
    let mut tables = Tables::new(rules, sets, prior);
    let any_port_key: Key = (0..rules.len() as u32)
        .filter(|&i| rules[i as usize].ports.is_empty())
        .collect();
    let (any_port, tcp, udp) = match prior.old.filter(|_| prior.diff.is_identity()) {
        Some(o) => (
            if any_port_key.iter().any(|&id| prior.dirty[id as usize]) {
                tables.build(&any_port_key)
            } else {
                Arc::clone(&o.any_port)
            },
            tables.same_classes(&o.tcp),
            tables.same_classes(&o.udp),
        ),
        None => (
            tables.get(&any_port_key).1,
            port_classes(rules, Protocol::Tcp, &mut tables),
            port_classes(rules, Protocol::Udp, &mut tables),
        ),
    };
    let unchanged = prior.diff.is_identity() && !prior.dirty.contains(&true);
    let any_rule = match prior.old {
        Some(o) if unchanged => Arc::clone(&o.any_rule),
        _ => {
            // Every rule with ports is in the table of each class its ports cover, so the
            // lowest rule over all tables is the lowest rule over all rules.
            let mut distinct: FastMap<*const RangeRules, &RangeRules> = FastMap::default();
            for t in [&any_port]
                .into_iter()
                .chain(&tcp.tables)
                .chain(&udp.tables)
            {
                distinct.insert(Arc::as_ptr(t), t);
            }
            let mut tri = Vec::with_capacity(distinct.values().map(|t| t.len()).sum());
            for t in distinct.values() {
                tri.extend(t.iter());
            }
            Arc::new(RangeRules::build(tri, &mut tables.scratch))
        }
    };
    // A rule kept from the previous compilation keeps its count, and the direction its
    // denials (increments landing on the old tables while this one is published are lost).
    let carried =
        |c: Option<&AtomicU64>| AtomicU64::new(c.map_or(0, |c| c.load(Ordering::Relaxed)));
    DirRules {
        source: Arc::clone(pp),
        egress,
        allowed: (0..rules.len() as u32)
            .map(|i| {
                carried(
                    prior
                        .old
                        .and_then(|o| prior.diff.old_of(i).and_then(|j| o.allowed.get(j as usize))),
                )
            })
            .collect(),
        any_port_key,
        any_port,
        tcp,
        udp,
        any_rule,
        denied: carried(prior.old.map(|o| &o.denied)),
    }
}
