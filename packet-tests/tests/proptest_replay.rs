//! Property tests: arbitrary bytes, and arbitrary mutations and truncations of valid frames,
//! on arbitrary ports, never panic the pipeline, and every input frame ends as at least one
//! output or a counted drop.

use podswitch::pipeline::Event;
use podswitch::tables::Snapshot;
use podswitch::tools::replay::{self, Input};
use podswitch_packet_tests::*;
use proptest::prelude::*;
use smoltcp::wire::Ipv4Packet;
use std::sync::OnceLock;
use std::time::Duration;

fn snaps() -> &'static [Snapshot] {
    static S: OnceLock<Vec<Snapshot>> = OnceLock::new();
    S.get_or_init(|| {
        vec![
            snapshot("node1-vxlan"),
            snapshot("node1-ipip"),
            snapshot("node1-host-gw"),
            snapshot_with("node1-vxlan", |c| {
                c.node.proxy_arp = true;
                c.pods[1].vlan = Some(100);
                c.pods[1].mtu = 1400;
                c.icmp.burst = 2;
            }),
        ]
    })
}

/// Valid frames to mutate: ARP, ICMP echo, TCP SYN, VXLAN and IP-in-IP from node2, and a
/// fragment-sized UDP packet.
fn seeds() -> &'static [Vec<u8>] {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        vec![
            arp_request(POD_A_MAC, POD_A, GATEWAY),
            arp_request(POD_A_MAC, POD_A, POD_C),
            from_pod_a(&Ip::new(POD_A, GATEWAY), &L4::echo(24)),
            from_pod_a(&Ip::new(POD_A, POD_B), &L4::syn(1460)),
            from_pod_a(&Ip::new(POD_A, POD_C).ttl(2), &L4::syn(1460)),
            vxlan_from_node2(&inner_from_node2(
                &Ip::new(POD_B, POD_A),
                &L4::syn_ack(1460),
            )),
            vxlan_from_node2(&inner_from_node2(&Ip::new(POD_B, GATEWAY), &L4::echo(8))),
            ipip_from_node2(&ip_packet(&Ip::new(POD_B, POD_A), &L4::udp(1, 2, 30))),
            from_pod_a(&Ip::new(POD_A, POD_B).df(false), &L4::udp(1, 2, 1472)),
            eth_tagged_ip(
                POD_C_MAC,
                GATEWAY_MAC,
                Tag::Dot1q(100),
                &Ip::new(POD_C, POD_A),
                &L4::echo(4),
            ),
        ]
    })
}

/// Runs `inputs` and checks the invariants; returns an error message on a violation.
fn check(snap: &Snapshot, inputs: Vec<Input>) -> Result<(), TestCaseError> {
    let out = replay::run(snap, &inputs);
    prop_assert_eq!(out.verdicts.len(), inputs.len());
    let mut dropped = 0u64;
    let mut outs = 0usize;
    let mut held = 0u64;
    for v in &out.verdicts {
        // A non-first fragment nat44-in cannot place yet is held until its first fragment
        // arrives (or dropped, named, when it times out): neither sent nor dropped now.
        if v.held {
            prop_assert!(
                v.out.is_empty() && v.drops.is_empty(),
                "held and sent: {:?}",
                v
            );
            held += 1;
            continue;
        }
        prop_assert!(
            !v.out.is_empty() || !v.drops.is_empty(),
            "input {} vanished: {:?}",
            v.index,
            v
        );
        prop_assert!(
            !v.drops.iter().any(|d| d == "loop_limit"),
            "loop limit hit: {:?}",
            v
        );
        dropped += v.drops.len() as u64;
        outs += v.out.len();
    }
    prop_assert!(
        out.pipeline.counters.event_count(Event::NatFragmentHeld) >= held,
        "{} fragments neither sent nor dropped, {} counted as held",
        held,
        out.pipeline.counters.event_count(Event::NatFragmentHeld)
    );
    prop_assert!(
        out.pipeline.counters.total_drops() >= dropped,
        "{} drops counted for {} dropped verdicts",
        out.pipeline.counters.total_drops(),
        dropped
    );
    let sent: usize = out.ports.iter().map(|(p, _)| p.tx.len()).sum();
    prop_assert_eq!(sent, outs, "frames sent vs outputs in verdicts");
    for (id, (p, _)) in out.ports.iter().enumerate() {
        let port = &snap.ports[id];
        let max = usize::from(port.mtu) + 14 + if port.vlan.is_some() { 4 } else { 0 };
        for f in &p.tx {
            prop_assert!(f.len() <= max, "{} bytes out of {}", f.len(), port.name);
            prop_assert!(f.len() >= 14, "runt frame out of {}", port.name);
            // Routed frames (from the uplink or from the gateway MAC) carry valid IPv4
            // headers; smoltcp checks them, and the tunnel's inner header too.
            let routed = id == usize::from(snap.uplink) || f[6..12] == GATEWAY_MAC;
            if routed && f[12..14] == [0x08, 0x00] {
                let ip = Ipv4Packet::new_checked(&f[14..]);
                prop_assert!(
                    ip.as_ref().is_ok_and(|p| p.verify_checksum()),
                    "bad IPv4 header out of {}",
                    port.name
                );
                if let Ok(ip) = ip {
                    prop_assert_eq!(usize::from(ip.total_len()), f.len() - 14);
                    let inner = match u8::from(ip.next_header()) {
                        4 => Some(&f[34..]),
                        17 if f.len() >= 64 + 20 && f[36..38] == 8472u16.to_be_bytes() => {
                            Some(&f[64..])
                        }
                        _ => None,
                    };
                    if let Some(inner) = inner {
                        let ip = Ipv4Packet::new_checked(inner);
                        prop_assert!(
                            ip.is_ok_and(|p| p.verify_checksum()),
                            "bad inner IPv4 header"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn port_count() -> u16 {
    snaps()[0].ports.len() as u16
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(
        cfg in 0..4usize,
        frames in proptest::collection::vec((0..6u16, proptest::collection::vec(any::<u8>(), 0..1600)), 1..8),
    ) {
        let snap = &snaps()[cfg];
        let inputs = frames.into_iter().map(|(port, data)| Input { ts: Duration::ZERO, port, data }).collect();
        check(snap, inputs)?;
    }

    #[test]
    fn mutated_valid_frames(
        cfg in 0..4usize,
        frames in proptest::collection::vec(
            (
                0..10usize,
                0..port_count(),
                proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                proptest::option::of(any::<prop::sample::Index>()),
            ),
            1..80,
        ),
    ) {
        let snap = &snaps()[cfg];
        let mut inputs = Vec::new();
        for (k, (seed, port, muts, cut)) in frames.into_iter().enumerate() {
            let mut data = seeds()[seed].clone();
            for (at, x) in muts {
                let i = at.index(data.len());
                data[i] ^= x;
            }
            if let Some(c) = cut {
                data.truncate(c.index(data.len() + 1));
            }
            // Time moves on every 16 frames: the ICMP rate limiter refills in between.
            inputs.push(Input { ts: Duration::from_millis(k as u64 / 16 * 5), port, data });
        }
        check(snap, inputs)?;
    }

    #[test]
    fn valid_frames_on_their_own_ports(seed in 0..10usize, cfg in 0..3usize) {
        // Unmutated seeds on the port they were built for never vanish either.
        let snap = &snaps()[cfg];
        let port = if seeds()[seed][6..12] == POD_A_MAC { POD_A_PORT } else if seeds()[seed][6..12] == POD_C_MAC { POD_C_PORT } else { UPLINK };
        let inputs = vec![Input { ts: Duration::ZERO, port: port_id(snap, port), data: seeds()[seed].clone() }];
        check(snap, inputs)?;
    }
}

/// node1-vxlan with its FIB padded past the size from which ip4-lookup looks up its whole
/// batch at once (`lookup_batch` with prefetch): 2048 extra /24s that each map to the route
/// their addresses already matched (or, where nothing matched, to an index past the route
/// table, which ip4-lookup drops as `no_route` just like a miss), so every packet must meet
/// the same fate.
fn large_fib_snap() -> &'static Snapshot {
    static S: OnceLock<Snapshot> = OnceLock::new();
    S.get_or_init(|| {
        use podswitch::tables::lpm::{Lpm, Prefix};
        let mut snap = snapshot("node1-vxlan");
        let mut entries: Vec<(Prefix, u32)> = snap
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.prefix, i as u32))
            .collect();
        for k in 0..2048u32 {
            let addr = [100 + (k >> 8) as u8, k as u8, 7, 0];
            let v = snap.fib.lookup(addr).unwrap_or(snap.routes.len() as u32);
            entries.push((Prefix::new(addr, 24).unwrap(), v));
        }
        snap.fib = std::sync::Arc::new(Lpm::build(&entries));
        assert!(snap.fib.memory_bytes() > 2 << 20, "padded FIB too small");
        snap
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The batch route lookup of a large FIB gives the same outputs as the per-packet one.
    #[test]
    fn large_fib_batch_lookup_same_outputs(
        frames in proptest::collection::vec(
            (
                0..10usize,
                0..port_count(),
                proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                any::<[u8; 4]>(),
                any::<bool>(),
            ),
            1..80,
        ),
    ) {
        let mut inputs = Vec::new();
        for (k, (seed, port, muts, dst, set_dst)) in frames.into_iter().enumerate() {
            let mut data = seeds()[seed].clone();
            // Destinations anywhere, including the padded region (the IPv4 header checksum is
            // then wrong for some: those are dropped the same way by both).
            if set_dst && data.len() >= 34 && data[12..14] == [0x08, 0x00] {
                data[30..34].copy_from_slice(&dst);
            }
            for (at, x) in muts {
                let i = at.index(data.len());
                data[i] ^= x;
            }
            inputs.push(Input { ts: Duration::from_millis(k as u64 / 16 * 5), port, data });
        }
        let small = replay::run(&snaps()[0], &inputs);
        let large = replay::run(large_fib_snap(), &inputs);
        prop_assert_eq!(format!("{:?}", small.verdicts), format!("{:?}", large.verdicts));
        for ((a, _), (b, _)) in small.ports.iter().zip(&large.ports) {
            prop_assert_eq!(&a.tx, &b.tx);
        }
    }
}

/// Found by `mutated_valid_frames`: pod A's echo to the gateway, on the host port, with its
/// fragment offset turned non-zero (bytes 19 and 21 flipped): nat44-in holds it waiting for
/// a first fragment that never comes. Held is an outcome (the replay verdict's `held`),
/// counted, not a vanished frame.
#[test]
fn a_held_later_fragment_is_not_a_vanished_frame() {
    let snap = &snaps()[0];
    let mut data = from_pod_a(&Ip::new(POD_A, GATEWAY), &L4::echo(24));
    data[19] ^= 0x20;
    data[21] ^= 0x20;
    let port = port_id(snap, HOST_PORT);
    let inputs = vec![Input {
        ts: Duration::ZERO,
        port,
        data,
    }];
    let out = replay::run(snap, &inputs);
    assert!(out.verdicts[0].out.is_empty() && out.verdicts[0].drops.is_empty());
    assert!(out.verdicts[0].held, "the replay verdict says held");
    assert_eq!(out.pipeline.counters.event_count(Event::NatFragmentHeld), 1);
    check(snap, inputs).expect("a held fragment passes the invariants");
}
