//! Multi-buffer frames (a first buffer with the headers, the rest chained) through the
//! pipeline, from pods whose ports carry super-frames (`gso = true`):
//! - to a pod behind a VXLAN path: cut into path-sized, encapsulated segments;
//! - to a same-node pod whose port carries super-frames: sent whole, bridged or routed, its
//!   partial (pseudo-header only) TCP checksum finished over the whole chain;
//! - to a same-node pod whose port does not: cut to that pod's MTU;
//! - no MSS clamping of such a pod's SYNs (clamping stays for ordinary ports);
//! - malformed chains, and chains at stages that need one buffer, dropped by name.

mod support;

use podswitch::config::NodeConfig;
use podswitch::pipeline::{Batch, Event};
use podswitch::tables::Snapshot;
use podswitch::tools::replay;
use support::*;

fn node(gso_c: bool) -> Snapshot {
    let mut cfg: NodeConfig = config();
    for p in cfg.pods.iter_mut() {
        if p.port == "veth-pod-a" || (gso_c && p.port == "veth-pod-c") {
            p.gso = true;
        }
    }
    snapshot(&cfg)
}

/// A TCP frame from pod A with `payload` bytes (a counting pattern), DF, and the partial
/// checksum a GSO sender leaves (the pseudo-header sum only).
fn gso_frame(dmac: [u8; 6], dst: [u8; 4], payload: usize, flags: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..payload).map(|i| (i % 253) as u8).collect();
    let mut f = tcp(MAC_A, dmac, POD_A, dst, 40000, 5201, flags, 1000, 1, &data);
    // DF, header checksum redone.
    f[20..22].copy_from_slice(&0x4000u16.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let tcp_len = f.len() - 34;
    let partial = !csum(&[], pseudo(POD_A, dst, 6, tcp_len));
    f[50..52].copy_from_slice(&partial.to_be_bytes());
    f
}

/// `f` cut into buffers at `splits`.
fn chain_of<'a>(f: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &s in splits {
        out.push(&f[at..s]);
        at = s;
    }
    out.push(&f[at..]);
    out
}

/// Splits in 3840-byte buffers (what a 4096-byte AF_XDP chunk holds after its headroom).
fn chunked(f: &[u8]) -> Vec<&[u8]> {
    f.chunks(3840).collect()
}

fn run(snap: &Snapshot, port: &str, chains: &[Vec<&[u8]>], gso: bool) -> BatchRun {
    let p = snap.port_by_name(port).expect("port");
    run_one_batch(snap, |b| {
        for c in chains {
            assert!(b.push_rx_chain(p, c, gso));
        }
    })
}

/// TCP payload of every output frame, in order; asserts every checksum (inner and outer).
fn payloads(out: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut all = Vec::new();
    for (_, f) in out {
        let p = decode(f);
        let l4 = p.l4();
        let doff = usize::from(l4[12] >> 4) * 4;
        all.extend_from_slice(&l4[doff..]);
    }
    all
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8).collect()
}

#[test]
fn super_frame_to_a_remote_pod_leaves_as_encapsulated_segments() {
    let snap = node(false);
    let f = gso_frame(MAC_GW, POD_B, 60000, ACK | 0x08);
    let r = run(&snap, "veth-pod-a", &[chunked(&f)], true);
    assert!(r.drops.is_empty(), "drops {:?}", r.drops);
    // VXLAN path 1450, TCP without options: MSS 1410.
    assert_eq!(r.out.len(), 60000usize.div_ceil(1410));
    for (port, frame) in &r.out {
        assert_eq!(port, "eth0");
        assert!(frame.len() - 14 <= 1500);
        assert!(decode(frame).vxlan);
    }
    assert_eq!(payloads(&r.out), pattern(60000));
    assert_eq!(r.pipeline.counters.event_count(Event::TsoSuperFrames), 1);
}

#[test]
fn short_first_buffer_still_segments() {
    // Headers alone in the first buffer: segment 0 is written from the chain too.
    let snap = node(false);
    let f = gso_frame(MAC_GW, POD_B, 5000, ACK);
    let r = run(
        &snap,
        "veth-pod-a",
        &[chain_of(&f, &[54, 1000, 1001])],
        true,
    );
    assert!(r.drops.is_empty(), "drops {:?}", r.drops);
    assert_eq!(r.out.len(), 5000usize.div_ceil(1410));
    assert_eq!(payloads(&r.out), pattern(5000));
}

#[test]
fn super_frame_to_a_gso_pod_leaves_whole_with_a_full_checksum() {
    let snap = node(true);
    // Bridged (to pod C's MAC) and routed (to the gateway MAC), odd buffer boundaries.
    for dmac in [MAC_C, MAC_GW] {
        let f = gso_frame(dmac, POD_C, 50001, ACK);
        let r = run(
            &snap,
            "veth-pod-a",
            &[chain_of(&f, &[3001, 7000, 20001])],
            true,
        );
        assert!(r.drops.is_empty(), "drops {:?}", r.drops);
        assert_eq!(r.out.len(), 1, "one frame");
        let (port, frame) = &r.out[0];
        assert_eq!(port, "veth-pod-c");
        assert_eq!(frame.len(), f.len());
        assert_eq!(payloads(&r.out), pattern(50001)); // decode checks the TCP checksum
    }
}

#[test]
fn super_frame_to_an_ordinary_pod_is_cut_to_its_mtu() {
    let snap = node(false);
    for dmac in [MAC_C, MAC_GW] {
        let f = gso_frame(dmac, POD_C, 20000, ACK);
        let r = run(&snap, "veth-pod-a", &[chunked(&f)], true);
        assert!(r.drops.is_empty(), "drops {:?}", r.drops);
        assert_eq!(r.out.len(), 20000usize.div_ceil(1460));
        for (port, frame) in &r.out {
            assert_eq!(port, "veth-pod-c");
            assert!(frame.len() <= 1514);
        }
        assert_eq!(payloads(&r.out), pattern(20000));
    }
}

#[test]
fn small_frames_from_a_gso_pod_get_their_checksum_finished() {
    let snap = node(false);
    let f = gso_frame(MAC_GW, POD_B, 100, ACK);
    let r = run(&snap, "veth-pod-a", &[vec![&f[..]]], true);
    assert!(r.drops.is_empty(), "drops {:?}", r.drops);
    assert_eq!(payloads(&r.out), pattern(100));
}

/// The MSS option of the single output frame (the SYN).
fn mss_of(out: &[(String, Vec<u8>)]) -> u16 {
    assert_eq!(out.len(), 1);
    let p = decode(&out[0].1);
    let l4 = p.l4();
    assert_eq!(l4[20], 2, "MSS option first");
    u16::from_be_bytes([l4[22], l4[23]])
}

fn syn_with_mss(mss: u16) -> Vec<u8> {
    let mut f = tcp(MAC_A, MAC_GW, POD_A, POD_B, 40000, 5201, SYN, 1, 0, &[]);
    // Add an MSS option: data offset 6, total length +4.
    f.splice(54..54, [2, 4, (mss >> 8) as u8, mss as u8]);
    f[46] = 6 << 4;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[50..52].copy_from_slice(&[0, 0]);
    let c = csum(&f[34..], pseudo(POD_A, POD_B, 6, f.len() - 34));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn syn_from_a_gso_pod_keeps_its_mss_others_are_clamped() {
    let f = syn_with_mss(1460);
    let gso = run(&node(false), "veth-pod-a", &[vec![&f[..]]], true);
    assert_eq!(mss_of(&gso.out), 1460, "not clamped: ip4-tso cuts instead");
    // A SYN-ACK from node2's pod to the GSO pod arrives through the tunnel: not clamped
    // to the tunnel either, as pod A's segments are cut by ip4-tso on their way back.
    let mut synack = tcp(
        MAC_A,
        MAC_GW,
        POD_B,
        POD_A,
        5201,
        40000,
        SYN | ACK,
        1,
        2,
        &[],
    );
    synack.splice(54..54, [2, 4, 0x05, 0xb4]);
    synack[46] = 6 << 4;
    let total = (synack.len() - 14) as u16;
    synack[16..18].copy_from_slice(&total.to_be_bytes());
    synack[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&synack[14..34], 0);
    synack[24..26].copy_from_slice(&c.to_be_bytes());
    synack[50..52].copy_from_slice(&[0, 0]);
    let c = csum(&synack[34..], pseudo(POD_B, POD_A, 6, synack.len() - 34));
    synack[50..52].copy_from_slice(&c.to_be_bytes());
    let inner = {
        let mut i = synack.clone();
        i[0..6].copy_from_slice(&VTEP1);
        i[6..12].copy_from_slice(&VTEP2);
        i
    };
    for (gso, want) in [(true, 1460), (false, 1410)] {
        let mut cfg = config();
        cfg.pods
            .iter_mut()
            .for_each(|p| p.gso = gso && p.port == "veth-pod-a");
        let r = run(
            &snapshot(&cfg),
            "eth0",
            &[vec![&from_node2(&inner)[..]]],
            false,
        );
        assert_eq!(mss_of(&r.out), want, "SYN-ACK to pod A, gso {gso}");
    }
    let mut cfg = config();
    cfg.pods.iter_mut().for_each(|p| p.gso = false);
    let plain = run(&snapshot(&cfg), "veth-pod-a", &[vec![&f[..]]], false);
    assert_eq!(mss_of(&plain.out), 1410, "clamped to the VXLAN path");
}

/// One chain through the pipeline; the single drop's name.
fn dropped(snap: &Snapshot, port: &str, chain: Vec<&[u8]>, gso: bool) -> &'static str {
    let r = run(snap, port, &[chain], gso);
    assert!(
        r.out.is_empty(),
        "nothing leaves: {:?} {:?}",
        r.out
            .iter()
            .map(|(p, f)| (p.clone(), f.len()))
            .collect::<Vec<_>>(),
        r.drops
    );
    assert_eq!(r.drops.len(), 1, "{:?}", r.drops);
    r.drops[0]
}

#[test]
fn malformed_chains_are_dropped_by_name() {
    let snap = node(false);
    let f = gso_frame(MAC_GW, POD_B, 9000, ACK);
    // TCP header not all in the first buffer.
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&f, &[40]), true),
        "chain_headers_split"
    );
    // IPv4 header cut in the first buffer.
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&f, &[20]), true),
        "ip4_truncated"
    );
    // The chain holds less than the IPv4 total length.
    assert_eq!(
        dropped(
            &snap,
            "veth-pod-a",
            chain_of(&f[..f.len() - 1], &[3000]),
            true
        ),
        "ip4_total_len_exceeds_frame"
    );
    // An empty buffer inside the chain.
    assert_eq!(
        dropped(&snap, "veth-pod-a", vec![&f[..3000], &[], &f[3000..]], true),
        "chain_empty_buffer"
    );
    // More buffers than a frame may have.
    assert_eq!(
        dropped(
            &snap,
            "veth-pod-a",
            chain_of(&f, &(1..=20).map(|k| k * 300).collect::<Vec<_>>()),
            true
        ),
        "frame_too_long"
    );
    // A chain from a port that does not carry super-frames.
    assert_eq!(
        dropped(
            &snap,
            "veth-pod-c",
            chain_of(&gso_frame(MAC_GW, POD_B, 9000, ACK), &[3000]),
            false
        ),
        "frame_too_long"
    );
    // A chained frame that is not IPv4.
    let mut arp = f.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&arp, &[3000]), true),
        "chain_not_ipv4"
    );
    // A chained IPv4 fragment.
    let mut frag = udp(MAC_A, MAC_GW, POD_A, POD_B, 1000, 2000, &pattern(9000));
    frag[20] |= 0x20; // MF
    frag[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&frag[14..34], 0);
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&frag, &[3000]), true),
        "chain_fragment"
    );
    // A SYN super-frame cannot be cut.
    let syn = gso_frame(MAC_GW, POD_B, 9000, SYN);
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&syn, &[3000]), true),
        "tso_bad_flags"
    );
}

#[test]
fn chains_at_single_buffer_stages_are_dropped_by_name() {
    let snap = node(false);
    // To the gateway address (ip4-local answers echo requests from one buffer).
    let echo_big = {
        let mut e = Vec::new();
        etherparse::PacketBuilder::ethernet2(MAC_A, MAC_GW)
            .ipv4(POD_A, GW, 64)
            .icmpv4_echo_request(8, 7)
            .write(&mut e, &pattern(9000))
            .expect("echo");
        e
    };
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&echo_big, &[3000]), true),
        "local_chained"
    );
    // UDP without DF too big for the VXLAN path: not fragmented from a chain.
    let mut u = udp(MAC_A, MAC_GW, POD_A, POD_B, 1000, 2000, &pattern(9000));
    u[20..22].copy_from_slice(&[0, 0]);
    u[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&u[14..34], 0);
    u[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        dropped(&snap, "veth-pod-a", chain_of(&u, &[3000]), true),
        "frag_chained"
    );
    // UDP with DF: fragmentation-needed, quoting the first buffer.
    let mut d = u.clone();
    d[20..22].copy_from_slice(&0x4000u16.to_be_bytes());
    d[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&d[14..34], 0);
    d[24..26].copy_from_slice(&c.to_be_bytes());
    let r = run(&snap, "veth-pod-a", &[chain_of(&d, &[3000])], true);
    assert_eq!(r.out.len(), 1, "the ICMP error");
    let p = decode(&r.out[0].1);
    assert_eq!((p.icmp_type, p.icmp_code), (3, 4));
    assert_eq!(p.dst, POD_A);
}

#[test]
fn a_batch_takes_no_more_chains_than_its_spare_slots_can_segment() {
    let snap = node(false);
    let p = snap.port_by_name("veth-pod-a").expect("port");
    let f = gso_frame(MAC_GW, POD_B, 60000, ACK);
    let mut b = Batch::new();
    assert!(b.push_rx_chain(p, &chunked(&f), true), "the first is taken");
    assert!(
        !b.push_rx_chain(p, &chunked(&f), true),
        "the second waits for the next batch"
    );
    let small = gso_frame(MAC_GW, POD_B, 100, ACK);
    assert!(
        b.push_rx_chain(p, &[&small[..]], true),
        "single buffers still fit"
    );
    let mut pipeline = replay::pipeline_for(&snap);
    pipeline.run(&snap, &mut b, 1_000_000_000);
    let drops: Vec<_> = (0..b.len()).filter_map(|i| b.meta[i].drop).collect();
    assert!(drops.is_empty(), "{drops:?}");
}
