//! Userspace TSO: cuts an IPv4 TCP super-frame into segments of at most `mss` payload bytes,
//! with the semantics of the kernel's `tcp_gso_segment` / `inet_gso_segment`:
//!
//! - every segment repeats the Ethernet, IPv4 (options included) and TCP (options included)
//!   headers of the super-frame;
//! - sequence numbers advance by the payload before each segment;
//! - FIN and PSH stay only on the last segment, CWR only on the first;
//! - the IPv4 identification increments by one per segment (from the super-frame's);
//! - total length, IPv4 header checksum and the full TCP checksum are recomputed per segment
//!   (the super-frame's own TCP checksum is never trusted: from a GSO sender it is partial).
//!
//! A super-frame is a chain of buffers: the headers all in the first, the payload continuing
//! through the others (an AF_XDP multi-buffer frame, or one batch slot). Pure code, no
//! allocation: the caller supplies the buffer each segment is written into (a spare batch
//! slot), or fixes up a segment whose bytes are already in place (`patch`).

use super::drop::DropReason;
use crate::wire::checksum;
use crate::wire::ethernet;
use crate::wire::ipv4::{self, Packet};
use crate::wire::{be16, set_be16};

/// Most buffers a super-frame may span (64 KiB in 4 KiB chunks, plus a partial one).
pub const MAX_CHAIN: usize = 17;

use crate::wire::tcp;
/// Offset of the TCP checksum in the TCP header.
const TCP_CHECK: usize = 16;

/// Why a super-frame cannot be segmented; each maps to a named drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsoError {
    /// Not an unfragmented IPv4 TCP packet with sane headers.
    NotTcp,
    /// Ethernet, IPv4 and TCP headers are not all in the first buffer.
    HeadersSplit,
    /// The chain holds fewer bytes than the IPv4 total length says, or more buffers than
    /// `MAX_CHAIN`.
    BadChain,
    /// SYN or RST on a segment that would have to be cut.
    BadFlags,
    /// The path leaves no room for payload after the headers.
    MssTooSmall,
}

impl TsoError {
    pub fn reason(self) -> DropReason {
        match self {
            TsoError::NotTcp => DropReason::TsoNotTcp,
            TsoError::HeadersSplit => DropReason::TsoHeadersSplit,
            TsoError::BadChain => DropReason::TsoBadChain,
            TsoError::BadFlags => DropReason::TsoBadFlags,
            TsoError::MssTooSmall => DropReason::TsoMssTooSmall,
        }
    }
}

/// How a validated super-frame is cut: everything `write` and `patch` need, copied out of
/// the headers so the chain can be borrowed again afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Offset of the IPv4 header (Ethernet header length).
    l3: usize,
    /// Offset of the TCP header.
    l4: usize,
    /// Ethernet + IPv4 + TCP header bytes, repeated in every segment.
    hdr_len: usize,
    payload: usize,
    mss: usize,
    seq: u32,
    ident: u16,
    flags: u8,
    src: [u8; 4],
    dst: [u8; 4],
}

impl Plan {
    /// Validates the super-frame in `chain` and plans segments of at most `mss` payload bytes.
    /// `mss` is the path MTU minus the IPv4 and TCP headers *with* their options (what the
    /// kernel's gso_size is).
    pub fn new(chain: &[&[u8]], mss: usize) -> Result<Plan, TsoError> {
        if chain.is_empty() || chain.len() > MAX_CHAIN {
            return Err(TsoError::BadChain);
        }
        let first = chain[0];
        let l3 = ethernet::HEADER_LEN;
        if first.len() < l3 + ipv4::MIN_HEADER_LEN {
            return Err(if chain.len() > 1 {
                TsoError::HeadersSplit
            } else {
                TsoError::NotTcp
            });
        }
        if be16(first, 12) != ethernet::ETHERTYPE_IPV4 {
            return Err(TsoError::NotTcp);
        }
        let ip = &first[l3..];
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let frag = be16(ip, 6) & (ipv4::FLAG_MF | ipv4::FRAG_OFFSET_MASK) != 0;
        if ip[0] >> 4 != 4 || hl < ipv4::MIN_HEADER_LEN || ip[9] != ipv4::PROTO_TCP || frag {
            return Err(TsoError::NotTcp);
        }
        let l4 = l3 + hl;
        if first.len() < l4 + 20 {
            return Err(TsoError::HeadersSplit);
        }
        let thl = usize::from(first[l4 + 12] >> 4) * 4;
        if thl < 20 {
            return Err(TsoError::NotTcp);
        }
        let hdr_len = l4 + thl;
        if first.len() < hdr_len {
            return Err(TsoError::HeadersSplit);
        }
        let total = usize::from(be16(ip, 2));
        if total < hl + thl {
            return Err(TsoError::NotTcp);
        }
        let have: usize = chain.iter().map(|b| b.len()).sum();
        if have < l3 + total {
            return Err(TsoError::BadChain);
        }
        let payload = total - hl - thl;
        let flags = first[l4 + 13];
        if payload > mss && flags & (tcp::FLAG_SYN | tcp::FLAG_RST) != 0 {
            return Err(TsoError::BadFlags);
        }
        if mss == 0 {
            return Err(TsoError::MssTooSmall);
        }
        Ok(Plan {
            l3,
            l4,
            hdr_len,
            payload,
            mss,
            seq: u32::from_be_bytes([first[l4 + 4], first[l4 + 5], first[l4 + 6], first[l4 + 7]]),
            ident: be16(ip, 4),
            flags,
            src: [ip[12], ip[13], ip[14], ip[15]],
            dst: [ip[16], ip[17], ip[18], ip[19]],
        })
    }

    /// Like `new`, with the largest MSS a path of `mtu` bytes (IPv4 packet size) carries for
    /// this super-frame's headers, options included.
    pub fn for_mtu(chain: &[&[u8]], mtu: usize) -> Result<Plan, TsoError> {
        let mut p = Plan::new(chain, usize::MAX)?;
        p.mss = mtu.saturating_sub(p.hdr_len - p.l3);
        if p.mss == 0 {
            return Err(TsoError::MssTooSmall);
        }
        if p.payload > p.mss && p.flags & (tcp::FLAG_SYN | tcp::FLAG_RST) != 0 {
            return Err(TsoError::BadFlags);
        }
        Ok(p)
    }

    /// Cuts segments of no more than `size` payload bytes when that is less than the path
    /// allows: the segment size the super-frame's sender asked for (its MSS toward the
    /// peer, its path MTU), as the kernel's TSO keeps `gso_size`. 0 changes nothing.
    pub fn at_most(mut self, size: usize) -> Result<Plan, TsoError> {
        if size > 0 && size < self.mss {
            self.mss = size;
            if self.payload > self.mss && self.flags & (tcp::FLAG_SYN | tcp::FLAG_RST) != 0 {
                return Err(TsoError::BadFlags);
            }
        }
        Ok(self)
    }

    /// Number of segments (1 when the payload already fits).
    pub fn segments(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }

    /// Length of segment `k` on the wire (Ethernet header included).
    pub fn segment_len(&self, k: usize) -> usize {
        self.hdr_len + self.payload_len(k)
    }

    /// Header bytes repeated in every segment.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Payload bytes in a full segment.
    pub fn mss(&self) -> usize {
        self.mss
    }

    fn payload_len(&self, k: usize) -> usize {
        self.payload.saturating_sub(k * self.mss).min(self.mss)
    }

    /// Writes segment `k` (headers and its payload slice of the chain) into the start of
    /// `out`, which must hold `segment_len(k)` bytes, and fixes it up; returns its length.
    pub fn write(&self, chain: &[&[u8]], k: usize, out: &mut [u8]) -> usize {
        let len = self.segment_len(k);
        let out = &mut out[..len];
        out[..self.hdr_len].copy_from_slice(&chain[0][..self.hdr_len]);
        copy_chain(chain, self.hdr_len + k * self.mss, &mut out[self.hdr_len..]);
        self.patch(k, out);
        len
    }

    /// Fixes up the headers of segment `k` whose bytes (`segment_len(k)` of them) are in
    /// place in `seg`: lengths, sequence number, flags, IPv4 identification and checksums.
    pub fn patch(&self, k: usize, seg: &mut [u8]) {
        let seg = &mut seg[..self.segment_len(k)];
        let last = k + 1 == self.segments();
        let ip_len = (seg.len() - self.l3) as u16;
        // Always a valid view: `Plan::new` checked these headers.
        if let Ok(mut ip) = Packet::new_checked(&mut seg[self.l3..]) {
            ip.set_total_len(ip_len);
            ip.set_ident(self.ident.wrapping_add(k as u16));
            ip.fill_checksum();
        }
        let l4 = self.l4;
        let seq = self.seq.wrapping_add((k * self.mss) as u32);
        seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = self.flags;
        if !last {
            flags &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
        }
        if k > 0 {
            flags &= !tcp::FLAG_CWR;
        }
        seg[l4 + 13] = flags;
        set_be16(seg, l4 + TCP_CHECK, 0);
        let tcp_len = seg.len() - l4;
        let ph = checksum::pseudo_header(self.src, self.dst, ipv4::PROTO_TCP, tcp_len as u16);
        let c = checksum::finish(checksum::sum(&seg[l4..], ph));
        set_be16(seg, l4 + TCP_CHECK, c);
    }
}

/// Copies `out.len()` bytes starting at logical offset `from` of the chain into `out`
/// (the chain was checked to be long enough by `Plan::new`).
fn copy_chain(chain: &[&[u8]], mut from: usize, out: &mut [u8]) {
    let mut done = 0;
    for b in chain {
        if done == out.len() {
            break;
        }
        if from >= b.len() {
            from -= b.len();
            continue;
        }
        let n = (b.len() - from).min(out.len() - done);
        out[done..done + n].copy_from_slice(&b[from..from + n]);
        done += n;
        from = 0;
    }
    debug_assert_eq!(done, out.len(), "chain shorter than planned");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A super-frame 10.244.1.10:40000 -> 10.244.2.20:5201 with `payload` bytes (a counting
    /// pattern), TCP timestamps option, flags `flags`, IP id 0x1234, seq 0xfffff000 (wraps).
    fn super_frame(payload: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        set_be16(&mut f, 12, 0x0800);
        let total = (20 + 32 + payload) as u16;
        ipv4::emit(
            &mut f[14..34],
            0,
            total,
            0x1234,
            ipv4::FLAG_DF,
            64,
            ipv4::PROTO_TCP,
            [10, 244, 1, 10],
            [10, 244, 2, 20],
        );
        let t = 34;
        set_be16(&mut f, t, 40000);
        set_be16(&mut f, t + 2, 5201);
        f[t + 4..t + 8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
        f[t + 8..t + 12].copy_from_slice(&7u32.to_be_bytes());
        f[t + 12] = 8 << 4;
        f[t + 13] = flags;
        set_be16(&mut f, t + 14, 502);
        f[t + 20..t + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        for (i, b) in f[t + 32..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        f
    }

    fn tcp_ok(seg: &[u8]) -> bool {
        let ph = checksum::pseudo_header(
            [10, 244, 1, 10],
            [10, 244, 2, 20],
            6,
            (seg.len() - 34) as u16,
        );
        checksum::finish(checksum::sum(&seg[34..], ph)) == 0
    }

    fn cut(f: &[u8], splits: &[usize], mss: usize) -> Vec<Vec<u8>> {
        let mut chain: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for &s in splits {
            chain.push(&f[at..s]);
            at = s;
        }
        chain.push(&f[at..]);
        let plan = Plan::new(&chain, mss).unwrap();
        (0..plan.segments())
            .map(|k| {
                let mut out = vec![0u8; plan.segment_len(k)];
                plan.write(&chain, k, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn segments_carry_sequence_flags_ids_and_checksums() {
        let f = super_frame(3000, 0x10 | tcp::FLAG_PSH | tcp::FLAG_FIN | tcp::FLAG_CWR);
        let segs = cut(&f, &[], 1398);
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let ip = Packet::new_checked(&s[14..]).unwrap();
            assert!(ip.checksum_ok());
            assert_eq!(usize::from(ip.total_len()), s.len() - 14);
            assert_eq!(ip.ident(), 0x1234 + k as u16);
            assert!(tcp_ok(s), "segment {k} checksum");
            let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(k as u32 * 1398));
            let fl = s[47];
            assert_eq!(fl & tcp::FLAG_CWR != 0, k == 0);
            assert_eq!(fl & (tcp::FLAG_FIN | tcp::FLAG_PSH) != 0, k == 2);
            assert_eq!(fl & 0x10, 0x10);
            assert_eq!(&s[48..50], &f[48..50], "window kept");
            assert_eq!(&s[52..66], &f[52..66], "urgent pointer, options kept");
            payload.extend_from_slice(&s[66..]);
        }
        assert_eq!(segs[2].len(), 66 + 3000 - 2 * 1398);
        assert_eq!(&payload[..], &f[66..]);
    }

    #[test]
    fn chained_payload_gives_the_same_segments() {
        let f = super_frame(9000, 0x18);
        let flat = cut(&f, &[], 1410);
        for splits in [&[66][..], &[100, 101, 4096, 8000], &[1476, 2886, 4296]] {
            assert_eq!(cut(&f, splits, 1410), flat, "splits {splits:?}");
        }
    }

    #[test]
    fn patch_in_place_equals_write() {
        let f = super_frame(5000, 0x18);
        let chain = [&f[..]];
        let plan = Plan::new(&chain, 1448).unwrap();
        let mut written = vec![0u8; plan.segment_len(0)];
        plan.write(&chain, 0, &mut written);
        let mut inplace = f.clone();
        plan.patch(0, &mut inplace);
        assert_eq!(&inplace[..plan.segment_len(0)], &written[..]);
    }

    #[test]
    fn trailing_bytes_past_total_length_are_ignored() {
        let mut f = super_frame(2000, 0x10);
        let segs = cut(&f, &[], 1000);
        f.extend_from_slice(&[0xee; 7]);
        assert_eq!(cut(&f, &[], 1000), segs);
    }

    #[test]
    fn malformed_super_frames_are_refused_by_name() {
        let f = super_frame(3000, 0x10);
        assert_eq!(
            Plan::new(&[&f[..40], &f[40..]], 1000),
            Err(TsoError::HeadersSplit)
        );
        assert_eq!(
            Plan::new(&[&f[..20], &f[20..]], 1000),
            Err(TsoError::HeadersSplit)
        );
        assert_eq!(
            Plan::new(&[&f[..f.len() - 1]], 1000),
            Err(TsoError::BadChain)
        );
        assert_eq!(Plan::new(&[], 1000), Err(TsoError::BadChain));
        let many: Vec<&[u8]> = std::iter::once(&f[..66])
            .chain(f[66..].chunks(100))
            .collect();
        assert_eq!(Plan::new(&many, 1000), Err(TsoError::BadChain));
        assert_eq!(Plan::new(&[&f[..]], 0), Err(TsoError::MssTooSmall));
        let syn = super_frame(3000, tcp::FLAG_SYN);
        assert_eq!(Plan::new(&[&syn[..]], 1000), Err(TsoError::BadFlags));
        let mut udp = f.clone();
        udp[23] = ipv4::PROTO_UDP;
        assert_eq!(Plan::new(&[&udp[..]], 1000), Err(TsoError::NotTcp));
        let mut frag = f.clone();
        frag[20] |= 0x20;
        assert_eq!(Plan::new(&[&frag[..]], 1000), Err(TsoError::NotTcp));
        let mut bad_doff = f.clone();
        bad_doff[46] = 4 << 4;
        assert_eq!(Plan::new(&[&bad_doff[..]], 1000), Err(TsoError::NotTcp));
    }
}
