//! ethernet-input: length, VLAN tags, source MAC checks, and the L2/L3 decision.

use super::super::Cx;
use super::super::batch::{Batch, MAX_CHAIN_FRAME, MAX_FRAME, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use crate::tables::PortKind;
use crate::wire::ethernet::{self, Frame};
use crate::wire::{Mac, be16};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    if let Some(r) = b.meta[i].drop {
        return cx.drop(b, i, r);
    }
    let snap = cx.snap;
    let Some(port) = snap.port(b.meta[i].in_port) else {
        return cx.drop(b, i, R::UnknownPort);
    };
    let len = b.frame(i).len();
    if len < ethernet::HEADER_LEN {
        return cx.drop(b, i, R::EthTruncated);
    }
    // A port that carries super-frames takes frames up to the largest IPv4 packet (its
    // veth's MTU stays the pod's MTU; the pod's GSO hands over larger ones).
    let max = if port.gso {
        MAX_CHAIN_FRAME
    } else {
        usize::from(port.mtu) + ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
    };
    if len > MAX_FRAME || b.frame_len(i) > max {
        return cx.drop(b, i, R::FrameTooLong);
    }
    let mut ethertype = be16(b.frame(i), 12);
    if ethertype == ethernet::ETHERTYPE_QINQ {
        return cx.drop(b, i, R::QinqUnsupported);
    }
    if ethertype == ethernet::ETHERTYPE_VLAN {
        if len < ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN {
            return cx.drop(b, i, R::VlanTruncated);
        }
        let vid = be16(b.frame(i), 14) & 0x0fff;
        // VLAN 0 is a priority tag: treated as untagged, so taken only where untagged frames
        // are; other VLANs only where configured.
        let tagged_as = if vid == 0 { None } else { Some(vid) };
        if port.vlan != tagged_as {
            return cx.drop(b, i, R::VlanNotAllowed);
        }
        ethertype = be16(b.frame(i), 16);
        if ethertype == ethernet::ETHERTYPE_VLAN || ethertype == ethernet::ETHERTYPE_QINQ {
            return cx.drop(b, i, R::QinqUnsupported);
        }
        // Strip the tag: move both MACs forward over it.
        let (slot, start) = b.slot_mut(i);
        slot.copy_within(start..start + 12, start + 4);
        b.pull_front(i, ethernet::VLAN_TAG_LEN);
        cx.event(Event::VlanStripped);
    } else if port.vlan.is_some() && b.meta[i].flags & flags::DECAPPED == 0 {
        // A port configured for a VLAN takes only frames tagged with it.
        return cx.drop(b, i, R::VlanNotAllowed);
    }
    let f = match Frame::new_checked(b.frame(i)) {
        Ok(f) => f,
        Err(_) => return cx.drop(b, i, R::EthTruncated),
    };
    let (src, dst) = (f.src(), f.dst());
    if src.is_multicast() {
        return cx.drop(b, i, R::SrcMacMulticast);
    }
    let decapped = b.meta[i].flags & flags::DECAPPED != 0;
    if port.kind == PortKind::Pod && !decapped && src != port.mac {
        return cx.drop(b, i, R::MacSpoofed);
    }
    if ethertype == ethernet::ETHERTYPE_IPV6 {
        return cx.drop(b, i, R::Ipv6Unsupported);
    }
    if ethertype != ethernet::ETHERTYPE_IPV4 && ethertype != ethernet::ETHERTYPE_ARP {
        return cx.drop(b, i, R::UnsupportedEthertype);
    }
    if b.is_chained(i) && ethertype != ethernet::ETHERTYPE_IPV4 {
        return cx.drop(b, i, R::ChainNotIpv4);
    }
    let l3_mac: Mac = match (port.kind, decapped) {
        (_, true) => snap.node.vtep_mac,
        (PortKind::Uplink, false) => port.mac,
        _ => snap.node.gateway_mac,
    };
    let next = if ethertype == ethernet::ETHERTYPE_ARP {
        if dst.is_multicast() && !dst.is_broadcast() {
            return cx.drop(b, i, R::MulticastDst);
        }
        Stage::Arp
    } else if dst == l3_mac || (decapped && dst == snap.node.vtep_mac) {
        Stage::Ip4Input
    } else if dst.is_broadcast() {
        return cx.drop(b, i, R::UnhandledBroadcast);
    } else if dst.is_multicast() {
        return cx.drop(b, i, R::MulticastDst);
    } else if port.kind != PortKind::Uplink && !decapped && snap.macs.contains_key(&dst) {
        Stage::L2Fwd
    } else {
        return cx.drop(b, i, R::UnknownDstMac);
    };
    cx.trace(Stage::EthInput, || {
        format!(
            "in_port={} src={src} dst={dst} type=0x{ethertype:04x}{} -> {}",
            port.name,
            if decapped { " (decapsulated)" } else { "" },
            next.name()
        )
    });
    b.set_next(i, next);
}
