//! Full TCP/UDP checksums for frames from a port that carries super-frames.
//!
//! A pod whose port carries super-frames keeps transmit checksum offload on (the kernel
//! needs it for GSO), so its TCP and UDP checksums are *partial*: only the pseudo-header
//! sum, the rest left to a device that AF_XDP is not. Before such a frame leaves whole into
//! a tunnel or toward anything but a pod, its checksum is computed over the whole frame,
//! tail included (`finish`). Toward a pod it is only marked (`defer`), and settled once the
//! pipeline is done (`settle`): left to the pod's port when that port offloads transmit
//! checksums (AF_XDP transmit metadata: the pod's kernel takes it as a locally offloaded
//! checksum, as from a veth), else finished here. Recomputing an already complete checksum
//! gives the same value, so a pod that did complete its checksums loses nothing.

use super::super::batch::{Batch, TxCsum, flags};
use super::L3;
use crate::wire::checksum;
use crate::wire::ethernet;
use crate::wire::ipv4::{self, Packet};
use crate::wire::{be16, set_be16};

/// Where the TCP/UDP checksum of an unfragmented IPv4 frame lies.
struct Loc {
    /// Offset of the l4 header in the frame.
    l4: usize,
    /// Offset of the checksum field in the l4 header.
    at: usize,
    /// Pseudo-header sum (not folded).
    pseudo: u32,
    /// Bytes of l4 header and payload.
    l4_len: usize,
    udp: bool,
}

/// The checksum of frame `i`, its IPv4 header at `l3` (headers in the first buffer, as
/// ip4-input checked). `None` for anything else, and for a UDP datagram sent without a
/// checksum (0 stays 0).
fn locate(b: &Batch, i: usize, l3: usize) -> Option<Loc> {
    let f = b.frame(i);
    let ip = Packet::new_checked(f.get(l3..)?).ok()?;
    if ip.is_fragment() {
        return None;
    }
    let (proto, hl, total) = (ip.protocol(), ip.header_len(), usize::from(ip.total_len()));
    let at = match proto {
        ipv4::PROTO_TCP => 16,
        ipv4::PROTO_UDP => 6,
        _ => return None,
    };
    let l4 = l3 + hl;
    if f.len() < l4 + at + 2 || total < hl + at + 2 || b.frame_len(i) < l3 + total {
        return None;
    }
    if proto == ipv4::PROTO_UDP && be16(f, l4 + at) == 0 {
        return None;
    }
    let l4_len = total - hl;
    Some(Loc {
        l4,
        at,
        pseudo: checksum::pseudo_header(ip.src(), ip.dst(), proto, l4_len as u16),
        l4_len,
        udp: proto == ipv4::PROTO_UDP,
    })
}

/// Recomputes the TCP or UDP checksum of frame `i` (IPv4 at `L3`). Anything else is left
/// alone.
pub(super) fn finish(b: &mut Batch, i: usize) {
    finish_at(b, i, L3);
}

fn finish_at(b: &mut Batch, i: usize, l3: usize) {
    let Some(Loc {
        l4,
        at,
        pseudo,
        l4_len,
        udp,
    }) = locate(b, i, l3)
    else {
        return;
    };
    let f = b.frame(i);
    let end = l4 + l4_len;
    let head_end = f.len().min(end);
    // The checksum field counts as zero.
    let mut acc = checksum::sum(&f[l4..l4 + at], pseudo);
    acc = checksum::sum(&f[l4 + at + 2..head_end], acc);
    let tail_len = end - head_end;
    if tail_len > 0 {
        let t = checksum::fold(checksum::sum(&b.tail(i)[..tail_len], 0));
        // A tail starting at an odd offset of the segment sums with its bytes swapped.
        let odd = (head_end - (l4 + at + 2)) % 2 == 1;
        acc += u32::from(if odd { t.swap_bytes() } else { t });
    }
    let mut c = checksum::finish(acc);
    if udp && c == 0 {
        c = 0xffff;
    }
    set_be16(b.frame_mut(i), l4 + at, c);
}

/// Marks frame `i` (IPv4 at `L3`, from a super-frame port, leaving whole toward a pod) for
/// `settle`.
pub(super) fn defer(b: &mut Batch, i: usize) {
    b.meta[i].flags |= flags::CSUM_PENDING;
}

/// What `settle` did to a frame.
pub(in crate::pipeline) enum Settled {
    /// Left to the output port: the field holds the pseudo-header sum.
    Offloaded,
    /// Computed here.
    Finished,
    /// Not a TCP/UDP checksum to complete (fragment, other protocol, UDP without one).
    Nothing,
}

/// Completes the deferred checksum of output frame `i`: with `offload`, the checksum field
/// gets the pseudo-header sum and the frame a `TxCsum` for its port; without, the checksum
/// is computed here. Reads the frame as it leaves (after a VLAN tag was pushed).
pub(in crate::pipeline) fn settle(b: &mut Batch, i: usize, offload: bool) -> Settled {
    b.meta[i].flags &= !flags::CSUM_PENDING;
    let f = b.frame(i);
    let l3 = if f.len() >= L3 + ethernet::VLAN_TAG_LEN && be16(f, 12) == ethernet::ETHERTYPE_VLAN {
        L3 + ethernet::VLAN_TAG_LEN
    } else {
        L3
    };
    let Some(Loc { l4, at, pseudo, .. }) = locate(b, i, l3) else {
        return Settled::Nothing;
    };
    if !offload {
        finish_at(b, i, l3);
        return Settled::Finished;
    }
    // The kernel's CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header
    // sum, not complemented; the device sums from `start` to the end over it.
    set_be16(b.frame_mut(i), l4 + at, checksum::fold(pseudo));
    b.meta[i].tx_csum = Some(TxCsum {
        start: l4 as u16,
        offset: at as u16,
    });
    Settled::Offloaded
}
