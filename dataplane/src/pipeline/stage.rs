//! The named stages of the pipeline, in the order one pass runs them.
//!
//! A packet's `next` names the stage it waits for. A pass runs every stage once in this
//! order; a packet sent to an earlier stage (after decapsulation, or as an ICMP error that
//! must be routed back) is picked up by the next pass. `Nat44In` (conntrack, Service DNAT
//! and every SNAT, decided and recorded before routing so that the next packet of a flow finds
//! its entry whatever batch or pass it is in) sits between `Ip4Input` and `Ip4Lookup`;
//! `NetPol` (NetworkPolicy) follows it, so policies see translated packets.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[repr(u8)]
pub enum Stage {
    EthInput,
    Arp,
    L2Fwd,
    Ip4Input,
    Nat44In,
    NetPol,
    Ip4Lookup,
    Ip4Local,
    VxlanDecap,
    IpipDecap,
    IcmpError,
    Ip4Rewrite,
    Ip4Tso,
    Ip4Frag,
    VxlanEncap,
    IpipEncap,
    Ip4Gro,
    Output,
    /// Terminal: ready to transmit on `out_port`.
    Out,
    /// Terminal: dropped, reason in `Meta::drop`.
    Dropped,
    /// Terminal: slot unused.
    Done,
}

impl Stage {
    pub const COUNT: usize = Stage::Done as usize + 1;
    /// The stages a pass runs, in order.
    pub const RUN_ORDER: [Stage; 18] = [
        Stage::EthInput,
        Stage::Arp,
        Stage::L2Fwd,
        Stage::Ip4Input,
        Stage::Nat44In,
        Stage::NetPol,
        Stage::Ip4Lookup,
        Stage::Ip4Local,
        Stage::VxlanDecap,
        Stage::IpipDecap,
        Stage::IcmpError,
        Stage::Ip4Rewrite,
        Stage::Ip4Tso,
        Stage::Ip4Frag,
        Stage::VxlanEncap,
        Stage::IpipEncap,
        Stage::Ip4Gro,
        Stage::Output,
    ];

    /// The name used in counters, traces and stats (VPP-style node names).
    pub fn name(self) -> &'static str {
        match self {
            Stage::EthInput => "ethernet-input",
            Stage::Arp => "arp-input",
            Stage::L2Fwd => "l2-fwd",
            Stage::Ip4Input => "ip4-input",
            Stage::Nat44In => "nat44-in",
            Stage::NetPol => "netpol",
            Stage::Ip4Lookup => "ip4-lookup",
            Stage::Ip4Local => "ip4-local",
            Stage::VxlanDecap => "vxlan4-decap",
            Stage::IpipDecap => "ipip4-decap",
            Stage::IcmpError => "ip4-icmp-error",
            Stage::Ip4Rewrite => "ip4-rewrite",
            Stage::Ip4Tso => "ip4-tso",
            Stage::Ip4Frag => "ip4-frag",
            Stage::VxlanEncap => "vxlan4-encap",
            Stage::IpipEncap => "ipip4-encap",
            Stage::Ip4Gro => "ip4-gro",
            Stage::Output => "interface-output",
            Stage::Out => "tx",
            Stage::Dropped => "error-drop",
            Stage::Done => "done",
        }
    }
}
