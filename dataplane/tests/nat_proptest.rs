//! Property: whatever the mix of Service and masqueraded flows (with a source-port pool small
//! enough to force remapping), no two live flows share a translated tuple, and the reply to
//! every translated packet is restored exactly to the client's original tuple.

mod support;
use proptest::prelude::*;
use std::collections::HashMap;
use support::*;

type Tuple = (u8, [u8; 4], [u8; 4], u16, u16);

fn first_packet(client: bool, kind: u8, sport: u16) -> (&'static str, Vec<u8>, Tuple) {
    let (port, mac, src) = if client {
        ("veth-pod-c", MAC_C, POD_C)
    } else {
        ("veth-pod-a", MAC_A, POD_A)
    };
    let (proto, dst, dport) = match kind {
        0 => (6, VIP, 80),
        1 => (17, VIP, 53),
        2 => (6, INET, 443),
        3 => (17, INET, 53),
        _ => (6, [10, 96, 0, 50], 80),
    };
    let frame = if proto == 6 {
        tcp(mac, MAC_GW, src, dst, sport, dport, SYN, 1, 0, &[])
    } else {
        udp(mac, MAC_GW, src, dst, sport, dport, b"q")
    };
    (port, frame, (proto, src, dst, sport, dport))
}

/// The far end's answer to output packet `p` that left on `port`.
fn answer(port: &str, p: &Pkt) -> (&'static str, Vec<u8>) {
    let body = |smac, dmac| {
        if p.proto == 6 {
            tcp(
                smac,
                dmac,
                p.dst,
                p.src,
                p.dport,
                p.sport,
                SYN | ACK,
                7,
                p.seq + 1,
                &[],
            )
        } else {
            udp(smac, dmac, p.dst, p.src, p.dport, p.sport, b"a")
        }
    };
    match (port, p.vxlan) {
        ("eth0", true) => ("eth0", from_node2(&body(MAC_NODE2, VTEP1))),
        ("eth0", false) => ("eth0", body(MAC_ROUTER, MAC_UPLINK)),
        ("veth-pod-c", _) => ("veth-pod-c", body(MAC_C, MAC_GW)),
        ("veth-pod-a", _) => ("veth-pod-a", body(MAC_A, MAC_GW)),
        _ => panic!("unexpected port {port}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn translated_tuples_unique_and_replies_restored(
        flows in prop::collection::vec((any::<bool>(), 0u8..5, 40000u16..40012), 1..40)
    ) {
        let mut cfg = config();
        cfg.nat.snat_port_range = [40000, 40007];
        let mut n = Node::new(&cfg);
        // Original tuple -> (output port, translated tuple as it left).
        let mut live: HashMap<Tuple, (String, Pkt)> = HashMap::new();
        for (client, kind, sport) in flows {
            let (port, frame, orig) = first_packet(client, kind, sport);
            let out = n.send(port, frame);
            if out.frames.is_empty() {
                prop_assert_eq!(out.drops.clone(), vec!["nat_ports_exhausted".to_string()]);
                continue;
            }
            let (op, p) = out.one();
            let tuple = (p.proto, p.src, p.dst, p.sport, p.dport);
            if let Some((_, prev)) = live.get(&orig) {
                // The same flow again: same translation.
                prop_assert_eq!((prev.src, prev.dst, prev.sport, prev.dport), (p.src, p.dst, p.sport, p.dport));
            }
            live.insert(orig, (op, p));
            let _ = tuple;
        }
        // No two live flows share a translated tuple.
        let mut seen: HashMap<Tuple, Tuple> = HashMap::new();
        for (orig, (_, p)) in &live {
            let t = (p.proto, p.src, p.dst, p.sport, p.dport);
            if let Some(other) = seen.insert(t, *orig) {
                prop_assert!(false, "flows {:?} and {:?} share {:?}", other, orig, t);
            }
        }
        // Every reply comes back to its client exactly as the inverse of the original tuple.
        for (orig, (port, p)) in &live {
            let (rp, frame) = answer(port, p);
            let (cport, r) = n.send(rp, frame).one();
            let want_port = if orig.1 == POD_C { "veth-pod-c" } else { "veth-pod-a" };
            prop_assert_eq!(cport.as_str(), want_port);
            prop_assert_eq!((r.proto, r.src, r.dst, r.sport, r.dport), (orig.0, orig.2, orig.1, orig.4, orig.3));
        }
        // And the dump agrees: one entry per live flow (affinity records are not listed).
        prop_assert_eq!(n.dump().lines().count(), live.len());
    }
}
