//! VXLAN header (RFC 7348).

use super::Truncated;

pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI: u8 = 0x08;
/// Outer Ethernet + IPv4 + UDP + VXLAN.
pub const OVERHEAD: usize = 14 + 20 + 8 + HEADER_LEN;

pub struct Header<T>(T);

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Header(buf))
    }
    pub fn flags(&self) -> u8 {
        self.0.as_ref()[0]
    }
    pub fn vni(&self) -> u32 {
        let b = self.0.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
}

/// Writes the 8-byte VXLAN header: I flag set, reserved bits zero.
pub fn emit(buf: &mut [u8], vni: u32) {
    buf[..8].copy_from_slice(&[FLAG_VNI, 0, 0, 0, 0, 0, 0, 0]);
    buf[4..7].copy_from_slice(&vni.to_be_bytes()[1..4]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = [0u8; 8];
        emit(&mut b, 1);
        assert_eq!(b, [0x08, 0, 0, 0, 0, 0, 1, 0]);
        let h = Header::new_checked(&b[..]).unwrap();
        assert_eq!((h.flags(), h.vni()), (FLAG_VNI, 1));
        emit(&mut b, 0xabcdef);
        assert_eq!(Header::new_checked(&b[..]).unwrap().vni(), 0xabcdef);
        assert!(Header::new_checked(&b[..7]).is_err());
    }
}
