//! ip4-gro through the whole pipeline: TCP segments from pod B on node2 arrive over VXLAN
//! and leave toward pod A, whose port takes super-frames (`gso = true`).
//! - an in-order run becomes one super-frame, byte for byte the frame built independently
//!   here (first headers, payloads concatenated, lengths, flags and checksums);
//! - out-of-order, retransmitted, flag-changing, option-changing, interleaved and mixed
//!   traffic is never merged wrongly: every output frame is a concatenation of consecutive
//!   input segments of one flow, in their arrival order, with a valid checksum;
//! - nothing is merged toward a port that does not take super-frames.
//!
//! Frames are built here by hand (no code shared with the pipeline) and checked with the
//! test support's independent checksum code.

mod support;

use podswitch::config::NodeConfig;
use podswitch::pipeline::Event;
use podswitch::tables::Snapshot;
use support::*;

const PSH: u8 = 0x08;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;
/// What a VXLAN path (MTU 1450) carries with TCP timestamps.
const MSS: usize = 1398;
const SEQ0: u32 = 0xffff_0000; // wraps within a long run

fn node(gso_a: bool) -> Snapshot {
    let mut cfg: NodeConfig = config();
    for p in cfg.pods.iter_mut() {
        if gso_a && p.port == "veth-pod-a" {
            p.gso = true;
        }
    }
    snapshot(&cfg)
}

/// One inner TCP segment pod B -> pod A (or `dst`), as pod B's kernel sends it.
#[derive(Clone)]
struct S {
    sport: u16,
    dst: [u8; 4],
    dmac: [u8; 6],
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    id: u16,
    df: bool,
    ttl: u8,
    /// TCP timestamps (TSval, TSecr); `None`: no options.
    ts: Option<(u32, u32)>,
    payload: Vec<u8>,
    /// Break the TCP checksum (corruption on the way).
    corrupt: bool,
}

fn stream(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 / 7 + i / 251) as u8).collect()
}

impl S {
    fn new(k: usize, data: &[u8]) -> S {
        S {
            sport: 40000,
            dst: POD_A,
            dmac: VTEP1,
            seq: SEQ0.wrapping_add((k * MSS) as u32),
            ack: 77,
            flags: ACK,
            window: 502,
            id: 0x100 + k as u16,
            df: true,
            ttl: 64,
            ts: Some((1000, 2000)),
            payload: data[k * MSS..((k + 1) * MSS).min(data.len())].to_vec(),
            corrupt: false,
        }
    }

    /// The Ethernet frame: IPv4 (no options) and TCP (timestamps when set) with correct
    /// checksums.
    fn frame(&self, smac: [u8; 6]) -> Vec<u8> {
        let thl = if self.ts.is_some() { 32 } else { 20 };
        let total = 20 + thl + self.payload.len();
        let mut f = vec![0u8; 14 + total];
        f[0..6].copy_from_slice(&self.dmac);
        f[6..12].copy_from_slice(&smac);
        f[12..14].copy_from_slice(&[8, 0]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.id.to_be_bytes());
        ip[6] = if self.df { 0x40 } else { 0 };
        ip[8] = self.ttl;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&POD_B);
        ip[16..20].copy_from_slice(&self.dst);
        let c = csum(&f[14..34], 0);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let t = &mut f[34..];
        t[0..2].copy_from_slice(&self.sport.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = ((thl / 4) as u8) << 4;
        t[13] = self.flags;
        t[14..16].copy_from_slice(&self.window.to_be_bytes());
        if let Some((v, e)) = self.ts {
            t[20..22].copy_from_slice(&[1, 1]);
            t[22..24].copy_from_slice(&[8, 10]);
            t[24..28].copy_from_slice(&v.to_be_bytes());
            t[28..32].copy_from_slice(&e.to_be_bytes());
        }
        t[thl..].copy_from_slice(&self.payload);
        let c = csum(
            &f[34..],
            pseudo(POD_B, self.dst, 6, thl + self.payload.len()),
        );
        let c = if self.corrupt { c ^ 0x0101 } else { c };
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// As received on node1's uplink: in node2's VXLAN.
    fn wire(&self) -> Vec<u8> {
        from_node2(&self.frame(VTEP2))
    }
}

/// One batch of `frames` arriving on the uplink.
fn run(snap: &Snapshot, frames: &[Vec<u8>]) -> BatchRun {
    let up = snap.port_by_name("eth0").expect("uplink");
    run_one_batch(snap, |b| {
        for f in frames {
            assert!(b.push_rx_chain(up, &[&f[..]], false));
        }
    })
}

fn event(o: &BatchRun, e: Event) -> u64 {
    o.pipeline.counters.event_count(e)
}

/// TCP checksum of an output frame (no VXLAN) is valid.
fn tcp_ok(f: &[u8]) -> bool {
    let ip = &f[14..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(f.len(), 14 + total, "frame length = IPv4 total length");
    assert_eq!(csum(&ip[..20], 0), 0, "IPv4 header checksum");
    let src: [u8; 4] = ip[12..16].try_into().unwrap();
    let dst: [u8; 4] = ip[16..20].try_into().unwrap();
    csum(&ip[20..total], pseudo(src, dst, 6, total - 20)) == 0
}

/// (sport, seq, payload, flags) of a TCP output frame.
fn fields(f: &[u8]) -> (u16, u32, Vec<u8>, u8) {
    let t = &f[34..];
    let thl = usize::from(t[12] >> 4) * 4;
    (
        u16::from_be_bytes([t[0], t[1]]),
        u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        t[thl..].to_vec(),
        t[13],
    )
}

/// Every TCP output frame toward `port` is a concatenation of consecutive input segments of
/// one flow, consumed in arrival order per flow, with a valid checksum; every input segment
/// is delivered exactly once. Returns the number of output TCP frames.
fn check_never_merged_wrongly(out: &BatchRun, port: &str, input: &[S]) -> usize {
    use std::collections::HashMap;
    let mut next: HashMap<u16, usize> = HashMap::new();
    let per_flow = |sport: u16| -> Vec<&S> { input.iter().filter(|s| s.sport == sport).collect() };
    let mut n = 0;
    for (p, f) in &out.out {
        if p != port || f[23] != 6 {
            continue;
        }
        n += 1;
        assert!(tcp_ok(f), "valid TCP checksum on every output frame");
        let (sport, seq, payload, flags) = fields(f);
        let segs = per_flow(sport);
        let k = next.entry(sport).or_insert(0);
        let first = segs[*k];
        assert_eq!(
            seq, first.seq,
            "flow {sport}: output starts at the next input segment"
        );
        let mut joined = Vec::new();
        let mut want_flags = first.flags;
        let mut expect_seq = first.seq;
        while joined.len() < payload.len() {
            let s = segs[*k];
            assert_eq!(
                s.seq, expect_seq,
                "flow {sport}: only consecutive segments joined"
            );
            joined.extend_from_slice(&s.payload);
            want_flags |= s.flags & (PSH | 0x01);
            expect_seq = s.seq.wrapping_add(s.payload.len() as u32);
            *k += 1;
        }
        if payload.is_empty() {
            *k += 1;
        }
        assert_eq!(
            payload, joined,
            "flow {sport}: payload is the joined segments'"
        );
        assert_eq!(flags, want_flags, "flow {sport}: flags");
    }
    for (sport, k) in next {
        assert_eq!(
            k,
            per_flow(sport).len(),
            "flow {sport}: every segment delivered"
        );
    }
    n
}

/// The super-frame pod A should get for `segs` (all joined): the first's headers after
/// routing (TTL - 1, pod A's MACs), the payloads concatenated, FIN/PSH of any, checksums.
fn expected(segs: &[S]) -> Vec<u8> {
    let mut s = segs[0].clone();
    s.ttl -= 1;
    s.dmac = MAC_A;
    s.payload = segs.iter().flat_map(|s| s.payload.clone()).collect();
    s.flags = segs
        .iter()
        .fold(s.flags, |f, x| f | (x.flags & (PSH | 0x01)));
    s.frame(MAC_GW)
}

#[test]
fn an_in_order_run_becomes_one_super_frame_byte_for_byte() {
    let snap = node(true);
    let data = stream(20 * MSS);
    let mut segs: Vec<S> = (0..20).map(|k| S::new(k, &data)).collect();
    segs[19].flags |= PSH;
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(out.out.len(), 1, "one super-frame");
    assert_eq!(out.out[0].0, "veth-pod-a");
    assert_eq!(out.out[0].1, expected(&segs), "byte for byte");
    assert!(tcp_ok(&out.out[0].1));
    assert_eq!(
        out.segment_sizes,
        [MSS as u16],
        "the port is told the segments' size"
    );
    assert_eq!(event(&out, Event::GroSuperFrames), 1);
    assert_eq!(event(&out, Event::GroSegmentsMerged), 20);
    assert_eq!(event(&out, Event::GroFlushPush), 1);
}

#[test]
fn odd_sizes_and_a_short_last_segment_merge_byte_for_byte() {
    let snap = node(true);
    let data = stream(3 * 1001 + 333);
    // Segment size 1001 (odd): the second payload starts at an odd offset.
    let mut segs: Vec<S> = (0..4)
        .map(|k| {
            let mut s = S::new(0, &data);
            s.seq = SEQ0.wrapping_add((k * 1001) as u32);
            s.id = 0x100 + k as u16;
            s.ts = None;
            s.payload = data[k * 1001..((k + 1) * 1001).min(data.len())].to_vec();
            s
        })
        .collect();
    segs[3].flags |= 0x01; // FIN on the last
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(out.out.len(), 1);
    assert_eq!(out.out[0].1, expected(&segs));
    assert!(tcp_ok(&out.out[0].1));
    assert_eq!(out.segment_sizes, [1001]);
}

/// Segments `order` of `data`, their IPv4 ids in arrival order (as a sender numbers its
/// packets, retransmissions included), so only the sequence numbers are out of order.
fn in_arrival_order(order: &[usize], data: &[u8]) -> Vec<S> {
    let mut segs: Vec<S> = order.iter().map(|&k| S::new(k, data)).collect();
    for (pos, s) in segs.iter_mut().enumerate() {
        s.id = 0x100 + pos as u16;
    }
    segs
}

#[test]
fn out_of_order_segments_are_never_merged_wrongly() {
    let snap = node(true);
    let data = stream(6 * MSS);
    let order = [0, 2, 1, 3, 5, 4];
    let segs = in_arrival_order(&order, &data);
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    // 0 | 2 | 1 | 3 | 5 | 4: no two neighbours are consecutive.
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 6);
    assert_eq!(event(&out, Event::GroSuperFrames), 0);
    assert!(event(&out, Event::GroFlushSeq) >= 4);
}

#[test]
fn retransmitted_segments_start_a_new_run() {
    let snap = node(true);
    let data = stream(4 * MSS);
    let order = [0, 1, 2, 1, 2, 3];
    let segs = in_arrival_order(&order, &data);
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    // [0 1 2] [1 2 3]: the retransmitted 1 does not follow 2.
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 2);
    assert_eq!(event(&out, Event::GroFlushSeq), 1);
}

#[test]
fn changes_of_flags_ack_window_options_or_ip_fields_end_a_run() {
    let snap = node(true);
    let data = stream(4 * MSS);
    type Change = fn(&mut S);
    // (what, change made to segments 2 and 3, flush reason, how many flushes: a segment
    // with CWR never joins a run, so CWR on both closes two).
    let cases: [(&str, Change, Event, u64); 10] = [
        ("ack", |s| s.ack += 1, Event::GroFlushAck, 1),
        ("window", |s| s.window += 1, Event::GroFlushFlags, 1),
        ("ece", |s| s.flags |= ECE, Event::GroFlushFlags, 1),
        ("cwr", |s| s.flags |= CWR, Event::GroFlushFlags, 2),
        ("urg", |s| s.flags |= URG, Event::GroFlushFlags, 1),
        ("rst", |s| s.flags |= RST, Event::GroFlushFlags, 1),
        (
            "tsval",
            |s| s.ts = Some((1001, 2000)),
            Event::GroFlushOptions,
            1,
        ),
        ("ttl", |s| s.ttl -= 1, Event::GroFlushIp, 1),
        ("ip id", |s| s.id += 7, Event::GroFlushIp, 1),
        ("df", |s| s.df = false, Event::GroFlushIp, 1),
    ];
    for (what, change, why, times) in cases {
        let mut segs: Vec<S> = (0..4).map(|k| S::new(k, &data)).collect();
        for s in &mut segs[2..] {
            change(s);
        }
        let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
        let n = check_never_merged_wrongly(&out, "veth-pod-a", &segs);
        assert!(n >= 2, "{what}: the change ends the run ({n} frames)");
        assert_eq!(event(&out, why), times, "{what}: counted as {why:?}");
        // The first two still merge.
        assert_eq!(fields(&out.out[0].1).2.len(), 2 * MSS, "{what}");
    }
}

#[test]
fn psh_ends_a_run_and_syn_or_pure_acks_never_join() {
    let snap = node(true);
    let data = stream(6 * MSS);
    let mut segs: Vec<S> = (0..6).map(|k| S::new(k, &data)).collect();
    segs[1].flags |= PSH;
    // A pure ACK of the same flow between data segments.
    let mut ack = S::new(4, &data);
    ack.payload.clear();
    ack.id = 0x104;
    segs.insert(4, ack);
    for s in segs.iter_mut().skip(5) {
        s.id += 1;
    }
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    // [0 1(PSH)] [2 3] [ack] [4 5]
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 4);
    assert_eq!(event(&out, Event::GroSuperFrames), 3);
    assert_eq!(event(&out, Event::GroFlushPush), 1);
    assert_eq!(event(&out, Event::GroFlushLength), 1);
}

#[test]
fn interleaved_flows_and_other_traffic_merge_per_flow() {
    let snap = node(true);
    let data = stream(8 * MSS);
    let mut input: Vec<S> = Vec::new();
    let mut wire = Vec::new();
    for k in 0..8 {
        for sport in [40000, 40001, 40002] {
            let mut s = S::new(k, &data);
            s.sport = sport;
            wire.push(s.wire());
            input.push(s);
        }
        // UDP and ICMP in between.
        wire.push(from_node2(&udp(
            VTEP2, VTEP1, POD_B, POD_A, 53, 53, b"not tcp",
        )));
        wire.push(from_node2(&echo(VTEP2, VTEP1, POD_B, POD_A, 9, false)));
    }
    let out = run(&snap, &wire);
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &input), 3);
    let others = out.out.iter().filter(|(_, f)| f[23] != 6).count();
    assert_eq!(others, 16, "UDP and ICMP delivered as they are");
    assert_eq!(event(&out, Event::GroSegmentsMerged), 24);
}

#[test]
fn more_flows_than_tracked_are_closed_oldest_first() {
    let snap = node(true);
    let data = stream(4 * MSS);
    let mut input = Vec::new();
    for k in 0..4 {
        for f in 0..12u16 {
            let mut s = S::new(k, &data);
            s.sport = 41000 + f;
            input.push(s);
        }
    }
    let out = run(&snap, &input.iter().map(S::wire).collect::<Vec<_>>());
    check_never_merged_wrongly(&out, "veth-pod-a", &input);
    assert!(event(&out, Event::GroFlushEvicted) > 0);
}

#[test]
fn a_super_frame_never_passes_the_largest_ipv4_packet() {
    let snap = node(true);
    let data = stream(60 * MSS);
    let segs: Vec<S> = (0..60).map(|k| S::new(k, &data)).collect();
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    let n = check_never_merged_wrongly(&out, "veth-pod-a", &segs);
    assert!(n >= 2);
    for (_, f) in &out.out {
        assert!(f.len() - 14 <= 65535);
    }
    // 65535 - 52 header bytes hold 46 segments of 1398.
    assert_eq!(fields(&out.out[0].1).2.len(), 46 * MSS);
    assert_eq!(event(&out, Event::GroFlushSize), 1);
}

#[test]
fn a_corrupted_segment_leaves_the_super_frame_checksum_wrong() {
    let snap = node(true);
    let data = stream(5 * MSS);
    let mut segs: Vec<S> = (0..5).map(|k| S::new(k, &data)).collect();
    segs[2].corrupt = true;
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(out.out.len(), 1);
    assert!(
        !tcp_ok(&out.out[0].1),
        "the receiving pod must see the corruption"
    );
}

#[test]
fn nothing_is_merged_toward_a_port_without_super_frames() {
    let snap = node(false);
    let data = stream(10 * MSS);
    let segs: Vec<S> = (0..10).map(|k| S::new(k, &data)).collect();
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 10);
    assert_eq!(event(&out, Event::GroSuperFrames), 0);
}

#[test]
fn segments_without_df_need_incrementing_ids() {
    let snap = node(true);
    let data = stream(3 * MSS);
    let mut segs: Vec<S> = (0..3).map(|k| S::new(k, &data)).collect();
    for s in &mut segs {
        s.df = false;
    }
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 1);
    // With DF, a fixed id is allowed too; without it, not.
    for s in &mut segs {
        s.id = 5;
    }
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 3);
    for s in &mut segs {
        s.df = true;
    }
    let out = run(&snap, &segs.iter().map(S::wire).collect::<Vec<_>>());
    assert_eq!(check_never_merged_wrongly(&out, "veth-pod-a", &segs), 1);
}
