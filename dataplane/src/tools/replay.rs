//! Replay: run captured frames through the pipeline over in-memory ports.

use crate::conntrack::{self, Conntrack};
use crate::pipeline::batch::flags;
use crate::pipeline::{BATCH_SIZE, Batch, Pipeline, Stage};
use crate::port::Port;
use crate::port::mem::MemPort;
use crate::tables::{PortId, Snapshot};
use serde::Serialize;
use std::sync::Arc;
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
    /// Held by nat44-in until its datagram's first fragment comes (a later fragment that
    /// came first): neither sent nor dropped yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

pub struct ReplayOutput {
    /// Per port (by id): the frames sent, with the time of the input frame.
    pub ports: Vec<(MemPort, Vec<Duration>)>,
    pub verdicts: Vec<Verdict>,
    pub pipeline: Pipeline,
}

/// Runs `inputs` in order, in batches of up to 64, through one pipeline (with a fresh
/// conntrack table sized from the snapshot's `nat.conntrack_max`).
pub fn run(snap: &Snapshot, inputs: &[Input]) -> ReplayOutput {
    run_with(snap, inputs, pipeline_for(snap))
}

/// A pipeline with its own conntrack table, as `run` uses.
pub fn pipeline_for(snap: &Snapshot) -> Pipeline {
    let ct = Conntrack::new(snap.nat.conntrack_max as usize);
    Pipeline::with_conntrack(Arc::new(ct))
}

/// Like `run`, through a given pipeline (to keep conntrack state across runs and snapshots).
pub fn run_with(snap: &Snapshot, inputs: &[Input], mut pipeline: Pipeline) -> ReplayOutput {
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
            held: false,
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
                Stage::Done if m.flags & flags::HELD != 0 => v.held = true,
                _ => {}
            }
        }
        batch.for_each_output(|port, frame, tx| {
            if let Some((p, times)) = ports.get_mut(usize::from(port)) {
                p.send_chain(frame, tx);
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

/// The conntrack dump after a replay, as JSON (`entries`, `stats`, and the text `lines`),
/// with timeouts counted from `now`.
pub fn conntrack_json(out: &ReplayOutput, now: Duration) -> serde_json::Value {
    let Some(ct) = out.pipeline.conntrack() else {
        return serde_json::Value::Null;
    };
    let now = now.as_nanos() as u64;
    let mut v = conntrack::dump_json(ct, now);
    let lines: Vec<String> = conntrack::dump_text(ct, now)
        .lines()
        .map(String::from)
        .collect();
    v["lines"] = lines.into();
    v
}
