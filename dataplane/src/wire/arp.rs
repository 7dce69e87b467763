//! ARP (Ethernet/IPv4 only) view.

use super::{Mac, Truncated, be16, ip4, set_be16};

pub const PACKET_LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

pub struct Packet<T>(T);

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, Truncated> {
        if buf.as_ref().len() < PACKET_LEN {
            return Err(Truncated);
        }
        Ok(Packet(buf))
    }
    fn b(&self) -> &[u8] {
        self.0.as_ref()
    }
    /// Hardware Ethernet, protocol IPv4, lengths 6 and 4.
    pub fn is_ethernet_ipv4(&self) -> bool {
        be16(self.b(), 0) == 1
            && be16(self.b(), 2) == 0x0800
            && self.b()[4] == 6
            && self.b()[5] == 4
    }
    pub fn op(&self) -> u16 {
        be16(self.b(), 6)
    }
    pub fn sender_mac(&self) -> Mac {
        Mac(self.b()[8..14].try_into().unwrap_or([0; 6]))
    }
    pub fn sender_ip(&self) -> [u8; 4] {
        ip4(self.b(), 14)
    }
    pub fn target_mac(&self) -> Mac {
        Mac(self.b()[18..24].try_into().unwrap_or([0; 6]))
    }
    pub fn target_ip(&self) -> [u8; 4] {
        ip4(self.b(), 24)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Turns a request into the reply "`ip` is at `mac`", in place.
    pub fn make_reply(&mut self, mac: Mac, ip: [u8; 4]) {
        let (smac, sip) = (self.sender_mac(), self.sender_ip());
        let b = self.0.as_mut();
        set_be16(b, 6, OP_REPLY);
        b[8..14].copy_from_slice(&mac.0);
        b[14..18].copy_from_slice(&ip);
        b[18..24].copy_from_slice(&smac.0);
        b[24..28].copy_from_slice(&sip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// who-has 10.244.1.1 tell 10.244.1.10 (from 0a:58:0a:f4:01:0a)
    const REQ: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x0a, 10, 244, 1, 10, 0, 0, 0, 0, 0,
        0, 10, 244, 1, 1,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQ[..]).unwrap();
        assert!(p.is_ethernet_ipv4());
        assert_eq!(p.op(), OP_REQUEST);
        assert_eq!(p.sender_ip(), [10, 244, 1, 10]);
        assert_eq!(p.target_ip(), [10, 244, 1, 1]);
        assert_eq!(p.sender_mac().to_string(), "0a:58:0a:f4:01:0a");
    }

    #[test]
    fn reply_in_place() {
        let mut b = REQ;
        let gw: Mac = "0a:58:0a:f4:01:01".parse().unwrap();
        Packet::new_checked(&mut b[..])
            .unwrap()
            .make_reply(gw, [10, 244, 1, 1]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.op(), OP_REPLY);
        assert_eq!(p.sender_mac(), gw);
        assert_eq!(p.sender_ip(), [10, 244, 1, 1]);
        assert_eq!(p.target_ip(), [10, 244, 1, 10]);
        assert_eq!(p.target_mac().to_string(), "0a:58:0a:f4:01:0a");
    }

    #[test]
    fn truncated() {
        assert!(Packet::new_checked(&REQ[..27]).is_err());
    }
}
