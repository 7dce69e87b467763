//! l2-fwd: same-node pod to pod bridging from the MAC table (the cni0 job).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::DropReason as R;
use super::super::stage::Stage;
use super::L3;
use crate::tables::PortKind;
use crate::wire::{ethernet, ip4};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let f = b.frame(i);
    let dst = crate::wire::Mac(f[0..6].try_into().unwrap_or([0; 6]));
    let Some(&out) = snap.macs.get(&dst) else {
        return cx.drop(b, i, R::UnknownDstMac);
    };
    let in_port = b.meta[i].in_port;
    if out == in_port {
        return cx.drop(b, i, R::L2Hairpin);
    }
    // Bridged IPv4 still has to come from the pod's own address.
    if crate::wire::be16(f, 12) == ethernet::ETHERTYPE_IPV4 {
        if f.len() < L3 + 20 {
            return cx.drop(b, i, R::Ip4Truncated);
        }
        let src = ip4(f, L3 + 12);
        let owner = snap.port(in_port).and_then(|p| p.ip);
        if owner.is_some_and(|ip| ip != src) {
            return cx.drop(b, i, R::L2IpSpoofed);
        }
    }
    // A reply of a translated flow between two pods of this node (pod C answering pod A,
    // which reached it through a ClusterIP) would bypass the reverse NAT if bridged: route
    // it instead, like br_netfilter sending bridged traffic through conntrack.
    if policy_applies(cx, b.frame(i), in_port, out) {
        cx.trace(Stage::L2Fwd, || {
            "a NetworkPolicy selects a pod of this flow: routed through netpol".into()
        });
        return b.set_next(i, Stage::Ip4Input);
    }
    if is_translated_flow(cx, b.frame(i)) {
        cx.trace(Stage::L2Fwd, || {
            "reply of a translated flow: routed for reverse NAT".into()
        });
        return b.set_next(i, Stage::Ip4Input);
    }
    cx.trace(Stage::L2Fwd, || {
        format!(
            "mac {dst} -> port {}",
            snap.port(out).map_or("?", |p| p.name.as_str())
        )
    });
    if b.meta[i].flags & flags::SUPER != 0 {
        // A super-frame for a port that cannot take it whole is routed, so ip4-tso cuts it
        // to that port's MTU (costing a TTL decrement, as routed traffic does); so is one
        // whose sender gave its segment size (a tap's GSO frame), cut to that size.
        let sized = b.meta[i].segment_size > 0;
        let fits = snap.port(out).is_some_and(|p| {
            p.gso || (!sized && b.frame_len(i) <= usize::from(p.mtu) + ethernet::HEADER_LEN)
        });
        if !fits {
            cx.trace(Stage::L2Fwd, || {
                "super-frame larger than the output port takes: routed to be segmented".into()
            });
            return b.set_next(i, Stage::Ip4Input);
        }
        // Completed once the batch is done toward a pod (by its port where it offloads),
        // here toward anything else.
        if snap.port(out).is_some_and(|p| p.kind == PortKind::Pod) {
            super::l4_checksum::defer(b, i);
        } else {
            super::l4_checksum::finish(b, i);
        }
    }
    cx.counters.count_l2(out, b.frame_len(i));
    b.meta[i].out_port = out;
    // Toward a port that takes super-frames, segments of a flow are coalesced first.
    let gro = snap.port(out).is_some_and(|p| p.gso);
    b.set_next(i, if gro { Stage::Ip4Gro } else { Stage::Output });
}

/// Bridged IPv4 between two pods of which one is selected by a policy goes the routed way,
/// through nat44-in's conntrack and netpol.
fn policy_applies(cx: &Cx<'_>, f: &[u8], in_port: u16, out: u16) -> bool {
    let pt = &cx.snap.policy;
    !pt.is_empty()
        && crate::wire::be16(f, 12) == ethernet::ETHERTYPE_IPV4
        && (pt.by_port(in_port).is_some() || pt.by_port(out).is_some())
}

fn is_translated_flow(cx: &Cx<'_>, f: &[u8]) -> bool {
    let Some(ct) = cx.ct.filter(|ct| !ct.is_empty()) else {
        return false;
    };
    if crate::wire::be16(f, 12) != ethernet::ETHERTYPE_IPV4 {
        return false;
    }
    // Every fragment, first or later, is routed: a later one has no ports to look up, and
    // nat44-in must see its first one, which records the datagram's outcome (translated
    // or passed unchanged) for the later ones even when they share this batch. Only while
    // conntrack holds flows; same-node fragments then cost one TTL decrement, as routed
    // traffic does.
    if crate::wire::be16(f, L3 + 6)
        & (crate::wire::ipv4::FLAG_MF | crate::wire::ipv4::FRAG_OFFSET_MASK)
        != 0
    {
        return true;
    }
    match super::nat_common::parse(f) {
        super::nat_common::Parsed::Flow { key, .. } => {
            ct.peek(&key, cx.now_ns).is_some_and(|h| h.target() != key)
        }
        _ => false,
    }
}
