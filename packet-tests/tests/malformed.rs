//! Malformed and hostile input: every case names the exact drop reason and checks that
//! nothing was sent (or, for the cases that are forwarded, exactly what was sent).

use etherparse::ArpOperation;
use podswitch::tables::Snapshot;
use podswitch_packet_tests::*;

fn vx() -> Snapshot {
    snapshot("node1-vxlan")
}

/// pod A -> pod C through the gateway, UDP with 20 bytes of payload (62-byte frame).
fn a_to_c() -> Vec<u8> {
    from_pod_a(&Ip::new(POD_A, POD_C), &L4::udp(40000, 53, 20))
}

/// Replays and expects exactly one frame on `out_port`, and no drop.
#[track_caller]
fn forwarded(snap: &Snapshot, in_port: &str, frame: &[u8], out_port: &str) -> Vec<u8> {
    forward_one(snap, in_port, frame, out_port)
}

#[test]
fn frames_shorter_than_an_ethernet_header() {
    let snap = vx();
    let full = a_to_c();
    for port in [POD_A_PORT, UPLINK, HOST_PORT] {
        for n in 0..14 {
            assert_dropped(&snap, port, &full[..n], "eth_truncated");
        }
    }
}

#[test]
fn ipv4_truncated_at_every_length() {
    let snap = vx();
    for full in [
        a_to_c(),
        from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1460)),
        from_pod_a(&Ip::new(POD_A, GATEWAY), &L4::echo(8)),
    ] {
        for n in 14..full.len() {
            let reason = if n < 34 {
                "ip4_truncated"
            } else {
                "ip4_total_len_exceeds_frame"
            };
            assert_dropped(&snap, POD_A_PORT, &full[..n], reason);
        }
    }
    // Bridged IPv4 cut inside its header is caught too.
    let bridged = eth_ip(
        POD_A_MAC,
        POD_C_MAC,
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 10),
    );
    for n in 14..34 {
        assert_dropped(&snap, POD_A_PORT, &bridged[..n], "ip4_truncated");
    }
}

#[test]
fn arp_truncated_at_every_length() {
    let snap = vx();
    let full = arp_request(POD_A_MAC, POD_A, GATEWAY);
    assert_eq!(full.len(), 42);
    for n in 14..42 {
        assert_dropped(&snap, POD_A_PORT, &full[..n], "arp_malformed");
    }
    let mut not_ipv4 = full.clone();
    not_ipv4[16..18].copy_from_slice(&[0x86, 0xdd]);
    assert_dropped(&snap, POD_A_PORT, &not_ipv4, "arp_malformed");
}

#[test]
fn vlan_tag_truncated() {
    let snap = vx();
    let tagged = eth_tagged_ip(
        POD_A_MAC,
        GATEWAY_MAC,
        Tag::Dot1q(0),
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 4),
    );
    for n in 14..18 {
        assert_dropped(&snap, POD_A_PORT, &tagged[..n], "vlan_truncated");
    }
    for n in 18..38 {
        assert_dropped(&snap, POD_A_PORT, &tagged[..n], "ip4_truncated");
    }
}

#[test]
fn vxlan_truncated_at_every_header_boundary() {
    let snap = vx();
    let inner = inner_from_node2(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 16));
    // VXLAN header cut short (the outer headers stay consistent).
    for k in 0..8 {
        let outer = eth_ip(
            NODE2_MAC,
            UPLINK_MAC,
            &Ip::new(NODE2, NODE1),
            &L4::Udp {
                sport: 50000,
                dport: 8472,
                payload: vxlan_header(8, 1)[..k].to_vec(),
            },
        );
        assert_dropped(&snap, UPLINK, &outer, "vxlan_truncated");
    }
    // Inner Ethernet and inner IPv4 headers cut short.
    for k in 0..34 {
        assert_dropped(
            &snap,
            UPLINK,
            &vxlan_from_node2(&inner[..k]),
            "vxlan_truncated",
        );
    }
    // Inner IPv4 packet cut short.
    for k in 34..inner.len() {
        assert_dropped(
            &snap,
            UPLINK,
            &vxlan_from_node2(&inner[..k]),
            "ip4_total_len_exceeds_frame",
        );
    }
    // The outer frame cut anywhere.
    let full = vxlan_from_node2(&inner);
    for n in 34..full.len() {
        assert_dropped(&snap, UPLINK, &full[..n], "ip4_total_len_exceeds_frame");
    }
    // UDP length field disagreeing with the packet.
    for ulen in [0u16, 7, (full.len() - 34 + 1) as u16, 0xffff] {
        let mut f = full.clone();
        f[38..40].copy_from_slice(&ulen.to_be_bytes());
        assert_dropped(&snap, UPLINK, &f, "udp_bad_length");
    }
    // UDP to the VXLAN port without even a UDP header is not a tunnel packet.
    let short = eth_ip(
        NODE2_MAC,
        UPLINK_MAC,
        &Ip::new(NODE2, NODE1),
        &L4::raw(17, vec![0xc3, 0x50, 0x21, 0x18]),
    );
    assert_dropped(&snap, UPLINK, &short, "local_proto_unhandled");
}

#[test]
fn ipip_truncated() {
    let snap = snapshot("node1-ipip");
    let inner = ip_packet(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 10));
    for k in 0..20 {
        assert_dropped(
            &snap,
            UPLINK,
            &ipip_from_node2(&inner[..k]),
            "ipip_truncated",
        );
    }
    for k in 20..inner.len() {
        assert_dropped(
            &snap,
            UPLINK,
            &ipip_from_node2(&inner[..k]),
            "ip4_total_len_exceeds_frame",
        );
    }
}

#[test]
fn icmp_to_the_gateway_truncated() {
    let snap = vx();
    for k in 0..8 {
        let f = from_pod_a(&Ip::new(POD_A, GATEWAY), &L4::raw(1, vec![8; k]));
        assert_dropped(&snap, POD_A_PORT, &f, "icmp_truncated");
    }
}

#[test]
fn bad_ihl() {
    let snap = vx();
    for ihl in 0..5u8 {
        let mut f = a_to_c();
        f[14] = 0x40 | ihl;
        assert_dropped(&snap, POD_A_PORT, &f, "ip4_bad_ihl");
    }
    // IHL * 4 > total length: a 24-byte packet claiming a 28-byte header.
    let mut f = from_pod_a(&Ip::new(POD_A, POD_C), &L4::raw(17, vec![0; 4]));
    f[14] = 0x47; // (checked before the checksum, which would need 28 bytes)
    assert_dropped(&snap, POD_A_PORT, &f, "ip4_bad_ihl");
    // IHL 15 (60 bytes) on a 62-byte frame whose total length is 48.
    let mut f = a_to_c();
    f[14] = 0x4f;
    assert_dropped(&snap, POD_A_PORT, &f, "ip4_bad_ihl");
}

#[test]
fn total_length_longer_than_the_frame() {
    let snap = vx();
    let mut f = a_to_c();
    let tl = (f.len() - 14 + 1) as u16;
    f[16..18].copy_from_slice(&tl.to_be_bytes());
    refill_ip_checksum(&mut f, 14);
    assert_dropped(&snap, POD_A_PORT, &f, "ip4_total_len_exceeds_frame");
}

#[test]
fn bad_header_checksum() {
    let snap = vx();
    for flip in [0x0001u16, 0x8000, 0xffff] {
        let mut f = a_to_c();
        let c = u16::from_be_bytes([f[24], f[25]]) ^ flip;
        f[24..26].copy_from_slice(&c.to_be_bytes());
        assert_dropped(&snap, POD_A_PORT, &f, "ip4_bad_checksum");
    }
    // A header byte changed without fixing the checksum.
    let mut f = a_to_c();
    f[22] = 63;
    assert_dropped(&snap, POD_A_PORT, &f, "ip4_bad_checksum");
    // Same from the uplink, inside VXLAN.
    let mut inner = inner_from_node2(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 3));
    inner[14 + 10] ^= 0x55;
    assert_dropped(&snap, UPLINK, &vxlan_from_node2(&inner), "ip4_bad_checksum");
}

#[test]
fn version_6_in_the_ipv4_ethertype() {
    let snap = vx();
    for v in [0u8, 5, 6, 15] {
        let mut f = a_to_c();
        f[14] = (v << 4) | 5;
        assert_dropped(&snap, POD_A_PORT, &f, "ip4_bad_version");
    }
    let mut v6 = a_to_c();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    v6[14] = 0x60;
    assert_dropped(&snap, POD_A_PORT, &v6, "ipv6_unsupported");
}

#[test]
fn ttl_0_and_1_are_not_forwarded() {
    for cfg in ["node1-vxlan", "node1-host-gw"] {
        let snap = snapshot(cfg);
        for ttl in [0u8, 1] {
            for dst in [POD_C, POD_B] {
                let f = from_pod_a(&Ip::new(POD_A, dst).ttl(ttl), &L4::udp(1, 2, 8));
                let r = replay_frames(&snap, &[(POD_A_PORT, f)]);
                assert_eq!(r.drops("ttl_expired"), 1, "{cfg} ttl {ttl}");
                assert!(
                    r.tx(POD_C_PORT).is_empty() && r.tx(UPLINK).is_empty(),
                    "not forwarded"
                );
                let back = r.tx(POD_A_PORT);
                assert_eq!(
                    back.len(),
                    1,
                    "only the ICMP time exceeded, back to the sender"
                );
                let d = decode(&back[0]);
                assert!(matches!(
                    d.icmp().icmp_type,
                    etherparse::Icmpv4Type::TimeExceeded(_)
                ));
                assert_eq!(d.ip().destination, POD_A);
            }
        }
    }
    // From the uplink (host-gw) to a local pod.
    let snap = snapshot("node1-host-gw");
    for ttl in [0u8, 1] {
        let f = eth_ip(
            NODE2_MAC,
            UPLINK_MAC,
            &Ip::new(POD_B, POD_A).ttl(ttl),
            &L4::udp(1, 2, 8),
        );
        let r = replay_frames(&snap, &[(UPLINK, f)]);
        assert_eq!(r.drops("ttl_expired"), 1);
        assert!(r.tx(POD_A_PORT).is_empty());
        let back = r.tx(UPLINK);
        assert_eq!(back.len(), 1);
        let d = decode(&back[0]);
        assert_eq!((d.ip().source, d.ip().destination), (GATEWAY, POD_B));
        assert_eq!(d.eth.destination, NODE2_MAC);
    }
}

#[test]
fn ip_options_are_forwarded() {
    let snap = vx();
    let opts = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00]; // router alert, NOPs, EOL
    let input = from_pod_a(&Ip::new(POD_A, POD_C).options(&opts), &L4::udp(1, 2, 30));
    let out = forwarded(&snap, POD_A_PORT, &input, POD_C_PORT);
    let d = decode(&out);
    assert_eq!(d.ip().header_len(), 28);
    assert_eq!(d.ip().options.as_slice(), &opts);
    assert_eq!(d.ip().time_to_live, 63);
    assert_eq!(d.payload, pattern(30));
    // Over VXLAN, with a SYN behind the options: options kept, MSS found and clamped.
    let input = from_pod_a(&Ip::new(POD_A, POD_B).options(&opts), &L4::syn(1460));
    let out = forwarded(&snap, POD_A_PORT, &input, UPLINK);
    let (_, _, inner) = decode(&out).vxlan();
    let i = decode(&inner);
    assert_eq!(i.ip().options.as_slice(), &opts);
    assert_eq!(mss_of(&i.tcp()), Some(1410));
}

#[test]
fn fragments_are_forwarded_and_never_clamped() {
    let snap = vx();
    // First fragment (MF, offset 0) and a non-first, last fragment.
    let first = from_pod_a(&Ip::new(POD_A, POD_C).frag(0, true), &L4::udp(1, 2, 64));
    let out = forwarded(&snap, POD_A_PORT, &first, POD_C_PORT);
    let h = decode(&out).ip().clone();
    assert!(h.more_fragments && h.fragment_offset.value() == 0);
    assert_eq!(out[34..], first[34..]);
    let later = from_pod_a(
        &Ip::new(POD_A, POD_C).frag(100, false),
        &L4::raw(17, pattern(40)),
    );
    let out = forwarded(&snap, POD_A_PORT, &later, POD_C_PORT);
    let h = decode(&out).ip().clone();
    assert!(!h.more_fragments && h.fragment_offset.value() == 100);
    assert_eq!(out[34..], later[34..]);

    // A first fragment carrying a SYN with MSS 1460 to node2: no clamp.
    let syn_first = from_pod_a(&Ip::new(POD_A, POD_B).frag(0, true), &L4::syn(1460));
    let r = replay_frames(&snap, &[(POD_A_PORT, syn_first.clone())]);
    let out = r.tx(UPLINK);
    assert_eq!(out.len(), 1);
    let (_, _, inner) = decode(&out[0]).vxlan();
    assert_eq!(
        inner[34..],
        syn_first[34..],
        "TCP bytes untouched in a fragment"
    );
    assert_eq!(r.events("mss_clamped"), 0);
    // A non-first fragment whose bytes look like a SYN with an MSS option: no clamp.
    let syn_bytes = from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1460))[34..].to_vec();
    let later = from_pod_a(
        &Ip::new(POD_A, POD_B).frag(3, false),
        &L4::raw(6, syn_bytes.clone()),
    );
    let r = replay_frames(&snap, &[(POD_A_PORT, later)]);
    let (_, _, inner) = decode(&r.tx(UPLINK)[0]).vxlan();
    assert_eq!(inner[34..], syn_bytes[..]);
    assert_eq!(r.events("mss_clamped"), 0);
}

#[test]
fn vlan_0_is_accepted_as_untagged() {
    let snap = vx();
    let ip = Ip::new(POD_A, POD_C);
    let plain = from_pod_a(&ip, &L4::udp(1, 2, 20));
    let tagged = eth_tagged_ip(
        POD_A_MAC,
        GATEWAY_MAC,
        Tag::Dot1q(0),
        &ip,
        &L4::udp(1, 2, 20),
    );
    assert_eq!(tagged.len(), plain.len() + 4);
    let expect = forwarded(&snap, POD_A_PORT, &plain, POD_C_PORT);
    let got = forwarded(&snap, POD_A_PORT, &tagged, POD_C_PORT);
    assert_eq!(got, expect, "same output as the untagged frame");
    // Bridged: the priority tag is removed.
    let tagged = eth_tagged_ip(POD_A_MAC, POD_C_MAC, Tag::Dot1q(0), &ip, &L4::udp(1, 2, 20));
    let plain = eth_ip(POD_A_MAC, POD_C_MAC, &ip, &L4::udp(1, 2, 20));
    assert_eq!(forwarded(&snap, POD_A_PORT, &tagged, POD_C_PORT), plain);
}

#[test]
fn other_vlans_and_qinq_are_dropped() {
    let snap = vx();
    let ip = Ip::new(POD_A, POD_C);
    for vid in [1u16, 5, 100, 4094, 4095] {
        let f = eth_tagged_ip(
            POD_A_MAC,
            GATEWAY_MAC,
            Tag::Dot1q(vid),
            &ip,
            &L4::udp(1, 2, 4),
        );
        assert_dropped(&snap, POD_A_PORT, &f, "vlan_not_allowed");
    }
    let f = eth_tagged_ip(
        POD_A_MAC,
        GATEWAY_MAC,
        Tag::Dot1ad(10, 20),
        &ip,
        &L4::udp(1, 2, 4),
    );
    assert_eq!(f[12..14], [0x88, 0xa8]);
    assert_dropped(&snap, POD_A_PORT, &f, "qinq_unsupported");
    // 802.1Q VLAN 0 carrying another 802.1Q tag, and 802.1Q carrying 802.1ad.
    for inner_type in [[0x81, 0x00], [0x88, 0xa8]] {
        let mut f = eth_tagged_ip(
            POD_A_MAC,
            GATEWAY_MAC,
            Tag::Dot1q(0),
            &ip,
            &L4::udp(1, 2, 4),
        );
        f.splice(16..16, [inner_type[0], inner_type[1], 0, 7]);
        assert_dropped(&snap, POD_A_PORT, &f, "qinq_unsupported");
    }
}

#[test]
fn vlan_configured_pod_port() {
    let snap = snapshot_with("node1-vxlan", |c| c.pods[1].vlan = Some(100));
    // From pod C: only frames tagged 100.
    let ip = Ip::new(POD_C, POD_A);
    let tagged = eth_tagged_ip(
        POD_C_MAC,
        GATEWAY_MAC,
        Tag::Dot1q(100),
        &ip,
        &L4::udp(1, 2, 8),
    );
    let out = forwarded(&snap, POD_C_PORT, &tagged, POD_A_PORT);
    assert_eq!(
        decode(&out).eth.source,
        GATEWAY_MAC,
        "delivered untagged to pod A"
    );
    let plain = eth_ip(POD_C_MAC, GATEWAY_MAC, &ip, &L4::udp(1, 2, 8));
    assert_dropped(&snap, POD_C_PORT, &plain, "vlan_not_allowed");
    let other = eth_tagged_ip(
        POD_C_MAC,
        GATEWAY_MAC,
        Tag::Dot1q(101),
        &ip,
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_C_PORT, &other, "vlan_not_allowed");
    // To pod C: the tag is pushed.
    let out = forwarded(
        &snap,
        POD_A_PORT,
        &from_pod_a(&Ip::new(POD_A, POD_C), &L4::udp(1, 2, 8)),
        POD_C_PORT,
    );
    assert_eq!(out[12..16], [0x81, 0x00, 0x00, 100]);
    let mut untagged = out[..12].to_vec();
    untagged.extend_from_slice(&out[16..]);
    assert_eq!(decode(&untagged).ip().destination, POD_C);
}

#[test]
fn vlan_0_on_a_vlan_configured_port_is_untagged_and_dropped() {
    // A priority tag means "untagged"; a port configured for VLAN 100 takes only frames
    // tagged 100, so a priority-tagged frame must be dropped like an untagged one.
    let snap = snapshot_with("node1-vxlan", |c| c.pods[1].vlan = Some(100));
    let f = eth_tagged_ip(
        POD_C_MAC,
        GATEWAY_MAC,
        Tag::Dot1q(0),
        &Ip::new(POD_C, POD_A),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_C_PORT, &f, "vlan_not_allowed");
}

fn b_to_a() -> Vec<u8> {
    inner_from_node2(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 8))
}

#[test]
fn vxlan_header_checks() {
    let snap = vx();
    let inner = b_to_a();
    let with = |flags: u8, vni: u32| {
        vxlan_frame(
            NODE2_MAC,
            UPLINK_MAC,
            NODE2,
            NODE1,
            50000,
            8472,
            vxlan_header(flags, vni),
            &inner,
        )
    };
    for flags in [0x00, 0x80, 0x01, 0xf7] {
        assert_dropped(&snap, UPLINK, &with(flags, 1), "vxlan_bad_flags");
    }
    for vni in [0, 2, 0xffffff] {
        assert_dropped(&snap, UPLINK, &with(0x08, vni), "vxlan_unknown_vni");
    }
    // Reserved bits are ignored on receipt (RFC 7348).
    forwarded(&snap, UPLINK, &with(0xff, 1), POD_A_PORT);
    let mut rsv = with(0x08, 1);
    rsv[43..46].copy_from_slice(&[0xaa, 0xbb, 0xcc]);
    rsv[49] = 0xdd;
    rsv[40..42].copy_from_slice(&[0, 0]); // UDP checksum now off: send none
    forwarded(&snap, UPLINK, &rsv, POD_A_PORT);
}

#[test]
fn vxlan_from_an_unknown_node() {
    let snap = vx();
    let f = vxlan_frame(
        NODE2_MAC,
        UPLINK_MAC,
        [192, 168, 1, 99],
        NODE1,
        50000,
        8472,
        vxlan_header(8, 1),
        &b_to_a(),
    );
    assert_dropped(&snap, UPLINK, &f, "vxlan_unknown_peer");
}

#[test]
fn vxlan_inner_frame_checks() {
    let snap = vx();
    let mut wrong_mac = b_to_a();
    wrong_mac[..6].copy_from_slice(&GATEWAY_MAC);
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&wrong_mac),
        "vxlan_inner_dst_mac",
    );
    let arp = arp_frame(
        VTEP2_MAC,
        VTEP1_MAC,
        ArpOperation::REQUEST,
        VTEP2_MAC,
        POD_B,
        [0; 6],
        POD_A,
    );
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&arp),
        "vxlan_inner_not_ipv4",
    );
    let foreign = inner_from_node2(&Ip::new([10, 244, 3, 3], POD_A), &L4::udp(1, 2, 8));
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&foreign),
        "vxlan_inner_src_mismatch",
    );
    let nowhere = inner_from_node2(&Ip::new(POD_B, [10, 244, 3, 3]), &L4::udp(1, 2, 8));
    assert_dropped(&snap, UPLINK, &vxlan_from_node2(&nowhere), "no_route");
    let back = inner_from_node2(&Ip::new(POD_B, [10, 244, 2, 21]), &L4::udp(1, 2, 8));
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&back),
        "decap_dst_not_local",
    );
    // A peer's pod talking to this node over the overlay reaches the node's own stack.
    let to_host = inner_from_node2(&Ip::new(POD_B, NODE1), &L4::udp(1, 2, 8));
    let out = forward_one(&snap, UPLINK, &vxlan_from_node2(&to_host), "psw-host");
    let d = verify(&out);
    let ip = d
        .net
        .as_ref()
        .and_then(|n| n.ipv4_ref())
        .map(|(h, _)| h.clone());
    let ip = ip.expect("IPv4 to the host port");
    assert_eq!((ip.source, ip.destination), (POD_B, NODE1));
    // Not from a peer's pod or the peer node: refused.
    let stranger = inner_from_node2(&Ip::new([192, 168, 1, 99], NODE1), &L4::udp(1, 2, 8));
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&stranger),
        "vxlan_inner_src_mismatch",
    );
}

#[test]
fn nested_tunnels_are_never_decapsulated_twice() {
    let snap = vx();
    // VXLAN whose inner packet is again VXLAN to the node address.
    let innermost = b_to_a();
    let mut vx2 = vxlan_header(8, 1).to_vec();
    vx2.extend_from_slice(&innermost);
    let middle = inner_from_node2(
        &Ip::new(POD_B, NODE1),
        &L4::Udp {
            sport: 50001,
            dport: 8472,
            payload: vx2,
        },
    );
    let r = assert_dropped(&snap, UPLINK, &vxlan_from_node2(&middle), "nested_tunnel");
    assert_eq!(r.events("decapsulated"), 1, "decapsulated exactly once");
    // IP-in-IP inside VXLAN.
    let ipip_inner = inner_from_node2(
        &Ip::new(POD_B, NODE1),
        &L4::raw(4, ip_packet(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 8))),
    );
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&ipip_inner),
        "nested_tunnel",
    );
    // IP-in-IP inside IP-in-IP.
    let snap = snapshot("node1-ipip");
    let inner = ip_packet(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 8));
    let middle = ip_packet(&Ip::new(POD_B, NODE1), &L4::raw(4, inner));
    assert_dropped(&snap, UPLINK, &ipip_from_node2(&middle), "nested_tunnel");
}

#[test]
fn fragmented_tunnel_packets_are_dropped() {
    let snap = vx();
    let inner = b_to_a();
    let mut payload = vxlan_header(8, 1).to_vec();
    payload.extend_from_slice(&inner);
    let f = eth_ip(
        NODE2_MAC,
        UPLINK_MAC,
        &Ip::new(NODE2, NODE1).frag(0, true),
        &L4::Udp {
            sport: 50000,
            dport: 8472,
            payload,
        },
    );
    assert_dropped(&snap, UPLINK, &f, "tunnel_fragment");
}

#[test]
fn ipip_checks() {
    let snap = snapshot("node1-ipip");
    let inner = ip_packet(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 8));
    let f = ipip_frame(NODE2_MAC, UPLINK_MAC, [192, 168, 1, 99], NODE1, &inner);
    assert_dropped(&snap, UPLINK, &f, "ipip_unknown_peer");
    let foreign = ip_packet(&Ip::new([10, 244, 3, 3], POD_A), &L4::udp(1, 2, 8));
    assert_dropped(
        &snap,
        UPLINK,
        &ipip_from_node2(&foreign),
        "ipip_inner_src_mismatch",
    );
}

#[test]
fn spoofing_from_a_pod_port() {
    let snap = vx();
    // Source IP not pod A's, routed and bridged.
    let routed = from_pod_a(&Ip::new(POD_C, POD_B), &L4::udp(1, 2, 8));
    assert_dropped(&snap, POD_A_PORT, &routed, "ip4_spoofed_src");
    let routed = from_pod_a(&Ip::new([10, 244, 1, 200], POD_C), &L4::udp(1, 2, 8));
    assert_dropped(&snap, POD_A_PORT, &routed, "ip4_spoofed_src");
    let bridged = eth_ip(
        POD_A_MAC,
        POD_C_MAC,
        &Ip::new([10, 244, 1, 200], POD_C),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_A_PORT, &bridged, "ip_spoofed_l2");
    // Source MAC not pod A's (pod C's, or made up).
    for mac in [POD_C_MAC, [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]] {
        let f = eth_ip(mac, GATEWAY_MAC, &Ip::new(POD_A, POD_C), &L4::udp(1, 2, 8));
        assert_dropped(&snap, POD_A_PORT, &f, "mac_spoofed");
    }
    let f = eth_ip(
        [0x01, 0, 0x5e, 0, 0, 1],
        GATEWAY_MAC,
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_A_PORT, &f, "src_mac_multicast");
    // Martian sources.
    for src in [
        [0, 0, 0, 0],
        [127, 0, 0, 1],
        [224, 0, 0, 5],
        [255, 255, 255, 255],
    ] {
        let f = from_pod_a(&Ip::new(src, POD_C), &L4::udp(1, 2, 8));
        assert_dropped(&snap, POD_A_PORT, &f, "ip4_martian_src");
    }
}

#[test]
fn arp_spoofing() {
    let snap = vx();
    // Pod A claims pod C's address.
    let f = arp_request(POD_A_MAC, POD_C, GATEWAY);
    assert_dropped(&snap, POD_A_PORT, &f, "arp_spoofed");
    let f = arp_frame(
        POD_A_MAC,
        POD_C_MAC,
        ArpOperation::REPLY,
        POD_A_MAC,
        POD_C,
        POD_C_MAC,
        POD_C,
    );
    assert_dropped(&snap, POD_A_PORT, &f, "arp_spoofed");
    // Sender MAC not the frame's source / not the pod's.
    let f = arp_frame(
        POD_A_MAC,
        BROADCAST,
        ArpOperation::REQUEST,
        POD_C_MAC,
        POD_A,
        [0; 6],
        GATEWAY,
    );
    assert_dropped(&snap, POD_A_PORT, &f, "arp_spoofed");
    // Other ARP the switch does not take.
    assert_dropped(
        &snap,
        UPLINK,
        &arp_request(NODE2_MAC, NODE2, NODE1),
        "arp_on_uplink",
    );
    assert_dropped(
        &snap,
        POD_A_PORT,
        &arp_request(POD_A_MAC, POD_A, POD_A),
        "arp_gratuitous",
    );
    let f = arp_frame(
        POD_A_MAC,
        BROADCAST,
        ArpOperation(3),
        POD_A_MAC,
        POD_A,
        [0; 6],
        GATEWAY,
    );
    assert_dropped(&snap, POD_A_PORT, &f, "arp_unknown_op");
    let f = arp_frame(
        POD_A_MAC,
        GATEWAY_MAC,
        ArpOperation::REPLY,
        POD_A_MAC,
        POD_A,
        GATEWAY_MAC,
        GATEWAY,
    );
    assert_dropped(&snap, POD_A_PORT, &f, "arp_reply_consumed");
    // An ARP probe (sender 0.0.0.0) is fine.
    forwarded(
        &snap,
        POD_A_PORT,
        &arp_request(POD_A_MAC, [0; 4], POD_C),
        POD_C_PORT,
    );
}

#[test]
fn oversized_frames() {
    let snap = vx();
    // Pod MTU 1500: 1518 bytes (room for one tag) at most.
    let ok = eth_tagged_ip(
        POD_A_MAC,
        GATEWAY_MAC,
        Tag::Dot1q(0),
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 1500 - 28),
    );
    assert_eq!(ok.len(), 1518);
    forwarded(&snap, POD_A_PORT, &ok, POD_C_PORT);
    let mut big = ok.clone();
    big.push(0);
    assert_dropped(&snap, POD_A_PORT, &big, "frame_too_long");
    let huge = from_pod_a(&Ip::new(POD_A, POD_C), &L4::udp(1, 2, 3000));
    assert_dropped(&snap, POD_A_PORT, &huge, "frame_too_long");
    let mut giant = from_pod_a(&Ip::new(POD_A, POD_C), &L4::udp(1, 2, 8000));
    assert_dropped(&snap, POD_A_PORT, &giant, "frame_too_long");
    giant.truncate(5000);
    assert_dropped(&snap, UPLINK, &giant, "frame_too_long");
    // 1504 bytes of IPv4 fit the receive check (room for a tag) but not pod C's MTU: bridged,
    // the frame cannot be sent; routed with DF, pod A hears "fragmentation needed, 1500".
    let over = eth_ip(
        POD_A_MAC,
        POD_C_MAC,
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 1504 - 28),
    );
    assert_dropped(&snap, POD_A_PORT, &over, "tx_too_big");
    let over = from_pod_a(&Ip::new(POD_A, POD_C), &L4::udp(1, 2, 1504 - 28));
    let back = forwarded(&snap, POD_A_PORT, &over, POD_A_PORT);
    let icmp = decode(&back).icmp();
    assert_eq!(
        icmp.icmp_type,
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1500 }
        )
    );
}

#[test]
fn ethernet_padding_is_trimmed() {
    let snap = vx();
    let input = from_pod_a(&Ip::new(POD_A, POD_C), &L4::echo(0));
    assert_eq!(input.len(), 42);
    let mut padded = input.clone();
    padded.resize(60, 0);
    let r = replay_frames(&snap, &[(POD_A_PORT, padded)]);
    let out = r.tx(POD_C_PORT);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 42, "padding removed");
    assert_eq!(out[0][34..], input[34..]);
    assert_eq!(r.events("padding_trimmed"), 1);
    // Non-zero trailing junk is removed the same way, and the VXLAN path carries none.
    let mut junk = from_pod_a(&Ip::new(POD_A, POD_B), &L4::udp(1, 2, 6));
    let clean_len = junk.len();
    junk.extend_from_slice(&[0xee; 12]);
    let out = forwarded(&snap, POD_A_PORT, &junk, UPLINK);
    assert_eq!(out.len(), clean_len + 50);
}

#[test]
fn other_frames_the_switch_does_not_take() {
    let snap = vx();
    let mut lldp = a_to_c();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    assert_dropped(&snap, POD_A_PORT, &lldp, "unsupported_ethertype");
    let mcast = eth_ip(
        POD_A_MAC,
        [0x01, 0, 0x5e, 0, 0, 0xfb],
        &Ip::new(POD_A, [224, 0, 0, 251]),
        &L4::udp(5353, 5353, 8),
    );
    assert_dropped(&snap, POD_A_PORT, &mcast, "multicast_dst");
    let bcast = eth_ip(
        POD_A_MAC,
        BROADCAST,
        &Ip::new(POD_A, [10, 244, 1, 255]),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_A_PORT, &bcast, "unhandled_broadcast");
    let unknown = eth_ip(
        POD_A_MAC,
        [0x02, 9, 9, 9, 9, 9],
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_A_PORT, &unknown, "unknown_dst_mac");
    let hairpin = eth_ip(
        POD_A_MAC,
        POD_A_MAC,
        &Ip::new(POD_A, POD_C),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, POD_A_PORT, &hairpin, "l2_hairpin");
    for dst in [
        [224, 0, 0, 1],
        [127, 0, 0, 1],
        [0, 0, 0, 0],
        [255, 255, 255, 255],
    ] {
        assert_dropped(
            &snap,
            POD_A_PORT,
            &from_pod_a(&Ip::new(POD_A, dst), &L4::udp(1, 2, 8)),
            "ip4_martian_dst",
        );
    }
    assert_dropped(
        &snap,
        POD_A_PORT,
        &from_pod_a(&Ip::new(POD_A, [8, 8, 8, 8]), &L4::udp(1, 2, 8)),
        "no_route",
    );
    assert_dropped(
        &snap,
        POD_A_PORT,
        &from_pod_a(&Ip::new(POD_A, GATEWAY), &L4::udp(1, 2, 8)),
        "local_proto_unhandled",
    );
    let reply = from_pod_a(
        &Ip::new(POD_A, GATEWAY),
        &L4::raw(1, vec![0, 0, 0xff, 0xff, 0, 0, 0, 0]),
    );
    assert_dropped(&snap, POD_A_PORT, &reply, "local_proto_unhandled");
    // Pod C's MAC is not reachable from the uplink.
    let f = eth_ip(
        NODE2_MAC,
        POD_C_MAC,
        &Ip::new(POD_B, POD_C),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, UPLINK, &f, "unknown_dst_mac");
    let transit = eth_ip(
        NODE2_MAC,
        UPLINK_MAC,
        &Ip::new([10, 244, 3, 3], POD_B),
        &L4::udp(1, 2, 8),
    );
    assert_dropped(&snap, UPLINK, &transit, "uplink_transit");
}
