//! Ethernet II header view (with the 802.1Q tag constants).

use super::{Mac, Truncated, be16, set_be16};

pub const HEADER_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const VLAN_TAG_LEN: usize = 4;

pub struct Frame<T>(T);

impl<T: AsRef<[u8]>> Frame<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Frame(buf))
    }
    // Hot in ethernet-input: always inlined, one bounds check for the six bytes (not six).
    #[inline(always)]
    pub fn dst(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.0.as_ref()[0..6]);
        Mac(m)
    }
    #[inline(always)]
    pub fn src(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.0.as_ref()[6..12]);
        Mac(m)
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.0.as_ref(), 12)
    }
    pub fn payload(&self) -> &[u8] {
        &self.0.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, m: Mac) {
        self.0.as_mut()[0..6].copy_from_slice(&m.0);
    }
    pub fn set_src(&mut self, m: Mac) {
        self.0.as_mut()[6..12].copy_from_slice(&m.0);
    }
    pub fn set_ethertype(&mut self, t: u16) {
        set_be16(self.0.as_mut(), 12, t);
    }
}

/// Writes a complete Ethernet header at the start of `buf` (which must hold 14 bytes).
pub fn emit(buf: &mut [u8], dst: Mac, src: Mac, ethertype: u16) {
    buf[0..6].copy_from_slice(&dst.0);
    buf[6..12].copy_from_slice(&src.0);
    set_be16(buf, 12, ethertype);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: [u8; 16] = [
        0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a, 0x08, 0x00, 0xaa,
        0xbb,
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FIXTURE[..]).unwrap();
        assert_eq!(f.dst().to_string(), "0a:58:0a:f4:01:01");
        assert_eq!(f.src().to_string(), "0a:58:0a:f4:01:0a");
        assert_eq!(f.ethertype(), ETHERTYPE_IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 16];
        emit(
            &mut b,
            Mac(FIXTURE[0..6].try_into().unwrap()),
            Mac(FIXTURE[6..12].try_into().unwrap()),
            ETHERTYPE_IPV4,
        );
        b[14] = 0xaa;
        b[15] = 0xbb;
        assert_eq!(b, FIXTURE);
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.set_ethertype(ETHERTYPE_ARP);
        f.set_dst(Mac::BROADCAST);
        assert_eq!(&b[0..6], &[0xff; 6]);
        assert_eq!(&b[12..14], &[0x08, 0x06]);
    }

    #[test]
    fn too_short() {
        for n in 0..HEADER_LEN {
            assert!(Frame::new_checked(&FIXTURE[..n]).is_err());
        }
    }
}
