//! ip4-input: header validation (version, IHL, lengths, checksum, fragment bounds), padding
//! trim, martian and anti-spoofing source checks.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::tables::PortKind;
use crate::wire::ipv4::{self, Packet};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let f = b.frame(i);
    let Ok(ip) = Packet::new_checked(&f[L3..]) else {
        return cx.drop(b, i, R::Ip4Truncated);
    };
    if ip.version() != 4 {
        return cx.drop(b, i, R::Ip4BadVersion);
    }
    let hl = ip.header_len();
    let total = usize::from(ip.total_len());
    let avail = b.frame_len(i) - L3;
    if hl < ipv4::MIN_HEADER_LEN || hl > total {
        return cx.drop(b, i, R::Ip4BadIhl);
    }
    if total > avail {
        return cx.drop(b, i, R::Ip4TotalLenExceedsFrame);
    }
    if !ip.checksum_ok() {
        return cx.drop(b, i, R::Ip4BadChecksum);
    }
    if b.is_chained(i) {
        if ip.is_fragment() {
            return cx.drop(b, i, R::ChainFragment);
        }
        // Every stage reads and rewrites headers in the first buffer only.
        let l4 = match ip.protocol() {
            ipv4::PROTO_TCP => 20,
            ipv4::PROTO_UDP => 8,
            _ => 0,
        };
        if f.len() < L3 + hl + l4
            || (l4 == 20 && f.len() < L3 + hl + usize::from(f[L3 + hl + 12] >> 4) * 4)
        {
            return cx.drop(b, i, R::ChainHeadersSplit);
        }
    }
    // What the kernel's reassembly discards too: an empty fragment, or one ending past the
    // largest datagram.
    if ip.is_fragment() && (total == hl || ip.frag_offset() + total > usize::from(u16::MAX)) {
        return cx.drop(b, i, R::Ip4BadFragment);
    }
    let src = ip.src();
    let m = b.meta[i];
    if m.flags & flags::LOCAL_ORIGIN == 0 {
        if src == [0; 4] || src[0] == 127 || src[0] >= 224 {
            return cx.drop(b, i, R::Ip4MartianSrc);
        }
        if m.flags & flags::DECAPPED == 0 {
            let port = snap.port(m.in_port);
            if port.is_some_and(|p| p.kind == PortKind::Pod && p.ip != Some(src)) {
                return cx.drop(b, i, R::Ip4SpoofedSrc);
            }
        }
    }
    if total < avail {
        // Ethernet padding (or trailing junk) past the IPv4 total length.
        b.truncate_chain(i, L3 + total);
        cx.event(Event::PaddingTrimmed);
    }
    cx.trace(Stage::Ip4Input, || {
        let ip = Packet::new_checked(&b.frame(i)[L3..]).ok();
        ip.map_or(String::new(), |ip| {
            format!(
                "{} -> {} proto {} ttl {} len {}{}",
                ip.src_addr(),
                ip.dst_addr(),
                ip.protocol(),
                ip.ttl(),
                ip.total_len(),
                if ip.is_fragment() { " fragment" } else { "" }
            )
        })
    });
    b.set_next(i, Stage::Nat44In);
}
