//! Helpers shared by the NAT stages: the flow tuple of a packet, the in-place rewrite with
//! incremental checksum updates, and the TCP reset built in place.

use super::L3;
use crate::conntrack::FlowKey;
use crate::wire::checksum;
use crate::wire::icmpv4;
use crate::wire::ipv4::{self, Packet};
use crate::wire::tcp;
use crate::wire::{be16, ip4, set_be16};

/// What the NAT stages see in a packet.
pub(super) enum Parsed {
    /// TCP, UDP or ICMP echo with its tuple (first fragments included).
    Flow {
        key: FlowKey,
        tcp_flags: u8,
        l4: usize,
    },
    /// An ICMP error (its quote is translated separately).
    IcmpError { l4: usize },
    /// A non-first fragment: no ports.
    Fragment,
    /// Any other protocol or ICMP type, or an L4 header cut short.
    Other,
}

/// Reads the tuple of the IPv4 packet at `L3` (validated by ip4-input).
#[inline]
pub(super) fn parse(f: &[u8]) -> Parsed {
    let ip = &f[L3..];
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    let ff = be16(ip, 6);
    if ff & ipv4::FRAG_OFFSET_MASK != 0 {
        return Parsed::Fragment;
    }
    let l4 = L3 + hl;
    let (src, dst) = (ip4(ip, 12), ip4(ip, 16));
    match proto {
        ipv4::PROTO_TCP if f.len() >= l4 + tcp::MIN_HEADER_LEN => Parsed::Flow {
            key: FlowKey::new(proto, src, dst, be16(f, l4), be16(f, l4 + 2)),
            tcp_flags: f[l4 + 13],
            l4,
        },
        ipv4::PROTO_UDP if f.len() >= l4 + 8 => Parsed::Flow {
            key: FlowKey::new(proto, src, dst, be16(f, l4), be16(f, l4 + 2)),
            tcp_flags: 0,
            l4,
        },
        ipv4::PROTO_ICMP if f.len() >= l4 + icmpv4::HEADER_LEN => {
            let ty = f[l4];
            if icmpv4::is_error(ty) {
                Parsed::IcmpError { l4 }
            } else if ty == icmpv4::TYPE_ECHO_REQUEST || ty == icmpv4::TYPE_ECHO_REPLY {
                let id = be16(f, l4 + 4);
                Parsed::Flow {
                    key: FlowKey::new(proto, src, dst, id, id),
                    tcp_flags: 0,
                    l4,
                }
            } else {
                Parsed::Other
            }
        }
        _ => Parsed::Other,
    }
}

/// Rewrites addresses and ports (ICMP: the echo identifier) of the packet whose tuple is
/// `from` so that it reads `to`, updating the IPv4 and L4 checksums incrementally.
#[inline]
pub(super) fn rewrite(f: &mut [u8], l4: usize, from: &FlowKey, to: &FlowKey) {
    if let Ok(mut ip) = Packet::new_checked(&mut f[L3..]) {
        if from.src != to.src {
            ip.rewrite_src(to.src);
        }
        if from.dst != to.dst {
            ip.rewrite_dst(to.dst);
        }
    }
    rewrite_l4(f, l4, from, to, true);
}

/// The L4 part of `rewrite`. Also used on quoted headers, whose TCP checksum may lie past
/// the end of the quote (then only the ports change); `pseudo`: the checksum covers the
/// addresses (TCP/UDP pseudo-header).
pub(super) fn rewrite_l4(f: &mut [u8], l4: usize, from: &FlowKey, to: &FlowKey, pseudo: bool) {
    let fix = |c: u16| -> u16 {
        let mut c = c;
        if pseudo {
            c = checksum::update32(c, from.src, to.src);
            c = checksum::update32(c, from.dst, to.dst);
        }
        c = checksum::update16(c, from.sport, to.sport);
        checksum::update16(c, from.dport, to.dport)
    };
    match from.proto {
        ipv4::PROTO_TCP => {
            if f.len() >= l4 + 18 {
                let c = fix(be16(f, l4 + 16));
                set_be16(f, l4 + 16, c);
            }
            set_be16(f, l4, to.sport);
            set_be16(f, l4 + 2, to.dport);
        }
        ipv4::PROTO_UDP => {
            if f.len() >= l4 + 8 {
                let c = be16(f, l4 + 6);
                if c != 0 {
                    let n = fix(c);
                    set_be16(f, l4 + 6, if n == 0 { 0xffff } else { n });
                }
            }
            set_be16(f, l4, to.sport);
            set_be16(f, l4 + 2, to.dport);
        }
        // Echo: the identifier is both "ports"; no pseudo-header.
        ipv4::PROTO_ICMP if from.sport != to.sport && f.len() >= l4 + 6 => {
            let c = checksum::update16(be16(f, l4 + 2), from.sport, to.sport);
            set_be16(f, l4 + 2, c);
            set_be16(f, l4 + 4, to.sport);
        }
        _ => {}
    }
}

/// Turns a TCP segment into the RST|ACK its sender would get from a closed port, in place
/// (RFC 9293 3.10.7.1); returns the new frame length.
pub(super) fn tcp_reset(f: &mut [u8], l4: usize) -> usize {
    let ip_total = usize::from(be16(f, L3 + 2));
    let (src, dst) = (ip4(f, L3 + 12), ip4(f, L3 + 16));
    let (sport, dport) = (be16(f, l4), be16(f, l4 + 2));
    let seq = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
    let ackno = u32::from_be_bytes([f[l4 + 8], f[l4 + 9], f[l4 + 10], f[l4 + 11]]);
    let doff = usize::from(f[l4 + 12] >> 4) * 4;
    let flags = f[l4 + 13];
    let payload = (ip_total + L3).saturating_sub(l4 + doff) as u32;
    let mut ack = seq.wrapping_add(payload);
    if flags & tcp::FLAG_SYN != 0 {
        ack = ack.wrapping_add(1);
    }
    if flags & tcp::FLAG_FIN != 0 {
        ack = ack.wrapping_add(1);
    }
    let my_seq = if flags & tcp::FLAG_ACK != 0 { ackno } else { 0 };
    let total = ipv4::MIN_HEADER_LEN + tcp::MIN_HEADER_LEN;
    ipv4::emit(
        &mut f[L3..L3 + ipv4::MIN_HEADER_LEN],
        0,
        total as u16,
        0,
        ipv4::FLAG_DF,
        64,
        ipv4::PROTO_TCP,
        dst,
        src,
    );
    let t = L3 + ipv4::MIN_HEADER_LEN;
    let seg = &mut f[t..t + tcp::MIN_HEADER_LEN];
    set_be16(seg, 0, dport);
    set_be16(seg, 2, sport);
    seg[4..8].copy_from_slice(&my_seq.to_be_bytes());
    seg[8..12].copy_from_slice(&ack.to_be_bytes());
    seg[12] = 5 << 4;
    seg[13] = tcp::FLAG_RST | tcp::FLAG_ACK;
    seg[14..20].fill(0);
    let ph = checksum::pseudo_header(dst, src, ipv4::PROTO_TCP, tcp::MIN_HEADER_LEN as u16);
    let c = checksum::finish(checksum::sum(seg, ph));
    set_be16(seg, 16, c);
    L3 + total
}
