//! ip4-icmp-error: turns a packet that could not be forwarded into the ICMP error its sender
//! needs (time exceeded, fragmentation needed, host unreachable), in place, rate-limited.
//!
//! The error quotes as much of the original packet as fits in 576 bytes (RFC 1812 4.3.2.3)
//! and is routed back through ip4-lookup like any packet the switch originates.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::wire::icmpv4;
use crate::wire::ipv4::{self, Packet};

const MAX_ERROR_LEN: usize = 576;
const ICMP_TOS: u8 = 0xc0;

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let cause = m.icmp_cause.unwrap_or(R::TtlExpired);
    let f = b.frame(i);
    let Ok(ip) = Packet::new_checked(&f[L3..]) else {
        return cx.drop(b, i, cause);
    };
    let src = ip.src();
    let hl = ip.header_len();
    // RFC 1122 3.2.2: never about an ICMP error, a non-first fragment, a broadcast or
    // multicast source, or a packet of our own.
    let about_icmp_error =
        ip.protocol() == ipv4::PROTO_ICMP && f.len() > L3 + hl && icmpv4::is_error(f[L3 + hl]);
    if m.flags & flags::LOCAL_ORIGIN != 0
        || ip.frag_offset() != 0
        || about_icmp_error
        || src == [0; 4]
        || src[0] >= 224
    {
        return cx.drop(b, i, cause);
    }
    if !cx.icmp_token() {
        cx.counters.drops[cause as usize] += 1;
        return cx.drop(b, i, R::IcmpRateLimited);
    }
    // The original is dropped: count why, then reuse its buffer for the error.
    cx.counters.drops[cause as usize] += 1;
    // (A multi-buffer frame was cut to its first buffer: quote only what is there.)
    let quote = usize::from(ip.total_len())
        .min(f.len() - L3)
        .min(MAX_ERROR_LEN - ipv4::MIN_HEADER_LEN - icmpv4::HEADER_LEN);
    let grow = ipv4::MIN_HEADER_LEN + icmpv4::HEADER_LEN;
    if !b.push_front(i, grow) {
        return cx.drop(b, i, R::IcmpNoHeadroom);
    }
    let total = grow + quote;
    b.set_len(i, L3 + total);
    let (ty, code, mtu) = m.icmp;
    let f = b.frame_mut(i);
    ipv4::emit(
        &mut f[L3..L3 + ipv4::MIN_HEADER_LEN],
        ICMP_TOS,
        total as u16,
        0,
        0,
        64,
        ipv4::PROTO_ICMP,
        snap.node.gateway,
        src,
    );
    icmpv4::emit_error(&mut f[L3 + ipv4::MIN_HEADER_LEN..], ty, code, mtu);
    f[12..14].copy_from_slice(&crate::wire::ethernet::ETHERTYPE_IPV4.to_be_bytes());
    let mm = &mut b.meta[i];
    mm.flags = flags::LOCAL_ORIGIN;
    mm.in_tunnel_mtu = 0;
    mm.segment_size = 0;
    cx.event(Event::IcmpErrorSent);
    cx.trace(Stage::IcmpError, || {
        format!(
            "{} -> ICMP type {ty} code {code}{} to {}",
            cause.name(),
            if mtu > 0 {
                format!(" mtu {mtu}")
            } else {
                String::new()
            },
            std::net::Ipv4Addr::from(src)
        )
    });
    // Through nat44-in: an error about a translated packet must quote it untranslated.
    b.set_next(i, Stage::Nat44In);
}
