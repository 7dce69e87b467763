//! host-gw overlay (node1-host-gw): routed to the peer's underlay MAC, no encapsulation.

use etherparse::{EtherType, IpNumber};
use podswitch_packet_tests::*;

#[test]
fn to_node2_is_routed_to_its_underlay_mac_without_encapsulation() {
    let snap = snapshot("node1-host-gw");
    let input = from_pod_a(
        &Ip::new(POD_A, POD_B).ttl(64).ident(0x7070),
        &L4::udp(40000, 8472, 300),
    );
    let out = forward_one(&snap, POD_A_PORT, &input, UPLINK);
    assert_eq!(out.len(), input.len(), "no encapsulation");
    let d = decode(&out);
    assert_eq!(d.eth.destination, NODE2_MAC);
    assert_eq!(d.eth.source, UPLINK_MAC);
    assert_eq!(d.eth.ether_type, EtherType::IPV4);
    let h = d.ip();
    assert_eq!(
        (h.source, h.destination),
        (POD_A, POD_B),
        "the pod packet itself, not an outer header"
    );
    assert_eq!(h.protocol, IpNumber::UDP);
    assert_eq!(h.time_to_live, 63);
    assert_eq!(h.identification, 0x7070);
    assert_eq!(d.udp().destination_port, 8472);
    assert_eq!(d.payload, pattern(300));
    assert_eq!(out[26..], input[26..]);
}

#[test]
fn full_size_packets_and_mss_pass_unchanged() {
    let snap = snapshot("node1-host-gw");
    let big = from_pod_a(&Ip::new(POD_A, POD_B), &L4::udp(1, 2, 1500 - 28));
    let out = forward_one(&snap, POD_A_PORT, &big, UPLINK);
    assert_eq!(decode(&out).ip().total_len, 1500);
    let syn = from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1460));
    let out = forward_one(&snap, POD_A_PORT, &syn, UPLINK);
    assert_eq!(mss_of(&decode(&out).tcp()), Some(1460));
}

#[test]
fn from_the_uplink_to_a_local_pod_is_delivered() {
    let snap = snapshot("node1-host-gw");
    let input = eth_ip(
        NODE2_MAC,
        UPLINK_MAC,
        &Ip::new(POD_B, POD_A).ttl(63),
        &L4::syn_ack(1460),
    );
    let out = forward_one(&snap, UPLINK, &input, POD_A_PORT);
    let d = decode(&out);
    assert_eq!(d.eth.destination, POD_A_MAC);
    assert_eq!(d.eth.source, GATEWAY_MAC);
    assert_eq!((d.ip().source, d.ip().destination), (POD_B, POD_A));
    assert_eq!(d.ip().time_to_live, 62);
    assert_eq!(mss_of(&d.tcp()), Some(1460));
    let c = eth_ip(NODE2_MAC, UPLINK_MAC, &Ip::new(POD_B, POD_C), &L4::echo(10));
    let out = forward_one(&snap, UPLINK, &c, POD_C_PORT);
    assert_eq!(decode(&out).eth.destination, POD_C_MAC);
}

#[test]
fn from_the_uplink_to_another_node_is_not_transit() {
    let snap = snapshot("node1-host-gw");
    let input = eth_ip(
        NODE2_MAC,
        UPLINK_MAC,
        &Ip::new([10, 244, 3, 3], POD_B),
        &L4::echo(10),
    );
    assert_dropped(&snap, UPLINK, &input, "uplink_transit");
}
