//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes, little endian on this
//! host) that a tap device opened with `IFF_VNET_HDR` puts in front of every frame: what
//! the kernel knows of a super-frame (its segment size) and of a checksum it left partial.

use super::ethernet;
use super::ipv4::{self, Packet};
use super::tcp::{self, Segment};
use super::{Truncated, be16};

pub const LEN: usize = 10;

/// `flags`: the checksum is partial: sum from `csum_start` to the end, store at
/// `csum_start + csum_offset` (the field holds the pseudo-header sum).
pub const F_NEEDS_CSUM: u8 = 1;
/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: an IPv4 TCP super-frame.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type` bit: the super-frame carries CWR (its segments keep ECN's rules).
pub const GSO_ECN: u8 = 0x80;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers (Ethernet to TCP) in front of the payload, for a super-frame.
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-frame.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header, Truncated> {
        let b = b.get(..LEN).ok_or(Truncated)?;
        let le = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Ok(Header {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    pub fn to_bytes(self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (at, v) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
        ] {
            b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// The segment size the sender asked for, when this is an IPv4 TCP super-frame.
    pub fn tcp_segment_size(&self) -> Option<u16> {
        (self.gso_type & !GSO_ECN == GSO_TCPV4 && self.gso_size > 0).then_some(self.gso_size)
    }

    /// The header for sending `frame` (its first buffer `head`, `len` bytes in all) to a
    /// device of MTU `mtu`: a checksum left partial (`csum`: start and offset) is marked,
    /// and an IPv4 TCP frame that holds more than one segment is described as a super-frame
    /// of segments of `segment_size` payload bytes (the size its sender used, `TxInfo`), or,
    /// when that is unknown (0) or does not fit, of segments that fill the MTU with the
    /// frame's own headers (what its sender's TSO would have made for this MTU). Anything
    /// else goes as a plain frame.
    pub fn for_frame(
        head: &[u8],
        len: usize,
        mtu: u16,
        csum: Option<(u16, u16)>,
        segment_size: u16,
    ) -> Header {
        let mut h = Header::default();
        if let Some((start, offset)) = csum {
            h.flags = F_NEEDS_CSUM;
            h.csum_start = start;
            h.csum_offset = offset;
        }
        let l3 = match head.get(12..14).map(|_| be16(head, 12)) {
            Some(ethernet::ETHERTYPE_IPV4) => ethernet::HEADER_LEN,
            Some(ethernet::ETHERTYPE_VLAN)
                if head.len() >= 18 && be16(head, 16) == ethernet::ETHERTYPE_IPV4 =>
            {
                ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
            }
            _ => return h,
        };
        // Frames that cannot hold more than one segment go plain without a header parse (most
        // frames: segment size unknown and within the MTU).
        let most = match usize::from(segment_size) {
            0 => usize::from(mtu),
            s => usize::from(mtu).min(s + ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN),
        };
        if len <= l3 + most {
            return h;
        }
        let Ok(ip) = Packet::new_checked(&head[l3..]) else {
            return h;
        };
        if ip.protocol() != ipv4::PROTO_TCP || ip.is_fragment() {
            return h;
        }
        let l4 = l3 + ip.header_len();
        let Ok(seg) = Segment::new_checked(&head[l4.min(head.len())..]) else {
            return h;
        };
        let headers = ip.header_len() + seg.header_len();
        let Some(fill) = usize::from(mtu).checked_sub(headers).filter(|s| *s > 0) else {
            return h;
        };
        let payload = len.saturating_sub(l4 + seg.header_len());
        let size = match usize::from(segment_size) {
            0 => fill,
            s => s.min(fill),
        };
        if payload <= size {
            return h;
        }
        h.gso_type = GSO_TCPV4;
        if seg.flags() & tcp::FLAG_CWR != 0 {
            h.gso_type |= GSO_ECN;
        }
        h.hdr_len = (l4 + seg.header_len()) as u16;
        h.gso_size = size as u16;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(payload: usize, tcp_flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32 + payload];
        f[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        let total = (20 + 32 + payload) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[23] = ipv4::PROTO_TCP;
        f[14 + 20 + 12] = 8 << 4; // 32-byte TCP header (timestamps)
        f[14 + 20 + 13] = tcp_flags;
        f
    }

    #[test]
    fn parses_what_it_writes() {
        let h = Header {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(Header::parse(&h.to_bytes()), Ok(h));
        assert_eq!(h.tcp_segment_size(), Some(1398));
        assert!(Header::parse(&[0u8; 9]).is_err());
    }

    #[test]
    fn a_tcp_frame_over_the_mtu_is_a_super_frame_cut_to_the_mtu() {
        let f = tcp_frame(64000, tcp::FLAG_ACK);
        let h = Header::for_frame(&f[..2048], f.len(), 1450, Some((34, 16)), 0);
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!((h.csum_start, h.csum_offset), (34, 16));
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!(h.hdr_len, 66);
        assert_eq!(h.gso_size, 1450 - 52);
        let ecn = Header::for_frame(&f, f.len(), 1450, None, 0);
        assert_eq!(ecn.flags, 0);
        let f = tcp_frame(64000, tcp::FLAG_ACK | tcp::FLAG_CWR);
        assert_eq!(
            Header::for_frame(&f, f.len(), 1450, None, 0).gso_type,
            GSO_TCPV4 | GSO_ECN
        );
    }

    #[test]
    fn the_senders_segment_size_describes_the_super_frame_where_it_fits() {
        // Coalesced from segments of 1200 bytes: 3 of them, each under the MTU.
        let f = tcp_frame(3600, tcp::FLAG_ACK);
        let h = Header::for_frame(&f, f.len(), 1450, None, 1200);
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1200, 66));
        // Larger than the MTU allows: cut to fill the MTU instead.
        let big = tcp_frame(64000, tcp::FLAG_ACK);
        assert_eq!(
            Header::for_frame(&big, big.len(), 1450, None, 9000).gso_size,
            1398
        );
        // One segment's worth is a plain frame.
        let one = tcp_frame(1200, tcp::FLAG_ACK);
        assert_eq!(
            Header::for_frame(&one, one.len(), 1450, None, 1200),
            Header::default()
        );
    }

    #[test]
    fn anything_else_is_a_plain_frame() {
        let small = tcp_frame(1398, tcp::FLAG_ACK);
        assert_eq!(
            Header::for_frame(&small, small.len(), 1450, None, 0),
            Header::default()
        );
        let mut udp = tcp_frame(64000, 0);
        udp[23] = ipv4::PROTO_UDP;
        assert_eq!(
            Header::for_frame(&udp, udp.len(), 1450, None, 0).gso_type,
            GSO_NONE
        );
        let mut arp = tcp_frame(64000, 0);
        arp[12..14].copy_from_slice(&ethernet::ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(
            Header::for_frame(&arp, arp.len(), 1450, None, 0).gso_type,
            GSO_NONE
        );
        // Headers cut short: no super-frame described, no panic.
        assert_eq!(
            Header::for_frame(&small[..20], 60000, 1450, None, 0).gso_type,
            GSO_NONE
        );
        assert_eq!(
            Header::for_frame(&[], 60000, 1450, None, 0),
            Header::default()
        );
    }
}
