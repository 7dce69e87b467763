//! ip4-rewrite: TTL check and decrement, path-MTU check, TCP MSS clamping, and the L2
//! rewrite from the route's adjacency; then on to encapsulation or output.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::config::Overlay;
use crate::tables::{PortKind, RouteTarget};
use crate::wire::ethernet;
use crate::wire::icmpv4;
use crate::wire::ipv4::{self, Packet};
use crate::wire::tcp::{self, Segment};

/// IPv4 + TCP headers without options: MSS = MTU - 40.
const TCP_IP_HEADERS: u16 = 40;

/// (`inline`: kept in the batch loop whatever the codegen-unit split.)
#[inline]
pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let Some(route) = snap.routes.get(m.route as usize) else {
        return cx.drop(b, i, R::NoRoute);
    };
    let local = m.flags & flags::LOCAL_ORIGIN != 0;
    let f = b.frame_mut(i);
    // TCP payload bytes, only for a super-frame whose sender gave its segment size.
    let seg_payload = (m.segment_size > 0).then(|| tcp_payload_len(f)).flatten();
    let Ok(ip) = Packet::new_checked(&mut f[L3..]) else {
        return cx.drop(b, i, R::Ip4Truncated);
    };
    if !local && ip.ttl() <= 1 {
        let mm = &mut b.meta[i];
        mm.icmp = (icmpv4::TYPE_TIME_EXCEEDED, icmpv4::CODE_TTL_EXCEEDED, 0);
        mm.icmp_cause = Some(R::TtlExpired);
        return b.set_next(i, Stage::IcmpError);
    }
    let total = ip.total_len();
    // A port that carries super-frames takes them whole, whatever its MTU.
    let out_gso = route
        .out_port
        .and_then(|p| snap.port(p))
        .is_some_and(|p| p.gso);
    let too_big = total > route.mtu && !out_gso;
    let from_gso = m.flags & flags::SUPER != 0;
    let super_tcp = from_gso && ip.protocol() == ipv4::PROTO_TCP && !ip.is_fragment();
    // A super-frame that fits the path but carries more per segment than its sender asked
    // for (a tap pod's gso_size: its peer's MSS, a smaller path MTU it learned) is cut too.
    let over_segment =
        super_tcp && !out_gso && seg_payload.is_some_and(|p| p > usize::from(m.segment_size));
    // A TCP super-frame from a port that hands them over is cut to the path (ip4-tso)
    // whatever its DF bit says, as the kernel segments a GSO packet before the device.
    let tso = (too_big || over_segment) && super_tcp;
    if too_big && !tso && ip.dont_frag() {
        let mm = &mut b.meta[i];
        mm.icmp = (
            icmpv4::TYPE_DEST_UNREACH,
            icmpv4::CODE_FRAG_NEEDED,
            route.mtu,
        );
        mm.icmp_cause = Some(R::MtuExceeded);
        return b.set_next(i, Stage::IcmpError);
    }
    // Clamp the MSS of SYN and SYN-ACK to the smaller of the egress and ingress paths.
    let mut clamped = None;
    // Not for a SYN from or to a port that carries super-frames: ip4-tso cuts that pod's
    // segments to the path instead, so it keeps (and learns from its peer) the MSS of its
    // own MTU and hands over super-frames.
    if ip.protocol() == ipv4::PROTO_TCP && !ip.is_fragment() && !from_gso && !out_gso {
        let hl = ip.header_len();
        let path = if m.in_tunnel_mtu > 0 {
            route.mtu.min(m.in_tunnel_mtu)
        } else {
            route.mtu
        };
        if let Ok(mut seg) = Segment::new_checked(&mut f[L3 + hl..])
            && seg.flags() & tcp::FLAG_SYN != 0
        {
            let mss = path.saturating_sub(TCP_IP_HEADERS);
            clamped = seg.clamp_mss(mss).map(|old| (old, mss));
        }
    }
    let mut ip = match Packet::new_checked(&mut f[L3..]) {
        Ok(ip) => ip,
        Err(_) => return cx.drop(b, i, R::Ip4Truncated),
    };
    if !local {
        ip.decrement_ttl();
    }
    ethernet::emit(
        &mut f[..ethernet::HEADER_LEN],
        route.dst_mac,
        route.src_mac,
        ethernet::ETHERTYPE_IPV4,
    );
    if clamped.is_some() {
        cx.event(Event::MssClamped);
    }
    // ip4-tso computes every segment's checksum; anything else from such a port leaves
    // whole and needs its partial checksum completed: toward a pod once the batch is done
    // (by the pod's port where it offloads), otherwise here (after NAT, before
    // encapsulation).
    if from_gso && !tso {
        let to_pod = route
            .out_port
            .and_then(|p| snap.port(p))
            .is_some_and(|p| p.kind == PortKind::Pod);
        if to_pod {
            super::l4_checksum::defer(b, i);
        } else {
            super::l4_checksum::finish(b, i);
        }
    }
    let post = match route.target {
        RouteTarget::Peer { peer } => match snap.peers[usize::from(peer)].overlay {
            Overlay::Vxlan => Stage::VxlanEncap,
            Overlay::Ipip => Stage::IpipEncap,
            Overlay::HostGw => Stage::Output,
        },
        // Toward a port that takes super-frames, segments of a flow are coalesced first.
        _ if out_gso => Stage::Ip4Gro,
        _ => Stage::Output,
    };
    cx.trace(Stage::Ip4Rewrite, || {
        let mut s = format!(
            "{}l2 {} -> {} out {} mtu {}",
            if local { "" } else { "ttl-1, " },
            route.src_mac,
            route.dst_mac,
            snap.port(route.out_port.unwrap_or(0))
                .map_or("?", |p| p.name.as_str()),
            route.mtu
        );
        if let Some((old, new)) = clamped {
            s.push_str(&format!(", mss {old} -> {new}"));
        }
        if tso {
            s.push_str(", too big: TCP super-frame, segment");
        } else if too_big {
            s.push_str(", too big without DF: fragment");
        }
        s
    });
    if tso {
        b.meta[i].after_frag = post;
        b.set_next(i, Stage::Ip4Tso);
    } else if too_big {
        b.meta[i].after_frag = post;
        b.set_next(i, Stage::Ip4Frag);
    } else {
        b.set_next(i, post);
    }
}

/// Payload bytes of the TCP segment in `f` (IPv4 at `L3`), by its IPv4 total length.
fn tcp_payload_len(f: &[u8]) -> Option<usize> {
    let ip = Packet::new_checked(f.get(L3..)?).ok()?;
    let hl = ip.header_len();
    let seg = Segment::new_checked(f.get(L3 + hl..)?).ok()?;
    usize::from(ip.total_len()).checked_sub(hl + seg.header_len())
}
