//! arp-input: answers for the gateway (and, with proxy ARP, for same-node pods), forwards
//! requests and replies between same-node pods, and drops ARP that lies about its sender.

use super::super::Cx;
use super::super::batch::Batch;
use super::super::counters::ArpFlow;
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::tables::{PortKind, RouteTarget};
use crate::wire::arp::{self, OP_REPLY, OP_REQUEST};
use crate::wire::{Mac, ethernet};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let in_port = b.meta[i].in_port;
    let Some(port) = snap.port(in_port) else {
        return cx.drop(b, i, R::UnknownPort);
    };
    if port.kind == PortKind::Uplink {
        return cx.drop(b, i, R::ArpOnUplink);
    }
    let f = b.frame(i);
    let eth_src = Mac(f[6..12].try_into().unwrap_or([0; 6]));
    let eth_dst = Mac(f[0..6].try_into().unwrap_or([0; 6]));
    let Ok(a) = arp::Packet::new_checked(&f[L3..]) else {
        return cx.drop(b, i, R::ArpMalformed);
    };
    if !a.is_ethernet_ipv4() {
        return cx.drop(b, i, R::ArpMalformed);
    }
    let (op, smac, sip, tip) = (a.op(), a.sender_mac(), a.sender_ip(), a.target_ip());
    // Anti-spoofing: a pod may only speak for its own MAC and address (0.0.0.0 = probe).
    if port.kind == PortKind::Pod
        && (smac != port.mac || smac != eth_src || (sip != [0; 4] && Some(sip) != port.ip))
    {
        return cx.drop(b, i, R::ArpSpoofed);
    }
    if op != OP_REQUEST && op != OP_REPLY {
        return cx.drop(b, i, R::ArpUnknownOp);
    }
    if sip == tip && sip != [0; 4] {
        return cx.drop(b, i, R::ArpGratuitous);
    }
    if op == OP_REPLY {
        // Replies between pods are bridged; replies to the switch are not needed.
        return match snap.macs.get(&eth_dst) {
            Some(&out) if out != in_port && !eth_dst.is_multicast() => {
                cx.trace(Stage::Arp, || format!("reply to {eth_dst} bridged"));
                cx.counters.count_arp(ArpFlow::Reply, b.frame(i).len());
                b.meta[i].out_port = out;
                b.set_next(i, Stage::Output);
            }
            _ => cx.drop(b, i, R::ArpReplyConsumed),
        };
    }
    // A request: who answers?
    let answer: Option<Mac> = if tip == snap.node.gateway {
        Some(snap.node.gateway_mac)
    } else {
        match snap.route(tip).map(|r| r.target) {
            Some(RouteTarget::Pod { port: p }) if p != in_port => {
                let owner = snap.port(p).map_or(Mac::ZERO, |e| e.mac);
                if snap.node.proxy_arp {
                    Some(owner)
                } else {
                    // Bridge semantics without flooding: the switch knows the owner, so it
                    // delivers the broadcast request to that one port and the pod answers.
                    cx.trace(Stage::Arp, || {
                        format!("request for {tip:?} delivered to its owner")
                    });
                    cx.counters.count_arp(ArpFlow::PodRequest, b.frame(i).len());
                    b.meta[i].out_port = p;
                    b.set_next(i, Stage::Output);
                    return;
                }
            }
            _ => None,
        }
    };
    let Some(mac) = answer else {
        return cx.drop(b, i, R::ArpTargetUnknown);
    };
    let flow = if tip == snap.node.gateway {
        ArpFlow::GatewayRequest
    } else {
        ArpFlow::PodRequest
    };
    cx.counters.count_arp(flow, b.frame(i).len());
    let f = b.frame_mut(i);
    if let Ok(mut a) = arp::Packet::new_checked(&mut f[L3..]) {
        a.make_reply(mac, tip);
    }
    ethernet::emit(&mut f[..14], eth_src, mac, ethernet::ETHERTYPE_ARP);
    // Ethernet padding past the 28-byte ARP body is kept as it was (zeroes on the wire).
    cx.event(Event::ArpReplied);
    cx.trace(Stage::Arp, || {
        format!(
            "request for {} answered with {mac}",
            std::net::Ipv4Addr::from(tip)
        )
    });
    b.meta[i].out_port = in_port;
    b.set_next(i, Stage::Output);
}
