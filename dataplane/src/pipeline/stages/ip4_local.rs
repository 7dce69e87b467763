//! ip4-local: traffic for the switch itself: ICMP echo to the gateway, and tunnel packets to
//! the node address (handed to the VXLAN / IP-in-IP decap stages).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::tables::RouteTarget;
use crate::wire::icmpv4::{self, Message};
use crate::wire::ipv4::{self, Packet};
use crate::wire::{be16, checksum, ip4, set_be16, udp};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let target = snap.routes.get(b.meta[i].route as usize).map(|r| r.target);
    let decapped = b.meta[i].flags & flags::DECAPPED != 0;
    let f = b.frame(i);
    let Ok(ip) = Packet::new_checked(&f[L3..]) else {
        return cx.drop(b, i, R::Ip4Truncated);
    };
    let hl = ip.header_len();
    let proto = ip.protocol();
    let l4 = L3 + hl;
    if target == Some(RouteTarget::NodeAddress) {
        let is_vxlan = proto == ipv4::PROTO_UDP
            && f.len() >= l4 + udp::HEADER_LEN
            && crate::wire::be16(f, l4 + 2) == snap.node.vxlan.port;
        if is_vxlan || proto == ipv4::PROTO_IPIP {
            if decapped {
                return cx.drop(b, i, R::NestedTunnel);
            }
            if ip.is_fragment() {
                return cx.drop(b, i, R::TunnelFragment);
            }
            let next = if is_vxlan {
                Stage::VxlanDecap
            } else {
                Stage::IpipDecap
            };
            cx.trace(Stage::Ip4Local, || {
                format!("tunnel packet -> {}", next.name())
            });
            return b.set_next(i, next);
        }
        if decapped {
            // A peer's pod or the peer node talking to this node over the overlay: hand it
            // to the node's own stack through the host port.
            let Some(host) = snap.host else {
                return cx.drop(b, i, R::LocalProtoUnhandled);
            };
            cx.trace(Stage::Ip4Local, || {
                "decapsulated packet for the node -> host port".into()
            });
            b.meta[i].out_port = host;
            return b.set_next(i, Stage::Ip4Rewrite);
        }
        return cx.drop(b, i, R::LocalProtoUnhandled);
    }
    // The gateway address: answer pings, nothing else.
    if proto != ipv4::PROTO_ICMP || ip.is_fragment() {
        return cx.drop(b, i, R::LocalProtoUnhandled);
    }
    let Ok(icmp) = Message::new_checked(&f[l4..]) else {
        return cx.drop(b, i, R::IcmpTruncated);
    };
    if icmp.msg_type() != icmpv4::TYPE_ECHO_REQUEST {
        return cx.drop(b, i, R::LocalProtoUnhandled);
    }
    let f = b.frame_mut(i);
    if let Ok(mut m) = Message::new_checked(&mut f[l4..]) {
        m.echo_to_reply();
    }
    // Swapping the addresses leaves the header checksum unchanged; the TTL change does not.
    let h = &mut f[L3..];
    let (s, d) = (ip4(h, 12), ip4(h, 16));
    h[12..16].copy_from_slice(&d);
    h[16..20].copy_from_slice(&s);
    let old = be16(h, 8);
    h[8] = 64;
    let c = checksum::update16(be16(h, 10), old, be16(h, 8));
    set_be16(h, 10, c);
    cx.event(Event::EchoReplied);
    cx.trace(Stage::Ip4Local, || {
        "echo request to the gateway answered".into()
    });
    b.meta[i].flags |= flags::LOCAL_ORIGIN;
    b.set_next(i, Stage::Ip4Lookup);
}
