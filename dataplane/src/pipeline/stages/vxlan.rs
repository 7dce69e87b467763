//! vxlan4-decap and vxlan4-encap: flannel-compatible VXLAN (RFC 7348).
//!
//! Encap copies the peer's prebuilt 50-byte header template and patches the lengths, the
//! IPv4 checksum (incrementally) and the UDP source port (inner flow hash, for ECMP entropy).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::{L3, flow_hash};
use crate::tables::RouteTarget;
use crate::wire::ipv4::{self, Packet};
use crate::wire::{Mac, be16, checksum, ethernet, ip4, set_be16, udp, vxlan};

/// UDP source ports used for the flow hash (the kernel's default ephemeral range).
const SPORT_BASE: u32 = 32768;
const SPORT_SPAN: u32 = 61000 - 32768;

pub(super) fn decap(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let f = b.frame(i);
    let hl = usize::from(f[L3] & 0x0f) * 4;
    let l4 = L3 + hl;
    let ip_end = f.len();
    let ulen = usize::from(be16(f, l4 + 4));
    if ulen < udp::HEADER_LEN || l4 + ulen > ip_end {
        return cx.drop(b, i, R::UdpBadLength);
    }
    let src = ip4(f, L3 + 12);
    let Some(&peer) = snap.peer_by_addr.get(&src) else {
        return cx.drop(b, i, R::VxlanUnknownPeer);
    };
    let vx = l4 + udp::HEADER_LEN;
    let Ok(h) = vxlan::Header::new_checked(&f[vx..l4 + ulen]) else {
        return cx.drop(b, i, R::VxlanTruncated);
    };
    // RFC 7348: the I flag must be set; reserved bits are ignored on receipt.
    if h.flags() & vxlan::FLAG_VNI == 0 {
        return cx.drop(b, i, R::VxlanBadFlags);
    }
    if h.vni() != snap.node.vxlan.vni {
        return cx.drop(b, i, R::VxlanUnknownVni);
    }
    let inner = vx + vxlan::HEADER_LEN;
    let inner_end = l4 + ulen;
    if inner_end < inner + ethernet::HEADER_LEN {
        return cx.drop(b, i, R::VxlanTruncated);
    }
    let dmac = Mac(f[inner..inner + 6].try_into().unwrap_or([0; 6]));
    if dmac != snap.node.vtep_mac {
        return cx.drop(b, i, R::VxlanInnerDstMac);
    }
    if be16(f, inner + 12) != ethernet::ETHERTYPE_IPV4 {
        return cx.drop(b, i, R::VxlanInnerNotIpv4);
    }
    if inner_end < inner + ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN {
        return cx.drop(b, i, R::VxlanTruncated);
    }
    let p = &snap.peers[usize::from(peer)];
    let inner_src = ip4(f, inner + ethernet::HEADER_LEN + 12);
    if !snap.peer_may_send(peer, inner_src) {
        return cx.drop(b, i, R::VxlanInnerSrcMismatch);
    }
    b.set_len(i, inner_end);
    b.pull_front(i, inner);
    let m = &mut b.meta[i];
    m.flags |= flags::DECAPPED;
    m.peer = peer;
    m.in_tunnel_mtu = p.mtu;
    cx.event(Event::Decapsulated);
    cx.trace(Stage::VxlanDecap, || {
        format!("from peer {} vni {}", p.name, snap.node.vxlan.vni)
    });
    b.set_next(i, Stage::EthInput);
}

pub(super) fn encap(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let route = &snap.routes[b.meta[i].route as usize];
    let RouteTarget::Peer { peer } = route.target else {
        return cx.drop(b, i, R::EncapNoHeadroom);
    };
    let p = &snap.peers[usize::from(peer)];
    let inner_len = b.frame_len(i);
    let hash = {
        let f = b.frame(i);
        let ip = &f[L3..];
        let proto = ip[9];
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let is_frag = be16(ip, 6) & (ipv4::FLAG_MF | ipv4::FRAG_OFFSET_MASK) != 0;
        let ports = if !is_frag
            && (proto == ipv4::PROTO_TCP || proto == ipv4::PROTO_UDP)
            && ip.len() >= hl + 4
        {
            u32::from_be_bytes([ip[hl], ip[hl + 1], ip[hl + 2], ip[hl + 3]])
        } else {
            0
        };
        flow_hash(ip4(ip, 12), ip4(ip, 16), proto, ports)
    };
    if !b.push_front(i, vxlan::OVERHEAD) {
        return cx.drop(b, i, R::EncapNoHeadroom);
    }
    let f = b.frame_mut(i);
    f[..vxlan::OVERHEAD].copy_from_slice(&p.vxlan_template);
    let total = (inner_len + vxlan::OVERHEAD - ethernet::HEADER_LEN) as u16;
    let o = ethernet::HEADER_LEN;
    set_be16(f, o + 2, total);
    let c = checksum::update16(be16(f, o + 10), 0, total);
    set_be16(f, o + 10, c);
    let u = o + ipv4::MIN_HEADER_LEN;
    let sport = (SPORT_BASE + hash % SPORT_SPAN) as u16;
    set_be16(f, u, sport);
    set_be16(f, u + 4, total - ipv4::MIN_HEADER_LEN as u16);
    debug_assert!(Packet::new_checked(&f[o..]).is_ok_and(|ip| ip.checksum_ok()));
    cx.event(Event::Encapsulated);
    cx.trace(Stage::VxlanEncap, || {
        format!(
            "to peer {} {} vni {} udp {}->{} ttl {}",
            p.name,
            std::net::Ipv4Addr::from(p.address),
            snap.node.vxlan.vni,
            sport,
            snap.node.vxlan.port,
            snap.node.vxlan.ttl
        )
    });
    b.set_next(i, Stage::Output);
}
