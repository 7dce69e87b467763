//! Publish-time cleanup: UDP entries whose Service or endpoint no longer exists in the new
//! snapshot are removed, so the next datagram of the flow (the classic stale-DNS-conntrack
//! problem) picks a live endpoint at once; stale affinity records go too. TCP connections
//! are left to end on their own, as with kube-proxy.
//!
//! [`cleanup_changed`] examines only the entries of the Services a change touched;
//! [`cleanup`] (after a full rebuild) examines every Service entry.

use super::groups::{affinity_group, frontend_group};
use super::key::flag;
use super::table::{Conntrack, Entry};
use crate::tables::Snapshot;
use crate::tables::services::ServicePortEntry;
use crate::wire::ipv4::PROTO_UDP;
use std::collections::{HashMap, HashSet};

/// Removes entries pointing at Services or endpoints absent from `snap`; returns how many.
/// Runs on the control side (it walks the table shard by shard, one lock at a time).
pub fn cleanup(ct: &Conntrack, snap: &Snapshot, now: u64) -> usize {
    let by_name: HashMap<u32, &ServicePortEntry> = snap
        .services
        .ports
        .iter()
        .map(|p| (affinity_tag(&p.name), &**p))
        .collect();
    let victims = ct.select(now, |e| is_stale(e, snap, &by_name));
    ct.remove_entries(&victims)
}

/// The Services a change touched, as conntrack sees them: their frontend keys (before and
/// after the change) and the affinity tags of their port names.
#[derive(Debug, Default)]
pub struct ChangedServices {
    /// `namespace/name` of each.
    pub names: Vec<String>,
    pub frontends: HashSet<u64>,
    pub tags: HashSet<u32>,
}

impl ChangedServices {
    pub fn is_empty(&self) -> bool {
        self.frontends.is_empty() && self.tags.is_empty()
    }

    /// The conntrack groups whose entries may belong to these Services: each frontend's,
    /// NodePort frontends (address 0) also as the connections to `node` see them, and each
    /// affinity tag's. Sorted, without duplicates.
    pub fn groups(&self, node: [u8; 4]) -> Vec<u64> {
        let mut g: Vec<u64> = Vec::with_capacity(2 * self.frontends.len() + self.tags.len());
        for &f in &self.frontends {
            g.push(frontend_group(f));
            if f >> 24 == 0 {
                // `frontend_key(node, port, proto)` from `frontend_key([0; 4], port, proto)`.
                g.push(frontend_group(
                    u64::from(u32::from_be_bytes(node)) << 24 | f,
                ));
            }
        }
        g.extend(self.tags.iter().map(|&t| affinity_group(t)));
        g.sort_unstable();
        g.dedup();
        g
    }

    /// Adds what Service `name` (`namespace/name`) holds in `snap`.
    pub fn add(&mut self, snap: &Snapshot, name: &str) {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
        self.frontends.extend(snap.services.frontend_keys_of(name));
        self.tags
            .extend(snap.services.ports_of(name).map(|p| affinity_tag(&p.name)));
    }
}

/// As [`cleanup`], but only for the entries of `changed` Services, found through the
/// table's per-Service chains (`groups`): the walk visits those entries and nothing else.
pub fn cleanup_changed(
    ct: &Conntrack,
    snap: &Snapshot,
    changed: &ChangedServices,
    now: u64,
) -> usize {
    if changed.is_empty() || ct.is_empty() {
        return 0;
    }
    let by_name: HashMap<u32, &ServicePortEntry> = changed
        .names
        .iter()
        .flat_map(|n| snap.services.ports_of(n))
        .map(|p| (affinity_tag(&p.name), p))
        .collect();
    let groups = changed.groups(snap.node.address);
    let victims = ct.select_groups(now, &groups, |e| is_stale(e, snap, &by_name));
    ct.remove_entries(&victims)
}

/// Whether entry `e` points at a Service or endpoint absent from `snap`; `by_name` holds
/// the Service ports by affinity tag (at least those of the affinity records asked about).
///
/// As kube-proxy does, only UDP connections (and affinity records) are cleaned: a TCP
/// connection to an endpoint that left its Service (not ready any more, relabelled, or its
/// Service deleted) goes on until it ends, so a readiness flap does not cut it; new
/// connections go to the endpoints that remain.
fn is_stale(e: &Entry, snap: &Snapshot, by_name: &HashMap<u32, &ServicePortEntry>) -> bool {
    if e.flags & flag::AFFINITY != 0 {
        let tag = u32::from_be_bytes(e.orig.dst);
        by_name
            .get(&tag)
            .is_none_or(|p| !p.has_backend(e.reply.src, e.reply.sport))
    } else if e.flags & flag::SERVICE != 0 && e.orig.proto == PROTO_UDP {
        let svc = snap
            .services
            .lookup(e.orig.dst, e.orig.dport, e.orig.proto, snap.node.address);
        svc.is_none_or(|(i, _)| {
            !snap.services.ports[i as usize].has_backend(e.reply.src, e.reply.sport)
        })
    } else {
        false
    }
}

/// Stable 32-bit tag of a Service port name (the affinity key's destination word).
pub fn affinity_tag(name: &str) -> u32 {
    // FNV-1a.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
