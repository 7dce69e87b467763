//! A batch of frames in fixed-size slots with headroom, plus per-packet metadata.
//!
//! Frames are copied into slots on receive; every stage rewrites them in place. Headroom
//! lets encapsulation and ICMP errors grow a frame at the front without moving it. Spare
//! slots past the receive batch hold frames the pipeline creates (IPv4 fragments).
//!
//! A frame larger than one slot (a multi-buffer AF_XDP frame: a TCP super-frame from a pod
//! whose port carries them) is a *chain*: its first buffer, with all the headers, in the
//! slot; the rest of its bytes in the slot's *tail*, a contiguous range of the batch's tail
//! arena (preallocated with the batch, handed out in order, reset by `clear`: no allocation
//! per packet). Stages read and rewrite headers in `frame`; the few that need the whole
//! frame use `chain`. A stage that cannot handle a chain drops it by name.

use super::drop::DropReason;
use super::stage::Stage;
use crate::tables::PortId;

pub const BATCH_SIZE: usize = 64;
pub const SPARE_SLOTS: usize = 64;
pub const SLOTS: usize = BATCH_SIZE + SPARE_SLOTS;
pub const SLOT_SIZE: usize = 4096;
pub const HEADROOM: usize = 256;
/// Largest frame a port may receive (defined in `limits`, which the table builder reads).
pub const MAX_FRAME: usize = crate::limits::MAX_FRAME;
const _: () = assert!(MAX_FRAME == SLOT_SIZE - HEADROOM);
/// Bytes of the tail arena: room for every receive slot to hold a 64 KiB super-frame.
pub const TAIL_ARENA: usize = BATCH_SIZE * 65536;
/// Largest chained frame: the largest IPv4 packet, its Ethernet header and a VLAN tag.
pub const MAX_CHAIN_FRAME: usize = 65535 + 14 + 4;
/// Bytes per segment assumed when reserving spare slots for a chained frame (a VXLAN path's
/// segment; a smaller path needs more, and ip4-tso then drops by name if they are missing).
pub const SEGMENT_ESTIMATE: usize = 1400;
/// Most buffers a received chain may have (the AF_XDP descriptors of one frame).
pub const MAX_CHAIN_BUFS: usize = super::tso::MAX_CHAIN;

/// Per-packet flags.
pub mod flags {
    /// The frame came out of a tunnel on this node (never decapsulate again).
    pub const DECAPPED: u8 = 1;
    /// Generated here (echo reply, ICMP error): no TTL decrement, no source checks.
    pub const LOCAL_ORIGIN: u8 = 2;
    /// Translated by nat44-in (Service DNAT or a conntrack hit): the underlay source checks of
    /// ip4-lookup do not apply.
    pub const NAT: u8 = 4;
    /// Received from a port that hands over TCP super-frames (GSO): a TCP segment larger
    /// than its path is cut to the path by ip4-tso instead of being refused with
    /// fragmentation-needed.
    pub const SUPER: u8 = 8;
    /// nat44-in found the packet's flow in conntrack (an established flow, a reply): the
    /// netpol stage lets it through without evaluating rules.
    pub const TRACKED: u8 = 16;
    /// From a super-frame port and leaving whole toward a pod: its TCP/UDP checksum (partial
    /// as the pod left it) is still to be completed, by the pod's port (transmit checksum
    /// offload) or in software, when the batch's checksums are settled after the pipeline
    /// (`Pipeline::settle_checksums`).
    pub const CSUM_PENDING: u8 = 32;
    /// Held by nat44-in (a fragment that came before its first fragment): its slot ends
    /// `Done` with nothing sent, and the frame waits in the fragment table.
    pub const HELD: u8 = 64;
}

/// A checksum left to the transmitting port, as the kernel's `csum_start`/`csum_offset`:
/// the bytes from `start` to the end of the frame are summed (the checksum field holds the
/// pseudo-header sum) and the result is stored at `start + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxCsum {
    pub start: u16,
    pub offset: u16,
}

/// What the transmitting port is told of a frame beyond its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxInfo {
    /// A checksum the port must complete (transmit offload), if any.
    pub csum: Option<TxCsum>,
    /// For a TCP super-frame, the payload bytes per segment: its sender's (`Meta::segment_size`)
    /// or, for one ip4-gro coalesced, the segments' own; 0 when unknown. A port that hands
    /// super-frames on whole (a tap's `gso_size`) describes them with it.
    pub segment_size: u16,
}

#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub start: u16,
    pub end: u16,
    pub in_port: PortId,
    pub out_port: PortId,
    pub next: Stage,
    /// Stage to continue with after fragmentation.
    pub after_frag: Stage,
    pub drop: Option<DropReason>,
    pub flags: u8,
    /// Index of the FIB entry chosen by ip4-lookup.
    pub route: u32,
    /// Peer the frame was decapsulated from.
    pub peer: u16,
    /// MTU of the tunnel the frame arrived through (0 if none): MSS clamping on ingress.
    pub in_tunnel_mtu: u16,
    /// Pending ICMP error: type, code, next-hop MTU; and the reason to count if suppressed.
    pub icmp: (u8, u8, u16),
    pub icmp_cause: Option<DropReason>,
    /// The receive slot this frame came from (fragments keep their original's).
    pub parent: u8,
    /// Offset of the frame's tail in the tail arena, and its length (0: not chained).
    pub tail_at: u32,
    pub tail_len: u32,
    /// Checksum left to the output port (set by `Pipeline::settle_checksums`).
    pub tx_csum: Option<TxCsum>,
    /// Payload bytes per segment of a super-frame, 0 when unknown: the size its sender asked
    /// for (its port's `RxInfo::segment_size`; ip4-tso cuts to no more than this), or that of
    /// the segments ip4-gro coalesced into it. Given to the output port (`TxInfo`).
    pub segment_size: u16,
}

impl Meta {
    const EMPTY: Meta = Meta {
        start: 0,
        end: 0,
        in_port: 0,
        out_port: 0,
        next: Stage::Done,
        after_frag: Stage::Done,
        drop: None,
        flags: 0,
        route: 0,
        peer: 0,
        in_tunnel_mtu: 0,
        icmp: (0, 0, 0),
        icmp_cause: None,
        parent: 0,
        tail_at: 0,
        tail_len: 0,
        tx_csum: None,
        segment_size: 0,
    };
}

pub struct Batch {
    data: Box<[u8]>,
    pub meta: [Meta; SLOTS],
    len: usize,
    /// Tails of chained frames (see the module docs), and how much of it is handed out.
    tails: Box<[u8]>,
    tails_used: usize,
    /// Spare slots the chained frames taken so far may need for their segments.
    spare_promised: usize,
    /// One bit per slot for each stage: the packets waiting for that stage.
    pub(crate) pending: [u128; Stage::COUNT],
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Batch {
            data: vec![0u8; SLOTS * SLOT_SIZE].into_boxed_slice(),
            meta: [Meta::EMPTY; SLOTS],
            len: 0,
            tails: vec![0u8; TAIL_ARENA].into_boxed_slice(),
            tails_used: 0,
            spare_promised: 0,
            pending: [0; Stage::COUNT],
        }
    }

    /// Empties the batch for reuse (no deallocation).
    pub fn clear(&mut self) {
        self.len = 0;
        self.tails_used = 0;
        self.spare_promised = 0;
        self.pending = [0; Stage::COUNT];
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Receive slots still free in this batch.
    pub fn rx_room(&self) -> usize {
        BATCH_SIZE.saturating_sub(self.len)
    }

    /// Copies a received frame into the next slot; returns false (frame not taken) when the
    /// receive part of the batch is full. Frames longer than `MAX_FRAME` are taken truncated
    /// to nothing but marked so ethernet-input drops them as `frame_too_long`.
    pub fn push_rx(&mut self, port: PortId, frame: &[u8]) -> bool {
        if self.len >= BATCH_SIZE {
            return false;
        }
        let i = self.len;
        self.len += 1;
        let base = i * SLOT_SIZE + HEADROOM;
        let n = frame.len().min(MAX_FRAME);
        self.data[base..base + n].copy_from_slice(&frame[..n]);
        self.meta[i] = Meta {
            start: HEADROOM as u16,
            end: (HEADROOM + n) as u16,
            in_port: port,
            parent: i as u8,
            ..Meta::EMPTY
        };
        if frame.len() > MAX_FRAME {
            // Keep an impossible length so ethernet-input can name the drop.
            self.meta[i].end = self.meta[i].start;
            self.meta[i].drop = Some(DropReason::FrameTooLong);
        }
        self.set_next(i, Stage::EthInput);
        true
    }

    /// Copies a received chain of buffers (an AF_XDP multi-buffer frame: `chain[0]` first)
    /// into the next slot: the first buffer into the slot, the others into the slot's tail.
    /// `super_frames`: the port hands over TCP super-frames (sets `flags::SUPER`). Returns
    /// false (frame not taken) when the receive part of the batch is full. A chain that
    /// cannot be held is taken empty and marked for ethernet-input to drop by name: more
    /// buffers than `MAX_CHAIN_BUFS` or more bytes than `MAX_CHAIN_FRAME`
    /// (`frame_too_long`), a first buffer longer than a slot (`frame_too_long`), an empty
    /// buffer (`chain_empty_buffer`), or no room left in the tail arena (`chain_no_buffer`).
    ///
    /// A chained frame may be cut into up to one segment per `SEGMENT_ESTIMATE` bytes, each
    /// in a spare slot: a chain whose segments would not fit the spare slots left by the
    /// chains already taken is refused (false) unless the batch is empty, so that the port
    /// keeps it for the next batch instead of ip4-tso dropping it for want of slots.
    pub fn push_rx_chain(&mut self, port: PortId, chain: &[&[u8]], super_frames: bool) -> bool {
        let Some((first, rest)) = chain.split_first() else {
            return self.push_rx(port, &[]);
        };
        let promise = if rest.is_empty() {
            0
        } else {
            let len: usize = chain.iter().map(|b| b.len()).sum();
            len.div_ceil(SEGMENT_ESTIMATE)
        };
        if self.len > 0 && self.spare_promised + promise > SPARE_SLOTS {
            return false;
        }
        self.spare_promised += promise;
        if !self.push_rx(port, first) {
            return false;
        }
        let i = self.len - 1;
        if super_frames {
            self.meta[i].flags |= flags::SUPER;
        }
        if rest.is_empty() || self.meta[i].drop.is_some() {
            return true;
        }
        let tail: usize = rest.iter().map(|b| b.len()).sum();
        let refuse = if chain.len() > MAX_CHAIN_BUFS || first.len() + tail > MAX_CHAIN_FRAME {
            Some(DropReason::FrameTooLong)
        } else if chain.iter().any(|b| b.is_empty()) {
            Some(DropReason::ChainEmptyBuffer)
        } else if self.tails_used + tail > self.tails.len() {
            Some(DropReason::ChainNoBuffer)
        } else {
            None
        };
        if let Some(r) = refuse {
            self.meta[i].end = self.meta[i].start;
            self.meta[i].drop = Some(r);
            return true;
        }
        let at = self.tails_used;
        let mut o = at;
        for b in rest {
            self.tails[o..o + b.len()].copy_from_slice(b);
            o += b.len();
        }
        self.tails_used = o;
        self.meta[i].tail_at = at as u32;
        self.meta[i].tail_len = tail as u32;
        true
    }

    /// Records the segment size the sender of the frame taken last asked for (see
    /// `Meta::segment_size`).
    pub fn set_last_segment_size(&mut self, size: u16) {
        if let Some(m) = self.len.checked_sub(1).map(|i| &mut self.meta[i]) {
            m.segment_size = size;
        }
    }

    /// Like `push_rx`, for a port that hands over TCP super-frames (sets `flags::SUPER`).
    pub fn push_rx_super(&mut self, port: PortId, frame: &[u8]) -> bool {
        if !self.push_rx(port, frame) {
            return false;
        }
        self.meta[self.len - 1].flags |= flags::SUPER;
        true
    }

    /// True when frame `i` continues past its first buffer (see the module docs).
    #[inline]
    pub fn is_chained(&self, i: usize) -> bool {
        self.meta[i].tail_len > 0
    }

    /// The tail of frame `i` (empty when it is not chained).
    #[inline]
    pub fn tail(&self, i: usize) -> &[u8] {
        let m = &self.meta[i];
        let at = m.tail_at as usize;
        &self.tails[at..at + m.tail_len as usize]
    }

    /// Frame `i` as a chain of buffers: the first buffer (`frame`), then its tail.
    #[inline]
    pub fn chain(&self, i: usize) -> ([&[u8]; 2], usize) {
        let n = if self.is_chained(i) { 2 } else { 1 };
        ([self.frame(i), self.tail(i)], n)
    }

    /// Length of the whole frame `i`, tail included.
    #[inline]
    pub fn frame_len(&self, i: usize) -> usize {
        let m = &self.meta[i];
        usize::from(m.end - m.start) + m.tail_len as usize
    }

    /// Cuts frame `i` to `len` bytes, tail included (shortens the tail first; a frame cut
    /// into its first buffer is no longer chained).
    pub fn truncate_chain(&mut self, i: usize, len: usize) {
        let head = usize::from(self.meta[i].end - self.meta[i].start);
        if len >= head {
            let t = (len - head).min(self.meta[i].tail_len as usize);
            self.meta[i].tail_len = t as u32;
        } else {
            self.meta[i].tail_len = 0;
            self.set_len(i, len);
        }
    }

    /// Makes the bytes from offset `from` of each frame in `members` (one bit per slot,
    /// copied in slot order) the tail of single-buffer frame `i` (GRO: the payloads of the
    /// segments that join the first). Returns false, changing nothing, when `i` is already
    /// chained or the tail arena has no room left.
    pub fn gather_tail(&mut self, i: usize, members: u128, from: usize) -> bool {
        if self.is_chained(i) {
            return false;
        }
        let mut need = 0;
        let mut m = members;
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            m &= m - 1;
            need += self.frame(j).len().saturating_sub(from);
        }
        if need == 0 || self.tails_used + need > self.tails.len() {
            return false;
        }
        let at = self.tails_used;
        let mut o = at;
        let mut m = members;
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            m &= m - 1;
            let mj = &self.meta[j];
            let base = j * SLOT_SIZE;
            let (s, e) = (usize::from(mj.start), usize::from(mj.end));
            if e - s <= from {
                continue;
            }
            let src = &self.data[base + s + from..base + e];
            self.tails[o..o + src.len()].copy_from_slice(src);
            o += src.len();
        }
        self.tails_used = o;
        self.meta[i].tail_at = at as u32;
        self.meta[i].tail_len = need as u32;
        true
    }

    /// Forgets frame `i`'s tail: what remains is its first buffer.
    #[inline]
    pub fn unchain(&mut self, i: usize) {
        self.meta[i].tail_len = 0;
    }

    /// Takes a spare slot for a frame the pipeline creates; `None` when all are used.
    pub fn alloc(&mut self) -> Option<usize> {
        if self.len >= SLOTS {
            return None;
        }
        let i = self.len;
        self.len += 1;
        self.meta[i] = Meta {
            start: HEADROOM as u16,
            end: HEADROOM as u16,
            ..Meta::EMPTY
        };
        Some(i)
    }

    #[inline]
    pub fn set_next(&mut self, i: usize, s: Stage) {
        let bit = 1u128 << i;
        self.pending[self.meta[i].next as usize] &= !bit;
        self.meta[i].next = s;
        self.pending[s as usize] |= bit;
    }

    #[inline]
    pub fn frame(&self, i: usize) -> &[u8] {
        let m = &self.meta[i];
        let base = i * SLOT_SIZE;
        &self.data[base + usize::from(m.start)..base + usize::from(m.end)]
    }

    #[inline]
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let m = &self.meta[i];
        let base = i * SLOT_SIZE;
        &mut self.data[base + usize::from(m.start)..base + usize::from(m.end)]
    }

    /// Grows the frame by `n` bytes at the front (into headroom); false if there is no room.
    #[inline]
    pub fn push_front(&mut self, i: usize, n: usize) -> bool {
        let m = &mut self.meta[i];
        if usize::from(m.start) < n {
            return false;
        }
        m.start -= n as u16;
        true
    }

    /// Removes `n` bytes from the front (caller checked the length).
    #[inline]
    pub fn pull_front(&mut self, i: usize, n: usize) {
        let m = &mut self.meta[i];
        m.start += n as u16;
    }

    /// Sets the frame length (shrinks, or grows up to the slot end); false if impossible.
    #[inline]
    pub fn set_len(&mut self, i: usize, len: usize) -> bool {
        let m = &mut self.meta[i];
        if usize::from(m.start) + len > SLOT_SIZE {
            return false;
        }
        m.end = m.start + len as u16;
        true
    }

    /// The whole slot and the frame's start offset in it (for in-place moves).
    #[inline]
    pub fn slot_mut(&mut self, i: usize) -> (&mut [u8], usize) {
        let start = usize::from(self.meta[i].start);
        (&mut self.data[i * SLOT_SIZE..(i + 1) * SLOT_SIZE], start)
    }

    /// Frame `i` to read and, to write, slot `j` from its frame start to the slot end
    /// (`j > i`: spare slots always come after the frame they are made from).
    pub fn frame_and_slot(&mut self, i: usize, j: usize) -> (&[u8], &mut [u8]) {
        assert!(j > i, "slot {j} must come after frame {i}");
        let (a, b) = self.data.split_at_mut(j * SLOT_SIZE);
        let mi = &self.meta[i];
        let src = &a[i * SLOT_SIZE + usize::from(mi.start)..i * SLOT_SIZE + usize::from(mi.end)];
        let dst = &mut b[usize::from(self.meta[j].start)..SLOT_SIZE];
        (src, dst)
    }

    /// Frame `i` as a chain (first buffer, tail) to read and, to write, slot `j` from its
    /// frame start to the slot end (`j > i`, as for `frame_and_slot`).
    pub fn write_from_chain(&mut self, i: usize, j: usize, f: impl FnOnce(&[&[u8]], &mut [u8])) {
        let at = self.meta[i].tail_at as usize;
        let tail = &self.tails[at..at + self.meta[i].tail_len as usize];
        let (src, dst) = {
            assert!(j > i, "slot {j} must come after frame {i}");
            let (a, b) = self.data.split_at_mut(j * SLOT_SIZE);
            let mi = &self.meta[i];
            let src =
                &a[i * SLOT_SIZE + usize::from(mi.start)..i * SLOT_SIZE + usize::from(mi.end)];
            (src, &mut b[usize::from(self.meta[j].start)..SLOT_SIZE])
        };
        if tail.is_empty() {
            f(&[src], dst);
        } else {
            f(&[src, tail], dst);
        }
    }

    /// Copies `range` of slot `from`'s frame to offset `to_off` of slot `to`'s frame.
    pub fn copy_range(
        &mut self,
        from: usize,
        range: std::ops::Range<usize>,
        to: usize,
        to_off: usize,
    ) {
        let src = from * SLOT_SIZE + usize::from(self.meta[from].start);
        let dst = to * SLOT_SIZE + usize::from(self.meta[to].start) + to_off;
        self.data
            .copy_within(src + range.start..src + range.end, dst);
    }

    /// Frames to send, grouped per output port (port order, then slot order).
    pub fn outputs(&self) -> impl Iterator<Item = (PortId, &[u8])> + '_ {
        let mut order: Vec<(PortId, usize)> = (0..self.len)
            .filter(|&i| self.meta[i].next == Stage::Out)
            .map(|i| (self.meta[i].out_port, i))
            .collect();
        order.sort_unstable();
        // Chained frames show their first buffer only: use `for_each_output` to send.
        order.into_iter().map(move |(p, i)| (p, self.frame(i)))
    }

    /// Calls `f(port, chain, tx)` for every output frame, grouped per port, without
    /// allocating: `chain` is the frame's first buffer, and its tail when it is chained;
    /// `tx` what the port must do beyond sending the bytes.
    pub fn for_each_output(&self, mut f: impl FnMut(PortId, &[&[u8]], TxInfo)) {
        let mut mask = self.pending[Stage::Out as usize];
        while mask != 0 {
            let first = mask.trailing_zeros() as usize;
            let port = self.meta[first].out_port;
            let mut m = mask;
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                if self.meta[i].out_port == port {
                    let (c, n) = self.chain(i);
                    let tx = TxInfo {
                        csum: self.meta[i].tx_csum,
                        segment_size: self.meta[i].segment_size,
                    };
                    f(port, &c[..n], tx);
                    mask &= !(1u128 << i);
                }
            }
        }
    }
}
