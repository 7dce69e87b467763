//! nat44-out: source translation and conntrack entry creation, after routing (the egress is
//! known).
//!
//! - New Service flows (destination translated by nat44-in) are SNATed when a pod reaches
//!   itself through its Service (hairpin: to the gateway address, so the reply comes back
//!   through the switch) and when the client is outside the cluster and the policy is
//!   Cluster (to the node address, so replies return through this node); with a Local
//!   policy the client address is kept.
//! - New pod flows leaving through the uplink to non-cluster destinations are masqueraded to
//!   the node address.
//! - The conntrack table picks the translated source port so that no two live flows share a
//!   translated tuple (`nat_ports_exhausted` when none is free).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::nat::NatState;
use super::super::stage::Stage;
use super::nat_common::{Parsed, parse, rewrite};
use crate::conntrack::{CreateError, Created, FlowKey, NewFlow, State, dump_line, flag};
use crate::tables::{PortKind, RouteTarget};
use crate::wire::{ipv4, tcp};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let m = b.meta[i];
    let Some(ct) = cx.ct else {
        return b.set_next(i, Stage::Ip4Rewrite);
    };
    if m.nat.state == NatState::Done || m.flags & flags::LOCAL_ORIGIN != 0 {
        return b.set_next(i, Stage::Ip4Rewrite);
    }
    let snap = cx.snap;
    let Parsed::Flow {
        key: cur,
        tcp_flags,
        l4,
        ..
    } = parse(b.frame(i))
    else {
        return b.set_next(i, Stage::Ip4Rewrite);
    };
    let service = m.nat.state == NatState::PendingService;
    let (orig, snat) = if service {
        let snat = if cur.src == cur.dst {
            Some(snap.node.gateway)
        } else if m.nat.external_client && !m.nat.local_only {
            Some(snap.node.address)
        } else {
            None
        };
        (m.nat.orig, snat)
    } else {
        // Masquerade: pod traffic leaving through the uplink for outside the cluster.
        let from_pod = m.flags & flags::DECAPPED == 0
            && snap
                .port(m.in_port)
                .is_some_and(|p| p.kind == PortKind::Pod);
        let via_uplink = snap
            .routes
            .get(m.route as usize)
            .is_some_and(|r| matches!(r.target, RouteTarget::Via { .. }));
        if !(snap.nat.masquerade && from_pod && via_uplink) || snap.nat.in_cluster(cur.dst) {
            return b.set_next(i, Stage::Ip4Rewrite);
        }
        if cur.proto == ipv4::PROTO_TCP
            && tcp_flags & (tcp::FLAG_SYN | tcp::FLAG_ACK | tcp::FLAG_RST) != tcp::FLAG_SYN
        {
            return cx.drop(b, i, R::SnatInvalid);
        }
        (cur, Some(snap.node.address))
    };
    let reply = FlowKey {
        proto: cur.proto,
        src: cur.dst,
        dst: snat.unwrap_or(cur.src),
        sport: cur.dport,
        dport: cur.sport,
    };
    let mut fl = if service { flag::SERVICE } else { 0 };
    if snat.is_some() {
        fl |= flag::SNAT;
    }
    let req = NewFlow {
        orig,
        reply,
        // Also without SNAT: a clash on the reply tuple is resolved by remapping the port.
        port_range: Some(snap.nat.snat_ports),
        flags: fl,
        state: if cur.proto == ipv4::PROTO_TCP {
            State::TcpSynSent
        } else {
            State::Unreplied
        },
        bytes: (b.frame(i).len() - super::L3) as u32,
    };
    let to = match ct.create(&req, cx.now_ns, &snap.nat.timeouts) {
        Ok(Created::New(e)) => {
            cx.event(if service {
                Event::NatNewService
            } else {
                Event::NatNewMasquerade
            });
            let now = cx.now_ns;
            cx.trace(Stage::Nat44Out, || {
                format!("conntrack entry created: {}", dump_line(&e, now))
            });
            e.reply.inverse()
        }
        Ok(Created::Existing(h)) => {
            let now = cx.now_ns;
            cx.trace(Stage::Nat44Out, || {
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
    rewrite(b.frame_mut(i), l4, &cur, &to);
    b.meta[i].nat.state = NatState::Done;
    b.set_next(i, Stage::Ip4Rewrite);
}
