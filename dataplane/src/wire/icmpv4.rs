//! ICMPv4 header view and the types podswitch emits.

use super::checksum;
use super::{Truncated, be16, set_be16};

pub const HEADER_LEN: usize = 8;
pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACH: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const CODE_NET_UNREACH: u8 = 0;
pub const CODE_HOST_UNREACH: u8 = 1;
pub const CODE_PORT_UNREACH: u8 = 3;
pub const CODE_FRAG_NEEDED: u8 = 4;
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// True for the ICMP types that report an error about another packet (RFC 1122 3.2.2).
pub fn is_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

pub struct Message<T>(T);

impl<T: AsRef<[u8]>> Message<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Truncated);
        }
        Ok(Message(buf))
    }
    pub fn msg_type(&self) -> u8 {
        self.0.as_ref()[0]
    }
    pub fn code(&self) -> u8 {
        self.0.as_ref()[1]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.0.as_ref(), 2)
    }
    /// Echo identifier (bytes 4..6 of echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        be16(self.0.as_ref(), 4)
    }
    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.0.as_ref(), 6)
    }
    pub fn checksum_ok(&self) -> bool {
        checksum::checksum(self.0.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    /// Turns an echo request into a reply in place (incremental checksum update).
    pub fn echo_to_reply(&mut self) {
        let b = self.0.as_mut();
        let old = be16(b, 0);
        b[0] = TYPE_ECHO_REPLY;
        let new = be16(b, 0);
        let c = checksum::update16(be16(b, 2), old, new);
        set_be16(b, 2, c);
    }
}

/// Writes an ICMP error header (type, code, rest-of-header) in front of an already placed
/// quote and fills the checksum over header + quote. `buf` spans header and quote.
pub fn emit_error(buf: &mut [u8], ty: u8, code: u8, next_hop_mtu: u16) {
    buf[0] = ty;
    buf[1] = code;
    set_be16(buf, 2, 0);
    set_be16(buf, 4, 0);
    set_be16(buf, 6, next_hop_mtu);
    let c = checksum::checksum(buf);
    set_be16(buf, 2, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reply_in_place() {
        let mut b = [TYPE_ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let c = checksum::checksum(&b);
        set_be16(&mut b, 2, c);
        let mut m = Message::new_checked(&mut b[..]).unwrap();
        m.echo_to_reply();
        assert_eq!(m.msg_type(), TYPE_ECHO_REPLY);
        assert_eq!(m.echo_ident(), 0x1234);
        assert!(m.checksum_ok());
    }

    #[test]
    fn frag_needed_fields() {
        let mut b = [0u8; 36];
        b[8] = 0x45;
        emit_error(&mut b, TYPE_DEST_UNREACH, CODE_FRAG_NEEDED, 1450);
        let m = Message::new_checked(&b[..]).unwrap();
        assert_eq!((m.msg_type(), m.code(), m.next_hop_mtu()), (3, 4, 1450));
        assert!(m.checksum_ok());
        assert!(is_error(m.msg_type()));
        assert!(!is_error(TYPE_ECHO_REQUEST));
    }
}
