//! ip4-lookup: longest-prefix match, and what may be forwarded from where.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::DropReason as R;
use super::super::stage::Stage;
use super::L3;
use crate::tables::{PortKind, RouteTarget};
use crate::wire::icmpv4;
use crate::wire::ip4;

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let f = b.frame(i);
    let dst = ip4(f, L3 + 16);
    let len = f.len() as u64;
    if dst == [0; 4] || dst[0] == 127 || dst[0] >= 224 {
        return cx.drop(b, i, R::Ip4MartianDst);
    }
    let Some(ri) = snap.fib.lookup(dst) else {
        return cx.drop(b, i, R::NoRoute);
    };
    let Some(route) = snap.routes.get(ri as usize) else {
        return cx.drop(b, i, R::NoRoute);
    };
    let m = b.meta[i];
    let local_origin = m.flags & flags::LOCAL_ORIGIN != 0;
    let decapped = m.flags & flags::DECAPPED != 0;
    let from_uplink = snap
        .port(m.in_port)
        .is_some_and(|p| p.kind == PortKind::Uplink);
    b.meta[i].route = ri;
    if let Some(c) = cx.counters.routes.get_mut(ri as usize) {
        c[0] += 1;
        c[1] += len;
    }
    // Packets from the underlay may only reach this node's pods, gateway or tunnel endpoint
    // (unless nat44-in translated them: Service traffic and replies of translated flows).
    let natted = m.flags & flags::NAT != 0;
    if !local_origin && !natted && (decapped || from_uplink) {
        let allowed = matches!(
            route.target,
            RouteTarget::Pod { .. }
                | RouteTarget::Gateway
                | RouteTarget::NoSuchPod
                | RouteTarget::NodeAddress
        );
        if !allowed {
            let r = if decapped {
                R::DecapDstNotLocal
            } else {
                R::UplinkTransit
            };
            return cx.drop(b, i, r);
        }
    }
    cx.trace(Stage::Ip4Lookup, || {
        format!(
            "{} matched {} ({}) -> {:?}",
            std::net::Ipv4Addr::from(dst),
            route.prefix,
            route.origin,
            route.target
        )
    });
    let next = match route.target {
        RouteTarget::Gateway => Stage::Ip4Local,
        RouteTarget::NodeAddress if from_uplink && !local_origin => Stage::Ip4Local,
        RouteTarget::NoSuchPod => {
            // Like a bridge whose ARP went unanswered: tell the sender, do not black-hole.
            let m = &mut b.meta[i];
            m.icmp = (icmpv4::TYPE_DEST_UNREACH, icmpv4::CODE_HOST_UNREACH, 0);
            m.icmp_cause = Some(R::NoSuchPod);
            Stage::IcmpError
        }
        _ => match route.out_port {
            Some(p) => {
                b.meta[i].out_port = p;
                Stage::Ip4Rewrite
            }
            None => return cx.drop(b, i, R::NeighbourUnresolved),
        },
    };
    b.set_next(i, next);
}
