//! IPv4 fragments in nat44-in, without reassembly (the table: `pipeline::frag_table`).
//!
//! - The first fragment (offset 0, MF) carries the L4 header: it is translated like a whole
//!   packet (conntrack, endpoint choice, address and port rewrite, incremental L4 checksum
//!   update: the checksum covers the whole datagram, so updating it over the changed words
//!   stays right) and its outcome is recorded under (source, destination, protocol, IP id).
//! - A later fragment takes the recorded addresses (IPv4 checksum updated incrementally), or
//!   is dropped (`nat_fragment_head_dropped`) when its first fragment was.
//! - A later fragment with nothing recorded passes unchanged when no translation can concern
//!   it (neither address is a Service frontend, an endpoint, the node or gateway address, nor
//!   is it pod traffic leaving masqueraded). Otherwise it is held, a bounded number per
//!   datagram and overall, until its first fragment releases it into a spare slot of the
//!   batch; one not held is dropped (`nat_fragment_unknown`), one held too long is counted as
//!   `nat_fragment_expired`.
//! - A first fragment too short to carry its L4 header is dropped (`nat_fragment`) when it
//!   may concern a translation, and so are the later fragments of its datagram.
//!
//! Not covered: the ICMP checksum of a fragmented ICMP error (recomputed over the first
//! fragment only); translated datagrams keep their IP id, as with kernel NAT.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::frag_table::{FragKey, FragVerdict, HOLD_PER_DATAGRAM, HeldMeta};
use super::super::stage::Stage;
use super::{L3, nat44_in};
use crate::tables::services::{ADDR_ENDPOINT, ADDR_FRONTEND};
use crate::wire::ipv4::{self, Packet};
use crate::wire::{be16, icmpv4, ip4, tcp};
use std::net::Ipv4Addr;

/// The datagram key, payload length, offset and "last fragment" of the packet at `L3`
/// (validated by ip4-input, padding trimmed).
#[inline]
fn fields(f: &[u8]) -> (FragKey, u32, u32, bool) {
    let ip = &f[L3..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let ff = be16(ip, 6);
    let key = FragKey {
        src: ip4(ip, 12),
        dst: ip4(ip, 16),
        proto: ip[9],
        id: be16(ip, 4),
    };
    let payload = ip.len().saturating_sub(hl) as u32;
    let offset = u32::from(ff & ipv4::FRAG_OFFSET_MASK) * 8;
    (key, payload, offset, ff & ipv4::FLAG_MF == 0)
}

/// Expires held fragments whose first fragment never came (once per stage call).
pub(super) fn expire(cx: &mut Cx<'_>) {
    let n = cx.frags.expire_held(cx.now_ns);
    cx.counters.drops[R::NatFragmentExpired as usize] += n as u64;
}

/// A first fragment: translated by `flow` like a whole packet, its outcome recorded, its
/// datagram's held fragments released.
pub(super) fn first(
    cx: &mut Cx<'_>,
    b: &mut Batch,
    i: usize,
    flow: fn(&mut Cx<'_>, &mut Batch, usize),
) {
    let (key, payload, _, _) = fields(b.frame(i));
    let was_local = b.meta[i].flags & flags::LOCAL_ORIGIN != 0;
    let min = match key.proto {
        ipv4::PROTO_TCP => tcp::MIN_HEADER_LEN as u32,
        ipv4::PROTO_UDP => 8,
        ipv4::PROTO_ICMP => icmpv4::HEADER_LEN as u32,
        _ => 0,
    };
    if payload < min && !was_local && may_translate(cx, b, i, &key) {
        cx.drop(b, i, R::NatFragment);
    } else {
        flow(cx, b, i);
    }
    let m = b.meta[i];
    // A rejected TCP segment comes back as a locally made RST: not this datagram.
    let verdict = if m.next == Stage::Ip4Lookup && (was_local || m.flags & flags::LOCAL_ORIGIN == 0)
    {
        let f = b.frame(i);
        FragVerdict::Pass {
            src: ip4(f, L3 + 12),
            dst: ip4(f, L3 + 16),
        }
    } else {
        FragVerdict::Drop
    };
    if cx.frags.insert(key, verdict, payload, cx.now_ns) {
        cx.event(Event::NatFragmentEvicted);
    }
    cx.trace(Stage::Nat44In, || {
        format!(
            "first fragment of datagram id {} ({} -> {}): recorded {}",
            key.id,
            Ipv4Addr::from(key.src),
            Ipv4Addr::from(key.dst),
            match verdict {
                FragVerdict::Pass { src, dst } =>
                    format!("{} -> {}", Ipv4Addr::from(src), Ipv4Addr::from(dst)),
                FragVerdict::Drop => "drop".into(),
            }
        )
    });
    release(cx, b, i, &key);
}

/// Sends the held fragments of datagram `key` on, each in a spare slot of the batch.
fn release(cx: &mut Cx<'_>, b: &mut Batch, parent: usize, key: &FragKey) {
    for _ in 0..HOLD_PER_DATAGRAM {
        let Some(s) = cx.frags.find_held(key) else {
            return;
        };
        let h = *cx.frags.held_meta(s);
        if h.generation != cx.snap.generation {
            cx.frags.release(s);
            cx.counters.drops[R::NatFragmentTablesChanged as usize] += 1;
            continue;
        }
        let Some(j) = b.alloc() else {
            cx.frags.release(s);
            cx.counters.drops[R::NatFragmentUnknown as usize] += 1;
            continue;
        };
        b.set_len(j, usize::from(h.len));
        b.frame_mut(j).copy_from_slice(cx.frags.held_frame(s));
        cx.frags.release(s);
        let origin = b.meta[parent].parent;
        let m = &mut b.meta[j];
        m.in_port = h.in_port;
        m.flags = h.flags;
        m.peer = h.peer;
        m.in_tunnel_mtu = h.in_tunnel_mtu;
        m.parent = origin;
        cx.event(Event::NatFragmentReleased);
        later(cx, b, j, false);
    }
}

/// A fragment after the first (`may_hold`: false for one just released from the hold).
pub(super) fn later(cx: &mut Cx<'_>, b: &mut Batch, i: usize, may_hold: bool) {
    if b.meta[i].flags & flags::LOCAL_ORIGIN != 0 {
        return b.set_next(i, Stage::Ip4Lookup);
    }
    let (key, payload, offset, last) = fields(b.frame(i));
    match cx.frags.lookup(&key, offset, payload, last, cx.now_ns) {
        Some(FragVerdict::Pass { src, dst }) => {
            if src != key.src || dst != key.dst {
                if let Ok(mut ip) = Packet::new_checked(&mut b.frame_mut(i)[L3..]) {
                    if src != key.src {
                        ip.rewrite_src(src);
                    }
                    if dst != key.dst {
                        ip.rewrite_dst(dst);
                    }
                }
                b.meta[i].flags |= flags::NAT;
                cx.event(Event::NatFragmentTranslated);
            }
            cx.trace(Stage::Nat44In, || {
                format!(
                    "fragment at offset {offset} of datagram id {}: {} -> {}",
                    key.id,
                    Ipv4Addr::from(src),
                    Ipv4Addr::from(dst)
                )
            });
            b.set_next(i, Stage::Ip4Lookup);
        }
        Some(FragVerdict::Drop) => cx.drop(b, i, R::NatFragmentHeadDropped),
        None if !may_translate(cx, b, i, &key) => b.set_next(i, Stage::Ip4Lookup),
        None if !may_hold => cx.drop(b, i, R::NatFragmentUnknown),
        None => {
            let m = b.meta[i];
            let meta = HeldMeta {
                key,
                in_port: m.in_port,
                flags: m.flags,
                peer: m.peer,
                in_tunnel_mtu: m.in_tunnel_mtu,
                generation: cx.snap.generation,
                ..HeldMeta::default()
            };
            match cx.frags.hold(meta, b.frame(i), cx.now_ns) {
                Ok(()) => {
                    cx.event(Event::NatFragmentHeld);
                    cx.trace(Stage::Nat44In, || {
                        format!(
                            "fragment at offset {offset} of datagram id {} held until its first fragment",
                            key.id
                        )
                    });
                    b.meta[i].flags |= flags::HELD;
                    b.set_next(i, Stage::Done);
                }
                Err(_) => cx.drop(b, i, R::NatFragmentUnknown),
            }
        }
    }
}

/// Whether a translation may concern the datagram (decided without ports).
fn may_translate(cx: &Cx<'_>, b: &Batch, i: usize, key: &FragKey) -> bool {
    let snap = cx.snap;
    snap.nat.service_cidr.contains(u32::from_be_bytes(key.dst))
        || key.dst == snap.node.address
        || key.dst == snap.node.gateway
        || snap.services.addr_kind(key.dst) & ADDR_FRONTEND != 0
        || snap.services.addr_kind(key.src) & ADDR_ENDPOINT != 0
        || nat44_in::masquerade(cx, b, i)
}
