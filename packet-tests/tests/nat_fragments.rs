//! A fragmented UDP datagram to a ClusterIP, first fragment last, checked by an independent
//! reassembler (etherparse's defragmentation pool) and etherparse's UDP checksum.

use etherparse::defrag::IpDefragPool;
use etherparse::{IpNumber, NetSlice, SlicedPacket, UdpHeader};
use podswitch_packet_tests::*;

const VIP: Ip4 = [10, 96, 0, 10];
const POD_D: Ip4 = [10, 244, 2, 21];

/// Fragments of a UDP datagram of 3000 bytes from pod A to the kube-dns ClusterIP, 1400
/// payload bytes each, in the order given.
fn dns_fragments(order: [usize; 3]) -> Vec<(&'static str, Vec<u8>)> {
    let whole = ip_packet(
        &Ip::new(POD_A, VIP).df(false).ident(0x7777),
        &L4::udp(5353, 53, 2992),
    );
    let payload = &whole[20..];
    assert_eq!(payload.len(), 3000);
    let chunks: Vec<&[u8]> = payload.chunks(1400).collect();
    order
        .iter()
        .map(|&k| {
            let ip = Ip::new(POD_A, VIP)
                .ident(0x7777)
                .frag((k * 1400 / 8) as u16, k + 1 < chunks.len());
            (
                POD_A_PORT,
                from_pod_a(&ip, &L4::raw(17, chunks[k].to_vec())),
            )
        })
        .collect()
}

#[test]
fn cluster_ip_udp_fragments_out_of_order_reassemble_at_the_endpoint() {
    let snap = snapshot("node1-vxlan-services");
    let r = replay_frames(&snap, &dns_fragments([2, 1, 0]));
    assert_eq!(r.total_drops(), 0);
    assert_eq!(r.events("nat_fragment_held"), 2);
    assert_eq!(r.events("nat_fragment_translated"), 2);
    let sent = r.sent();
    assert_eq!(sent.len(), 3);
    let mut pool = IpDefragPool::<(), ()>::new();
    let mut done = Vec::new();
    for s in &sent {
        assert_eq!(s.port, sent[0].port, "one endpoint for the whole datagram");
        // Over the overlay: the inner frame after the outer Ethernet, IPv4, UDP and VXLAN.
        let frame = if s.port == UPLINK {
            &s.frame[50..]
        } else {
            &s.frame[..]
        };
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse slices the fragment");
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.source, POD_A);
        assert!(h.destination == POD_C || h.destination == POD_D);
        if let Some(d) = pool.process_sliced_packet(&p, (), ()).expect("defrag") {
            done.push((h.source, h.destination, d));
        }
    }
    assert_eq!(done.len(), 1, "one complete datagram");
    let (src, dst, d) = &done[0];
    assert_eq!(d.ip_number, IpNumber::UDP);
    let (udp, rest) = UdpHeader::from_slice(&d.payload).expect("UDP header");
    assert_eq!((udp.source_port, udp.destination_port), (5353, 53));
    assert_eq!(usize::from(udp.length), d.payload.len());
    assert_eq!(
        udp.checksum,
        udp.calc_checksum_ipv4_raw(*src, *dst, rest).unwrap(),
        "UDP checksum of the reassembled, translated datagram"
    );
    assert_eq!(rest, &pattern(2992)[..]);
}
