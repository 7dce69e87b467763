//! nat44-in: connection tracking and Service NAT, before routing.
//!
//! - A packet of a known flow (either direction) is translated from its conntrack entry.
//! - A new flow to a Service frontend (ClusterIP, externalIP, LoadBalancer IP, NodePort) gets
//!   an endpoint: the ClientIP-affinity one if any, else Maglev on the flow hash over the
//!   endpoints the traffic policy allows. Its source is translated too when a pod reaches
//!   itself through its Service (hairpin: to the gateway address, so the reply comes back
//!   through the switch) and where kube-proxy masquerades (to the node address, so replies
//!   return through this node): `nat_policy` decides, per kind of client.
//! - A new pod flow that the FIB sends out of the uplink to a non-cluster destination is
//!   masqueraded to the node address.
//! - The conntrack entry is created here, before the packet moves on, so the next packet of
//!   the flow finds it whatever batch, pass or worker it is in; the table picks the
//!   translated source port so that no two live flows share a translated tuple.
//! - A Service without endpoints rejects (TCP RST, ICMP port unreachable); a TCP segment that
//!   is not a SYN and has no entry is dropped, never forwarded untranslated.
//! - ICMP errors are handed to the quote translation (`nat_icmp`).
//! - Fragments go through `nat_frag`: the first one is translated here like a whole packet,
//!   the others get the addresses recorded for their datagram.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::nat_common::{Parsed, parse, rewrite, tcp_reset};
use super::nat_policy::{self, Client, Snat};
use super::{L3, flow_hash, nat_frag, nat_icmp};
use crate::conntrack::{
    Conntrack, CreateError, Created, Dir, FlowKey, NewFlow, State, affinity_tag, dump_line, flag,
};
use crate::tables::services::Frontend;
use crate::tables::{PortKind, RouteTarget};
use crate::wire::{icmpv4, ipv4, tcp};
use std::net::Ipv4Addr;

/// Table size from which the prefetch passes pay for themselves (about 2 MiB of entries
/// and index: the L2 cache).
const PREFETCH_MIN_ENTRIES: usize = 16_384;

/// Before the per-packet work (VPP style): gathers the flow keys of the batch and has the
/// table start loading their index slots, then their entries, so that the lookups that
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
            keys[n] = key;
            n += 1;
        }
    }
    for chunk in keys[..n].chunks(Conntrack::PREFETCH_BATCH) {
        ct.prefetch_batch(chunk);
    }
}

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let ff = crate::wire::be16(b.frame(i), L3 + 6);
    if ff & (ipv4::FLAG_MF | ipv4::FRAG_OFFSET_MASK) == 0 || cx.ct.is_none() {
        return flow(cx, b, i);
    }
    if ff & ipv4::FRAG_OFFSET_MASK == 0 {
        nat_frag::first(cx, b, i, flow);
    } else {
        nat_frag::later(cx, b, i, true);
    }
}

/// A whole packet or a first fragment (the part of the datagram with the L4 header).
fn flow(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let local_origin = m.flags & flags::LOCAL_ORIGIN != 0;
    let f = b.frame(i);
    let dst = crate::wire::ip4(f, L3 + 16);
    let parsed = parse(f);
    let Some(ct) = cx.ct else {
        return no_conntrack(cx, b, i, &parsed, dst);
    };
    let (key, tcp_flags, l4) = match parsed {
        Parsed::IcmpError { l4 } => return nat_icmp::translate(cx, ct, b, i, l4),
        _ if local_origin => return b.set_next(i, Stage::Ip4Lookup),
        Parsed::Flow {
            key, tcp_flags, l4, ..
        } => (key, tcp_flags, l4),
        // Non-first fragments come here only without conntrack (see `packet`).
        Parsed::Fragment | Parsed::Other => {
            if snap.nat.service_cidr.contains(u32::from_be_bytes(dst)) {
                return cx.drop(b, i, R::SvcNoPort);
            }
            return b.set_next(i, Stage::Ip4Lookup);
        }
    };
    // Tunnel packets to the node address are never translated.
    if key.proto == ipv4::PROTO_UDP && dst == snap.node.address && key.dport == snap.node.vxlan.port
    {
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let len = (b.frame_len(i) - L3) as u32;
    if let Some(hit) = ct.track(&key, tcp_flags, len, cx.now_ns, &snap.nat.timeouts) {
        // A `policy` entry records an untranslated flow (netpol allowed it): nothing to
        // rewrite, and the packet keeps the checks untranslated traffic gets.
        if hit.flags & flag::POLICY == 0 {
            rewrite(b.frame_mut(i), l4, &key, &hit.target);
            b.meta[i].flags |= flags::NAT;
        }
        b.meta[i].flags |= flags::TRACKED;
        let now = cx.now_ns;
        cx.trace(Stage::Nat44In, || {
            let d = if hit.dir == Dir::Orig {
                "original"
            } else {
                "reply"
            };
            match ct.peek(&key, now) {
                Some(h) => format!(
                    "conntrack hit ({d} direction): {}",
                    dump_line(&h.entry, now)
                ),
                None => format!("conntrack hit ({d} direction)"),
            }
        });
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let is_syn = tcp_flags & (tcp::FLAG_SYN | tcp::FLAG_ACK | tcp::FLAG_RST) == tcp::FLAG_SYN;
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
        if !masquerade(cx, b, i) {
            return b.set_next(i, Stage::Ip4Lookup);
        }
        if key.proto == ipv4::PROTO_TCP && !is_syn {
            return cx.drop(b, i, R::SnatInvalid);
        }
        let reply = FlowKey {
            proto: key.proto,
            src: key.dst,
            dst: snap.node.address,
            sport: key.dport,
            dport: key.sport,
        };
        return new_flow(cx, ct, b, i, l4, key, reply, flag::SNAT);
    };
    if key.proto == ipv4::PROTO_TCP && !is_syn {
        return cx.drop(b, i, R::CtInvalid);
    }
    let sp = &snap.services.ports[idx as usize];
    if sp.backends.is_empty() {
        return reject(cx, b, i, l4, &key, &sp.name);
    }
    let client = match snap.port(m.in_port).map(|p| p.kind) {
        Some(PortKind::Pod) => Client::LocalPod,
        Some(PortKind::Host) => Client::Node,
        _ if snap.nat.in_cluster(key.src) => Client::RemotePod,
        _ => Client::External,
    };
    let local_only = nat_policy::local_only(fe, client, sp.external_local, sp.internal_local);
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
            sp.backends.iter().position(|b| {
                b.ip == ip && b.port == port && if local_only { b.local } else { b.cluster }
            })
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
    let snat = match nat_policy::snat(fe, client, sp.external_local, be.ip == key.src, be.local) {
        Snat::Hairpin => Some(snap.node.gateway),
        Snat::NodeAddress => Some(snap.node.address),
        Snat::None => None,
    };
    cx.trace(Stage::Nat44In, || {
        let fe_name = match fe {
            Frontend::ClusterIp => "cluster-ip",
            Frontend::External => "external-ip",
            Frontend::NodePort => "node-port",
        };
        format!(
            "service {} ({fe_name} {}:{}/{}) -> endpoint {}:{} on {}{} by {how}{}{}",
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
            match snat {
                Some(a) if a == snap.node.gateway => ", hairpin: source to the gateway address",
                Some(_) => ", masquerade: source to the node address",
                None => "",
            }
        )
    });
    let reply = FlowKey {
        proto: key.proto,
        src: be.ip,
        dst: snat.unwrap_or(key.src),
        sport: be.port,
        dport: key.sport,
    };
    let fl = flag::SERVICE | if snat.is_some() { flag::SNAT } else { 0 };
    new_flow(cx, ct, b, i, l4, key, reply, fl);
}

/// Whether a packet with no entry is pod traffic the FIB sends out of the uplink to a
/// destination outside the cluster (masquerade).
pub(super) fn masquerade(cx: &Cx<'_>, b: &Batch, i: usize) -> bool {
    let snap = cx.snap;
    let m = &b.meta[i];
    let dst = crate::wire::ip4(b.frame(i), L3 + 16);
    snap.nat.masquerade
        && m.flags & flags::DECAPPED == 0
        && !snap.nat.in_cluster(dst)
        && snap
            .port(m.in_port)
            .is_some_and(|p| p.kind == PortKind::Pod)
        && snap
            .route(dst)
            .is_some_and(|r| matches!(r.target, RouteTarget::Via { .. }))
}

/// Creates the entry of a new flow (`reply.dport` is the preferred translated source
/// port) and translates the packet.
#[allow(
    clippy::too_many_arguments,
    reason = "the stage's packet plus the flow's two tuples"
)]
fn new_flow(
    cx: &mut Cx<'_>,
    ct: &Conntrack,
    b: &mut Batch,
    i: usize,
    l4: usize,
    key: FlowKey,
    reply: FlowKey,
    fl: u8,
) {
    let snap = cx.snap;
    let req = NewFlow {
        orig: key,
        reply,
        // Also without SNAT: a clash on the reply tuple is resolved by remapping the port.
        port_range: Some(snap.nat.snat_ports),
        flags: fl,
        state: if key.proto == ipv4::PROTO_TCP {
            State::TcpSynSent
        } else {
            State::Unreplied
        },
        bytes: (b.frame_len(i) - L3) as u32,
    };
    let now = cx.now_ns;
    let to = match ct.create(&req, now, &snap.nat.timeouts) {
        Ok(Created::New(e)) => {
            cx.event(if fl & flag::SERVICE != 0 {
                Event::NatNewService
            } else {
                Event::NatNewMasquerade
            });
            cx.trace(Stage::Nat44In, || {
                format!("conntrack entry created: {}", dump_line(&e, now))
            });
            e.reply.inverse()
        }
        Ok(Created::Existing(h)) => {
            cx.trace(Stage::Nat44In, || {
                format!(
                    "conntrack entry of the same flow: {}",
                    dump_line(&h.entry, now)
                )
            });
            h.target()
        }
        Err(CreateError::Full) => return cx.drop(b, i, R::ConntrackFull),
        Err(CreateError::PortsExhausted) => return cx.drop(b, i, R::NatPortsExhausted),
    };
    rewrite(b.frame_mut(i), l4, &key, &to);
    b.meta[i].flags |= flags::NAT;
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
        b.unchain(i);
        let n = tcp_reset(b.frame_mut(i), l4);
        b.set_len(i, n);
        b.meta[i].flags = flags::LOCAL_ORIGIN;
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
