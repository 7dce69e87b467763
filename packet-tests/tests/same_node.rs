//! Same-node traffic: bridging, routing through the gateway, ARP and ICMP echo.

use etherparse::{ArpOperation, EtherType, Icmpv4Type, IpNumber};
use podswitch_packet_tests::*;

const CONFIGS: [&str; 3] = ["node1-vxlan", "node1-ipip", "node1-host-gw"];

#[test]
fn bridged_pod_a_to_pod_c_is_delivered_unchanged() {
    for cfg in CONFIGS {
        let snap = snapshot(cfg);
        let input = eth_ip(
            POD_A_MAC,
            POD_C_MAC,
            &Ip::new(POD_A, POD_C),
            &L4::udp(40000, 53, 64),
        );
        let out = forward_one(&snap, POD_A_PORT, &input, POD_C_PORT);
        // A bridge rewrites nothing: not the MACs, not the TTL.
        assert_eq!(out, input, "{cfg}");
        let d = decode(&out);
        assert_eq!(d.eth.destination, POD_C_MAC);
        assert_eq!(d.eth.source, POD_A_MAC);
        assert_eq!(d.ip().time_to_live, 64);
        assert_eq!((d.ip().source, d.ip().destination), (POD_A, POD_C));
    }
}

#[test]
fn routed_pod_a_to_pod_c_through_the_gateway() {
    for cfg in CONFIGS {
        let snap = snapshot(cfg);
        let ip = Ip::new(POD_A, POD_C).ttl(64).ident(0xabcd);
        let input = from_pod_a(&ip, &L4::udp(40000, 53, 100));
        let out = forward_one(&snap, POD_A_PORT, &input, POD_C_PORT);
        assert_eq!(out.len(), input.len());
        let d = decode(&out);
        assert_eq!(d.eth.destination, POD_C_MAC, "{cfg}: dst MAC is pod C's");
        assert_eq!(d.eth.source, GATEWAY_MAC, "{cfg}: src MAC is the gateway's");
        assert_eq!(d.eth.ether_type, EtherType::IPV4);
        let h = d.ip();
        assert_eq!(h.time_to_live, 63, "TTL decremented once");
        assert_eq!((h.source, h.destination), (POD_A, POD_C));
        assert_eq!(h.protocol, IpNumber::UDP);
        assert_eq!(h.identification, 0xabcd);
        assert!(h.dont_fragment);
        assert_eq!(h.total_len, 20 + 8 + 100);
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "etherparse agrees on the checksum"
        );
        let u = d.udp();
        assert_eq!(
            (u.source_port, u.destination_port, u.length),
            (40000, 53, 108)
        );
        assert_eq!(d.payload, pattern(100));
        // Apart from L2, TTL and header checksum, the packet is byte-for-byte the same.
        assert_eq!(out[14..22], input[14..22]);
        assert_eq!(out[23..24], input[23..24]);
        assert_eq!(out[26..], input[26..]);
    }
}

#[test]
fn routed_tcp_syn_between_same_node_pods_keeps_mss_1460() {
    let snap = snapshot("node1-vxlan");
    let input = from_pod_a(&Ip::new(POD_A, POD_C), &L4::syn(1460));
    let out = forward_one(&snap, POD_A_PORT, &input, POD_C_PORT);
    let d = decode(&out);
    assert_eq!(
        mss_of(&d.tcp()),
        Some(1460),
        "pod MTU 1500: nothing to clamp"
    );
    assert_eq!(out[34..], input[34..], "TCP segment untouched");
}

#[test]
fn arp_for_the_gateway_is_answered_with_the_gateway_mac() {
    for cfg in CONFIGS {
        let snap = snapshot(cfg);
        let req = arp_request(POD_A_MAC, POD_A, GATEWAY);
        let out = forward_one(&snap, POD_A_PORT, &req, POD_A_PORT);
        let d = decode(&out);
        assert_eq!(d.eth.destination, POD_A_MAC, "{cfg}");
        assert_eq!(d.eth.source, GATEWAY_MAC);
        assert_eq!(d.eth.ether_type, EtherType::ARP);
        let a = d.arp.expect("an ARP reply");
        assert_eq!(a.operation, ArpOperation::REPLY);
        assert_eq!(a.sender_mac, GATEWAY_MAC);
        assert_eq!(a.sender_ipv4, GATEWAY);
        assert_eq!(a.target_mac, POD_A_MAC);
        assert_eq!(a.target_ipv4, POD_A);
        assert_eq!(out.len(), req.len());
    }
}

#[test]
fn arp_for_the_gateway_padded_to_60_bytes_is_answered() {
    let snap = snapshot("node1-vxlan");
    let mut req = arp_request(POD_A_MAC, POD_A, GATEWAY);
    req.resize(60, 0);
    let out = forward_one(&snap, POD_A_PORT, &req, POD_A_PORT);
    let a = decode(&out).arp.expect("an ARP reply");
    assert_eq!(
        (a.operation, a.sender_mac, a.sender_ipv4),
        (ArpOperation::REPLY, GATEWAY_MAC, GATEWAY)
    );
}

#[test]
fn arp_for_pod_c_is_delivered_to_pod_c_without_proxy_arp() {
    let snap = snapshot("node1-vxlan");
    assert!(!snap.node.proxy_arp);
    let req = arp_request(POD_A_MAC, POD_A, POD_C);
    let out = forward_one(&snap, POD_A_PORT, &req, POD_C_PORT);
    assert_eq!(out, req, "the request reaches pod C as sent");
    let a = decode(&out).arp.expect("ARP");
    assert_eq!(a.operation, ArpOperation::REQUEST);
    assert_eq!(a.target_ipv4, POD_C);

    // Pod C's answer goes back to pod A.
    let reply = arp_frame(
        POD_C_MAC,
        POD_A_MAC,
        ArpOperation::REPLY,
        POD_C_MAC,
        POD_C,
        POD_A_MAC,
        POD_A,
    );
    let out = forward_one(&snap, POD_C_PORT, &reply, POD_A_PORT);
    assert_eq!(out, reply);
}

#[test]
fn arp_for_pod_c_is_answered_with_proxy_arp() {
    let snap = snapshot_with("node1-vxlan", |c| c.node.proxy_arp = true);
    let req = arp_request(POD_A_MAC, POD_A, POD_C);
    let out = forward_one(&snap, POD_A_PORT, &req, POD_A_PORT);
    let d = decode(&out);
    assert_eq!(d.eth.destination, POD_A_MAC);
    assert_eq!(d.eth.source, POD_C_MAC);
    let a = d.arp.expect("an ARP reply");
    assert_eq!(a.operation, ArpOperation::REPLY);
    assert_eq!(a.sender_mac, POD_C_MAC, "answered with pod C's own MAC");
    assert_eq!(a.sender_ipv4, POD_C);
    assert_eq!(a.target_mac, POD_A_MAC);
    assert_eq!(a.target_ipv4, POD_A);
}

#[test]
fn arp_for_an_unserved_address_is_dropped() {
    let snap = snapshot("node1-vxlan");
    assert_dropped(
        &snap,
        POD_A_PORT,
        &arp_request(POD_A_MAC, POD_A, [10, 244, 1, 99]),
        "arp_target_unknown",
    );
    assert_dropped(
        &snap,
        POD_A_PORT,
        &arp_request(POD_A_MAC, POD_A, POD_B),
        "arp_target_unknown",
    );
}

#[test]
fn gateway_answers_icmp_echo() {
    for cfg in CONFIGS {
        let snap = snapshot(cfg);
        let input = from_pod_a(
            &Ip::new(POD_A, GATEWAY).ttl(17).ident(0x0102),
            &L4::echo(56),
        );
        let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
        let d = decode(&out);
        assert_eq!(d.eth.destination, POD_A_MAC, "{cfg}");
        assert_eq!(d.eth.source, GATEWAY_MAC);
        let h = d.ip();
        assert_eq!((h.source, h.destination), (GATEWAY, POD_A));
        assert_eq!(h.protocol, IpNumber::ICMP);
        assert_eq!(h.time_to_live, 64, "a fresh TTL for the reply");
        assert_eq!(h.total_len, 20 + 8 + 56);
        let icmp = d.icmp();
        match icmp.icmp_type {
            Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x4242, 7)),
            t => panic!("not an echo reply: {t:?}"),
        }
        assert_eq!(
            icmp.checksum,
            icmp.icmp_type.calc_checksum(&d.payload),
            "etherparse agrees"
        );
        assert_eq!(d.payload, pattern(56), "echo data returned unchanged");
        assert_eq!(out.len(), input.len());
    }
}

#[test]
fn ttl_1_echo_to_the_gateway_is_still_answered() {
    // Local delivery does not consume TTL.
    let snap = snapshot("node1-vxlan");
    let input = from_pod_a(&Ip::new(POD_A, GATEWAY).ttl(1), &L4::echo(8));
    let out = forward_one(&snap, POD_A_PORT, &input, POD_A_PORT);
    assert!(matches!(
        decode(&out).icmp().icmp_type,
        Icmpv4Type::EchoReply(_)
    ));
}

#[test]
fn unknown_address_in_the_pod_subnet_gets_host_unreachable() {
    let snap = snapshot("node1-vxlan");
    let input = from_pod_a(&Ip::new(POD_A, [10, 244, 1, 99]), &L4::udp(1, 2, 10));
    let (sent, v) = replay_one(&snap, POD_A_PORT, &input);
    assert_eq!(v.out, vec![POD_A_PORT.to_string()]);
    assert_eq!(sent.len(), 1);
    let d = decode(&sent[0].frame);
    assert_eq!((d.ip().source, d.ip().destination), (GATEWAY, POD_A));
    assert!(matches!(
        d.icmp().icmp_type,
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Host)
    ));
}
