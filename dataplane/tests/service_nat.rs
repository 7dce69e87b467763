//! Service NAT through replay: ClusterIP, NodePort, external IPs, traffic policies,
//! rejection, hairpin, affinity, masquerade, both directions, checksums verified by an
//! independent decoder.

mod support;
use support::*;

/// Sends a SYN from pod A to `dst:dport` with source port `sport`; returns the output.
fn syn_from_a(n: &mut Node, dst: [u8; 4], dport: u16, sport: u16) -> Out {
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, dst, sport, dport, SYN, 1000, 0, &[]),
    )
}

/// The reply the backend sends for an output packet `p` (delivered the way `p` left).
fn reply_to(port: &str, p: &Pkt, flags: u8, seq: u32) -> (String, Vec<u8>) {
    match (port, p.vxlan) {
        ("eth0", true) => {
            let inner = tcp(
                MAC_NODE2,
                VTEP1,
                p.dst,
                p.src,
                p.dport,
                p.sport,
                flags,
                seq,
                p.seq + 1,
                &[],
            );
            ("eth0".into(), from_node2(&inner))
        }
        ("eth0", false) => (
            "eth0".into(),
            tcp(
                MAC_ROUTER,
                MAC_UPLINK,
                p.dst,
                p.src,
                p.dport,
                p.sport,
                flags,
                seq,
                p.seq + 1,
                &[],
            ),
        ),
        ("veth-pod-c", _) => (
            "veth-pod-c".into(),
            tcp(
                MAC_C,
                MAC_GW,
                p.dst,
                p.src,
                p.dport,
                p.sport,
                flags,
                seq,
                p.seq + 1,
                &[],
            ),
        ),
        ("veth-pod-a", _) => (
            "veth-pod-a".into(),
            tcp(
                MAC_A,
                MAC_GW,
                p.dst,
                p.src,
                p.dport,
                p.sport,
                flags,
                seq,
                p.seq + 1,
                &[],
            ),
        ),
        _ => panic!("no reply path for {port}"),
    }
}

#[test]
fn cluster_ip_tcp_both_directions_and_both_backends() {
    let mut n = Node::new(&config());
    let mut seen = std::collections::HashSet::new();
    for sport in 40000..40040u16 {
        let (port, p) = syn_from_a(&mut n, VIP, 80, sport).one();
        assert_eq!(
            (p.src, p.sport, p.dport, p.tcp_flags),
            (POD_A, sport, 8080, SYN)
        );
        match port.as_str() {
            "eth0" => {
                assert!(p.vxlan);
                assert_eq!(p.dst, POD_B);
            }
            "veth-pod-c" => {
                assert_eq!((p.dst, p.eth_dst), (POD_C, MAC_C));
            }
            other => panic!("unexpected output port {other}"),
        }
        seen.insert(p.dst);
        // The SYN-ACK comes back translated to the VIP.
        let (rport, frame) = reply_to(&port, &p, SYN | ACK, 5000);
        let (out_port, r) = n.send(&rport, frame).one();
        assert_eq!(out_port, "veth-pod-a");
        assert_eq!((r.src, r.sport, r.dst, r.dport), (VIP, 80, POD_A, sport));
        assert_eq!((r.tcp_flags, r.ack), (SYN | ACK, 1001));
        assert_eq!(r.eth_dst, MAC_A);
        // Third packet: established.
        let (_, a) = n
            .send(
                "veth-pod-a",
                tcp(
                    MAC_A, MAC_GW, POD_A, VIP, sport, 80, ACK, 1001, 5001, b"GET /",
                ),
            )
            .one();
        assert_eq!((a.dst, a.dport), (p.dst, 8080));
    }
    assert_eq!(seen.len(), 2, "both endpoints used: {seen:?}");
    let dump = n.dump();
    let first = dump.lines().next().unwrap();
    assert!(
        first.starts_with(
            "tcp orig=(src=10.244.1.10,dst=10.96.0.10,sport=40000,dport=80) reply=(src=10.244."
        ),
        "{first}"
    );
    assert!(first.contains(",dst=10.244.1.10,sport=8080,dport=40000) state=ESTABLISHED timeout=86399 packets=3 bytes="), "{first}");
    assert_eq!(dump.lines().count(), 40);
}

#[test]
fn non_syn_without_entry_is_invalid() {
    let mut n = Node::new(&config());
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, VIP, 41000, 80, ACK, 1, 1, b"x"),
    )
    .dropped("ct_invalid");
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, VIP, 41000, 80, SYN | ACK, 1, 1, &[]),
    )
    .dropped("ct_invalid");
}

#[test]
fn unknown_service_port_is_dropped() {
    let mut n = Node::new(&config());
    syn_from_a(&mut n, VIP, 81, 41000).dropped("svc_no_port");
    syn_from_a(&mut n, [10, 96, 9, 9], 80, 41000).dropped("svc_no_port");
}

#[test]
fn udp_dns_uses_ready_endpoints_and_replies_are_restored() {
    let mut n = Node::new(&config());
    let mut seen = std::collections::HashSet::new();
    for sport in 50000..50030u16 {
        let (port, p) = n
            .send(
                "veth-pod-a",
                udp(MAC_A, MAC_GW, POD_A, VIP, sport, 53, b"query"),
            )
            .one();
        assert_eq!((p.src, p.sport, p.dport), (POD_A, sport, 53));
        assert_ne!(
            p.dst,
            [10, 244, 2, 22],
            "terminating endpoint not used while others are ready"
        );
        seen.insert(p.dst);
        let reply = match port.as_str() {
            "eth0" => from_node2(&udp(MAC_NODE2, VTEP1, p.dst, POD_A, 53, sport, b"answer")),
            "veth-pod-c" => udp(MAC_C, MAC_GW, p.dst, POD_A, 53, sport, b"answer"),
            o => panic!("unexpected {o}"),
        };
        let rport = if port == "eth0" { "eth0" } else { "veth-pod-c" };
        let (op, r) = n.send(rport, reply).one();
        assert_eq!(op, "veth-pod-a");
        assert_eq!((r.src, r.sport, r.dst, r.dport), (VIP, 53, POD_A, sport));
    }
    assert_eq!(seen, [POD_D, POD_C].into_iter().collect());
    assert!(
        n.dump()
            .contains("udp orig=(src=10.244.1.10,dst=10.96.0.10,sport=50000,dport=53)")
    );
    assert!(n.dump().contains("state=REPLIED timeout=119"));
}

#[test]
fn terminating_endpoints_only_when_none_ready() {
    let mut cfg = config();
    let dns = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "kube-dns")
        .unwrap();
    for e in &mut dns.endpoints {
        e.ready = false;
    }
    let snap = snapshot(&cfg);
    let sp = snap
        .services
        .ports
        .iter()
        .find(|p| p.name == "kube-system/kube-dns:dns")
        .unwrap();
    let ips: Vec<[u8; 4]> = sp.backends.iter().map(|b| b.ip).collect();
    assert_eq!(ips, vec![[10, 244, 2, 22]]);
}

#[test]
fn node_port_from_outside_is_snated_to_the_node_address() {
    let mut n = Node::new(&config());
    let mut seen = std::collections::HashSet::new();
    for sport in 33000..33020u16 {
        let (port, p) = n
            .send(
                "eth0",
                tcp(
                    MAC_ROUTER,
                    MAC_UPLINK,
                    EXT,
                    NODE,
                    sport,
                    30080,
                    SYN,
                    7,
                    0,
                    &[],
                ),
            )
            .one();
        assert_eq!(
            (p.src, p.dport),
            (NODE, 8080),
            "eTP Cluster: SNAT to the node address"
        );
        seen.insert(port.clone());
        let (rport, frame) = reply_to(&port, &p, SYN | ACK, 9);
        let (op, r) = n.send(&rport, frame).one();
        assert_eq!(op, "eth0");
        assert!(!r.vxlan);
        assert_eq!((r.src, r.sport, r.dst, r.dport), (NODE, 30080, EXT, sport));
        assert_eq!((r.eth_src, r.eth_dst), (MAC_UPLINK, MAC_ROUTER));
    }
    assert_eq!(seen.len(), 2, "local and remote endpoints: {seen:?}");
}

#[test]
fn external_ip_from_outside() {
    let mut n = Node::new(&config());
    let (_, p) = n
        .send(
            "eth0",
            tcp(
                MAC_ROUTER,
                MAC_UPLINK,
                EXT,
                [192, 168, 1, 100],
                33000,
                80,
                SYN,
                7,
                0,
                &[],
            ),
        )
        .one();
    assert_eq!((p.src, p.dport), (NODE, 8080));
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let mut n = Node::new(&config());
    for sport in 34000..34010u16 {
        let lb = [192, 168, 1, 200];
        let (port, p) = n
            .send(
                "eth0",
                tcp(MAC_ROUTER, MAC_UPLINK, EXT, lb, sport, 80, SYN, 7, 0, &[]),
            )
            .one();
        assert_eq!(port, "veth-pod-c", "only the local endpoint");
        assert_eq!((p.src, p.sport, p.dst, p.dport), (EXT, sport, POD_C, 8080));
        let (op, r) = n
            .send(
                "veth-pod-c",
                tcp(MAC_C, MAC_GW, POD_C, EXT, 8080, sport, SYN | ACK, 1, 8, &[]),
            )
            .one();
        assert_eq!(op, "eth0");
        assert_eq!((r.src, r.sport, r.dst, r.dport), (lb, 80, EXT, sport));
    }
    // NodePort of the same Service: local endpoint, client kept.
    let (port, p) = n
        .send(
            "eth0",
            tcp(
                MAC_ROUTER,
                MAC_UPLINK,
                EXT,
                NODE,
                35000,
                30081,
                SYN,
                7,
                0,
                &[],
            ),
        )
        .one();
    assert_eq!((port.as_str(), p.src), ("veth-pod-c", EXT));
    // In-cluster clients of an eTP Local Service use every endpoint.
    let mut remote = false;
    for sport in 36000..36020u16 {
        let (port, _) = syn_from_a(&mut n, [10, 96, 0, 30], 80, sport).one();
        remote |= port == "eth0";
    }
    assert!(remote);
}

#[test]
fn traffic_policy_local_without_local_endpoint_drops() {
    let mut n = Node::new(&config());
    n.send(
        "eth0",
        tcp(
            MAC_ROUTER,
            MAC_UPLINK,
            EXT,
            NODE,
            35000,
            30082,
            SYN,
            7,
            0,
            &[],
        ),
    )
    .dropped("svc_no_local_endpoints");
    // internalTrafficPolicy Local: pod A has no local endpoint either.
    syn_from_a(&mut n, [10, 96, 0, 31], 80, 41000).dropped("svc_no_local_endpoints");
}

#[test]
fn service_without_endpoints_rejects() {
    let mut n = Node::new(&config());
    let empty = [10, 96, 0, 40];
    let (port, r) = n
        .send(
            "veth-pod-a",
            tcp(MAC_A, MAC_GW, POD_A, empty, 42000, 80, SYN, 777, 0, &[]),
        )
        .one();
    assert_eq!(port, "veth-pod-a");
    assert_eq!((r.src, r.sport, r.dst, r.dport), (empty, 80, POD_A, 42000));
    assert_eq!((r.tcp_flags, r.ack), (RST | ACK, 778));
    assert_eq!((r.eth_src, r.eth_dst), (MAC_GW, MAC_A));
    let (port, e) = n
        .send(
            "veth-pod-a",
            udp(MAC_A, MAC_GW, POD_A, empty, 42000, 53, b"q"),
        )
        .one();
    assert_eq!(port, "veth-pod-a");
    assert_eq!((e.proto, e.icmp_type, e.icmp_code, e.dst), (1, 3, 3, POD_A));
    let q = e.quote();
    assert_eq!((q.src, q.dst, q.sport, q.dport), (POD_A, empty, 42000, 53));
    assert!(n.dump().is_empty());
}

#[test]
fn hairpin_through_own_service_is_snated_to_the_gateway() {
    let mut n = Node::new(&config());
    let mut done = false;
    for sport in 43000..43100u16 {
        let out = n.send(
            "veth-pod-c",
            tcp(MAC_C, MAC_GW, POD_C, VIP, sport, 80, SYN, 50, 0, &[]),
        );
        let (port, p) = out.one();
        if port != "veth-pod-c" {
            continue;
        }
        assert_eq!(
            (p.src, p.dst, p.dport),
            (GW, POD_C, 8080),
            "hairpin SNAT to the gateway"
        );
        let (op, r) = n
            .send(
                "veth-pod-c",
                tcp(
                    MAC_C,
                    MAC_GW,
                    POD_C,
                    GW,
                    8080,
                    p.sport,
                    SYN | ACK,
                    9,
                    51,
                    &[],
                ),
            )
            .one();
        assert_eq!(op, "veth-pod-c");
        assert_eq!((r.src, r.sport, r.dst, r.dport), (VIP, 80, POD_C, sport));
        done = true;
        break;
    }
    assert!(done, "some flow chose pod C itself");
}

#[test]
fn session_affinity_client_ip_sticks() {
    let mut n = Node::new(&config());
    let sticky = [10, 96, 0, 50];
    let (_, first) = syn_from_a(&mut n, sticky, 80, 44000).one();
    for sport in 44001..44030u16 {
        let (_, p) = syn_from_a(&mut n, sticky, 80, sport).one();
        assert_eq!(p.dst, first.dst, "same endpoint for the same client");
    }
    // Another client may land elsewhere but sticks too.
    let (_, c0) = n
        .send(
            "veth-pod-c",
            tcp(MAC_C, MAC_GW, POD_C, sticky, 44000, 80, SYN, 1, 0, &[]),
        )
        .one();
    for sport in 44001..44010u16 {
        let (_, p) = n
            .send(
                "veth-pod-c",
                tcp(MAC_C, MAC_GW, POD_C, sticky, sport, 80, SYN, 1, 0, &[]),
            )
            .one();
        assert_eq!(p.dst, c0.dst);
    }
}

#[test]
fn masquerade_to_the_internet_and_back() {
    let mut n = Node::new(&config());
    let (port, p) = syn_from_a(&mut n, INET, 443, 45000).one();
    assert_eq!(port, "eth0");
    assert!(!p.vxlan);
    assert_eq!((p.src, p.dst, p.dport), (NODE, INET, 443));
    assert_eq!((p.eth_src, p.eth_dst), (MAC_UPLINK, MAC_ROUTER));
    let (op, r) = n
        .send(
            "eth0",
            tcp(
                MAC_ROUTER,
                MAC_UPLINK,
                INET,
                NODE,
                443,
                p.sport,
                SYN | ACK,
                3,
                1001,
                &[],
            ),
        )
        .one();
    assert_eq!(op, "veth-pod-a");
    assert_eq!((r.src, r.sport, r.dst, r.dport), (INET, 443, POD_A, 45000));
    // Ping too.
    let (_, e) = n
        .send(
            "veth-pod-a",
            echo(MAC_A, MAC_GW, POD_A, INET, 0x1234, false),
        )
        .one();
    assert_eq!((e.src, e.dst), (NODE, INET));
    let (op, r) = n
        .send(
            "eth0",
            echo(MAC_ROUTER, MAC_UPLINK, INET, NODE, e.sport, true),
        )
        .one();
    assert_eq!(op, "veth-pod-a");
    assert_eq!(
        (r.src, r.dst, r.sport, r.icmp_type),
        (INET, POD_A, 0x1234, 0)
    );
    // Pod-to-pod traffic is not translated, and neither is a stray non-SYN leaving.
    let (_, d) = syn_from_a(&mut n, POD_B, 80, 45001).one();
    assert_eq!(d.src, POD_A);
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, INET, 45002, 443, ACK, 1, 1, &[]),
    )
    .dropped("snat_ct_invalid");
    let lines = stable(&n.dump());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(
        "icmp orig=(src=10.244.1.10,dst=8.8.8.8,id=4660) reply=(src=8.8.8.8,dst=192.168.1.10,id="
    ));
}

#[test]
fn tcp_teardown_states_and_timeouts() {
    let mut n = Node::new(&config());
    let (port, p) = syn_from_a(&mut n, INET, 443, 46000).one();
    assert_eq!(port, "eth0");
    let from_inet = |flags, n: &mut Node| {
        n.send(
            "eth0",
            tcp(
                MAC_ROUTER,
                MAC_UPLINK,
                INET,
                NODE,
                443,
                p.sport,
                flags,
                3,
                1001,
                &[],
            ),
        )
    };
    from_inet(SYN | ACK, &mut n).one();
    assert!(n.dump().contains("state=SYN_RECV timeout=59 "));
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, INET, 46000, 443, ACK, 1001, 4, &[]),
    )
    .one();
    assert!(n.dump().contains("state=ESTABLISHED timeout=86399 "));
    n.send(
        "veth-pod-a",
        tcp(
            MAC_A,
            MAC_GW,
            POD_A,
            INET,
            46000,
            443,
            FIN | ACK,
            1001,
            4,
            &[],
        ),
    )
    .one();
    assert!(n.dump().contains("state=FIN_WAIT "));
    from_inet(ACK, &mut n).one();
    assert!(n.dump().contains("state=CLOSE_WAIT "));
    from_inet(FIN | ACK, &mut n).one();
    assert!(n.dump().contains("state=LAST_ACK "));
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, INET, 46000, 443, ACK, 1002, 5, &[]),
    )
    .one();
    assert!(
        n.dump().contains("state=TIME_WAIT timeout=119 "),
        "{}",
        n.dump()
    );
    from_inet(RST, &mut n).one();
    assert!(n.dump().contains("state=CLOSE timeout=9 "));
    // Expired entries disappear from the dump and are reaped incrementally.
    n.now += std::time::Duration::from_secs(11);
    assert!(n.dump().is_empty());
}

/// A whole conversation replayed in one batch (as `podswitchd replay` does with a capture):
/// each packet must find the entry the previous one created.
#[test]
fn whole_conversations_in_one_batch() {
    use podswitch::tools::replay::{self, Input};
    let snap = snapshot(&config());
    let port = |n: &str| snap.port_by_name(n).unwrap();
    let lb = [192, 168, 1, 200];
    let inputs = vec![
        // Masquerade: SYN, SYN-ACK (to the node address; the original port is kept, being in
        // the SNAT range), ACK.
        tcp(MAC_A, MAC_GW, POD_A, INET, 63000, 443, SYN, 1, 0, &[]),
        tcp(
            MAC_ROUTER,
            MAC_UPLINK,
            INET,
            NODE,
            443,
            63000,
            SYN | ACK,
            9,
            2,
            &[],
        ),
        tcp(MAC_A, MAC_GW, POD_A, INET, 63000, 443, ACK, 2, 10, b"hello"),
        // eTP Local LoadBalancer (always pod C): SYN, SYN-ACK, ACK.
        tcp(MAC_ROUTER, MAC_UPLINK, EXT, lb, 47001, 80, SYN, 1, 0, &[]),
        tcp(MAC_C, MAC_GW, POD_C, EXT, 8080, 47001, SYN | ACK, 9, 2, &[]),
        tcp(MAC_ROUTER, MAC_UPLINK, EXT, lb, 47001, 80, ACK, 2, 10, &[]),
    ];
    let ports = [
        "veth-pod-a",
        "eth0",
        "veth-pod-a",
        "eth0",
        "veth-pod-c",
        "eth0",
    ];
    let inputs: Vec<Input> = inputs
        .into_iter()
        .zip(ports)
        .map(|(data, p)| Input {
            ts: std::time::Duration::from_secs(5),
            port: port(p),
            data,
        })
        .collect();
    let out = replay::run(&snap, &inputs);
    for v in &out.verdicts {
        assert!(v.drops.is_empty() && v.out.len() == 1, "{v:?}");
    }
    let outs: Vec<String> = out.verdicts.iter().map(|v| v.out[0].clone()).collect();
    assert_eq!(
        outs,
        [
            "eth0",
            "veth-pod-a",
            "eth0",
            "veth-pod-c",
            "eth0",
            "veth-pod-c"
        ]
    );
    let ct = out.pipeline.conntrack().unwrap();
    let dump = podswitch::conntrack::dump_text(ct, 5_000_000_000);
    assert_eq!(dump.lines().count(), 2, "{dump}");
    assert!(
        dump.lines().all(|l| l.contains("state=ESTABLISHED")),
        "{dump}"
    );
    let eth0 = out
        .ports
        .iter()
        .find(|(p, _)| podswitch::port::Port::name(p) == "eth0")
        .unwrap();
    let reply = decode(&eth0.0.tx[2]);
    assert_eq!(
        (reply.src, reply.sport, reply.dst, reply.dport),
        (lb, 80, EXT, 47001)
    );
}

/// Pod C answers pod A (same subnet) straight to pod A's MAC, as a real pod does: the
/// bridged reply must still be translated back to the VIP, never delivered as pod C.
#[test]
fn same_node_endpoint_reply_sent_to_client_mac_is_reverse_translated() {
    let mut n = Node::new(&config());
    let mut checked = 0;
    for sport in 41000..41040u16 {
        let (port, p) = syn_from_a(&mut n, VIP, 80, sport).one();
        if port != "veth-pod-c" {
            continue;
        }
        let bridged = tcp(
            MAC_C,
            MAC_A,
            POD_C,
            POD_A,
            8080,
            sport,
            SYN | ACK,
            7000,
            p.seq + 1,
            &[],
        );
        let (out_port, r) = n.send("veth-pod-c", bridged).one();
        assert_eq!(out_port, "veth-pod-a");
        assert_eq!((r.src, r.sport, r.dst, r.dport), (VIP, 80, POD_A, sport));
        assert_eq!(r.eth_dst, MAC_A);
        checked += 1;
    }
    assert!(checked > 0, "some flows chose the local endpoint");
    // Plain bridged traffic between the pods (no translation) is still bridged untouched.
    let (out_port, r) = n
        .send(
            "veth-pod-c",
            tcp(MAC_C, MAC_A, POD_C, POD_A, 9999, 5555, SYN, 1, 0, &[]),
        )
        .one();
    assert_eq!(
        (out_port.as_str(), r.src, r.eth_src),
        ("veth-pod-a", POD_C, MAC_C)
    );
}

/// A client that reuses its port toward a second Service with the same endpoint, right after
/// its connection to the first one closed, keeps its port: the closed entry's reply tuple
/// (endpoint -> client port) is taken over instead of the new connection being moved into
/// the SNAT range (which a busy client's closed entries fill: `nat_ports_exhausted`).
#[test]
fn a_reused_client_port_toward_another_service_keeps_the_port() {
    let mut cfg = config();
    let web = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "web")
        .expect("web in the example");
    web.endpoints.retain(|e| e.ip.octets() == POD_C);
    let mut web2 = web.clone();
    web2.name = "web2".into();
    web2.kind = Default::default();
    web2.cluster_ip = Some([10, 96, 0, 99].into());
    web2.external_ips.clear();
    for p in &mut web2.ports {
        p.node_port = None;
    }
    cfg.services.push(web2);
    let mut n = Node::new(&cfg);
    let (port, p) = syn_from_a(&mut n, VIP, 80, 40000).one();
    assert_eq!(
        (port.as_str(), p.dst, p.sport),
        ("veth-pod-c", POD_C, 40000)
    );
    let (rport, frame) = reply_to(&port, &p, SYN | ACK, 5000);
    n.send(&rport, frame).one();
    // The client aborts the connection (as a load generator closing with RST does).
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, VIP, 40000, 80, RST, 1001, 0, &[]),
    )
    .one();
    assert!(n.dump().contains("state=CLOSE "), "{}", n.dump());
    let vip2 = [10, 96, 0, 99];
    let (port, p) = syn_from_a(&mut n, vip2, 80, 40000).one();
    assert_eq!(
        (port.as_str(), p.dst, p.sport, p.dport),
        ("veth-pod-c", POD_C, 40000, 8080)
    );
    let (rport, frame) = reply_to(&port, &p, SYN | ACK, 7000);
    let (out, r) = n.send(&rport, frame).one();
    assert_eq!(out, "veth-pod-a");
    assert_eq!((r.src, r.sport, r.dport), (vip2, 80, 40000));
    let dump = n.dump();
    assert_eq!(dump.lines().count(), 1, "the closed entry is gone: {dump}");
}
