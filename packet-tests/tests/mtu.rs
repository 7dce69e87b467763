//! Path MTU: ICMP fragmentation needed, fragmentation, MSS clamping, TTL expiry and the
//! ICMP error rate limit.

use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{Icmpv4Type, IpNumber, Ipv4Header, PacketHeaders, TransportHeader};
use podswitch_packet_tests::*;
use std::time::Duration;

/// A pod A -> pod B UDP packet whose IPv4 total length is `total`.
fn a_to_b(total: usize, df: bool) -> Vec<u8> {
    from_pod_a(
        &Ip::new(POD_A, POD_B).df(df).ident(0x5151),
        &L4::udp(40000, 9000, total - 28),
    )
}

/// Checks an ICMP error sent back to pod A on its own port and returns (type, quote).
#[track_caller]
fn icmp_error_to_pod_a(out: &[u8], original: &[u8]) -> (Icmpv4Type, Vec<u8>) {
    let d = decode(out); // IPv4 and ICMP checksums verified by smoltcp
    assert_eq!(d.eth.destination, POD_A_MAC);
    assert_eq!(d.eth.source, GATEWAY_MAC);
    let h = d.ip();
    assert_eq!(
        (h.source, h.destination),
        (GATEWAY, POD_A),
        "from the gateway to the sender"
    );
    assert_eq!(h.protocol, IpNumber::ICMP);
    assert!(h.time_to_live > 1);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let icmp = d.icmp();
    assert_eq!(
        icmp.checksum,
        icmp.icmp_type.calc_checksum(&d.payload),
        "etherparse agrees on the ICMP checksum"
    );
    // The quote: the original IPv4 header and at least 8 bytes after it (RFC 792), at most
    // 576 bytes in all (RFC 1812).
    let quote = d.payload.clone();
    let orig_ip = &original[14..];
    assert!(usize::from(h.total_len) <= 576);
    assert!(quote.len() >= 28);
    assert_eq!(
        quote[..],
        orig_ip[..quote.len()],
        "quote is the start of the original packet, unchanged"
    );
    let (q, _) = Ipv4Header::from_slice(&quote).expect("quoted IPv4 header");
    let (o, _) = Ipv4Header::from_slice(orig_ip).expect("original");
    assert_eq!(
        (q.source, q.destination, q.protocol),
        (o.source, o.destination, o.protocol)
    );
    assert_eq!(q.header_checksum, q.calc_header_checksum());
    (icmp.icmp_type, quote)
}

fn frag_needed(mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    })
}

#[test]
fn df_1500_over_vxlan_gets_frag_needed_1450() {
    let snap = snapshot("node1-vxlan");
    let input = a_to_b(1500, true);
    let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
    assert!(r.tx(UPLINK).is_empty(), "nothing leaves on the uplink");
    let out = r.tx(POD_A_PORT);
    assert_eq!(out.len(), 1);
    let (ty, quote) = icmp_error_to_pod_a(&out[0], &input);
    assert_eq!(ty, frag_needed(1450));
    assert_eq!(quote.len(), 576 - 28, "as much as fits in 576 bytes");
    assert_eq!(quote[8], 64, "quoted TTL is the one received");
    assert_eq!(r.drops("mtu_exceeded"), 1);
    assert_eq!(r.events("icmp_error_sent"), 1);
    assert_eq!(r.out.verdicts[0].out, vec![POD_A_PORT.to_string()]);
}

#[test]
fn df_boundaries_over_vxlan() {
    let snap = snapshot("node1-vxlan");
    let out = forward_one(&snap, POD_A_PORT, &a_to_b(1450, true), UPLINK);
    assert_eq!(out.len(), 1450 + 14 + 50, "1514: a full uplink frame");
    let (_, _, inner) = decode(&out).vxlan();
    assert_eq!(decode(&inner).ip().total_len, 1450);
    let input = a_to_b(1451, true);
    let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
    assert_eq!(icmp_error_to_pod_a(&out, &input).0, frag_needed(1450));
}

#[test]
fn df_over_ipip_gets_frag_needed_1480() {
    let snap = snapshot("node1-ipip");
    let out = forward_one(&snap, POD_A_PORT, &a_to_b(1480, true), UPLINK);
    assert_eq!(out.len(), 1480 + 14 + 20);
    let input = a_to_b(1481, true);
    let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
    assert_eq!(icmp_error_to_pod_a(&out, &input).0, frag_needed(1480));
    let input = a_to_b(1500, true);
    let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
    assert_eq!(icmp_error_to_pod_a(&out, &input).0, frag_needed(1480));
}

#[test]
fn frag_needed_on_the_smallest_uplink_mtu() {
    // uplink.mtu 626 (the minimum) leaves 576 for VXLAN: the quote is still cut at 548.
    let snap = snapshot_with("node1-vxlan", |c| c.uplink.mtu = 626);
    forward_one(&snap, POD_A_PORT, &a_to_b(576, true), UPLINK);
    for total in [577, 1500] {
        let input = a_to_b(total, true);
        let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
        let (ty, quote) = icmp_error_to_pod_a(&out, &input);
        assert_eq!(ty, frag_needed(576));
        assert_eq!(quote.len(), 548);
    }
}

#[test]
fn local_pod_with_a_smaller_mtu() {
    let snap = snapshot_with("node1-vxlan", |c| c.pods[1].mtu = 1400);
    let to_c = |total: usize, df: bool| {
        from_pod_a(
            &Ip::new(POD_A, POD_C).df(df).ident(0x5151),
            &L4::udp(1, 2, total - 28),
        )
    };
    forward_one(&snap, POD_A_PORT, &to_c(1400, true), POD_C_PORT);
    let input = to_c(1401, true);
    let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
    assert_eq!(icmp_error_to_pod_a(&out, &input).0, frag_needed(1400));
    // Without DF: fragments delivered to pod C.
    let input = to_c(1500, false);
    let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
    let out = r.tx(POD_C_PORT);
    assert_eq!(out.len(), 2);
    let mut data = Vec::new();
    for f in &out {
        let d = decode(f);
        assert_eq!(d.eth.destination, POD_C_MAC);
        assert!(d.ip().total_len <= 1400);
        data.push((d.ip().fragment_offset.value(), d.ip_payload.clone()));
    }
    data.sort();
    let joined: Vec<u8> = data.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(joined, input[34..]);
}

/// Decodes the fragments (bare IPv4 packets), checks them and returns the reassembled payload.
#[track_caller]
fn reassemble(frags: &[Vec<u8>], mtu: usize, ident: u16) -> Vec<u8> {
    let mut parts: Vec<(usize, bool, Vec<u8>)> = Vec::new();
    for f in frags {
        let (h, rest) = Ipv4Header::from_slice(f).expect("fragment header");
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert!(
            f.len() <= mtu,
            "fragment of {} bytes for mtu {mtu}",
            f.len()
        );
        assert_eq!(usize::from(h.total_len), f.len());
        assert_eq!(h.identification, ident);
        assert!(!h.dont_fragment);
        assert_eq!((h.source, h.destination), (POD_A, POD_B));
        assert_eq!(h.time_to_live, 63);
        let off = usize::from(h.fragment_offset.value()) * 8;
        assert_eq!(off % 8, 0);
        if h.more_fragments {
            assert_eq!(
                rest.len() % 8,
                0,
                "non-last fragment payload is a multiple of 8"
            );
        }
        parts.push((off, h.more_fragments, rest.to_vec()));
    }
    parts.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (k, (off, mf, p)) in parts.iter().enumerate() {
        assert_eq!(*off, data.len(), "fragments are contiguous");
        assert_eq!(*mf, k + 1 < parts.len(), "MF set on all but the last");
        data.extend_from_slice(p);
    }
    data
}

#[test]
fn without_df_1500_over_vxlan_is_fragmented_and_encapsulated() {
    let snap = snapshot("node1-vxlan");
    let input = a_to_b(1500, false);
    let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
    let out = r.tx(UPLINK);
    assert_eq!(out.len(), 2, "1480 bytes of payload in two fragments");
    assert_eq!(
        r.out.verdicts[0].out,
        vec![UPLINK.to_string(), UPLINK.to_string()]
    );
    assert_eq!(r.events("fragmented"), 1);
    assert_eq!(r.events("fragments_made"), 2);
    assert_eq!(r.events("encapsulated"), 2);
    let mut frags = Vec::new();
    for f in &out {
        let d = decode(f);
        assert_eq!((d.eth.source, d.eth.destination), (UPLINK_MAC, NODE2_MAC));
        assert_eq!((d.ip().source, d.ip().destination), (NODE1, NODE2));
        assert!(d.ip().dont_fragment);
        assert_eq!(d.udp().destination_port, 8472);
        let (flags, vni, inner) = d.vxlan();
        assert_eq!((flags, vni), (0x08, 1));
        let i = decode(&inner);
        assert_eq!((i.eth.source, i.eth.destination), (VTEP1_MAC, VTEP2_MAC));
        assert!(f.len() <= 1514);
        frags.push(inner[14..].to_vec());
    }
    let data = reassemble(&frags, 1450, 0x5151);
    assert_eq!(data, input[34..], "reassembled payload equals the original");
}

#[test]
fn without_df_over_ipip_is_fragmented_to_1480() {
    let snap = snapshot("node1-ipip");
    let input = a_to_b(1500, false);
    let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
    let out = r.tx(UPLINK);
    assert_eq!(out.len(), 2);
    let mut frags = Vec::new();
    for f in &out {
        let d = decode(f);
        assert_eq!(d.ip().protocol, IpNumber::IPV4);
        assert_eq!(usize::from(d.ip().total_len), f.len() - 14);
        frags.push(d.ip_payload.clone());
    }
    assert_eq!(reassemble(&frags, 1480, 0x5151), input[34..]);
}

#[test]
fn without_df_small_packets_are_not_fragmented() {
    let snap = snapshot("node1-vxlan");
    let out = forward_one(&snap, POD_A_PORT, &a_to_b(1450, false), UPLINK);
    let (_, _, inner) = decode(&out).vxlan();
    let h = decode(&inner).ip().clone();
    assert!(!h.more_fragments && h.fragment_offset.value() == 0);
}

fn inner_tcp(out: &[u8]) -> etherparse::TcpHeader {
    let (_, _, inner) = decode(out).vxlan();
    decode(&inner).tcp()
}

#[test]
fn syn_mss_is_clamped_over_vxlan_and_ipip() {
    let snap = snapshot("node1-vxlan");
    let input = from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1460));
    let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
    let out = r.tx(UPLINK);
    let t = inner_tcp(&out[0]); // decode verified the TCP checksum with smoltcp
    assert_eq!(mss_of(&t), Some(1410));
    assert!(t.syn && !t.ack);
    assert_eq!(r.events("mss_clamped"), 1);
    // Everything but the MSS value and the checksum is untouched.
    let (_, _, inner) = decode(&out[0]).vxlan();
    let (orig_tcp, new_tcp) = (&input[34..], &inner[34..]);
    assert_eq!(orig_tcp.len(), new_tcp.len());
    for k in 0..orig_tcp.len() {
        if !(16..18).contains(&k) && !(22..24).contains(&k) {
            assert_eq!(orig_tcp[k], new_tcp[k], "TCP byte {k}");
        }
    }
    assert_eq!(new_tcp[22..24], 1410u16.to_be_bytes());

    let snap = snapshot("node1-ipip");
    let out = forward_one(&snap, POD_A_PORT, &input, UPLINK);
    let d = decode(&out);
    match PacketHeaders::from_ip_slice(&d.ip_payload)
        .expect("inner")
        .transport
    {
        Some(TransportHeader::Tcp(t)) => assert_eq!(mss_of(&t), Some(1440)),
        t => panic!("not TCP: {t:?}"),
    }
}

#[test]
fn syn_ack_decapsulated_from_node2_is_clamped_to_1410() {
    let snap = snapshot("node1-vxlan");
    let inner = inner_from_node2(&Ip::new(POD_B, POD_A), &L4::syn_ack(1460));
    let r = replay_frames(&snap, &[(UPLINK, vxlan_from_node2(&inner))]);
    let out = r.tx(POD_A_PORT);
    assert_eq!(out.len(), 1);
    let t = decode(&out[0]).tcp();
    assert!(t.syn && t.ack);
    assert_eq!(mss_of(&t), Some(1410));
    assert_eq!(r.events("mss_clamped"), 1);
}

#[test]
fn smaller_mss_is_untouched() {
    let snap = snapshot("node1-vxlan");
    let input = from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1200));
    let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
    let out = r.tx(UPLINK);
    let (_, _, inner) = decode(&out[0]).vxlan();
    assert_eq!(inner[34..], input[34..], "TCP segment byte-identical");
    assert_eq!(r.events("mss_clamped"), 0);
    // Exactly the limit is untouched too.
    let input = from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1410));
    let out = forward_one(&snap, POD_A_PORT, &input, UPLINK);
    assert_eq!(mss_of(&inner_tcp(&out)), Some(1410));
    // A SYN-ACK from node2 with a small MSS as well.
    let inner = inner_from_node2(&Ip::new(POD_B, POD_A), &L4::syn_ack(536));
    let out = forward_one(&snap, UPLINK, &vxlan_from_node2(&inner), POD_A_PORT);
    assert_eq!(mss_of(&decode(&out).tcp()), Some(536));
}

#[test]
fn syn_without_mss_option_is_left_alone() {
    let snap = snapshot("node1-vxlan");
    let l4 = L4::TcpSyn {
        sport: 1,
        dport: 2,
        mss: None,
        ack: None,
    };
    let input = from_pod_a(&Ip::new(POD_A, POD_B), &l4);
    let out = forward_one(&snap, POD_A_PORT, &input, UPLINK);
    let (_, _, inner) = decode(&out).vxlan();
    assert_eq!(inner[34..], input[34..]);
}

#[test]
fn ttl_1_gets_time_exceeded() {
    for cfg in ["node1-vxlan", "node1-ipip", "node1-host-gw"] {
        let snap = snapshot(cfg);
        for dst in [POD_B, POD_C] {
            let input = from_pod_a(&Ip::new(POD_A, dst).ttl(1), &L4::udp(1, 2, 40));
            let r = replay_frames(&snap, &[(POD_A_PORT, input.clone())]);
            assert!(
                r.tx(UPLINK).is_empty() && r.tx(POD_C_PORT).is_empty(),
                "{cfg}: not forwarded"
            );
            let out = r.tx(POD_A_PORT);
            assert_eq!(out.len(), 1, "{cfg}");
            let (ty, quote) = icmp_error_to_pod_a(&out[0], &input);
            assert_eq!(
                ty,
                Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)
            );
            assert_eq!(quote.len(), input.len() - 14, "short packet quoted whole");
            assert_eq!(r.drops("ttl_expired"), 1);
            assert_eq!(r.events("icmp_error_sent"), 1);
        }
    }
}

#[test]
fn ttl_1_from_node2_gets_time_exceeded_back_through_the_tunnel() {
    let snap = snapshot("node1-vxlan");
    let inner = inner_from_node2(&Ip::new(POD_B, POD_A).ttl(1), &L4::udp(1, 2, 10));
    let out = forward_one(&snap, UPLINK, &vxlan_from_node2(&inner), UPLINK);
    let d = decode(&out);
    assert_eq!((d.ip().source, d.ip().destination), (NODE1, NODE2));
    let (_, _, back) = d.vxlan();
    let i = decode(&back);
    assert_eq!((i.ip().source, i.ip().destination), (GATEWAY, POD_B));
    assert_eq!(
        i.icmp().icmp_type,
        Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)
    );
    assert_eq!(
        i.payload[..],
        inner[14..],
        "quotes the inner packet as received"
    );
}

fn ttl1(k: u16) -> Vec<u8> {
    from_pod_a(&Ip::new(POD_A, POD_B).ttl(1).ident(k), &L4::udp(1, 2, 8))
}

#[test]
fn icmp_errors_are_rate_limited() {
    let snap = snapshot_with("node1-vxlan", |c| {
        c.icmp.errors_per_sec = 1;
        c.icmp.burst = 3;
    });
    // Four errors in the same instant: the burst (3) is sent, the fourth is not.
    let frames: Vec<(&str, Vec<u8>)> = (0..4).map(|k| (POD_A_PORT, ttl1(k))).collect();
    let r = replay_frames(&snap, &frames);
    assert_eq!(r.tx(POD_A_PORT).len(), 3);
    for v in &r.out.verdicts[..3] {
        assert_eq!(v.out, vec![POD_A_PORT.to_string()]);
    }
    assert_eq!(r.out.verdicts[3].out, Vec::<String>::new());
    assert_eq!(
        r.out.verdicts[3].drops,
        vec!["icmp_rate_limited".to_string()]
    );
    assert_eq!(r.drops("icmp_rate_limited"), 1);
    assert_eq!(r.drops("ttl_expired"), 4, "every expired packet is counted");
    assert_eq!(r.events("icmp_error_sent"), 3);
    for (k, f) in r.tx(POD_A_PORT).iter().enumerate() {
        let (_, quote) = icmp_error_to_pod_a(f, &ttl1(k as u16));
        assert_eq!(
            quote[4..6],
            (k as u16).to_be_bytes(),
            "errors for the first three packets"
        );
    }
}

#[test]
fn icmp_rate_limit_refills_with_time() {
    let snap = snapshot_with("node1-vxlan", |c| {
        c.icmp.errors_per_sec = 1;
        c.icmp.burst = 3;
    });
    // A full batch (64) at t=0 drains the bucket; one more at t=2s gets a fresh token.
    let mut frames: Vec<(Duration, &str, Vec<u8>)> = (0..64)
        .map(|k| (Duration::ZERO, POD_A_PORT, ttl1(k)))
        .collect();
    frames.push((Duration::from_secs(2), POD_A_PORT, ttl1(64)));
    frames.push((Duration::from_secs(2), POD_A_PORT, ttl1(65)));
    frames.push((Duration::from_secs(2), POD_A_PORT, ttl1(66)));
    let r = replay_timed(&snap, &frames);
    assert_eq!(r.drops("icmp_rate_limited"), 61 + 1);
    assert_eq!(
        r.events("icmp_error_sent"),
        3 + 2,
        "two tokens after two seconds"
    );
    assert_eq!(r.out.verdicts[64].out, vec![POD_A_PORT.to_string()]);
    assert_eq!(r.out.verdicts[65].out, vec![POD_A_PORT.to_string()]);
    assert_eq!(
        r.out.verdicts[66].drops,
        vec!["icmp_rate_limited".to_string()]
    );
}
