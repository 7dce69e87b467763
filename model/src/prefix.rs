//! IPv4 prefixes (`10.244.1.0/24`), normalised, as text in every serialised form.

/// An IPv4 prefix, normalised (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: u32,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: [u8; 4], len: u8) -> Result<Self, String> {
        if len > 32 {
            return Err(format!("prefix length {len} is more than 32"));
        }
        let a = u32::from_be_bytes(addr);
        Ok(Prefix {
            addr: a & mask(len),
            len,
        })
    }
    pub fn contains(&self, a: u32) -> bool {
        a & mask(self.len) == self.addr
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.len)
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: std::net::Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: bad IPv4 address"))?;
        let len: u8 = l.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        Prefix::new(addr.octets(), len)
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}
