//! Full TCP/UDP checksums for frames from a port that carries super-frames.
//!
//! A pod whose port carries super-frames keeps transmit checksum offload on (the kernel
//! needs it for GSO), so its TCP and UDP checksums are *partial*: only the pseudo-header
//! sum, the rest left to a device that AF_XDP is not. Before such a frame leaves whole
//! (toward a pod, or into a tunnel), its checksum is computed over the whole frame, tail
//! included. Recomputing an already complete checksum gives the same value.

use super::super::batch::Batch;
use super::L3;
use crate::wire::checksum;
use crate::wire::ipv4::{self, Packet};
use crate::wire::{be16, set_be16};

/// Recomputes the TCP or UDP checksum of unfragmented IPv4 frame `i` (headers in its first
/// buffer, as ip4-input checked). Anything else is left alone. A UDP checksum of 0 (none)
/// stays 0.
pub(super) fn finish(b: &mut Batch, i: usize) {
    let f = b.frame(i);
    let Ok(ip) = Packet::new_checked(&f[L3..]) else {
        return;
    };
    if ip.is_fragment() {
        return;
    }
    let (proto, hl, total) = (ip.protocol(), ip.header_len(), usize::from(ip.total_len()));
    let (src, dst) = (ip.src(), ip.dst());
    let at = match proto {
        ipv4::PROTO_TCP => 16,
        ipv4::PROTO_UDP => 6,
        _ => return,
    };
    let l4 = L3 + hl;
    if f.len() < l4 + at + 2 || total < hl + at + 2 || b.frame_len(i) < L3 + total {
        return;
    }
    if proto == ipv4::PROTO_UDP && be16(f, l4 + at) == 0 {
        return;
    }
    let l4_len = total - hl;
    let head_end = f.len().min(L3 + total);
    let mut acc = checksum::pseudo_header(src, dst, proto, l4_len as u16);
    // The checksum field counts as zero.
    acc = checksum::sum(&f[l4..l4 + at], acc);
    acc = checksum::sum(&f[l4 + at + 2..head_end], acc);
    let tail_len = L3 + total - head_end;
    if tail_len > 0 {
        let t = fold(checksum::sum(&b.tail(i)[..tail_len], 0));
        // A tail starting at an odd offset of the segment sums with its bytes swapped.
        let odd = (head_end - (l4 + at + 2)) % 2 == 1;
        acc += u32::from(if odd { t.swap_bytes() } else { t });
    }
    let mut c = checksum::finish(acc);
    if proto == ipv4::PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    set_be16(b.frame_mut(i), l4 + at, c);
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}
