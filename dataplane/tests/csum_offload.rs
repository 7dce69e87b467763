//! Partial checksums from a super-frame pod, settled after the pipeline
//! (`Pipeline::run_offloading`): a TCP frame from pod A (`gso = true`, transmit checksum
//! offload on, so its checksum field holds only the pseudo-header sum) leaving whole
//! - toward pod C, whose port offloads: the frame carries a `TxCsum` at the TCP header with
//!   the pseudo-header sum in the field, and completing it as a device does (sum from
//!   `start` to the end, complement, store at `start + offset`) gives the right checksum;
//! - toward pod C, whose port does not offload: the checksum is complete on output;
//! - into the VXLAN tunnel: complete on output whatever the ports offload (the receiver
//!   is another node's switch, which cannot take a partial checksum);
//! - as a 60 KB multi-buffer super-frame toward pod C: the same, over the whole chain.
//!
//! Checksums are checked with the test support's own code, not the pipeline's.

mod support;

use podswitch::config::NodeConfig;
use podswitch::pipeline::batch::TxCsum;
use podswitch::pipeline::{Batch, Event};
use podswitch::tables::Snapshot;
use podswitch::tools::replay;
use support::*;

fn node() -> Snapshot {
    let mut cfg: NodeConfig = config();
    for p in cfg.pods.iter_mut() {
        if p.port == "veth-pod-a" || p.port == "veth-pod-c" {
            p.gso = true;
        }
    }
    snapshot(&cfg)
}

/// A TCP frame as pod A's kernel leaves it with checksum offload on: the field holds the
/// folded pseudo-header sum (not complemented).
fn partial(dmac: [u8; 6], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = tcp(MAC_A, dmac, POD_A, dst, 40000, 5201, ACK, 1000, 1, payload);
    let l4_len = f.len() - 34;
    let mut p = pseudo(POD_A, dst, 6, l4_len);
    while p > 0xffff {
        p = (p & 0xffff) + (p >> 16);
    }
    f[50..52].copy_from_slice(&(p as u16).to_be_bytes());
    f
}

/// The TCP checksum of an Ethernet + IPv4 frame is right.
fn tcp_checksum_ok(f: &[u8]) -> bool {
    let ip = &f[14..];
    let hl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let src = [ip[12], ip[13], ip[14], ip[15]];
    let dst = [ip[16], ip[17], ip[18], ip[19]];
    csum(&ip[hl..total], pseudo(src, dst, 6, total - hl)) == 0
}

/// Completes a `TxCsum` as a device does.
fn complete(f: &mut [u8], c: TxCsum) {
    let (s, o) = (usize::from(c.start), usize::from(c.offset));
    let v = csum(&f[s..], 0);
    f[s + o..s + o + 2].copy_from_slice(&v.to_be_bytes());
}

struct Out {
    port: String,
    frame: Vec<u8>,
    csum: Option<TxCsum>,
}

/// One batch from pod A's port (super-frames: `chunks` bytes per received buffer), through
/// the pipeline, settled with `offload` for pod C's port only.
fn run(snap: &Snapshot, frames: &[Vec<u8>], chunks: usize, offload: bool) -> (Vec<Out>, u64, u64) {
    let mut p = replay::pipeline_for(snap);
    let mut b = Batch::new();
    let a = snap.port_by_name("veth-pod-a").expect("pod A");
    let c = snap.port_by_name("veth-pod-c").expect("pod C");
    for f in frames {
        let chain: Vec<&[u8]> = f.chunks(chunks).collect();
        assert!(b.push_rx_chain(a, &chain, true));
    }
    p.run_offloading(snap, &mut b, 1_000_000_000, |port| offload && port == c);
    let mut out = Vec::new();
    b.for_each_output(|port, chain, tx| {
        out.push(Out {
            port: snap.port(port).map_or("?", |p| p.name.as_str()).to_string(),
            frame: chain.concat(),
            csum: tx.csum,
        })
    });
    let drops: Vec<_> = (0..b.len()).filter_map(|i| b.meta[i].drop).collect();
    assert!(drops.is_empty(), "drops: {drops:?}");
    let ev = |e: Event| p.counters.event_count(e);
    (out, ev(Event::CsumOffloaded), ev(Event::CsumFinished))
}

#[test]
fn toward_an_offloading_pod_the_checksum_is_left_to_its_port() {
    let snap = node();
    let data: Vec<u8> = (0..1000).map(|i| (i * 7) as u8).collect();
    for (what, dmac) in [("bridged", MAC_C), ("routed", MAC_GW)] {
        let (out, offloaded, finished) = run(&snap, &[partial(dmac, POD_C, &data)], 4096, true);
        assert_eq!(out.len(), 1, "{what}");
        let o = &out[0];
        assert_eq!(o.port, "veth-pod-c", "{what}");
        let c = o.csum.expect("a TxCsum for pod C's port");
        assert_eq!(
            c,
            TxCsum {
                start: 34,
                offset: 16
            },
            "{what}: at the TCP header"
        );
        assert_eq!((offloaded, finished), (1, 0), "{what}: counted");
        assert!(!tcp_checksum_ok(&o.frame), "{what}: left partial");
        let mut f = o.frame.clone();
        complete(&mut f, c);
        assert!(
            tcp_checksum_ok(&f),
            "{what}: the device's completion is right"
        );
    }
}

#[test]
fn toward_a_pod_port_without_offload_the_checksum_is_completed() {
    let snap = node();
    let data: Vec<u8> = (0..999).map(|i| (i * 13) as u8).collect();
    let (out, offloaded, finished) = run(&snap, &[partial(MAC_C, POD_C, &data)], 4096, false);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].csum, None);
    assert!(tcp_checksum_ok(&out[0].frame));
    assert_eq!((offloaded, finished), (0, 1));
}

#[test]
fn into_the_tunnel_the_checksum_is_always_completed() {
    let snap = node();
    let data: Vec<u8> = (0..1200).map(|i| (i * 3) as u8).collect();
    let (out, offloaded, _) = run(&snap, &[partial(MAC_GW, POD_B, &data)], 4096, true);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, "eth0");
    assert_eq!(out[0].csum, None, "no request toward the uplink");
    assert_eq!(offloaded, 0);
    let pkt = decode(&out[0].frame); // VXLAN stripped, every checksum checked
    assert_eq!(pkt.dst, POD_B);
}

#[test]
fn a_multi_buffer_super_frame_is_left_whole_to_the_port() {
    let snap = node();
    let data: Vec<u8> = (0..60_000).map(|i| (i % 253) as u8).collect();
    // Odd-sized buffers (16 of them): the cuts fall at odd offsets of the payload.
    let (out, offloaded, _) = run(&snap, &[partial(MAC_C, POD_C, &data)], 3839, true);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].frame.len(), 14 + 20 + 20 + data.len());
    assert_eq!(offloaded, 1);
    let mut f = out[0].frame.clone();
    complete(&mut f, out[0].csum.expect("TxCsum"));
    assert!(tcp_checksum_ok(&f));
    let (out, _, finished) = run(&snap, &[partial(MAC_C, POD_C, &data)], 3839, false);
    assert!(tcp_checksum_ok(&out[0].frame), "completed over the chain");
    assert_eq!(finished, 1);
}
