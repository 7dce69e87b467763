//! Publish-time cleanup: entries whose Service or endpoint no longer exists in the new
//! snapshot are removed, so the next packet of the flow (UDP clients especially, the classic
//! stale-DNS-conntrack problem) picks a live endpoint at once.

use super::key::{FlowKey, flag};
use super::table::Conntrack;
use crate::tables::Snapshot;
use std::collections::HashMap;

/// Removes entries pointing at Services or endpoints absent from `snap`; returns how many.
/// Runs on the control side (it walks the table shard by shard, one lock at a time).
pub fn cleanup(ct: &Conntrack, snap: &Snapshot, now: u64) -> usize {
    let by_name: HashMap<u32, usize> = snap
        .services
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| (affinity_tag(&p.name), i))
        .collect();
    let mut victims: Vec<(u32, FlowKey)> = Vec::new();
    for (id, e) in ct.entries(now) {
        let stale = if e.flags & flag::AFFINITY != 0 {
            let tag = u32::from_be_bytes(e.orig.dst);
            by_name
                .get(&tag)
                .is_none_or(|&i| !snap.services.ports[i].has_backend(e.reply.src, e.reply.sport))
        } else if e.flags & flag::SERVICE != 0 {
            let svc =
                snap.services
                    .lookup(e.orig.dst, e.orig.dport, e.orig.proto, snap.node.address);
            svc.is_none_or(|(i, _)| {
                !snap.services.ports[i as usize].has_backend(e.reply.src, e.reply.sport)
            })
        } else {
            false
        };
        if stale {
            victims.push((id, e.orig));
        }
    }
    ct.remove_entries(&victims)
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
