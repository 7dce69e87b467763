//! nat44-in: conntrack lookup and Service DNAT, before routing.
//!
//! - A packet of a known flow (either direction) is translated from its conntrack entry.
//! - A new flow to a Service frontend (ClusterIP, externalIP, LoadBalancer IP, NodePort) gets
//!   an endpoint: the ClientIP-affinity one if any, else Maglev on the flow hash over the
//!   endpoints the traffic policy allows; its destination is translated and nat44-out
//!   creates the entry once the route (and so any source translation) is known.
//! - A Service without endpoints rejects (TCP RST, ICMP port unreachable); a TCP segment that
//!   is not a SYN and has no entry is dropped, never forwarded untranslated.
//! - ICMP errors are handed to the quote translation (`nat_icmp`).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::nat::{NatMeta, NatState};
use super::super::stage::Stage;
use super::nat_common::{Parsed, parse, rewrite, tcp_reset};
use super::{L3, flow_hash, nat_icmp};
use crate::conntrack::{Dir, FlowKey, affinity_tag, dump_line};
use crate::tables::PortKind;
use crate::tables::services::Frontend;
use crate::wire::{icmpv4, ipv4, tcp};
use std::net::Ipv4Addr;

/// Table size from which the prefetch passes pay for themselves (about 2 MiB of entries
/// and index: the L2 cache).
const PREFETCH_MIN_ENTRIES: usize = 16_384;

/// Two passes over the batch before the per-packet work (VPP style): start loading the
/// conntrack index slots of every packet, then their entries, so that the lookups that
/// follow find them in cache instead of waiting for memory one packet at a time.
pub(super) fn prefetch(cx: &Cx<'_>, b: &Batch, mask: u128) {
    let Some(ct) = cx.ct else { return };
    // A small table stays in cache: the extra passes would only cost.
    if mask.count_ones() < 4 || ct.len() < PREFETCH_MIN_ENTRIES {
        return;
    }
    let mut keys = [FlowKey::default(); crate::pipeline::batch::SLOTS];
    let mut n = 0;
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        if let Parsed::Flow { key, .. } = parse(b.frame(i)) {
            ct.prefetch_index(&key);
            keys[n] = key;
            n += 1;
        }
    }
    for k in &keys[..n] {
        ct.prefetch_entry(k);
    }
}

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let local_origin = m.flags & flags::LOCAL_ORIGIN != 0;
    let f = b.frame(i);
    let dst = crate::wire::ip4(f, L3 + 16);
    let parsed = parse(f);
    let Some(ct) = cx.ct else {
        return no_conntrack(cx, b, i, &parsed, dst);
    };
    let (key, tcp_flags, l4, fragment) = match parsed {
        Parsed::IcmpError { l4 } => return nat_icmp::translate(cx, ct, b, i, l4),
        _ if local_origin => return b.set_next(i, Stage::Ip4Lookup),
        Parsed::Flow {
            key,
            tcp_flags,
            l4,
            fragment,
        } => (key, tcp_flags, l4, fragment),
        Parsed::Fragment | Parsed::Other => {
            if snap.nat.service_cidr.contains(u32::from_be_bytes(dst)) {
                let r = if matches!(parsed, Parsed::Fragment) {
                    R::NatFragment
                } else {
                    R::SvcNoPort
                };
                return cx.drop(b, i, r);
            }
            return b.set_next(i, Stage::Ip4Lookup);
        }
    };
    // Tunnel packets to the node address are never translated.
    if key.proto == ipv4::PROTO_UDP && dst == snap.node.address && key.dport == snap.node.vxlan.port
    {
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let len = (f.len() - L3) as u32;
    if let Some(hit) = ct.lookup(&key, tcp_flags, len, cx.now_ns, &snap.nat.timeouts) {
        let to = hit.target();
        rewrite(b.frame_mut(i), l4, &key, &to);
        let mm = &mut b.meta[i];
        mm.flags |= flags::NAT;
        mm.nat.state = NatState::Done;
        let now = cx.now_ns;
        cx.trace(Stage::Nat44In, || {
            let d = if hit.dir == Dir::Orig {
                "original"
            } else {
                "reply"
            };
            format!(
                "conntrack hit ({d} direction): {}",
                dump_line(&hit.entry, now)
            )
        });
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let svc = if key.proto == ipv4::PROTO_ICMP {
        None
    } else {
        snap.services
            .lookup(dst, key.dport, key.proto, snap.node.address)
    };
    let Some((idx, fe)) = svc else {
        if snap.nat.service_cidr.contains(u32::from_be_bytes(dst)) {
            return cx.drop(b, i, R::SvcNoPort);
        }
        return b.set_next(i, Stage::Ip4Lookup);
    };
    if fragment {
        return cx.drop(b, i, R::NatFragment);
    }
    if key.proto == ipv4::PROTO_TCP
        && tcp_flags & (tcp::FLAG_SYN | tcp::FLAG_ACK | tcp::FLAG_RST) != tcp::FLAG_SYN
    {
        return cx.drop(b, i, R::CtInvalid);
    }
    let sp = &snap.services.ports[idx as usize];
    if sp.backends.is_empty() {
        return reject(cx, b, i, l4, &key, &sp.name);
    }
    let in_pod = snap
        .port(m.in_port)
        .is_some_and(|p| p.kind == PortKind::Pod);
    let in_cluster = snap.nat.in_cluster(key.src) && (in_pod || m.flags & flags::DECAPPED != 0);
    let local_only = match (fe.is_external(), in_cluster) {
        (true, false) => sp.external_local,
        (false, true) => sp.internal_local,
        _ => false,
    };
    let aff_key = sp.affinity_secs.map(|_| FlowKey {
        proto: key.proto | 0x80,
        src: key.src,
        dst: affinity_tag(&sp.name).to_be_bytes(),
        sport: 0,
        dport: 0,
    });
    let remembered = aff_key
        .and_then(|k| ct.affinity_get(&k, cx.now_ns))
        .and_then(|(ip, port)| {
            sp.backends
                .iter()
                .position(|b| b.ip == ip && b.port == port && (b.local || !local_only))
        });
    let (chosen, how) = match remembered {
        Some(bi) => (Some(bi as u16), "session affinity"),
        None => {
            let h = flow_hash(
                key.src,
                key.dst,
                key.proto,
                u32::from(key.sport) << 16 | u32::from(key.dport),
            );
            (sp.choose(h, local_only), "maglev")
        }
    };
    let Some(bi) = chosen else {
        return cx.drop(b, i, R::SvcNoLocalEndpoints);
    };
    let be = &sp.backends[usize::from(bi)];
    if let (Some(k), Some(secs)) = (aff_key, sp.affinity_secs) {
        ct.affinity_set(&k, (be.ip, be.port), secs, cx.now_ns);
    }
    let to = FlowKey {
        dst: be.ip,
        dport: be.port,
        ..key
    };
    rewrite(b.frame_mut(i), l4, &key, &to);
    let mm = &mut b.meta[i];
    mm.flags |= flags::NAT;
    mm.nat = NatMeta {
        state: NatState::PendingService,
        orig: key,
        svc: idx,
        external_client: !in_cluster,
        local_only,
    };
    cx.trace(Stage::Nat44In, || {
        let fe_name = match fe {
            Frontend::ClusterIp => "cluster-ip",
            Frontend::External => "external-ip",
            Frontend::NodePort => "node-port",
        };
        format!(
            "service {} ({fe_name} {}:{}/{}) -> endpoint {}:{} on {}{} by {how}{}",
            sp.name,
            Ipv4Addr::from(key.dst),
            key.dport,
            key.proto_name(),
            Ipv4Addr::from(be.ip),
            be.port,
            be.node,
            if be.local { " (local)" } else { "" },
            if local_only {
                ", traffic policy Local"
            } else {
                ""
            },
        )
    });
    b.set_next(i, Stage::Ip4Lookup);
}

/// A Service without endpoints: TCP gets a RST, anything else ICMP port unreachable.
fn reject(cx: &mut Cx<'_>, b: &mut Batch, i: usize, l4: usize, key: &FlowKey, name: &str) {
    cx.event(Event::NatRejected);
    cx.trace(Stage::Nat44In, || {
        format!("service {name} has no endpoints: reject {key}")
    });
    if key.proto == ipv4::PROTO_TCP {
        cx.counters.drops[R::SvcNoEndpoints as usize] += 1;
        let n = tcp_reset(b.frame_mut(i), l4);
        b.set_len(i, n);
        let mm = &mut b.meta[i];
        mm.flags = flags::LOCAL_ORIGIN;
        mm.nat.state = NatState::Done;
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let mm = &mut b.meta[i];
    mm.icmp = (icmpv4::TYPE_DEST_UNREACH, icmpv4::CODE_PORT_UNREACH, 0);
    mm.icmp_cause = Some(R::SvcNoEndpoints);
    b.set_next(i, Stage::IcmpError);
}

/// Without a conntrack table nothing is translated; Service traffic is dropped, not leaked.
fn no_conntrack(cx: &mut Cx<'_>, b: &mut Batch, i: usize, parsed: &Parsed, dst: [u8; 4]) {
    let snap = cx.snap;
    if !snap.services.is_empty() {
        let to_service = snap.nat.service_cidr.contains(u32::from_be_bytes(dst))
            || match parsed {
                Parsed::Flow { key, .. } => snap
                    .services
                    .lookup(dst, key.dport, key.proto, snap.node.address)
                    .is_some(),
                _ => false,
            };
        if to_service {
            return cx.drop(b, i, R::NatUnavailable);
        }
    }
    b.set_next(i, Stage::Ip4Lookup);
}
