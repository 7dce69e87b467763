//! IP-in-IP overlay (node1-ipip): encapsulation to node2 and decapsulation from it.

use etherparse::{EtherType, IpNumber};
use podswitch_packet_tests::*;

#[test]
fn encap_outer_header_and_intact_inner() {
    let snap = snapshot("node1-ipip");
    let input = from_pod_a(
        &Ip::new(POD_A, POD_B).ttl(30).ident(0x4444),
        &L4::udp(40000, 53, 200),
    );
    let out = forward_one(&snap, POD_A_PORT, &input, UPLINK);
    assert_eq!(out.len(), input.len() + 20);
    let d = decode(&out); // also verifies the inner header and UDP checksums
    assert_eq!(d.eth.source, UPLINK_MAC);
    assert_eq!(d.eth.destination, NODE2_MAC);
    assert_eq!(d.eth.ether_type, EtherType::IPV4);
    let h = d.ip();
    assert_eq!((h.source, h.destination), (NODE1, NODE2));
    assert_eq!(h.protocol, IpNumber::IPV4, "protocol 4");
    assert!(h.dont_fragment);
    assert_eq!(h.time_to_live, 64);
    assert_eq!(usize::from(h.total_len), out.len() - 14);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    // The inner packet is the original IPv4 packet except TTL (and so its checksum).
    let inner = &out[34..];
    let orig = &input[14..];
    assert_eq!(inner.len(), orig.len());
    assert_eq!(inner[..8], orig[..8]);
    assert_eq!(inner[8], 29, "inner TTL decremented");
    assert_eq!(inner[9], orig[9]);
    assert_eq!(inner[12..], orig[12..]);
    let ih = etherparse::Ipv4Header::from_slice(inner)
        .expect("inner ipv4")
        .0;
    assert_eq!(ih.header_checksum, ih.calc_header_checksum());
    assert_eq!(
        (ih.source, ih.destination, ih.identification),
        (POD_A, POD_B, 0x4444)
    );
}

#[test]
fn encap_tcp_syn_is_clamped_to_1440() {
    let snap = snapshot("node1-ipip");
    let out = forward_one(
        &snap,
        POD_A_PORT,
        &from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1460)),
        UPLINK,
    );
    let d = decode(&out); // verifies the inner TCP checksum
    let inner = etherparse::PacketHeaders::from_ip_slice(&d.ip_payload).expect("inner");
    match inner.transport {
        Some(etherparse::TransportHeader::Tcp(t)) => assert_eq!(mss_of(&t), Some(1440)),
        t => panic!("not TCP: {t:?}"),
    }
}

#[test]
fn decap_delivers_to_pod_a() {
    let snap = snapshot("node1-ipip");
    let inner = ip_packet(
        &Ip::new(POD_B, POD_A).ttl(63).ident(0x5555),
        &L4::udp(53, 40000, 77),
    );
    let input = ipip_from_node2(&inner);
    let out = forward_one(&snap, UPLINK, &input, POD_A_PORT);
    assert_eq!(out.len(), 14 + inner.len());
    let d = decode(&out);
    assert_eq!(d.eth.destination, POD_A_MAC);
    assert_eq!(d.eth.source, GATEWAY_MAC);
    assert_eq!(d.eth.ether_type, EtherType::IPV4);
    let h = d.ip();
    assert_eq!((h.source, h.destination), (POD_B, POD_A));
    assert_eq!(h.time_to_live, 62);
    assert_eq!(h.identification, 0x5555);
    assert_eq!(d.payload, pattern(77));
    assert_eq!(out[14 + 12..], inner[12..]);
}

#[test]
fn decap_syn_ack_is_clamped_to_1440() {
    let snap = snapshot("node1-ipip");
    let inner = ip_packet(&Ip::new(POD_B, POD_A), &L4::syn_ack(1460));
    let out = forward_one(&snap, UPLINK, &ipip_from_node2(&inner), POD_A_PORT);
    let t = decode(&out).tcp();
    assert!(t.syn && t.ack);
    assert_eq!(mss_of(&t), Some(1440));
}

#[test]
fn decap_echo_to_the_gateway_is_answered_in_ipip() {
    let snap = snapshot("node1-ipip");
    let inner = ip_packet(&Ip::new(POD_B, GATEWAY), &L4::echo(20));
    let out = forward_one(&snap, UPLINK, &ipip_from_node2(&inner), UPLINK);
    let d = decode(&out);
    assert_eq!(
        (d.ip().source, d.ip().destination, d.ip().protocol),
        (NODE1, NODE2, IpNumber::IPV4)
    );
    let i = etherparse::PacketHeaders::from_ip_slice(&d.ip_payload).expect("inner");
    match (i.net, i.transport) {
        (
            Some(etherparse::NetHeaders::Ipv4(h, _)),
            Some(etherparse::TransportHeader::Icmpv4(m)),
        ) => {
            assert_eq!((h.source, h.destination), (GATEWAY, POD_B));
            assert!(matches!(m.icmp_type, etherparse::Icmpv4Type::EchoReply(_)));
        }
        other => panic!("unexpected inner packet: {other:?}"),
    }
}
