//! ICMP errors about translated flows (part of nat44-in): the quoted header is restored to
//! what its sender sent (addresses, ports or echo identifier, quoted IPv4 and L4 checksums),
//! the outer destination (and the outer source when it is the translated peer itself) too,
//! and the ICMP checksum is recomputed. Works for errors arriving from outside and for the
//! pipeline's own (fragmentation needed, time exceeded about DNATed traffic).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use super::nat_common::rewrite_l4;
use crate::conntrack::{Conntrack, Dir, FlowKey};
use crate::tables::{PortKind, Snapshot};
use crate::wire::icmpv4;
use crate::wire::ipv4::{self, Packet};
use crate::wire::{be16, checksum, ip4, set_be16};
use std::net::Ipv4Addr;

pub(super) fn translate(cx: &mut Cx<'_>, ct: &Conntrack, b: &mut Batch, i: usize, l4: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let local = m.flags & flags::LOCAL_ORIGIN != 0;
    let f = b.frame(i);
    let q = l4 + icmpv4::HEADER_LEN;
    if f.len() < q + ipv4::MIN_HEADER_LEN {
        return cx.drop(b, i, R::IcmpQuoteTruncated);
    }
    let qhl = usize::from(f[q] & 0x0f) * 4;
    if f[q] >> 4 != 4 || qhl < ipv4::MIN_HEADER_LEN || f.len() < q + qhl + 8 {
        return cx.drop(b, i, R::IcmpQuoteTruncated);
    }
    let qproto = f[q + 9];
    let ql4 = q + qhl;
    let (qsrc, qdst) = (ip4(f, q + 12), ip4(f, q + 16));
    let qkey = match qproto {
        ipv4::PROTO_TCP | ipv4::PROTO_UDP => {
            FlowKey::new(qproto, qsrc, qdst, be16(f, ql4), be16(f, ql4 + 2))
        }
        ipv4::PROTO_ICMP
            if matches!(f[ql4], icmpv4::TYPE_ECHO_REQUEST | icmpv4::TYPE_ECHO_REPLY) =>
        {
            let id = be16(f, ql4 + 4);
            FlowKey::new(qproto, qsrc, qdst, id, id)
        }
        _ => return b.set_next(i, Stage::Ip4Lookup),
    };
    // The quoted packet is one the switch sent (translated): going back, it is a tuple of the
    // entry, in the other direction.
    let Some(hit) = ct.peek(&qkey.inverse(), cx.now_ns) else {
        let from_uplink = snap
            .port(m.in_port)
            .is_some_and(|p| p.kind == PortKind::Uplink);
        if !local && about_translated(snap, &qkey, from_uplink) {
            return cx.drop(b, i, R::IcmpErrorUnmatched);
        }
        return b.set_next(i, Stage::Ip4Lookup);
    };
    let restored = match hit.dir {
        Dir::Reply => hit.entry.orig,
        Dir::Orig => hit.entry.reply,
    };
    let (osrc, odst) = (ip4(f, L3 + 12), ip4(f, L3 + 16));
    let new_dst = if odst == qkey.src { restored.src } else { odst };
    let new_src = if osrc == qkey.dst { restored.dst } else { osrc };
    let fm = b.frame_mut(i);
    if let Ok(mut qip) = Packet::new_checked(&mut fm[q..]) {
        if qsrc != restored.src {
            qip.rewrite_src(restored.src);
        }
        if qdst != restored.dst {
            qip.rewrite_dst(restored.dst);
        }
    }
    rewrite_l4(fm, ql4, &qkey, &restored, qproto != ipv4::PROTO_ICMP);
    if let Ok(mut ip) = Packet::new_checked(&mut fm[L3..]) {
        if osrc != new_src {
            ip.rewrite_src(new_src);
        }
        if odst != new_dst {
            ip.rewrite_dst(new_dst);
        }
    }
    set_be16(fm, l4 + 2, 0);
    let c = checksum::checksum(&fm[l4..]);
    set_be16(fm, l4 + 2, c);
    b.meta[i].flags |= flags::NAT;
    cx.event(Event::NatIcmpTranslated);
    cx.trace(Stage::Nat44In, || {
        format!(
            "ICMP error about {qkey} translated back: quote {restored}, outer {} -> {}",
            Ipv4Addr::from(new_src),
            Ipv4Addr::from(new_dst)
        )
    });
    b.set_next(i, Stage::Ip4Lookup);
}

/// Whether an unmatched error is about an address the switch translates (a Service frontend,
/// the gateway as hairpin source, the node address on the uplink): then it cannot be
/// delivered correctly and is dropped; errors about untranslated traffic pass unchanged.
fn about_translated(snap: &Snapshot, k: &FlowKey, from_uplink: bool) -> bool {
    let n = &snap.nat;
    let node = snap.node.address;
    n.service_cidr.contains(u32::from_be_bytes(k.dst))
        || n.service_cidr.contains(u32::from_be_bytes(k.src))
        || snap
            .services
            .lookup(k.dst, k.dport, k.proto, node)
            .is_some()
        || snap
            .services
            .lookup(k.src, k.sport, k.proto, node)
            .is_some()
        || k.src == snap.node.gateway
        || (from_uplink && k.src == node)
}
