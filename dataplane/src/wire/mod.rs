//! Zero-copy header views, in the style of smoltcp's `wire` module.
//!
//! Each view wraps a buffer `T: AsRef<[u8]>`; `new_checked` verifies the length once and
//! afterwards no accessor can panic. Setters exist when `T: AsMut<[u8]>`.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub use podswitch_model::mac;
pub mod tcp;
pub mod udp;
pub mod virtio_net;
pub mod vxlan;

pub use mac::Mac;

/// Why a header view could not be built over a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline]
pub(crate) fn set_be16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn ip4(b: &[u8], off: usize) -> [u8; 4] {
    [b[off], b[off + 1], b[off + 2], b[off + 3]]
}
