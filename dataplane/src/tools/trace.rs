//! Trace: one frame through the pipeline, stage by stage.

use crate::pipeline::{Batch, Pipeline, Stage};
use crate::tables::{PortId, Snapshot};

pub struct TraceResult {
    pub lines: Vec<String>,
    /// (output port name, frame) for every frame that left.
    pub outputs: Vec<(String, Vec<u8>)>,
}

pub fn run(snap: &Snapshot, in_port: PortId, frame: &[u8]) -> TraceResult {
    let mut p = Pipeline::new();
    p.enable_trace();
    let mut b = Batch::new();
    b.push_rx(in_port, frame);
    p.run(snap, &mut b, 0);
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
