//! Every reason a packet can be dropped (or consumed), each owned by one stage.

use super::stage::Stage;

macro_rules! reasons {
    ($( $variant:ident => $stage:ident, $name:literal, $doc:literal; )*) => {
        /// Why a packet did not leave the pipeline.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum DropReason { $( #[doc = $doc] $variant, )* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
            /// Stable snake_case name, used in counters and dumps.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
            pub fn stage(self) -> Stage {
                match self { $(DropReason::$variant => Stage::$stage,)* }
            }
            pub fn description(self) -> &'static str {
                match self { $(DropReason::$variant => $doc,)* }
            }
        }
    };
}

reasons! {
    EthTruncated => EthInput, "eth_truncated", "frame shorter than an Ethernet header";
    FrameTooLong => EthInput, "frame_too_long", "frame longer than the port accepts";
    ChainEmptyBuffer => EthInput, "chain_empty_buffer", "multi-buffer frame with an empty buffer in its chain";
    ChainNoBuffer => EthInput, "chain_no_buffer", "multi-buffer frame, but the batch has no room left for its tail";
    ChainNotIpv4 => EthInput, "chain_not_ipv4", "multi-buffer frame that is not IPv4";
    UnknownPort => EthInput, "unknown_port", "frame from a port the tables do not know";
    VlanTruncated => EthInput, "vlan_truncated", "802.1Q tag cut short";
    VlanNotAllowed => EthInput, "vlan_not_allowed", "VLAN-tagged frame on a port not configured for that VLAN";
    QinqUnsupported => EthInput, "qinq_unsupported", "802.1ad (QinQ) frame";
    SrcMacMulticast => EthInput, "src_mac_multicast", "source MAC is multicast or broadcast";
    MacSpoofed => EthInput, "mac_spoofed", "source MAC is not the pod's MAC";
    UnknownDstMac => EthInput, "unknown_dst_mac", "unicast to a MAC this switch does not know";
    MulticastDst => EthInput, "multicast_dst", "multicast frame (not forwarded)";
    UnhandledBroadcast => EthInput, "unhandled_broadcast", "broadcast that is not ARP";
    Ipv6Unsupported => EthInput, "ipv6_unsupported", "IPv6 frame (IPv4-only dataplane)";
    UnsupportedEthertype => EthInput, "unsupported_ethertype", "ethertype neither IPv4 nor ARP";
    ArpMalformed => Arp, "arp_malformed", "ARP not Ethernet/IPv4 or truncated";
    ArpSpoofed => Arp, "arp_spoofed", "ARP sender address not owned by the sending port";
    ArpOnUplink => Arp, "arp_on_uplink", "ARP on the uplink belongs to the kernel";
    ArpTargetUnknown => Arp, "arp_target_unknown", "ARP request for an address not served here";
    ArpGratuitous => Arp, "arp_gratuitous", "gratuitous ARP consumed (tables are programmed, not learned)";
    ArpReplyConsumed => Arp, "arp_reply_consumed", "ARP reply addressed to the switch, consumed";
    ArpUnknownOp => Arp, "arp_unknown_op", "ARP operation other than request or reply";
    L2Hairpin => L2Fwd, "l2_hairpin", "destination MAC is behind the input port";
    L2IpSpoofed => L2Fwd, "ip_spoofed_l2", "bridged IPv4 with a source address not owned by the pod";
    Ip4Truncated => Ip4Input, "ip4_truncated", "shorter than an IPv4 header";
    Ip4BadVersion => Ip4Input, "ip4_bad_version", "IPv4 ethertype with version not 4";
    Ip4BadIhl => Ip4Input, "ip4_bad_ihl", "IHL below 5 or header longer than the packet";
    Ip4TotalLenExceedsFrame => Ip4Input, "ip4_total_len_exceeds_frame", "IPv4 total length longer than the frame";
    Ip4BadChecksum => Ip4Input, "ip4_bad_checksum", "IPv4 header checksum invalid";
    Ip4MartianSrc => Ip4Input, "ip4_martian_src", "source is 0.0.0.0, loopback, multicast or broadcast";
    Ip4SpoofedSrc => Ip4Input, "ip4_spoofed_src", "source address not owned by the sending pod";
    ChainHeadersSplit => Ip4Input, "chain_headers_split", "multi-buffer frame whose IPv4 and TCP/UDP headers are not all in its first buffer";
    ChainFragment => Ip4Input, "chain_fragment", "multi-buffer IPv4 fragment (never reassembled or translated)";
    Ip4BadFragment => Ip4Input, "ip4_bad_fragment", "fragment without payload, or ending past the 65535-byte datagram limit";
    CtInvalid => Nat44In, "ct_invalid", "TCP segment that is not a SYN, for a Service, with no conntrack entry";
    SvcNoPort => Nat44In, "svc_no_port", "to a Service address, but no Service port matches the protocol and port";
    SvcNoEndpoints => Nat44In, "svc_no_endpoints", "Service without endpoints (TCP RST or ICMP port unreachable sent)";
    SvcNoLocalEndpoints => Nat44In, "svc_no_local_endpoints", "traffic policy Local and no endpoint on this node";
    NatFragment => Nat44In, "nat_fragment", "first fragment too short to carry its TCP/UDP/ICMP header, on a path that may be translated";
    NatFragmentUnknown => Nat44In, "nat_fragment_unknown", "non-first fragment that may need translation, first fragment not seen yet and no room to hold it";
    NatFragmentExpired => Nat44In, "nat_fragment_expired", "held fragment whose first fragment did not come within the fragment lifetime";
    NatFragmentHeadDropped => Nat44In, "nat_fragment_head_dropped", "non-first fragment of a datagram whose first fragment was dropped or rejected";
    NatFragmentTablesChanged => Nat44In, "nat_fragment_tables_changed", "held fragment released after a table change (its input port may have been renumbered)";
    NatUnavailable => Nat44In, "nat_unavailable", "Service traffic, but the pipeline has no conntrack table";
    IcmpQuoteTruncated => Nat44In, "icmp_quote_truncated", "ICMP error quoting less than an IPv4 header and 8 bytes";
    IcmpErrorUnmatched => Nat44In, "icmp_error_unmatched", "ICMP error about a translated address that matches no conntrack entry";
    PolicyDeniedEgress => NetPol, "policy_denied_egress", "no NetworkPolicy selecting the source pod allows this egress";
    PolicyDeniedIngress => NetPol, "policy_denied_ingress", "no NetworkPolicy selecting the destination pod allows this ingress";
    Ip4MartianDst => Ip4Lookup, "ip4_martian_dst", "destination is multicast, broadcast, loopback or 0.0.0.0";
    NoRoute => Ip4Lookup, "no_route", "no FIB entry for the destination";
    NeighbourUnresolved => Ip4Lookup, "neighbour_unresolved", "next hop has no MAC";
    UplinkTransit => Ip4Lookup, "uplink_transit", "packet from the uplink not addressed to this node's pods";
    DecapDstNotLocal => Ip4Lookup, "decap_dst_not_local", "decapsulated packet not addressed to this node's pods";
    NoSuchPod => Ip4Lookup, "no_such_pod", "address in the local pod subnet with no pod (ICMP host unreachable sent)";
    ConntrackFull => Nat44In, "conntrack_full", "conntrack table full of flows that saw replies: new flow refused";
    NatPortsExhausted => Nat44In, "nat_ports_exhausted", "no free source port for the translation";
    SnatInvalid => Nat44In, "snat_ct_invalid", "TCP segment that is not a SYN with no conntrack entry, would leave masqueraded";
    LocalProtoUnhandled => Ip4Local, "local_proto_unhandled", "to the gateway or node address but not ICMP echo or a tunnel";
    NestedTunnel => Ip4Local, "nested_tunnel", "tunnel packet inside a tunnel: never decapsulated twice";
    LocalChained => Ip4Local, "local_chained", "multi-buffer frame to the gateway or node address";
    TunnelFragment => Ip4Local, "tunnel_fragment", "fragmented tunnel packet (no reassembly)";
    IcmpTruncated => Ip4Local, "icmp_truncated", "ICMP shorter than its header";
    VxlanDecapChained => VxlanDecap, "vxlan_decap_chained", "multi-buffer VXLAN packet (never decapsulated)";
    UdpBadLength => VxlanDecap, "udp_bad_length", "UDP length field disagrees with the packet";
    VxlanTruncated => VxlanDecap, "vxlan_truncated", "VXLAN header or inner frame cut short";
    VxlanBadFlags => VxlanDecap, "vxlan_bad_flags", "VXLAN I flag not set";
    VxlanUnknownVni => VxlanDecap, "vxlan_unknown_vni", "VXLAN VNI is not the configured one";
    VxlanUnknownPeer => VxlanDecap, "vxlan_unknown_peer", "VXLAN from an address that is not a known node";
    VxlanInnerDstMac => VxlanDecap, "vxlan_inner_dst_mac", "inner destination MAC is not this node's VTEP MAC";
    VxlanInnerNotIpv4 => VxlanDecap, "vxlan_inner_not_ipv4", "inner frame is not IPv4";
    VxlanInnerSrcMismatch => VxlanDecap, "vxlan_inner_src_mismatch", "inner source is neither the sending node nor one of its pods";
    IpipDecapChained => IpipDecap, "ipip_decap_chained", "multi-buffer IP-in-IP packet (never decapsulated)";
    IpipUnknownPeer => IpipDecap, "ipip_unknown_peer", "IP-in-IP from an address that is not a known node";
    IpipTruncated => IpipDecap, "ipip_truncated", "IP-in-IP inner header cut short";
    IpipInnerSrcMismatch => IpipDecap, "ipip_inner_src_mismatch", "inner source is neither the sending node nor one of its pods";
    TtlExpired => IcmpError, "ttl_expired", "TTL expired in transit (ICMP time exceeded sent unless suppressed)";
    MtuExceeded => IcmpError, "mtu_exceeded", "too big with DF set (ICMP fragmentation needed sent unless suppressed)";
    IcmpRateLimited => IcmpError, "icmp_rate_limited", "ICMP error not sent: rate limit reached";
    IcmpNoHeadroom => IcmpError, "icmp_no_headroom", "no headroom to build the ICMP error";
    TsoNotTcp => Ip4Tso, "tso_not_tcp", "super-frame larger than the path that is not an unfragmented IPv4 TCP segment";
    TsoHeadersSplit => Ip4Tso, "tso_headers_split", "super-frame whose Ethernet, IPv4 and TCP headers are not all in its first buffer";
    TsoBadChain => Ip4Tso, "tso_bad_chain", "super-frame chain shorter than its IPv4 total length, or longer than the chain limit";
    TsoBadFlags => Ip4Tso, "tso_bad_flags", "SYN or RST super-frame carrying more than one segment of payload";
    TsoMssTooSmall => Ip4Tso, "tso_mss_too_small", "path MTU leaves no room for payload after the super-frame's headers";
    TsoNoBuffer => Ip4Tso, "tso_no_buffer", "not enough free slots for the super-frame's segments";
    FragChained => Ip4Frag, "frag_chained", "multi-buffer packet without DF too big for its path and not a TCP super-frame: not fragmented";
    FragNoBuffer => Ip4Frag, "frag_no_buffer", "no free slot for another fragment";
    FragMtuTooSmall => Ip4Frag, "frag_mtu_too_small", "path MTU too small to fragment into";
    EncapNoHeadroom => VxlanEncap, "encap_no_headroom", "no headroom for the outer headers";
    IpipEncapNoHeadroom => IpipEncap, "ipip_encap_no_headroom", "no headroom for the outer IPv4 header";
    TxTooBig => Output, "tx_too_big", "frame larger than the output port's MTU";
    LoopLimit => Output, "loop_limit", "packet still in flight after the maximum number of passes";
}

/// Things stages do that are worth counting but are not drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Event {
    ArpReplied,
    EchoReplied,
    IcmpErrorSent,
    MssClamped,
    Fragmented,
    FragmentsMade,
    Encapsulated,
    Decapsulated,
    VlanStripped,
    PaddingTrimmed,
    NatNewService,
    NatNewMasquerade,
    NatRejected,
    NatIcmpTranslated,
    NatFragmentTranslated,
    NatFragmentHeld,
    NatFragmentReleased,
    NatFragmentEvicted,
    TsoSuperFrames,
    TsoSegmentsMade,
    GroSuperFrames,
    GroSegmentsMerged,
    GroFlushPush,
    GroFlushSeq,
    GroFlushFlags,
    GroFlushAck,
    GroFlushOptions,
    GroFlushIp,
    GroFlushLength,
    GroFlushSize,
    GroFlushEvicted,
    GroFlushBatchEnd,
    GroNoBuffer,
    CsumOffloaded,
    CsumFinished,
}

impl Event {
    pub const ALL: [Event; 35] = [
        Event::ArpReplied,
        Event::EchoReplied,
        Event::IcmpErrorSent,
        Event::MssClamped,
        Event::Fragmented,
        Event::FragmentsMade,
        Event::Encapsulated,
        Event::Decapsulated,
        Event::VlanStripped,
        Event::PaddingTrimmed,
        Event::NatNewService,
        Event::NatNewMasquerade,
        Event::NatRejected,
        Event::NatIcmpTranslated,
        Event::NatFragmentTranslated,
        Event::NatFragmentHeld,
        Event::NatFragmentReleased,
        Event::NatFragmentEvicted,
        Event::TsoSuperFrames,
        Event::TsoSegmentsMade,
        Event::GroSuperFrames,
        Event::GroSegmentsMerged,
        Event::GroFlushPush,
        Event::GroFlushSeq,
        Event::GroFlushFlags,
        Event::GroFlushAck,
        Event::GroFlushOptions,
        Event::GroFlushIp,
        Event::GroFlushLength,
        Event::GroFlushSize,
        Event::GroFlushEvicted,
        Event::GroFlushBatchEnd,
        Event::GroNoBuffer,
        Event::CsumOffloaded,
        Event::CsumFinished,
    ];
    pub const COUNT: usize = Self::ALL.len();
    pub fn name(self) -> &'static str {
        match self {
            Event::ArpReplied => "arp_replied",
            Event::EchoReplied => "echo_replied",
            Event::IcmpErrorSent => "icmp_error_sent",
            Event::MssClamped => "mss_clamped",
            Event::Fragmented => "fragmented",
            Event::FragmentsMade => "fragments_made",
            Event::Encapsulated => "encapsulated",
            Event::Decapsulated => "decapsulated",
            Event::VlanStripped => "vlan_stripped",
            Event::PaddingTrimmed => "padding_trimmed",
            Event::NatNewService => "nat_new_service_flow",
            Event::NatNewMasquerade => "nat_new_masquerade_flow",
            Event::NatRejected => "nat_rejected",
            Event::NatIcmpTranslated => "nat_icmp_error_translated",
            // Non-first fragments given their first fragment's translation.
            Event::NatFragmentTranslated => "nat_fragment_translated",
            // Early fragments held until their first fragment comes.
            Event::NatFragmentHeld => "nat_fragment_held",
            // Held fragments sent on once their first fragment came.
            Event::NatFragmentReleased => "nat_fragment_released",
            // Live fragment-table entries replaced by a new datagram's (table full).
            Event::NatFragmentEvicted => "nat_fragment_table_evicted",
            // Super-frames cut into path-sized TCP segments by ip4-tso.
            Event::TsoSuperFrames => "tso_super_frames",
            // Segments ip4-tso made (the super-frame's own slot included).
            Event::TsoSegmentsMade => "tso_segments_made",
            // Super-frames ip4-gro made toward GSO pods.
            Event::GroSuperFrames => "gro_super_frames",
            // Segments that went into them (the first of each included).
            Event::GroSegmentsMerged => "gro_segments_merged",
            // Runs closed (delivered) by ip4-gro, per reason (`pipeline::gro::Flush`).
            Event::GroFlushPush => "gro_flush_push",
            Event::GroFlushSeq => "gro_flush_seq",
            Event::GroFlushFlags => "gro_flush_flags",
            Event::GroFlushAck => "gro_flush_ack",
            Event::GroFlushOptions => "gro_flush_options",
            Event::GroFlushIp => "gro_flush_ip",
            Event::GroFlushLength => "gro_flush_length",
            Event::GroFlushSize => "gro_flush_size",
            Event::GroFlushEvicted => "gro_flush_evicted",
            Event::GroFlushBatchEnd => "gro_flush_batch_end",
            // Runs delivered as segments: no room left in the batch's tail arena.
            Event::GroNoBuffer => "gro_no_buffer",
            // Partial checksums of frames from super-frame pods, toward pods: left to the
            // output port (AF_XDP transmit metadata), or completed in software.
            Event::CsumOffloaded => "csum_offloaded",
            Event::CsumFinished => "csum_finished",
        }
    }
}
