//! Publish-time cut of established flows that the new NetworkPolicy rules deny (setting
//! `policy.established = "cut"`); with `"keep"` (the default) nothing is removed.

use super::key::flag;
use super::table::Conntrack;
use crate::tables::Snapshot;
use crate::tables::policy::Established;

/// Removes the entries of flows the policies of `snap` no longer allow; returns how many.
/// Only entries with a local pod that some policy selects are judged. Runs on the control
/// side after the publish (a packet in between is judged by its entry, as under "keep").
pub fn cut(ct: &Conntrack, snap: &Snapshot, now: u64) -> usize {
    let pt = &*snap.policy;
    if pt.established != Established::Cut || pt.is_empty() {
        return 0;
    }
    let victims = ct.select(now, |e| {
        if e.flags & flag::AFFINITY != 0 {
            return false;
        }
        // The original direction after translation: the reply tuple seen backwards.
        let k = e.reply.inverse();
        !pt.flow_allowed(k.proto, e.orig.src, k.src, k.dst, k.dport)
    });
    ct.remove_entries(&victims)
}
