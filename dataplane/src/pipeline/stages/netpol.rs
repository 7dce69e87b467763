//! netpol: Kubernetes NetworkPolicy, after nat44-in and before ip4-lookup.
//!
//! Placed after Service DNAT, so ingress rules see the real endpoint; egress is checked
//! where the packet enters from its source pod's port, ingress where the destination
//! address is a pod of this node (each node checks its own pods). Only pods that some
//! policy selects are looked at; with no pod selected the stage is never entered.
//!
//! - A packet of a flow conntrack already holds (nat44-in marked it `TRACKED`: an
//!   established flow, a reply) passes without evaluation: nat44-in does not even hand it
//!   over (`take_over`), so an established flow costs its conntrack hit and nothing more
//!   (an untranslated `policy` entry is neither rewritten nor flagged `NAT`).
//! - An ICMP error passes when its quote belongs to a tracked flow (related).
//! - Otherwise the source pod's egress rules (if it is isolated for egress) and the
//!   destination pod's ingress rules (if isolated for ingress) must each allow it; the first
//!   packet of an allowed flow gets a conntrack entry (Service and masquerade flows already
//!   have nat44-in's; others get an untranslated `policy` entry) so the rest of the flow
//!   and its replies skip evaluation. A denied new Service flow loses the entry nat44-in
//!   created for it, so its retransmissions are judged again.
//! - Traffic from the node itself (the host port: kubelet probes) is allowed into its pods.
//! - A non-first fragment, which has no ports, passes when some rule allows its peer
//!   address (its first fragment, which carries the ports, was judged fully).

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::DropReason as R;
use super::super::stage::Stage;
use super::L3;
use super::nat_common::{Parsed, parse};
use crate::conntrack::{Created, FlowKey, NewFlow, State, dump_line, flag};
use crate::tables::PortKind;
use crate::tables::policy::{DirRules, Verdict};
use crate::wire::{be16, icmpv4, ip4, ipv4};
use std::net::Ipv4Addr;

/// Hands on to netpol the packets nat44-in sent to ip4-lookup, when some pod is selected.
/// Packets of flows conntrack holds (`TRACKED`) stay with ip4-lookup: they pass netpol
/// without evaluation, so they are not dispatched to it at all (the trace still says why).
#[inline]
pub(super) fn take_over(cx: &mut Cx<'_>, b: &mut Batch) {
    if cx.snap.policy.is_empty() {
        return;
    }
    let mut m = b.pending[Stage::Ip4Lookup as usize];
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        let fl = b.meta[i].flags;
        if fl & flags::TRACKED == 0 {
            b.set_next(i, Stage::NetPol);
        } else if cx.trace.is_some() && fl & flags::LOCAL_ORIGIN == 0 && selected(cx, b, i) {
            cx.trace(Stage::NetPol, || {
                "flow tracked by conntrack: allowed without evaluation".into()
            });
        }
    }
}

/// Whether a policy selects the packet's source pod (by input port) or destination pod.
fn selected(cx: &Cx<'_>, b: &Batch, i: usize) -> bool {
    let pt = &*cx.snap.policy;
    pt.by_port(b.meta[i].in_port).is_some() || pt.by_ip(ip4(b.frame(i), L3 + 16)).is_some()
}

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let pt = &*snap.policy;
    let m = b.meta[i];
    if m.flags & flags::LOCAL_ORIGIN != 0 {
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let f = b.frame(i);
    let (src, dst) = (ip4(f, L3 + 12), ip4(f, L3 + 16));
    let from = pt.by_port(m.in_port);
    let to = pt.by_ip(dst);
    if from.is_none() && to.is_none() {
        return b.set_next(i, Stage::Ip4Lookup);
    }
    if m.flags & flags::TRACKED != 0 {
        // Not handed over by nat44-in (see `take_over`); from another stage, same verdict.
        cx.trace(Stage::NetPol, || {
            "flow tracked by conntrack: allowed without evaluation".into()
        });
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let parsed = parse(f);
    let (proto, port) = match parsed {
        Parsed::Flow { key, .. } => (key.proto, Some(key.dport)),
        Parsed::IcmpError { l4 } => {
            if related(cx, f, l4) {
                cx.trace(Stage::NetPol, || {
                    "ICMP error about a tracked flow: allowed".into()
                });
                return b.set_next(i, Stage::Ip4Lookup);
            }
            (ipv4::PROTO_ICMP, Some(0))
        }
        Parsed::Fragment => (f[L3 + 9], None),
        Parsed::Other => (f[L3 + 9], Some(0)),
    };
    let from_host = snap
        .port(m.in_port)
        .is_some_and(|p| p.kind == PortKind::Host);
    let eg = from.and_then(|p| p.egress.as_ref()).map(|d| {
        let v = d.check(proto, port, u32::from_be_bytes(dst));
        d.count(v);
        (d, v)
    });
    if let Some((d, None)) = eg {
        let pod = from.map(|p| p.source.pod.as_str()).unwrap_or("?");
        cx.trace(Stage::NetPol, || {
            format!(
                "egress of pod {pod} to {}: {}",
                Ipv4Addr::from(dst),
                d.describe(None)
            )
        });
        return deny(cx, b, i, &parsed, R::PolicyDeniedEgress);
    }
    let ing = to
        .and_then(|p| p.ingress.as_ref())
        .filter(|_| !from_host)
        .map(|d| {
            let v = d.check(proto, port, u32::from_be_bytes(src));
            d.count(v);
            (d, v)
        });
    cx.trace(Stage::NetPol, || {
        explain(from.map(|p| p.source.pod.as_str()), eg, "egress", dst)
            + &explain(to.map(|p| p.source.pod.as_str()), ing, "ingress", src)
            + if from_host && to.is_some_and(|p| p.ingress.is_some()) {
                "ingress from the node itself (host port): allowed; "
            } else {
                ""
            }
    });
    if let Some((_, None)) = ing {
        return deny(cx, b, i, &parsed, R::PolicyDeniedIngress);
    }
    if let Parsed::Flow { key, .. } = parsed
        && m.flags & flags::NAT == 0
    {
        track(cx, b, i, key);
    }
    b.set_next(i, Stage::Ip4Lookup);
}

/// One direction's verdict for the trace.
fn explain(pod: Option<&str>, v: Option<(&DirRules, Verdict)>, dir: &str, peer: [u8; 4]) -> String {
    match (pod, v) {
        (Some(pod), Some((d, v))) => format!(
            "{dir} of pod {pod} {} {}: {}; ",
            if dir == "egress" { "to" } else { "from" },
            Ipv4Addr::from(peer),
            d.describe(v)
        ),
        (Some(pod), None) => format!("pod {pod} is not isolated for {dir}; "),
        _ => String::new(),
    }
}

/// Drops a denied packet; a new Service flow's entry goes too (judged again next time).
fn deny(cx: &mut Cx<'_>, b: &mut Batch, i: usize, parsed: &Parsed, r: R) {
    if let (Parsed::Flow { key, .. }, Some(ct)) = (parsed, cx.ct)
        && b.meta[i].flags & flags::NAT != 0
    {
        ct.remove_flow(&key.inverse());
    }
    cx.drop(b, i, r);
}

/// The conntrack entry of an allowed untranslated flow.
fn track(cx: &mut Cx<'_>, b: &Batch, i: usize, key: FlowKey) {
    let Some(ct) = cx.ct else { return };
    let req = NewFlow {
        orig: key,
        reply: key.inverse(),
        port_range: None,
        flags: flag::POLICY,
        state: if key.proto == ipv4::PROTO_TCP {
            State::TcpSynSent
        } else {
            State::Unreplied
        },
        bytes: (b.frame(i).len() - L3) as u32,
    };
    let now = cx.now_ns;
    // A full table leaves the flow untracked: its next packets are judged again.
    if let Ok(Created::New(e)) = ct.create(&req, now, &cx.snap.nat.timeouts) {
        cx.trace(Stage::NetPol, || {
            format!("conntrack entry created: {}", dump_line(&e, now))
        });
    }
}

/// Whether an ICMP error quotes a flow conntrack holds (either direction).
fn related(cx: &Cx<'_>, f: &[u8], l4: usize) -> bool {
    let Some(ct) = cx.ct else { return false };
    let q = l4 + icmpv4::HEADER_LEN;
    if f.len() < q + ipv4::MIN_HEADER_LEN {
        return false;
    }
    let qhl = usize::from(f[q] & 0x0f) * 4;
    if qhl < ipv4::MIN_HEADER_LEN || f.len() < q + qhl + 8 {
        return false;
    }
    let (proto, ql4) = (f[q + 9], q + qhl);
    let (s, d) = (ip4(f, q + 12), ip4(f, q + 16));
    let key = match proto {
        ipv4::PROTO_TCP | ipv4::PROTO_UDP => {
            FlowKey::new(proto, s, d, be16(f, ql4), be16(f, ql4 + 2))
        }
        ipv4::PROTO_ICMP => {
            let id = be16(f, ql4 + 4);
            FlowKey::new(proto, s, d, id, id)
        }
        _ => return false,
    };
    ct.peek(&key, cx.now_ns).is_some() || ct.peek(&key.inverse(), cx.now_ns).is_some()
}
