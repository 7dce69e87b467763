//! Names and addresses derived from an attachment, stable across calls so DEL, CHECK and
//! GC find what ADD made without asking anyone.

use std::net::Ipv4Addr;

/// Prefix of every host-side veth the plugin creates.
pub const HOST_VETH_PREFIX: &str = "psw";

/// FNV-1a, 64 bits: small, stable across releases and platforms (std's hasher is not).
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The host end of an attachment's veth: `psw` + 12 hex digits of a hash of the
/// container ID and interface name (15 characters, the kernel's limit).
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    let h = fnv1a64(&[container_id.as_bytes(), b"\0", ifname.as_bytes()]);
    format!("{HOST_VETH_PREFIX}{:012x}", h >> 16)
}

/// The pod's MAC: `0a:58` + its IPv4 address (the convention of kubenet and the lab), so
/// an address always comes with the same MAC and neighbours never hold a stale one.
pub fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// A CNI interface name is valid for Linux: 1..15 bytes, no '/', ':' or whitespace, not "." or "..".
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_is_stable_short_and_distinct() {
        let a = host_veth("c0ffee", "eth0");
        assert_eq!(a, host_veth("c0ffee", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("psw"));
        assert!(a[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, host_veth("c0ffee", "eth1"));
        assert_ne!(a, host_veth("c0ffef", "eth0"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(host_veth("ab", "c"), host_veth("a", "bc"));
        // A fixed value: the name must not change between releases (DEL after upgrade).
        assert_eq!(host_veth("test", "eth0"), host_veth("test", "eth0"));
        let fixed = format!("psw{:012x}", fnv1a64(&[b"test", b"\0", b"eth0"]) >> 16);
        assert_eq!(host_veth("test", "eth0"), fixed);
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foobar"]), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn pod_mac_carries_the_address() {
        assert_eq!(
            pod_mac("10.244.1.10".parse().expect("ip")),
            [0x0a, 0x58, 10, 244, 1, 10]
        );
    }

    #[test]
    fn ifnames_are_checked() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("net1"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("sixteen-chars-xx"));
        assert!(!valid_ifname(".."));
    }
}
