//! ICMP errors about translated flows are translated back (outer addresses, quoted header,
//! every checksum); unmatched or truncated ones are dropped with a reason.

mod support;
use support::*;

const ROUTER_IP: [u8; 4] = [198, 51, 100, 1];

/// The first `n` bytes after the IP header included, as a router would quote.
fn quote_of(p: &Pkt, extra: usize) -> Vec<u8> {
    let hl = usize::from(p.ip[0] & 15) * 4;
    p.ip[..(hl + extra).min(p.ip.len())].to_vec()
}

fn mtu_rest(mtu: u16) -> [u8; 4] {
    let b = mtu.to_be_bytes();
    [0, 0, b[0], b[1]]
}

#[test]
fn frag_needed_about_a_masqueraded_tcp_flow() {
    let mut n = Node::new(&config());
    let (_, p) = n
        .send(
            "veth-pod-a",
            tcp(MAC_A, MAC_GW, POD_A, INET, 45000, 443, SYN, 1000, 0, &[]),
        )
        .one();
    assert_eq!(p.src, NODE);
    // A router on the way quotes the translated packet (source = node address).
    let err = icmp_error(
        MAC_ROUTER,
        MAC_UPLINK,
        ROUTER_IP,
        NODE,
        3,
        4,
        mtu_rest(1400),
        &quote_of(&p, 20),
    );
    let (port, e) = n.send("eth0", err).one();
    assert_eq!(port, "veth-pod-a");
    assert_eq!(
        (e.src, e.dst, e.icmp_type, e.icmp_code),
        (ROUTER_IP, POD_A, 3, 4)
    );
    assert_eq!(u16::from_be_bytes([e.l4()[6], e.l4()[7]]), 1400);
    let q = e.quote(); // checksums (quoted IPv4 and, with the whole header quoted, TCP) verified
    assert_eq!((q.src, q.dst, q.sport, q.dport), (POD_A, INET, 45000, 443));
}

#[test]
fn frag_needed_about_a_masqueraded_udp_flow() {
    let mut n = Node::new(&config());
    let payload = [0x5a; 600];
    let (_, p) = n
        .send(
            "veth-pod-a",
            udp(MAC_A, MAC_GW, POD_A, INET, 47000, 4433, &payload),
        )
        .one();
    assert_eq!(p.src, NODE);
    let snat_port = p.sport;
    assert_ne!(snat_port, 47000, "masqueraded: a port of the SNAT range");
    // Routers quote 8 bytes of UDP (RFC 792) or as much as fits (RFC 1812): both come back.
    for (what, extra) in [("8-byte quote", 8), ("whole datagram quoted", p.ip.len())] {
        let err = icmp_error(
            MAC_ROUTER,
            MAC_UPLINK,
            ROUTER_IP,
            NODE,
            3,
            4,
            mtu_rest(576),
            &quote_of(&p, extra),
        );
        let (port, e) = n.send("eth0", err).one();
        assert_eq!(port, "veth-pod-a", "{what}");
        assert_eq!(
            (e.src, e.dst, e.icmp_type, e.icmp_code),
            (ROUTER_IP, POD_A, 3, 4),
            "{what}"
        );
        assert_eq!(
            u16::from_be_bytes([e.l4()[6], e.l4()[7]]),
            576,
            "{what}: next-hop MTU kept"
        );
        // Quoted IPv4 checksum (and, with the whole datagram, the UDP checksum) verified.
        let q = e.quote();
        assert_eq!(
            (q.src, q.dst, q.sport, q.dport),
            (POD_A, INET, 47000, 4433),
            "{what}"
        );
    }
}

#[test]
fn port_unreachable_from_a_udp_service_endpoint() {
    let mut n = Node::new(&config());
    for sport in 50000..50040u16 {
        let (port, p) = n
            .send(
                "veth-pod-a",
                udp(MAC_A, MAC_GW, POD_A, VIP, sport, 53, b"query"),
            )
            .one();
        if port != "veth-pod-c" {
            continue;
        }
        // Pod C answers with port unreachable, quoting what it received (whole datagram).
        let err = icmp_error(MAC_C, MAC_GW, POD_C, POD_A, 3, 3, [0; 4], &p.ip);
        let (op, e) = n.send("veth-pod-c", err).one();
        assert_eq!(op, "veth-pod-a");
        assert_eq!(
            (e.src, e.dst),
            (VIP, POD_A),
            "outer source is the Service, as the client expects"
        );
        let q = e.quote(); // quoted UDP checksum verified (the whole datagram is quoted)
        assert_eq!((q.src, q.dst, q.sport, q.dport), (POD_A, VIP, sport, 53));
        return;
    }
    panic!("no flow chose pod C");
}

#[test]
fn time_exceeded_about_a_masqueraded_echo() {
    let mut n = Node::new(&config());
    let (_, p) = n
        .send(
            "veth-pod-a",
            echo(MAC_A, MAC_GW, POD_A, INET, 0x4242, false),
        )
        .one();
    let err = icmp_error(
        MAC_ROUTER,
        MAC_UPLINK,
        ROUTER_IP,
        NODE,
        11,
        0,
        [0; 4],
        &quote_of(&p, 8),
    );
    let (port, e) = n.send("eth0", err).one();
    assert_eq!(port, "veth-pod-a");
    assert_eq!((e.src, e.dst, e.icmp_type), (ROUTER_IP, POD_A, 11));
    let q = e.quote();
    assert_eq!(
        (q.src, q.dst, q.sport, q.icmp_type),
        (POD_A, INET, 0x4242, 8)
    );
}

#[test]
fn error_about_a_dnated_flow_from_the_backend_node() {
    let mut n = Node::new(&config());
    for sport in 40000..40040u16 {
        let (port, p) = n
            .send(
                "veth-pod-a",
                tcp(MAC_A, MAC_GW, POD_A, VIP, sport, 80, SYN, 1, 0, &[]),
            )
            .one();
        if port != "eth0" {
            continue;
        }
        // node2 reports fragmentation needed over the overlay, quoting the DNATed packet.
        let err = icmp_error(
            MAC_NODE2,
            VTEP1,
            NODE2,
            POD_A,
            3,
            4,
            mtu_rest(1300),
            &quote_of(&p, 8),
        );
        let (op, e) = n.send("eth0", from_node2(&err)).one();
        assert_eq!(op, "veth-pod-a");
        assert_eq!((e.src, e.dst), (NODE2, POD_A));
        let q = e.quote();
        assert_eq!((q.src, q.dst, q.sport, q.dport), (POD_A, VIP, sport, 80));
        return;
    }
    panic!("no flow chose the remote endpoint");
}

#[test]
fn own_frag_needed_about_dnated_traffic_quotes_the_service() {
    let mut n = Node::new(&config());
    for sport in 40000..40040u16 {
        let (port, p) = n
            .send(
                "veth-pod-a",
                tcp(MAC_A, MAC_GW, POD_A, VIP, sport, 80, SYN, 1, 0, &[]),
            )
            .one();
        if port != "eth0" {
            continue;
        }
        let (_, r) = n
            .send(
                "eth0",
                from_node2(&tcp(
                    MAC_NODE2,
                    VTEP1,
                    POD_B,
                    POD_A,
                    8080,
                    sport,
                    SYN | ACK,
                    9,
                    p.seq + 1,
                    &[],
                )),
            )
            .one();
        assert_eq!(r.src, VIP);
        // 1500-byte DF segment: too big for the 1450-byte VXLAN path.
        let big = vec![0x55u8; 1460];
        let out = n.send(
            "veth-pod-a",
            tcp(MAC_A, MAC_GW, POD_A, VIP, sport, 80, ACK, 2, 10, &big),
        );
        let (op, e) = out.one();
        assert_eq!(op, "veth-pod-a");
        assert_eq!((e.src, e.dst, e.icmp_type, e.icmp_code), (GW, POD_A, 3, 4));
        assert_eq!(u16::from_be_bytes([e.l4()[6], e.l4()[7]]), 1450);
        let q = e.quote();
        assert_eq!(
            (q.src, q.dst, q.sport, q.dport),
            (POD_A, VIP, sport, 80),
            "quote untranslated"
        );
        return;
    }
    panic!("no flow chose the remote endpoint");
}

#[test]
fn unmatched_and_truncated_errors_are_dropped() {
    let mut n = Node::new(&config());
    // Quotes a masqueraded-looking tuple with no entry.
    let fake = udp(MAC_UPLINK, MAC_ROUTER, NODE, INET, 5555, 53, b"x");
    let err = icmp_error(
        MAC_ROUTER,
        MAC_UPLINK,
        ROUTER_IP,
        NODE,
        3,
        3,
        [0; 4],
        &fake[14..],
    );
    n.send("eth0", err).dropped("icmp_error_unmatched");
    // About a Service address, no entry.
    let fake = tcp(MAC_A, MAC_GW, POD_A, VIP, 1234, 80, SYN, 1, 0, &[]);
    let err = icmp_error(
        MAC_C,
        MAC_GW,
        POD_C,
        POD_A,
        3,
        3,
        [0; 4],
        &fake[14..14 + 28],
    );
    n.send("veth-pod-c", err).dropped("icmp_error_unmatched");
    // Quote shorter than an IPv4 header plus 8 bytes.
    let err = icmp_error(
        MAC_ROUTER,
        MAC_UPLINK,
        ROUTER_IP,
        NODE,
        3,
        4,
        [0; 4],
        &fake[14..14 + 24],
    );
    n.send("eth0", err).dropped("icmp_quote_truncated");
    // Errors about untranslated pod-to-pod traffic pass unchanged.
    let plain = udp(MAC_A, MAC_GW, POD_A, POD_C, 7000, 7001, b"x");
    let err = icmp_error(MAC_C, MAC_GW, POD_C, POD_A, 3, 3, [0; 4], &plain[14..]);
    let (port, e) = n.send("veth-pod-c", err).one();
    assert_eq!((port.as_str(), e.src, e.dst), ("veth-pod-a", POD_C, POD_A));
}
