//! UDP header view.

use super::{Truncated, be16, set_be16};

pub const HEADER_LEN: usize = 8;

pub struct Datagram<T>(T);

impl<T: AsRef<[u8]>> Datagram<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Datagram(buf))
    }
    pub fn src_port(&self) -> u16 {
        be16(self.0.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.0.as_ref(), 2)
    }
    pub fn len(&self) -> u16 {
        be16(self.0.as_ref(), 4)
    }
    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN as u16
    }
    pub fn checksum(&self) -> u16 {
        be16(self.0.as_ref(), 6)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Datagram<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_be16(self.0.as_mut(), 0, v);
    }
    pub fn set_dst_port(&mut self, v: u16) {
        set_be16(self.0.as_mut(), 2, v);
    }
    pub fn set_len(&mut self, v: u16) {
        set_be16(self.0.as_mut(), 4, v);
    }
    pub fn set_checksum(&mut self, v: u16) {
        set_be16(self.0.as_mut(), 6, v);
    }
}

/// Writes a UDP header with a zero checksum (allowed over IPv4, as the kernel's VXLAN does).
pub fn emit(buf: &mut [u8], src_port: u16, dst_port: u16, len: u16) {
    set_be16(buf, 0, src_port);
    set_be16(buf, 2, dst_port);
    set_be16(buf, 4, len);
    set_be16(buf, 6, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = [0u8; 8];
        emit(&mut b, 40000, 8472, 58);
        assert_eq!(b, [0x9c, 0x40, 0x21, 0x18, 0, 58, 0, 0]);
        let d = Datagram::new_checked(&b[..]).unwrap();
        assert_eq!(
            (d.src_port(), d.dst_port(), d.len(), d.checksum()),
            (40000, 8472, 58, 0)
        );
        assert!(Datagram::new_checked(&b[..7]).is_err());
    }
}
