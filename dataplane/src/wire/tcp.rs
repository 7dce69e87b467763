//! TCP header view: ports, flags, checksum and the MSS option (for clamping).

use super::checksum;
use super::{Truncated, be16, set_be16};

pub const MIN_HEADER_LEN: usize = 20;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_SYN: u8 = 0x02;
pub const FLAG_RST: u8 = 0x04;
pub const FLAG_PSH: u8 = 0x08;
pub const FLAG_ACK: u8 = 0x10;
pub const FLAG_URG: u8 = 0x20;
pub const FLAG_CWR: u8 = 0x80;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

pub struct Segment<T>(T);

impl<T: AsRef<[u8]>> Segment<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Truncated);
        }
        let off = usize::from(b[12] >> 4) * 4;
        if off < MIN_HEADER_LEN || off > b.len() {
            return Err(Truncated);
        }
        Ok(Segment(buf))
    }
    pub fn src_port(&self) -> u16 {
        be16(self.0.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.0.as_ref(), 2)
    }
    pub fn seq(&self) -> u32 {
        let b = self.0.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.0.as_ref()[12] >> 4) * 4
    }
    pub fn flags(&self) -> u8 {
        self.0.as_ref()[13]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.0.as_ref(), 16)
    }
    /// Byte offset (within the segment) of the MSS option's 16-bit value, if present and well formed.
    pub fn mss_offset(&self) -> Option<usize> {
        let b = self.0.as_ref();
        let end = self.header_len();
        let mut i = MIN_HEADER_LEN;
        while i < end {
            match b[i] {
                OPT_END => return None,
                OPT_NOP => i += 1,
                kind => {
                    let len = usize::from(*b.get(i + 1)?);
                    if len < 2 || i + len > end {
                        return None;
                    }
                    if kind == OPT_MSS && len == 4 {
                        return Some(i + 2);
                    }
                    i += len;
                }
            }
        }
        None
    }
    pub fn mss(&self) -> Option<u16> {
        self.mss_offset().map(|o| be16(self.0.as_ref(), o))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Segment<T> {
    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.0.as_mut(), 16, v);
    }
    /// Lowers the MSS option to `max` if it is larger; returns the old value when it changed.
    /// The checksum is updated incrementally (the pseudo-header is unaffected).
    pub fn clamp_mss(&mut self, max: u16) -> Option<u16> {
        let off = self.mss_offset()?;
        let old = be16(self.0.as_ref(), off);
        if old <= max {
            return None;
        }
        let c = checksum::update16(self.checksum(), old, max);
        set_be16(self.0.as_mut(), off, max);
        self.set_checksum(c);
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN 10.244.1.10:40000 -> 10.244.2.20:80 with options NOP, NOP, MSS 1460, SACK-permitted.
    fn syn() -> Vec<u8> {
        let mut b = vec![0u8; 28];
        set_be16(&mut b, 0, 40000);
        set_be16(&mut b, 2, 80);
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        b[12] = 7 << 4;
        b[13] = FLAG_SYN;
        set_be16(&mut b, 14, 64240);
        b[20..28].copy_from_slice(&[OPT_NOP, OPT_NOP, OPT_MSS, 4, 0x05, 0xb4, 4, 2]);
        let ph = checksum::pseudo_header([10, 244, 1, 10], [10, 244, 2, 20], 6, 28);
        let c = checksum::finish(checksum::sum(&b, ph));
        set_be16(&mut b, 16, c);
        b
    }

    fn valid(b: &[u8]) -> bool {
        let ph = checksum::pseudo_header([10, 244, 1, 10], [10, 244, 2, 20], 6, b.len() as u16);
        checksum::finish(checksum::sum(b, ph)) == 0
    }

    #[test]
    fn deconstruct() {
        let b = syn();
        let s = Segment::new_checked(&b[..]).unwrap();
        assert_eq!((s.src_port(), s.dst_port()), (40000, 80));
        assert_eq!(s.flags(), FLAG_SYN);
        assert_eq!(s.header_len(), 28);
        assert_eq!(s.mss(), Some(1460));
        assert!(valid(&b));
    }

    #[test]
    fn clamp_updates_checksum() {
        let mut b = syn();
        let mut s = Segment::new_checked(&mut b[..]).unwrap();
        assert_eq!(s.clamp_mss(1410), Some(1460));
        assert_eq!(s.mss(), Some(1410));
        assert_eq!(s.clamp_mss(1420), None);
        assert!(valid(&b));
    }

    #[test]
    fn malformed_options_are_ignored() {
        let mut b = syn();
        b[22] = OPT_MSS;
        b[23] = 40; // runs past the header
        let s = Segment::new_checked(&b[..]).unwrap();
        assert_eq!(s.mss(), None);
        b[23] = 0; // zero length would loop forever if not caught
        let s = Segment::new_checked(&b[..]).unwrap();
        assert_eq!(s.mss(), None);
    }

    #[test]
    fn bad_data_offset() {
        let mut b = syn();
        b[12] = 4 << 4;
        assert!(Segment::new_checked(&b[..]).is_err());
        b[12] = 15 << 4;
        assert!(Segment::new_checked(&b[..]).is_err());
    }
}
