//! What userspace costs per 64 KB of TCP once super-frames cross the switch (issue 14): the
//! pipeline's own work with the copies into and out of the batch, and no AF_XDP syscall.
//! On a NIC with zero-copy AF_XDP this is what remains per 64 KB; on veth in copy mode the
//! transmit kick adds the receiver's kernel path per frame (BENCHMARKS.md).
//!
//! Node1's configuration with pods A and C as super-frame pods (`gso = true`):
//!
//! - `tso_vxlan`: one 64,000-byte TCP super-frame from pod A (in 3,840-byte buffers, as a
//!   multi-buffer AF_XDP frame arrives) to pod B on node2: ip4-tso cuts it to the VXLAN path
//!   (46 segments of 1,410 bytes), each encapsulated toward the uplink;
//! - `segments_vxlan`: the same bytes as 46 ordinary 1,450-byte frames (a pod without
//!   super-frames) through the same path;
//! - `gro_decap`: 46 VXLAN segments of one flow from node2 to pod A, decapsulated and
//!   coalesced by ip4-gro into one super-frame;
//! - `same_node`: one 64,000-byte super-frame from pod A to pod C, forwarded whole.
//!
//! Each iteration fills the batch (copy in), runs the pipeline and copies every output frame
//! into a transmit buffer (copy out). `Throughput::Bytes` is the TCP payload: criterion's
//! throughput is the payload rate one core sustains in userspace.
//!
//! `cargo bench -p podswitch-benches --bench superframe`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch::config::NodeConfig;
use podswitch::pipeline::{Batch, Pipeline};
use podswitch::tables::{PortId, Snapshot};
use podswitch_benches::*;
use std::hint::black_box;
use std::time::Duration;

const NOW_NS: u64 = 1_000_000_000;
/// TCP payload of a super-frame: 64,000 bytes, 46 segments at the VXLAN path's MSS.
const PAYLOAD: usize = 64_000;
/// MSS of the VXLAN path (1500 − 50 − 40).
const MSS: usize = 1410;
/// Bytes per buffer of a received multi-buffer frame (a 4 KiB UMEM chunk less headroom).
const RX_BUF: usize = 3840;

/// Node1 with pods A and C carrying super-frames, their port MTU at the veth's 65000.
fn node() -> Snapshot {
    let mut cfg = NodeConfig::from_toml(NODE1_VXLAN).expect("node1 configuration");
    for p in cfg.pods.iter_mut() {
        if p.port == "veth-pod-a" || p.port == "veth-pod-c" {
            p.gso = true;
        }
    }
    podswitch::tables::build::build(&cfg, 1).expect("node1 builds")
}

fn port(snap: &Snapshot, name: &str) -> PortId {
    snap.port_by_name(name).expect("port")
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i % 251) as u8).collect()
}

/// One benchmark case: the input frames (each a chain of buffers) on one port, and the
/// outputs every run must give.
struct Case {
    name: &'static str,
    snap: Snapshot,
    in_port: PortId,
    frames: Vec<Vec<u8>>,
    out_port: PortId,
    outputs: usize,
}

impl Case {
    fn fill(&self, b: &mut Batch) {
        b.clear();
        // As a worker does: the port's `gso` says whether it hands over super-frames.
        let gso = self.snap.port(self.in_port).is_some_and(|p| p.gso);
        for f in &self.frames {
            let chain: Vec<&[u8]> = f.chunks(RX_BUF).collect();
            assert!(b.push_rx_chain(self.in_port, &chain, gso));
        }
    }

    /// Fill, run, copy the outputs out; returns (outputs on `out_port`, all outputs, bytes).
    fn run(&self, p: &mut Pipeline, b: &mut Batch, tx: &mut [u8]) -> (usize, usize, usize) {
        self.fill(b);
        p.run(&self.snap, b, NOW_NS);
        let (mut on_port, mut all, mut bytes) = (0, 0, 0);
        b.for_each_output(|out, chain, _tx| {
            all += 1;
            on_port += usize::from(out == self.out_port);
            let mut o = 0;
            for part in chain {
                tx[o..o + part.len()].copy_from_slice(part);
                o += part.len();
            }
            bytes += o;
        });
        (on_port, all, bytes)
    }
}

fn cases() -> Vec<Case> {
    let snap = node();
    let data = payload();
    let (a, c, eth0) = (
        port(&snap, "veth-pod-a"),
        port(&snap, "veth-pod-c"),
        port(&snap, "eth0"),
    );
    let segments = PAYLOAD.div_ceil(MSS);
    let super_to_b = tcp_data(
        POD_A_MAC,
        GATEWAY_MAC,
        POD_A_IP,
        POD_B_IP,
        40000,
        5201,
        1,
        true,
        &data,
    );
    let segs_to_b = data
        .chunks(MSS)
        .enumerate()
        .map(|(k, d)| {
            tcp_data(
                POD_A_MAC,
                GATEWAY_MAC,
                POD_A_IP,
                POD_B_IP,
                40000,
                5201,
                1 + (k * MSS) as u32,
                true,
                d,
            )
        })
        .collect();
    let segs_from_b = data
        .chunks(MSS)
        .enumerate()
        .map(|(k, d)| {
            let inner = tcp_data(
                NODE2_VTEP_MAC,
                NODE1_VTEP_MAC,
                POD_B_IP,
                POD_A_IP,
                5201,
                40000,
                1 + (k * MSS) as u32,
                // PSH ends a GRO run: only on the last segment, as a sender's burst.
                (k + 1) * MSS >= PAYLOAD,
                d,
            );
            vxlan_from_node2(&inner, 50000)
        })
        .collect();
    let super_to_c = tcp_data(
        POD_A_MAC, POD_C_MAC, POD_A_IP, POD_C_IP, 40000, 5201, 1, true, &data,
    );
    vec![
        Case {
            name: "tso_vxlan",
            snap: node(),
            in_port: a,
            frames: vec![super_to_b],
            out_port: eth0,
            outputs: segments,
        },
        Case {
            name: "segments_vxlan",
            snap: node(),
            in_port: a,
            frames: segs_to_b,
            out_port: eth0,
            outputs: segments,
        },
        Case {
            name: "gro_decap",
            snap: node(),
            in_port: eth0,
            frames: segs_from_b,
            out_port: a,
            outputs: 1,
        },
        Case {
            name: "same_node",
            snap,
            in_port: a,
            frames: vec![super_to_c],
            out_port: c,
            outputs: 1,
        },
    ]
}

fn superframe(c: &mut Criterion) {
    let mut batch = Batch::new();
    let mut tx = vec![0u8; 1 << 17];
    for case in cases() {
        // Never measure a drop path: every output where expected, and all the bytes there.
        let mut p = Pipeline::new();
        let (on_port, all, bytes) = case.run(&mut p, &mut batch, &mut tx);
        assert_eq!(
            (on_port, all),
            (case.outputs, case.outputs),
            "{}: outputs",
            case.name
        );
        assert!(bytes > PAYLOAD, "{}: {bytes} bytes out", case.name);
        let mut g = c.benchmark_group("superframe");
        g.throughput(Throughput::Bytes(PAYLOAD as u64));
        g.bench_function(case.name, |b| {
            b.iter(|| black_box(case.run(&mut p, &mut batch, &mut tx)))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = superframe
}
criterion_main!(benches);
