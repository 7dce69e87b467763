//! ipip4-decap and ipip4-encap: Calico-style IP-in-IP (protocol 4).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::tables::RouteTarget;
use crate::wire::{be16, checksum, ethernet, ip4, ipv4, set_be16};

pub(super) fn decap(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let f = b.frame(i);
    let hl = usize::from(f[L3] & 0x0f) * 4;
    let src = ip4(f, L3 + 12);
    let Some(&peer) = snap.peer_by_addr.get(&src) else {
        return cx.drop(b, i, R::IpipUnknownPeer);
    };
    let inner = L3 + hl;
    if f.len() < inner + ipv4::MIN_HEADER_LEN {
        return cx.drop(b, i, R::IpipTruncated);
    }
    let p = &snap.peers[usize::from(peer)];
    if !snap.peer_may_send(peer, ip4(f, inner + 12)) {
        return cx.drop(b, i, R::IpipInnerSrcMismatch);
    }
    // Keep an Ethernet header in front of the inner packet: move it over the outer IPv4 header.
    let (slot, start) = b.slot_mut(i);
    slot.copy_within(start..start + ethernet::HEADER_LEN, start + hl);
    b.pull_front(i, hl);
    let m = &mut b.meta[i];
    m.flags |= flags::DECAPPED;
    m.peer = peer;
    m.in_tunnel_mtu = p.mtu;
    cx.event(Event::Decapsulated);
    cx.trace(Stage::IpipDecap, || format!("from peer {}", p.name));
    b.set_next(i, Stage::Ip4Input);
}

pub(super) fn encap(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let route = &snap.routes[b.meta[i].route as usize];
    let RouteTarget::Peer { peer } = route.target else {
        return cx.drop(b, i, R::IpipEncapNoHeadroom);
    };
    let p = &snap.peers[usize::from(peer)];
    let inner_ip_len = b.frame_len(i) - L3;
    if !b.push_front(i, ipv4::MIN_HEADER_LEN) {
        return cx.drop(b, i, R::IpipEncapNoHeadroom);
    }
    let f = b.frame_mut(i);
    f[..L3 + ipv4::MIN_HEADER_LEN].copy_from_slice(&p.ipip_template);
    let total = (inner_ip_len + ipv4::MIN_HEADER_LEN) as u16;
    set_be16(f, L3 + 2, total);
    let c = checksum::update16(be16(f, L3 + 10), 0, total);
    set_be16(f, L3 + 10, c);
    cx.event(Event::Encapsulated);
    cx.trace(Stage::IpipEncap, || {
        format!(
            "to peer {} {} ttl {}",
            p.name,
            std::net::Ipv4Addr::from(p.address),
            snap.node.ipip_ttl
        )
    });
    b.set_next(i, Stage::Output);
}
