//! Userspace GRO: which TCP segments may be coalesced into one super-frame, with the rules
//! of the kernel's `inet_gro_receive` / `tcp_gro_receive` (learned from their source, not
//! copied):
//!
//! - only IPv4 without options (IHL 5), unfragmented (DF allowed), the IPv4 total length
//!   equal to the frame's;
//! - a segment joins the flow's open run only when it has the same addresses and ports, the
//!   next expected sequence number, the same acknowledgement number, the same TCP header
//!   word of data offset, flags and window (FIN, PSH and CWR aside: a segment carrying CWR
//!   never joins), byte-identical TCP options (so timestamps must match exactly), the same
//!   TTL, TOS and DF bit, an IPv4 identification that increments by one per segment (or,
//!   with DF, stays the first one's), a payload of 1 to `mss` bytes (`mss`: the first
//!   segment's payload), and the merged IPv4 packet stays within 65535 bytes;
//! - a run ends after a segment shorter than `mss` or one with PSH or FIN (FIN and PSH are
//!   carried over to the super-frame's header); a segment with SYN, RST, URG, PSH or FIN, or
//!   without payload, never starts one.
//!
//! The super-frame keeps the first segment's headers with its IPv4 total length (and header
//! checksum) and its TCP flags updated. Its TCP checksum is *derived* from the segments' own
//! checksums (each segment's payload sum is what its checksum says it is, RFC 1624
//! arithmetic), never summed again over the payload: no extra pass over the data, and a
//! segment that arrived corrupted leaves the super-frame's checksum wrong, so the receiving
//! pod drops it as the kernel would have dropped the segment.
//!
//! Pure code: the stage `stages/ip4_gro.rs` applies it over a batch.

use crate::wire::checksum;
use crate::wire::ethernet;
use crate::wire::ipv4;
use crate::wire::{be16, set_be16};

use crate::wire::tcp;
/// Offset of the IPv4 header in a frame (VLAN tags are stripped at input).
const L3: usize = ethernet::HEADER_LEN;
/// Offset of the TCP header (IPv4 without options).
const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
/// Largest IPv4 packet a super-frame may become.
pub const MAX_IP_LEN: usize = 65535;

/// Why a run of segments was closed (delivered as it stands). Each is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// A segment with PSH or FIN, or shorter than the run's segment size, ended it.
    Push,
    /// Not the next expected sequence number (out of order, retransmitted, lost before).
    Seq,
    /// Different flags (SYN, RST, URG, ECE...), CWR, data offset or window.
    Flags,
    /// Different acknowledgement number.
    Ack,
    /// Different TCP options (timestamps included).
    Options,
    /// Different TTL, TOS or DF bit, or an IPv4 identification out of sequence.
    Ip,
    /// A segment without payload or larger than the run's segment size.
    Length,
    /// The super-frame would pass the largest IPv4 packet.
    Size,
    /// More flows open at once than the stage tracks: the oldest one was closed.
    Evicted,
    /// End of the batch (runs never span batches).
    BatchEnd,
}

/// The fields of a TCP segment that GRO compares, read from its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// Source and destination ports.
    pub ports: u32,
    pub seq: u32,
    pub ack: u32,
    /// TCP header bytes 12..16: data offset, flags, window.
    pub word: u32,
    pub flags: u8,
    /// TCP header length (options included).
    pub thl: usize,
    pub payload: usize,
    pub ttl: u8,
    pub tos: u8,
    pub df: bool,
    pub ident: u16,
    /// The segment's TCP checksum as received.
    pub check: u16,
}

impl Seg {
    /// Reads a segment GRO may coalesce from a single-buffer frame; `None` when it is not
    /// one (not IPv4 TCP, IPv4 options, a fragment, lengths that disagree with the frame).
    pub fn parse(f: &[u8]) -> Option<Seg> {
        if f.len() < L4 + 20 || be16(f, 12) != ethernet::ETHERTYPE_IPV4 {
            return None;
        }
        let ip = &f[L3..];
        if ip[0] != 0x45 || ip[9] != ipv4::PROTO_TCP {
            return None;
        }
        let frag = be16(ip, 6);
        if frag & (ipv4::FLAG_MF | ipv4::FRAG_OFFSET_MASK) != 0 {
            return None;
        }
        let total = usize::from(be16(ip, 2));
        let thl = usize::from(f[L4 + 12] >> 4) * 4;
        if thl < 20 || L3 + total != f.len() || total < ipv4::MIN_HEADER_LEN + thl {
            return None;
        }
        let t = &f[L4..];
        Some(Seg {
            src: [ip[12], ip[13], ip[14], ip[15]],
            dst: [ip[16], ip[17], ip[18], ip[19]],
            ports: u32::from_be_bytes([t[0], t[1], t[2], t[3]]),
            seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
            ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            word: u32::from_be_bytes([t[12], t[13], t[14], t[15]]),
            flags: t[13],
            thl,
            payload: total - ipv4::MIN_HEADER_LEN - thl,
            ttl: ip[8],
            tos: ip[1],
            df: frag & ipv4::FLAG_DF != 0,
            ident: be16(ip, 4),
            check: be16(t, 16),
        })
    }

    /// Ethernet + IPv4 + TCP header bytes.
    pub fn header_len(&self) -> usize {
        L4 + self.thl
    }

    /// Same addresses and ports (the flow; the caller compares output ports).
    pub fn same_flow(&self, o: &Seg) -> bool {
        self.src == o.src && self.dst == o.dst && self.ports == o.ports
    }

    /// May this segment start a run?
    pub fn can_start(&self) -> bool {
        self.payload > 0
            && self.flags
                & (tcp::FLAG_SYN | tcp::FLAG_RST | tcp::FLAG_URG | tcp::FLAG_PSH | tcp::FLAG_FIN)
                == 0
    }

    /// Does the run end right after this segment joined it (or started it)?
    pub fn ends_run(&self, mss: usize) -> bool {
        self.payload < mss || self.flags & (tcp::FLAG_PSH | tcp::FLAG_FIN) != 0
    }

    /// Ones'-complement sum of the payload, as the segment's own checksum states it (no pass
    /// over the payload): `pseudo + header + payload + check` sums to 0xffff for a valid
    /// segment, so `payload = -(pseudo + header + check)`. `f` is the segment's frame.
    pub fn payload_sum(&self, f: &[u8]) -> u16 {
        let len = (self.thl + self.payload) as u16;
        let mut acc = checksum::pseudo_header(self.src, self.dst, ipv4::PROTO_TCP, len);
        // The header with its checksum field: check included once.
        acc = checksum::sum(&f[L4..L4 + self.thl], acc);
        checksum::finish(acc)
    }
}

/// An open run: the first segment's fields and what has joined since.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub head: Seg,
    /// Segments in the run, the first included.
    pub count: u16,
    /// Payload bytes in the run.
    pub payload: usize,
    /// FIN and PSH of the segments that joined.
    pub flags_or: u8,
    /// Sum of the payloads as one stream (each segment's payload sum placed at its offset).
    pub payload_sum: u32,
}

impl Run {
    /// A run starting with `head` (whose frame is `f`).
    pub fn new(head: Seg, f: &[u8]) -> Run {
        Run {
            head,
            count: 1,
            payload: head.payload,
            flags_or: 0,
            payload_sum: u32::from(head.payload_sum(f)),
        }
    }

    /// The segment size of the run: the first segment's payload.
    pub fn mss(&self) -> usize {
        self.head.payload
    }

    /// Checks `s` (frame `f`) against the run (`head_f`: the first segment's frame, for its
    /// options); `Err` names why it cannot join.
    pub fn check(&self, head_f: &[u8], s: &Seg, f: &[u8]) -> Result<(), Flush> {
        let h = &self.head;
        if s.flags & tcp::FLAG_CWR != 0
            || (s.word ^ h.word) & !(u32::from(tcp::FLAG_CWR | tcp::FLAG_FIN | tcp::FLAG_PSH) << 16)
                != 0
        {
            return Err(Flush::Flags);
        }
        if s.ack != h.ack {
            return Err(Flush::Ack);
        }
        // Same data offset (checked with the flags word), so the same option length.
        if f[L4 + 20..L4 + s.thl] != head_f[L4 + 20..L4 + h.thl] {
            return Err(Flush::Options);
        }
        let id_ok = s.ident == h.ident.wrapping_add(self.count) || (s.df && s.ident == h.ident);
        if s.ttl != h.ttl || s.tos != h.tos || s.df != h.df || !id_ok {
            return Err(Flush::Ip);
        }
        if s.payload == 0 || s.payload > self.mss() {
            return Err(Flush::Length);
        }
        if s.seq != h.seq.wrapping_add(self.payload as u32) {
            return Err(Flush::Seq);
        }
        if ipv4::MIN_HEADER_LEN + h.thl + self.payload + s.payload > MAX_IP_LEN {
            return Err(Flush::Size);
        }
        Ok(())
    }

    /// Adds `s` (frame `f`), which `check` accepted.
    pub fn add(&mut self, s: &Seg, f: &[u8]) {
        let sum = s.payload_sum(f);
        // A payload starting at an odd offset of the merged stream sums with its bytes
        // swapped.
        let sum = if self.payload % 2 == 1 {
            sum.swap_bytes()
        } else {
            sum
        };
        self.payload_sum += u32::from(sum);
        self.payload += s.payload;
        self.count += 1;
        self.flags_or |= s.flags & (tcp::FLAG_FIN | tcp::FLAG_PSH);
    }

    /// Rewrites the first segment's headers in `f` (its frame, first buffer) for the merged
    /// super-frame: IPv4 total length and header checksum, TCP flags and checksum.
    pub fn finish(&self, f: &mut [u8]) {
        let h = &self.head;
        let total = ipv4::MIN_HEADER_LEN + h.thl + self.payload;
        set_be16(f, L3 + 2, total as u16);
        set_be16(f, L3 + 10, 0);
        let c = checksum::checksum(&f[L3..L4]);
        set_be16(f, L3 + 10, c);
        f[L4 + 13] |= self.flags_or;
        set_be16(f, L4 + 16, 0);
        let tcp_len = (h.thl + self.payload) as u16;
        let mut acc = checksum::pseudo_header(h.src, h.dst, ipv4::PROTO_TCP, tcp_len);
        acc = checksum::sum(&f[L4..L4 + h.thl], acc);
        acc += self.payload_sum;
        set_be16(f, L4 + 16, checksum::finish(acc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segment with `payload` bytes from `fill`, seq `seq`, flags, IP id.
    fn seg(seq: u32, payload: &[u8], flags: u8, id: u16) -> Vec<u8> {
        let mut f = vec![0u8; L4 + 32 + payload.len()];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        set_be16(&mut f, 12, 0x0800);
        let total = (20 + 32 + payload.len()) as u16;
        ipv4::emit(
            &mut f[L3..L4],
            0,
            total,
            id,
            ipv4::FLAG_DF,
            63,
            ipv4::PROTO_TCP,
            [10, 244, 1, 10],
            [10, 244, 2, 20],
        );
        set_be16(&mut f, L4, 40000);
        set_be16(&mut f, L4 + 2, 5201);
        f[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
        f[L4 + 8..L4 + 12].copy_from_slice(&99u32.to_be_bytes());
        f[L4 + 12] = 8 << 4;
        f[L4 + 13] = flags;
        set_be16(&mut f, L4 + 14, 502);
        f[L4 + 20..L4 + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6]);
        f[L4 + 32..].copy_from_slice(payload);
        let ph = checksum::pseudo_header(
            [10, 244, 1, 10],
            [10, 244, 2, 20],
            6,
            (32 + payload.len()) as u16,
        );
        let c = checksum::finish(checksum::sum(&f[L4..], ph));
        set_be16(&mut f, L4 + 16, c);
        f
    }

    #[test]
    fn derived_payload_sum_equals_the_real_one() {
        for n in [1usize, 2, 7, 1448, 1449] {
            let p: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let f = seg(1000, &p, 0x10, 1);
            let s = Seg::parse(&f).unwrap();
            let real = checksum::sum(&p, 0);
            let folded = !checksum::finish(real);
            // Ones'-complement zero has two forms; compare modulo that.
            let d = s.payload_sum(&f);
            assert!(d == folded || (d == 0xffff && folded == 0) || (d == 0 && folded == 0xffff));
        }
    }

    #[test]
    fn odd_sizes_merge_to_a_valid_checksum() {
        let a: Vec<u8> = (0..1001).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..1001).map(|i| (i * 3) as u8).collect();
        let fa = seg(5, &a, 0x10, 1);
        let fb = seg(5 + 1001, &b, 0x10, 2);
        let (sa, sb) = (Seg::parse(&fa).unwrap(), Seg::parse(&fb).unwrap());
        let mut r = Run::new(sa, &fa);
        assert_eq!(r.check(&fa, &sb, &fb), Ok(()));
        r.add(&sb, &fb);
        let mut m = fa.clone();
        m.extend_from_slice(&b);
        r.finish(&mut m);
        let ph = checksum::pseudo_header(sa.src, sa.dst, 6, (m.len() - L4) as u16);
        assert_eq!(checksum::finish(checksum::sum(&m[L4..], ph)), 0);
    }

    #[test]
    fn no_option_change_or_cwr_joins() {
        let p = [1u8; 100];
        let fa = seg(0, &p, 0x10, 1);
        let sa = Seg::parse(&fa).unwrap();
        let r = Run::new(sa, &fa);
        let mut fb = seg(100, &p, 0x10, 2);
        fb[L4 + 31] = 7; // TSecr differs
        let sb = Seg::parse(&fb).unwrap();
        assert_eq!(r.check(&fa, &sb, &fb), Err(Flush::Options));
        let fc = seg(100, &p, 0x10 | tcp::FLAG_CWR, 2);
        let sc = Seg::parse(&fc).unwrap();
        assert_eq!(r.check(&fa, &sc, &fc), Err(Flush::Flags));
    }
}
