//! ip4-lookup: longest-prefix match, and what may be forwarded from where.
//!
//! With a FIB larger than the caches, the stage first looks up the destinations of all its
//! pending packets at once ([`lookup_batch`], VPP's ip4-lookup shape: one pass per trie
//! level with prefetch, so the cache and TLB misses of the batch overlap), then runs the
//! per-packet part with the routes found. A small FIB is looked up packet by packet: it
//! stays in cache and the extra pass would only cost.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::DropReason as R;
use super::super::stage::Stage;
use super::L3;
use crate::pipeline::batch::SLOTS;
use crate::tables::{PortKind, RouteTarget};
use crate::wire::icmpv4;
use crate::wire::ip4;

/// FIB trie size (`Lpm::memory_bytes`) from which the batch lookup pays for itself: about
/// the L2 cache. Below it the trie stays cached (a node's usual FIB is 0.26 MiB).
const BATCH_MIN_FIB_BYTES: usize = 2 << 20;

/// The FIB match of each pending packet, by slot, when looked up for the whole batch.
pub(super) type Routes = [Option<u32>; SLOTS];

/// Looks up the destinations of every packet in `mask` at once, or returns `None` when the
/// FIB is small enough that `packet` should look up one packet at a time.
pub(super) fn lookup_batch(cx: &Cx<'_>, b: &Batch, mask: u128) -> Option<Routes> {
    let fib = &cx.snap.fib;
    if fib.memory_bytes() < BATCH_MIN_FIB_BYTES {
        return None;
    }
    let mut slots = [0u8; SLOTS];
    let mut addrs = [0u32; SLOTS];
    let mut n = 0;
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        slots[n] = i as u8;
        addrs[n] = u32::from_be_bytes(ip4(b.frame(i), L3 + 16));
        n += 1;
    }
    let mut found = [None; SLOTS];
    fib.lookup_batch(&addrs[..n], &mut found[..n]);
    let mut routes = [None; SLOTS];
    for (&i, r) in slots[..n].iter().zip(&found[..n]) {
        routes[usize::from(i)] = *r;
    }
    Some(routes)
}

/// One packet; `routes` holds its FIB match if [`lookup_batch`] looked the batch up.
/// (`inline`: kept in the batch loop whatever the codegen-unit split.)
#[inline]
pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize, routes: Option<&Routes>) {
    let snap = cx.snap;
    let f = b.frame(i);
    let dst = ip4(f, L3 + 16);
    let len = b.frame_len(i) as u64;
    if dst == [0; 4] || dst[0] == 127 || dst[0] >= 224 {
        return cx.drop(b, i, R::Ip4MartianDst);
    }
    let found = match routes {
        Some(r) => r[i],
        None => snap.fib.lookup(dst),
    };
    let Some(ri) = found else {
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
