//! ip4-tso in the pipeline: a TCP super-frame from a port that hands them over, larger than
//! its VXLAN path, leaves as path-sized segments each with outer headers of its own; the
//! same frame from an ordinary port still gets fragmentation-needed; malformed super-frames
//! are dropped by name; a batch without room for all segments drops by name, never panics.

mod support;

use podswitch::config::NodeConfig;
use podswitch::pipeline::{DropReason, Event};
use podswitch::tables::Snapshot;
use support::*;

const PAYLOAD: usize = 3400;
/// VXLAN path: uplink 1500 - 50; TCP without options: MSS 1410.
const MSS: usize = 1410;

/// Pod A -> pod B (node2), `payload` bytes, DF, IP id 0x4000, ACK|PSH|FIN.
fn super_frame(payload: usize, flags: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..payload).map(|i| (i % 241) as u8).collect();
    let mut f = tcp(
        MAC_A,
        MAC_GW,
        POD_A,
        POD_B,
        40000,
        5201,
        flags,
        0xffff_fc00,
        77,
        &data,
    );
    // DF and a known identification, header checksum redone.
    f[18..20].copy_from_slice(&0x4000u16.to_be_bytes());
    f[20..22].copy_from_slice(&0x4000u16.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

/// The example node with pod A's port MTU raised to carry the super-frames (as the veth's
/// MTU is raised once an `xdp.frags` program is attached).
fn node() -> Snapshot {
    let mut cfg: NodeConfig = config();
    let a = cfg
        .pods
        .iter_mut()
        .find(|p| p.port == "veth-pod-a")
        .expect("pod A");
    a.mtu = 3800;
    snapshot(&cfg)
}

/// One batch through a fresh pipeline; `superframes` says which inputs come through
/// `push_rx_super`.
fn run(snap: &Snapshot, frames: &[(Vec<u8>, bool)]) -> BatchRun {
    let port = snap.port_by_name("veth-pod-a").expect("pod port");
    run_one_batch(snap, |b| {
        for (f, sup) in frames {
            let taken = if *sup {
                b.push_rx_super(port, f)
            } else {
                b.push_rx(port, f)
            };
            assert!(taken);
        }
    })
}

#[test]
fn super_frame_leaves_as_encapsulated_segments() {
    let snap = node();
    let f = super_frame(PAYLOAD, ACK | FIN | 0x08);
    let r = run(&snap, &[(f.clone(), true)]);
    assert!(r.drops.is_empty(), "drops {:?}", r.drops);
    assert_eq!(
        r.out.len(),
        PAYLOAD.div_ceil(MSS),
        "{} segments",
        r.out.len()
    );
    let mut payload = Vec::new();
    for (k, (port, frame)) in r.out.iter().enumerate() {
        assert_eq!(port, "eth0");
        assert!(frame.len() - 14 <= 1500, "segment {k} fits the uplink");
        // Outer headers of this segment: total and UDP length follow its size.
        let outer_total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
        assert_eq!(outer_total, frame.len() - 14, "outer total length");
        let udp_len = usize::from(u16::from_be_bytes([frame[38], frame[39]]));
        assert_eq!(udp_len, frame.len() - 34, "outer UDP length");
        let p = decode(frame); // asserts outer and inner checksums
        assert!(p.vxlan);
        assert_eq!((p.src, p.dst), (POD_A, POD_B));
        assert_eq!(p.seq, 0xffff_fc00u32.wrapping_add((k * MSS) as u32));
        let last = k + 1 == r.out.len();
        assert_eq!(
            p.tcp_flags & (FIN | 0x08) != 0,
            last,
            "FIN/PSH on the last only"
        );
        assert_eq!(p.tcp_flags & ACK, ACK);
        assert_eq!(p.ack, 77);
        let id = u16::from_be_bytes([p.ip[4], p.ip[5]]);
        assert_eq!(id, 0x4000 + k as u16, "inner IP id");
        assert_eq!(p.ip[8], 63, "inner TTL decremented");
        payload.extend_from_slice(&p.l4()[20..]);
    }
    assert_eq!(&payload[..], &f[54..], "payload intact and in order");
    let c = &r.pipeline.counters;
    assert_eq!(c.event_count(Event::TsoSuperFrames), 1);
    assert_eq!(c.event_count(Event::TsoSegmentsMade), 3);
}

#[test]
fn the_same_frame_from_an_ordinary_port_gets_fragmentation_needed() {
    let snap = node();
    let r = run(&snap, &[(super_frame(PAYLOAD, ACK), false)]);
    assert_eq!(r.out.len(), 1);
    let (port, frame) = &r.out[0];
    assert_eq!(port, "veth-pod-a");
    let p = decode(frame);
    assert_eq!((p.icmp_type, p.icmp_code), (3, 4));
    assert_eq!(r.pipeline.counters.event_count(Event::TsoSuperFrames), 0);
}

#[test]
fn a_super_frame_that_fits_is_not_touched() {
    let snap = node();
    let r = run(&snap, &[(super_frame(1000, ACK), true)]);
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.pipeline.counters.event_count(Event::TsoSuperFrames), 0);
}

#[test]
fn malformed_super_frames_are_dropped_by_name() {
    let snap = node();
    let syn = super_frame(PAYLOAD, SYN);
    let r = run(&snap, &[(syn, true)]);
    assert_eq!(r.drops, vec!["tso_bad_flags"]);
    assert!(r.out.is_empty());
    assert_eq!(
        r.pipeline.counters.drop_count(DropReason::TsoBadFlags),
        1,
        "counted"
    );
    // Data offset below the minimum TCP header.
    let mut bad = super_frame(PAYLOAD, ACK);
    bad[46] = 0x40;
    let r = run(&snap, &[(bad, true)]);
    assert!(r.out.iter().all(|(p, _)| p != "eth0"), "nothing leaves");
    assert_eq!(r.drops, vec!["tso_not_tcp"]);
}

#[test]
fn a_batch_without_room_for_every_segment_drops_by_name() {
    let snap = node();
    // 60 super-frames of 3 segments need 120 more slots; the batch has 128 - 60 = 68.
    let frames: Vec<(Vec<u8>, bool)> = (0..60).map(|_| (super_frame(PAYLOAD, ACK), true)).collect();
    let r = run(&snap, &frames);
    let cut = r.pipeline.counters.event_count(Event::TsoSuperFrames) as usize;
    let no_buffer = r.drops.iter().filter(|d| **d == "tso_no_buffer").count();
    assert_eq!(
        cut, 34,
        "68 free slots hold the extra segments of 34 super-frames"
    );
    assert_eq!(cut + no_buffer, 60);
    assert_eq!(r.out.len(), 3 * cut);
}

/// A super-frame whose sender gave its segment size (a tap's `gso_size`) smaller than the
/// path: cut to that size, also when the whole frame would fit the path.
#[test]
fn the_senders_segment_size_bounds_the_segments() {
    let snap = node();
    let port = snap.port_by_name("veth-pod-a").expect("pod port");
    for (payload, size) in [(PAYLOAD, 536usize), (1000, 400)] {
        let f = super_frame(payload, ACK);
        let r = run_one_batch(&snap, |b| {
            assert!(b.push_rx_super(port, &f));
            b.set_last_segment_size(size as u16);
        });
        assert!(r.drops.is_empty(), "drops {:?}", r.drops);
        assert_eq!(r.out.len(), payload.div_ceil(size), "payload {payload}");
        let mut data = Vec::new();
        for (k, (_, frame)) in r.out.iter().enumerate() {
            let p = decode(frame);
            let seg = &p.l4()[20..];
            assert!(seg.len() <= size, "segment {k}: {} bytes", seg.len());
            assert_eq!(p.seq, 0xffff_fc00u32.wrapping_add((k * size) as u32));
            data.extend_from_slice(seg);
        }
        assert_eq!(&data[..], &f[54..], "payload intact and in order");
    }
    // A segment size larger than the path changes nothing: the path's MSS wins.
    let f = super_frame(PAYLOAD, ACK);
    let r = run_one_batch(&snap, |b| {
        assert!(b.push_rx_super(port, &f));
        b.set_last_segment_size(9000);
    });
    assert_eq!(r.out.len(), PAYLOAD.div_ceil(MSS));
}

/// A 1000-byte super-frame pod A -> pod C (same node) whose sender asked for segments of
/// 400 bytes, through the pipeline (no drop); returns the run and the payload.
fn sized_to_pod_c(snap: &Snapshot) -> (BatchRun, Vec<u8>) {
    let port = snap.port_by_name("veth-pod-a").expect("pod port");
    let data: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    let f = tcp(
        MAC_A, MAC_C, POD_A, POD_C, 40000, 5201, ACK, 1000, 77, &data,
    );
    let r = run_one_batch(snap, |b| {
        assert!(b.push_rx_super(port, &f));
        b.set_last_segment_size(400);
    });
    assert!(r.drops.is_empty(), "drops {:?}", r.drops);
    (r, data)
}

/// Bridged on one node to a pod whose port takes no super-frames: a frame with its
/// sender's segment size is cut to it even though the whole frame fits that pod's MTU.
#[test]
fn a_sized_super_frame_bridged_to_an_ordinary_pod_is_cut_to_its_segment_size() {
    let (r, data) = sized_to_pod_c(&node());
    assert_eq!(r.out.len(), 3, "1000 bytes in segments of 400");
    let mut got = Vec::new();
    for (k, (port, frame)) in r.out.iter().enumerate() {
        assert_eq!(port, "veth-pod-c");
        let p = decode(frame);
        assert_eq!(p.seq, 1000 + (k * 400) as u32);
        got.extend_from_slice(&p.l4()[20..]);
    }
    assert_eq!(got, data, "payload intact and in order");
}

/// Bridged to a pod whose port takes super-frames, the frame goes whole, and its port is
/// told the sender's segment size (a tap describes it with that `gso_size`).
#[test]
fn a_sized_super_frame_to_a_super_frame_pod_goes_whole_with_its_segment_size() {
    let mut cfg: NodeConfig = config();
    for p in cfg.pods.iter_mut() {
        match p.port.as_str() {
            "veth-pod-a" => p.mtu = 3800,
            "veth-pod-c" => p.gso = true,
            _ => {}
        }
    }
    let (r, data) = sized_to_pod_c(&snapshot(&cfg));
    assert_eq!(r.out.len(), 1, "forwarded whole");
    assert_eq!(r.out[0].0, "veth-pod-c");
    assert_eq!(&decode(&r.out[0].1).l4()[20..], &data[..]);
    assert_eq!(r.segment_sizes, [400]);
}
