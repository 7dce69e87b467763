//! The connection key: a 5-tuple (ICMP echo: addresses, protocol and the identifier in both
//! port fields), and the entry's direction and state.

use crate::config::services::Timeouts;
use crate::wire::ipv4;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    pub fn new(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Self {
        FlowKey {
            proto,
            src,
            dst,
            sport,
            dport,
        }
    }

    /// The same flow seen from the other side.
    #[inline]
    pub fn inverse(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    #[inline]
    pub(super) fn words(&self) -> [u32; 4] {
        [
            u32::from_be_bytes(self.src),
            u32::from_be_bytes(self.dst),
            u32::from(self.sport) << 16 | u32::from(self.dport),
            u32::from(self.proto),
        ]
    }

    pub fn proto_name(&self) -> &'static str {
        match self.proto {
            ipv4::PROTO_TCP => "tcp",
            ipv4::PROTO_UDP => "udp",
            ipv4::PROTO_ICMP => "icmp",
            _ => "ip",
        }
    }

    /// `src=..,dst=..,sport=..,dport=..` (ICMP: `id=..`).
    pub fn fields(&self) -> String {
        if self.proto == ipv4::PROTO_ICMP {
            format!(
                "src={},dst={},id={}",
                Ipv4Addr::from(self.src),
                Ipv4Addr::from(self.dst),
                self.sport
            )
        } else {
            format!(
                "src={},dst={},sport={},dport={}",
                Ipv4Addr::from(self.src),
                Ipv4Addr::from(self.dst),
                self.sport,
                self.dport
            )
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.proto_name(), self.fields())
    }
}

/// Which tuple of its entry a packet matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Orig,
    Reply,
}

/// Entry flags.
pub mod flag {
    /// A packet was seen in the reply direction (never evicted when the table is full).
    pub const SEEN_REPLY: u8 = 1;
    /// Destination translated to a Service endpoint (checked by stale cleanup).
    pub const SERVICE: u8 = 2;
    /// Source translated (masquerade, external traffic, hairpin, clash resolution).
    pub const SNAT: u8 = 4;
    /// A ClientIP session-affinity record, not a connection.
    pub const AFFINITY: u8 = 8;
    pub const FIN_ORIG: u8 = 16;
    pub const FIN_REPLY: u8 = 32;
    /// Created by the netpol stage for a flow a NetworkPolicy applies to (no translation).
    pub const POLICY: u8 = 64;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum State {
    #[default]
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpCloseWait,
    TcpLastAck,
    TcpTimeWait,
    TcpClose,
    /// UDP / ICMP without a reply yet.
    Unreplied,
    /// UDP / ICMP with traffic both ways.
    Replied,
    Affinity,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::TcpSynSent => "SYN_SENT",
            State::TcpSynRecv => "SYN_RECV",
            State::TcpEstablished => "ESTABLISHED",
            State::TcpFinWait => "FIN_WAIT",
            State::TcpCloseWait => "CLOSE_WAIT",
            State::TcpLastAck => "LAST_ACK",
            State::TcpTimeWait => "TIME_WAIT",
            State::TcpClose => "CLOSE",
            State::Unreplied => "UNREPLIED",
            State::Replied => "REPLIED",
            State::Affinity => "AFFINITY",
        }
    }

    /// Timeout of the state in seconds.
    pub fn timeout_secs(self, proto: u8, t: &Timeouts) -> u32 {
        match self {
            State::TcpSynSent => t.tcp_syn_sent,
            State::TcpSynRecv => t.tcp_syn_recv,
            State::TcpEstablished => t.tcp_established,
            State::TcpFinWait => t.tcp_fin_wait,
            State::TcpCloseWait => t.tcp_close_wait,
            State::TcpLastAck => t.tcp_last_ack,
            State::TcpTimeWait => t.tcp_time_wait,
            State::TcpClose => t.tcp_close,
            State::Unreplied if proto == ipv4::PROTO_ICMP => t.icmp,
            State::Replied if proto == ipv4::PROTO_ICMP => t.icmp,
            State::Unreplied => t.udp,
            State::Replied => t.udp_stream,
            State::Affinity => 0,
        }
    }
}
