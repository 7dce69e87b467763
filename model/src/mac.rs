//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }
    /// Group bit set (multicast or broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
    /// Packs into a u64 (for cheap hashing and comparisons).
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts
                .next()
                .ok_or_else(|| format!("MAC address {s:?} has fewer than 6 octets"))?;
            if p.len() != 2 {
                return Err(format!(
                    "MAC address {s:?}: octet {p:?} is not two hex digits"
                ));
            }
            *b = u8::from_str_radix(p, 16)
                .map_err(|_| format!("MAC address {s:?}: octet {p:?} is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(format!("MAC address {s:?} has more than 6 octets"));
        }
        Ok(Mac(out))
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let m: Mac = "0a:58:0A:f4:01:01".parse().unwrap();
        assert_eq!(m.0, [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01]);
        assert_eq!(m.to_string(), "0a:58:0a:f4:01:01");
    }

    #[test]
    fn rejects_bad_text() {
        assert!("0a:58:0a:f4:01".parse::<Mac>().is_err());
        assert!("0a:58:0a:f4:01:01:02".parse::<Mac>().is_err());
        assert!("zz:58:0a:f4:01:01".parse::<Mac>().is_err());
        assert!("0a5:8:0a:f4:01:01".parse::<Mac>().is_err());
    }

    #[test]
    fn group_bit() {
        assert!(Mac::BROADCAST.is_multicast());
        assert!(Mac([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac([2, 0, 0, 0, 0, 1]).is_multicast());
    }
}
