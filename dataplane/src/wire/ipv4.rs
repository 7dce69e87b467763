//! IPv4 header view.

use super::checksum;
use super::{Truncated, be16, ip4, set_be16};
use std::net::Ipv4Addr;

pub const MIN_HEADER_LEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const FLAG_DF: u16 = 0x4000;
pub const FLAG_MF: u16 = 0x2000;
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view over a buffer that holds at least a 20-byte header.
///
/// `new_checked` only guarantees the fixed header is present; the pipeline's ip4-input
/// stage does the full validation (IHL, total length, checksum) and reports a reason.
pub struct Packet<T>(T);

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        if buf.as_ref().len() < MIN_HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Packet(buf))
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    pub fn version(&self) -> u8 {
        self.b()[0] >> 4
    }
    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[0] & 0x0f) * 4
    }
    pub fn tos(&self) -> u8 {
        self.b()[1]
    }
    pub fn total_len(&self) -> u16 {
        be16(self.b(), 2)
    }
    pub fn ident(&self) -> u16 {
        be16(self.b(), 4)
    }
    pub fn flags_frag(&self) -> u16 {
        be16(self.b(), 6)
    }
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.flags_frag() & FRAG_OFFSET_MASK) * 8
    }
    /// True for any fragment (first or not).
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }
    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }
    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 10)
    }
    pub fn src(&self) -> [u8; 4] {
        ip4(self.b(), 12)
    }
    pub fn dst(&self) -> [u8; 4] {
        ip4(self.b(), 16)
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src())
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst())
    }
    /// Verifies the header checksum over `header_len()` bytes (caller checked they exist).
    pub fn checksum_ok(&self) -> bool {
        let hl = self.header_len();
        hl <= self.b().len() && checksum::checksum(&self.b()[..hl]) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn m(&mut self) -> &mut [u8] {
        self.0.as_mut()
    }
    pub fn set_total_len(&mut self, v: u16) {
        set_be16(self.m(), 2, v);
    }
    pub fn set_ident(&mut self, v: u16) {
        set_be16(self.m(), 4, v);
    }
    pub fn set_flags_frag(&mut self, v: u16) {
        set_be16(self.m(), 6, v);
    }
    pub fn set_ttl(&mut self, v: u8) {
        self.m()[8] = v;
    }
    pub fn set_protocol(&mut self, v: u8) {
        self.m()[9] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.m(), 10, v);
    }
    pub fn set_src(&mut self, a: [u8; 4]) {
        self.m()[12..16].copy_from_slice(&a);
    }
    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.m()[16..20].copy_from_slice(&a);
    }
    /// Recomputes the header checksum from scratch (slow path: generated packets).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.b()[..hl]);
        self.set_checksum(c);
    }
    /// Decrements TTL by one, updating the checksum incrementally (RFC 1624).
    pub fn decrement_ttl(&mut self) {
        let b = self.b();
        let old = be16(b, 8);
        let new = old - 0x0100;
        let c = checksum::update16(self.checksum(), old, new);
        set_be16(self.m(), 8, new);
        self.set_checksum(c);
    }
    /// Rewrites the source address with an incremental checksum update.
    pub fn rewrite_src(&mut self, a: [u8; 4]) {
        let c = checksum::update32(self.checksum(), self.src(), a);
        self.set_src(a);
        self.set_checksum(c);
    }
    /// Rewrites the destination address with an incremental checksum update.
    pub fn rewrite_dst(&mut self, a: [u8; 4]) {
        let c = checksum::update32(self.checksum(), self.dst(), a);
        self.set_dst(a);
        self.set_checksum(c);
    }
}

/// Writes a 20-byte IPv4 header (no options) with a valid checksum.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the header's fields one to one"
)]
pub fn emit(
    buf: &mut [u8],
    tos: u8,
    total_len: u16,
    ident: u16,
    flags_frag: u16,
    ttl: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
) {
    buf[0] = 0x45;
    buf[1] = tos;
    set_be16(buf, 2, total_len);
    set_be16(buf, 4, ident);
    set_be16(buf, 6, flags_frag);
    buf[8] = ttl;
    buf[9] = proto;
    set_be16(buf, 10, 0);
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
    let c = checksum::checksum(&buf[..20]);
    set_be16(buf, 10, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.244.1.10 -> 10.244.2.20, UDP, ttl 64, DF, total 28, id 0x1234.
    fn fixture() -> [u8; 20] {
        let mut b = [0u8; 20];
        emit(
            &mut b,
            0,
            28,
            0x1234,
            FLAG_DF,
            64,
            PROTO_UDP,
            [10, 244, 1, 10],
            [10, 244, 2, 20],
        );
        b
    }

    #[test]
    fn deconstruct() {
        let b = fixture();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_UDP);
        assert_eq!(p.src_addr().to_string(), "10.244.1.10");
        assert_eq!(p.dst_addr().to_string(), "10.244.2.20");
        assert!(p.checksum_ok());
    }

    #[test]
    fn construct_matches_known_bytes() {
        let b = fixture();
        assert_eq!(
            b,
            [
                0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, 17, 0x0f, 0x98, 10, 244, 1, 10, 10, 244,
                2, 20
            ]
        );
    }

    #[test]
    fn ttl_and_address_rewrites_keep_checksum_valid() {
        let mut b = fixture();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.checksum_ok());
        p.rewrite_dst([10, 96, 0, 10]);
        p.rewrite_src([192, 168, 1, 10]);
        assert!(p.checksum_ok());
    }

    #[test]
    fn fragment_fields() {
        let mut b = fixture();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags_frag(FLAG_MF | 185);
        assert!(p.is_fragment());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn truncated() {
        assert!(Packet::new_checked(&[0x45u8; 19][..]).is_err());
    }
}
