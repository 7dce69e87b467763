//! VXLAN overlay (node1-vxlan): encapsulation to node2 and decapsulation from it.

use etherparse::{EtherType, Icmpv4Type, IpNumber};
use podswitch_packet_tests::*;
use std::collections::HashSet;

/// Pod A -> pod B (on node2), UDP `sport -> dport` with `len` bytes of payload.
fn a_to_b(sport: u16, dport: u16, len: usize) -> Vec<u8> {
    from_pod_a(
        &Ip::new(POD_A, POD_B).ident(0x2222),
        &L4::udp(sport, dport, len),
    )
}

fn encap(snap: &podswitch::tables::Snapshot, input: &[u8]) -> Vec<u8> {
    forward_one(snap, POD_A_PORT, input, UPLINK)
}

#[test]
fn encap_outer_headers() {
    let snap = snapshot("node1-vxlan");
    let input = a_to_b(40000, 5353, 100);
    let out = encap(&snap, &input);
    assert_eq!(
        out.len(),
        input.len() + 50,
        "14 + 20 + 8 + 8 bytes of outer headers"
    );
    let d = decode(&out);
    // Outer Ethernet.
    assert_eq!(d.eth.source, UPLINK_MAC);
    assert_eq!(d.eth.destination, NODE2_MAC);
    assert_eq!(d.eth.ether_type, EtherType::IPV4);
    // Outer IPv4.
    let h = d.ip();
    assert_eq!((h.source, h.destination), (NODE1, NODE2));
    assert!(h.dont_fragment, "DF set on the outer header");
    assert!(!h.more_fragments);
    assert_eq!(h.fragment_offset.value(), 0);
    assert_eq!(h.time_to_live, 64);
    assert_eq!(h.protocol, IpNumber::UDP);
    assert_eq!(h.header_len(), 20);
    assert_eq!(usize::from(h.total_len), out.len() - 14);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    // Outer UDP.
    let u = d.udp();
    assert_eq!(u.destination_port, 8472);
    assert!(
        (32768..61000).contains(&u.source_port),
        "source port {} outside 32768..61000",
        u.source_port
    );
    assert_eq!(usize::from(u.length), out.len() - 14 - 20);
    // VXLAN header: flags 0x08 (I), VNI 1, reserved bytes zero.
    assert_eq!(d.payload[..8], [0x08, 0, 0, 0, 0, 0, 1, 0]);
    let (flags, vni, inner) = d.vxlan();
    assert_eq!((flags, vni), (0x08, 1));
    // Inner Ethernet: VTEP to VTEP.
    let i = decode(&inner);
    assert_eq!(i.eth.destination, VTEP2_MAC);
    assert_eq!(i.eth.source, VTEP1_MAC);
    assert_eq!(i.eth.ether_type, EtherType::IPV4);
    // Inner IPv4: the original less one TTL.
    let ih = i.ip();
    assert_eq!((ih.source, ih.destination), (POD_A, POD_B));
    assert_eq!(ih.time_to_live, 63);
    assert_eq!(ih.identification, 0x2222);
    assert!(ih.dont_fragment);
    assert_eq!(ih.header_checksum, ih.calc_header_checksum());
    let iu = i.udp();
    assert_eq!(
        (iu.source_port, iu.destination_port, iu.length),
        (40000, 5353, 108)
    );
    assert_eq!(i.payload, pattern(100));
    assert_eq!(inner[14..22], input[14..22]);
    assert_eq!(inner[23..24], input[23..24]);
    assert_eq!(inner[26..], input[26..]);
}

#[test]
fn encap_udp_source_port_is_stable_per_flow_and_varies_across_flows() {
    let snap = snapshot("node1-vxlan");
    let sport_of = |input: &[u8]| decode(&encap(&snap, input)).udp().source_port;
    let first = sport_of(&a_to_b(40000, 80, 10));
    for len in [10, 200, 1000] {
        assert_eq!(
            sport_of(&a_to_b(40000, 80, len)),
            first,
            "same flow, same source port"
        );
    }
    let ports: HashSet<u16> = (0..32)
        .map(|k| sport_of(&a_to_b(40000 + k, 80, 10)))
        .collect();
    for p in &ports {
        assert!((32768..61000).contains(p));
    }
    assert!(
        ports.len() >= 24,
        "32 flows gave only {} distinct source ports: {ports:?}",
        ports.len()
    );
    // The protocol is part of the flow too.
    let tcp = decode(&encap(
        &snap,
        &from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1000)),
    ))
    .udp()
    .source_port;
    let icmp = decode(&encap(
        &snap,
        &from_pod_a(&Ip::new(POD_A, POD_B), &L4::echo(8)),
    ))
    .udp()
    .source_port;
    assert!((32768..61000).contains(&tcp) && (32768..61000).contains(&icmp));
}

#[test]
fn encap_tcp_and_icmp_keep_inner_checksums_valid() {
    let snap = snapshot("node1-vxlan");
    for l4 in [L4::syn(1000), L4::echo(64), L4::udp(1, 2, 0)] {
        let input = from_pod_a(&Ip::new(POD_A, POD_B).ttl(9), &l4);
        let out = encap(&snap, &input);
        let (_, _, inner) = decode(&out).vxlan();
        let i = decode(&inner); // verifies the inner TCP/ICMP/UDP checksums with smoltcp
        assert_eq!(i.ip().time_to_live, 8);
        assert_eq!(inner[34..], input[34..], "inner L4 untouched for {l4:?}");
    }
}

fn b_to_a_inner(ttl: u8) -> Vec<u8> {
    inner_from_node2(
        &Ip::new(POD_B, POD_A).ttl(ttl).ident(0x3333),
        &L4::udp(5353, 40000, 80),
    )
}

#[test]
fn decap_delivers_to_pod_a() {
    let snap = snapshot("node1-vxlan");
    let inner = b_to_a_inner(63);
    let input = vxlan_from_node2(&inner);
    let r = replay_frames(&snap, &[(UPLINK, input.clone())]);
    assert_eq!(r.events("decapsulated"), 1);
    let out = forward_one(&snap, UPLINK, &input, POD_A_PORT);
    assert_eq!(out.len(), inner.len(), "outer headers removed");
    let d = decode(&out);
    assert_eq!(d.eth.destination, POD_A_MAC);
    assert_eq!(d.eth.source, GATEWAY_MAC);
    assert_eq!(d.eth.ether_type, EtherType::IPV4);
    let h = d.ip();
    assert_eq!((h.source, h.destination), (POD_B, POD_A));
    assert_eq!(h.time_to_live, 62, "TTL decremented");
    assert_eq!(h.identification, 0x3333);
    assert_eq!(d.udp().destination_port, 40000);
    assert_eq!(d.payload, pattern(80));
    assert_eq!(out[26..], inner[26..]);
}

#[test]
fn decap_with_zero_udp_checksum_and_padding_delivers() {
    // The kernel's VXLAN sends a zero UDP checksum; short frames arrive padded.
    let snap = snapshot("node1-vxlan");
    let inner = inner_from_node2(&Ip::new(POD_B, POD_A), &L4::echo(0));
    let mut input = vxlan_from_node2(&inner);
    input[40..42].copy_from_slice(&[0, 0]);
    input.extend_from_slice(&[0; 6]);
    let out = forward_one(&snap, UPLINK, &input, POD_A_PORT);
    assert_eq!(out.len(), inner.len());
    assert_eq!(decode(&out).ip().source, POD_B);
}

#[test]
fn echo_to_the_gateway_from_node2_is_answered_through_the_tunnel() {
    let snap = snapshot("node1-vxlan");
    let input = vxlan_from_node2(&inner_from_node2(&Ip::new(POD_B, GATEWAY), &L4::echo(32)));
    let out = forward_one(&snap, UPLINK, &input, UPLINK);
    let d = decode(&out);
    assert_eq!((d.ip().source, d.ip().destination), (NODE1, NODE2));
    let (_, vni, inner) = d.vxlan();
    assert_eq!(vni, 1);
    let i = decode(&inner);
    assert_eq!((i.eth.source, i.eth.destination), (VTEP1_MAC, VTEP2_MAC));
    assert_eq!((i.ip().source, i.ip().destination), (GATEWAY, POD_B));
    assert!(matches!(i.icmp().icmp_type, Icmpv4Type::EchoReply(_)));
    assert_eq!(i.payload, pattern(32));
}

fn vxlan_4789() -> podswitch::tables::Snapshot {
    snapshot_with("node1-vxlan", |c| c.vxlan.port = 4789)
}

#[test]
fn vxlan_port_4789_encap() {
    let snap = vxlan_4789();
    let out = encap(&snap, &a_to_b(40000, 5353, 10));
    let d = decode(&out);
    assert_eq!(d.udp().destination_port, 4789);
    let (flags, vni, inner) = d.vxlan();
    assert_eq!((flags, vni), (0x08, 1));
    assert_eq!(decode(&inner).ip().destination, POD_B);
}

#[test]
fn vxlan_port_4789_decap() {
    let snap = vxlan_4789();
    let inner = b_to_a_inner(64);
    let input = vxlan_frame(
        NODE2_MAC,
        UPLINK_MAC,
        NODE2,
        NODE1,
        50000,
        4789,
        vxlan_header(0x08, 1),
        &inner,
    );
    let out = forward_one(&snap, UPLINK, &input, POD_A_PORT);
    assert_eq!(decode(&out).ip().time_to_live, 63);
    // The default port is no tunnel any more: plain UDP to the node address.
    let old = vxlan_from_node2(&inner);
    assert_dropped(&snap, UPLINK, &old, "local_proto_unhandled");
}

#[test]
fn other_vni_config_round_trip() {
    let snap = snapshot_with("node1-vxlan", |c| c.vxlan.vni = 0xabcdef);
    let (_, vni, _) = decode(&encap(&snap, &a_to_b(1, 2, 3))).vxlan();
    assert_eq!(vni, 0xabcdef);
    let ok = vxlan_frame(
        NODE2_MAC,
        UPLINK_MAC,
        NODE2,
        NODE1,
        50000,
        8472,
        vxlan_header(0x08, 0xabcdef),
        &b_to_a_inner(64),
    );
    forward_one(&snap, UPLINK, &ok, POD_A_PORT);
    assert_dropped(
        &snap,
        UPLINK,
        &vxlan_from_node2(&b_to_a_inner(64)),
        "vxlan_unknown_vni",
    );
}
