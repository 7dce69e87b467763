//! Stage implementations. Each file holds one stage: `run(cx, batch, mask)` handles every
//! packet whose bit is set in `mask` and moves it on with `Batch::set_next` or `Cx::drop`.

mod arp;
mod eth_input;
mod icmp_error;
mod ip4_frag;
mod ip4_gro;
mod ip4_input;
mod ip4_local;
mod ip4_lookup;
mod ip4_rewrite;
mod ip4_tso;
mod ipip;
mod l2_fwd;
pub(super) mod l4_checksum;
mod nat44_in;
mod nat_common;
mod nat_frag;
mod nat_icmp;
mod nat_policy;
mod netpol;
mod output;
mod vxlan;

use super::Cx;
use super::batch::Batch;
use super::stage::Stage;

pub(super) fn run(stage: Stage, cx: &mut Cx<'_>, b: &mut Batch, mask: u128) {
    let mask = chains(stage, cx, b, mask);
    match stage {
        Stage::EthInput => each(cx, b, mask, eth_input::packet),
        Stage::Arp => each(cx, b, mask, arp::packet),
        Stage::L2Fwd => each(cx, b, mask, l2_fwd::packet),
        Stage::Ip4Input => each(cx, b, mask, ip4_input::packet),
        Stage::Nat44In => {
            nat_frag::expire(cx);
            nat44_in::prefetch(cx, b, mask);
            each(cx, b, mask, nat44_in::packet);
            netpol::take_over(cx, b);
        }
        Stage::NetPol => each(cx, b, mask, netpol::packet),
        Stage::Ip4Lookup => {
            let routes = ip4_lookup::lookup_batch(cx, b, mask);
            each(cx, b, mask, |cx, b, i| {
                ip4_lookup::packet(cx, b, i, routes.as_ref())
            })
        }
        Stage::Ip4Local => each(cx, b, mask, ip4_local::packet),
        Stage::VxlanDecap => each(cx, b, mask, vxlan::decap),
        Stage::IpipDecap => each(cx, b, mask, ipip::decap),
        Stage::IcmpError => each(cx, b, mask, icmp_error::packet),
        Stage::Ip4Rewrite => each(cx, b, mask, ip4_rewrite::packet),
        Stage::Ip4Tso => each(cx, b, mask, ip4_tso::packet),
        Stage::Ip4Frag => each(cx, b, mask, ip4_frag::packet),
        Stage::VxlanEncap => each(cx, b, mask, vxlan::encap),
        Stage::IpipEncap => each(cx, b, mask, ipip::encap),
        Stage::Ip4Gro => ip4_gro::run(cx, b, mask),
        Stage::Output => each(cx, b, mask, output::packet),
        Stage::Out | Stage::Dropped | Stage::Done => {}
    }
}

/// Multi-buffer frames (see `batch`) at a stage that only works on a single buffer: the
/// ICMP error stage quotes the first buffer (the tail is let go); the stages that would need
/// the whole frame contiguous drop it by name. Returns the packets the stage still runs on.
fn chains(stage: Stage, cx: &mut Cx<'_>, b: &mut Batch, mask: u128) -> u128 {
    use super::drop::DropReason as R;
    let reason = match stage {
        Stage::Ip4Local => R::LocalChained,
        Stage::VxlanDecap => R::VxlanDecapChained,
        Stage::IpipDecap => R::IpipDecapChained,
        Stage::Ip4Frag => R::FragChained,
        Stage::IcmpError => {
            let mut m = mask;
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                b.unchain(i);
            }
            return mask;
        }
        _ => return mask,
    };
    let mut keep = mask;
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        if b.is_chained(i) {
            cx.drop(b, i, reason);
            keep &= !(1u128 << i);
        }
    }
    keep
}

/// Runs one stage's per-packet function over every packet in `mask`. Generic over the
/// function so each stage gets its own loop with the packet code inlined into it (VPP's
/// node-function shape), instead of an indirect call per packet.
#[inline(always)]
fn each(cx: &mut Cx<'_>, b: &mut Batch, mask: u128, f: impl Fn(&mut Cx<'_>, &mut Batch, usize)) {
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        f(cx, b, i);
    }
}

/// Offset of the IPv4 header in a frame (VLAN tags are stripped at input).
pub(super) const L3: usize = crate::wire::ethernet::HEADER_LEN;

/// Fast 32-bit flow hash over addresses, protocol and (if present) ports.
#[inline]
pub(super) fn flow_hash(src: [u8; 4], dst: [u8; 4], proto: u8, ports: u32) -> u32 {
    let mut h = u64::from(u32::from_be_bytes(src)) << 32 | u64::from(u32::from_be_bytes(dst));
    h ^= (u64::from(proto) << 32) | u64::from(ports);
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h ^ (h >> 32)) as u32
}
