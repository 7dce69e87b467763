//! Replay: run captured frames through the pipeline over in-memory ports.

use crate::pipeline::{BATCH_SIZE, Batch, Pipeline, Stage};
use crate::port::Port;
use crate::port::mem::MemPort;
use crate::tables::{PortId, Snapshot};
use serde::Serialize;
use std::time::Duration;

/// An input frame and the port it arrives on.
pub struct Input {
    pub ts: Duration,
    pub port: PortId,
    pub data: Vec<u8>,
}

/// What happened to one input frame.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verdict {
    pub index: usize,
    pub in_port: String,
    /// Ports the frame (or frames made from it) left on.
    pub out: Vec<String>,
    /// Drop reasons for it or frames made from it.
    pub drops: Vec<String>,
}

pub struct ReplayOutput {
    /// Per port (by id): the frames sent, with the time of the input frame.
    pub ports: Vec<(MemPort, Vec<Duration>)>,
    pub verdicts: Vec<Verdict>,
    pub pipeline: Pipeline,
}

/// Runs `inputs` in order, in batches of up to 64, through one pipeline.
pub fn run(snap: &Snapshot, inputs: &[Input]) -> ReplayOutput {
    let mut pipeline = Pipeline::new();
    let mut ports: Vec<(MemPort, Vec<Duration>)> = snap
        .ports
        .iter()
        .map(|p| (MemPort::new(&p.name), Vec::new()))
        .collect();
    let mut verdicts: Vec<Verdict> = inputs
        .iter()
        .enumerate()
        .map(|(i, inp)| Verdict {
            index: i,
            in_port: snap.port(inp.port).map_or("?".into(), |p| p.name.clone()),
            out: Vec::new(),
            drops: Vec::new(),
        })
        .collect();
    let mut batch = Batch::new();
    for (chunk_no, chunk) in inputs.chunks(BATCH_SIZE).enumerate() {
        batch.clear();
        for inp in chunk {
            batch.push_rx(inp.port, &inp.data);
        }
        let ts = chunk[0].ts;
        pipeline.run(snap, &mut batch, ts.as_nanos() as u64);
        for slot in 0..batch.len() {
            let m = &batch.meta[slot];
            let v = &mut verdicts[chunk_no * BATCH_SIZE + usize::from(m.parent)];
            match m.next {
                Stage::Dropped => v
                    .drops
                    .push(m.drop.map_or("?".into(), |r| r.name().to_string())),
                Stage::Out => v
                    .out
                    .push(snap.port(m.out_port).map_or("?".into(), |p| p.name.clone())),
                _ => {}
            }
        }
        batch.for_each_output(|port, frame| {
            if let Some((p, times)) = ports.get_mut(usize::from(port)) {
                p.send(frame);
                times.push(ts);
            }
        });
    }
    ReplayOutput {
        ports,
        verdicts,
        pipeline,
    }
}

/// The JSON summary printed by `podswitchd replay`.
pub fn summary(snap: &Snapshot, out: &ReplayOutput, inputs: usize) -> serde_json::Value {
    let mut frames_out = serde_json::Map::new();
    for (p, _) in &out.ports {
        if !p.tx.is_empty() {
            frames_out.insert(p.name().to_string(), p.tx.len().into());
        }
    }
    let c = out.pipeline.counters.to_json();
    serde_json::json!({
        "generation": snap.generation,
        "node": snap.node.name,
        "frames_in": inputs,
        "frames_out": frames_out,
        "drops": c["drops"],
        "total_drops": c["total_drops"],
        "events": c["events"],
        "stages": c["stages"],
        "verdicts": out.verdicts,
    })
}
