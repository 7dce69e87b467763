//! Trace: one frame through the pipeline, stage by stage.

use crate::pipeline::{Batch, Pipeline, Stage};
use crate::tables::{PortId, Snapshot};

pub struct TraceResult {
    pub lines: Vec<String>,
    /// (output port name, frame) for every frame that left.
    pub outputs: Vec<(String, Vec<u8>)>,
}

pub fn run(snap: &Snapshot, in_port: PortId, frame: &[u8]) -> TraceResult {
    let ct = crate::conntrack::Conntrack::new(snap.nat.conntrack_max.min(1 << 16) as usize);
    run_with(
        &mut Pipeline::with_conntrack(std::sync::Arc::new(ct)),
        snap,
        in_port,
        frame,
        0,
    )
}

/// Traces one frame through `p` at time `now_ns` (conntrack state carries over between calls).
pub fn run_with(
    p: &mut Pipeline,
    snap: &Snapshot,
    in_port: PortId,
    frame: &[u8],
    now_ns: u64,
) -> TraceResult {
    p.enable_trace();
    let mut b = Batch::new();
    b.push_rx(in_port, frame);
    p.run(snap, &mut b, now_ns);
    let mut lines = vec![format!(
        "snapshot generation {} on node {}; frame of {} bytes on port {}",
        snap.generation,
        snap.node.name,
        frame.len(),
        snap.port(in_port).map_or("?", |p| p.name.as_str())
    )];
    lines.extend(p.take_trace());
    let mut outputs = Vec::new();
    for i in 0..b.len() {
        let m = &b.meta[i];
        if m.next == Stage::Out {
            let name = snap.port(m.out_port).map_or("?".into(), |p| p.name.clone());
            outputs.push((name, b.frame(i).to_vec()));
        }
    }
    TraceResult { lines, outputs }
}

/// Human-readable trace text, as printed by `podswitchd trace` and the control socket.
pub fn render(r: &TraceResult) -> String {
    let mut s = String::new();
    for l in &r.lines {
        s.push_str(l);
        s.push('\n');
    }
    if r.outputs.is_empty() {
        s.push_str("result: dropped\n");
    }
    for (port, f) in &r.outputs {
        s.push_str(&format!("result: output on {port}: {}\n", super::to_hex(f)));
    }
    s
}
