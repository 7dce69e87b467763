//! Per-stage counters (VPP `show runtime` style) and drop/event counters.

use super::drop::{DropReason, Event};
use super::stage::Stage;
use serde::Serialize;

#[derive(Clone, Copy, Default, Debug, Serialize)]
pub struct StageCounters {
    /// Packets the stage processed.
    pub packets: u64,
    /// Calls with at least one packet (VPP's "vectors"/"calls").
    pub batches: u64,
    /// Wall time spent in the stage, when timing is on.
    pub nanos: u64,
}

#[derive(Clone, Debug)]
pub struct Counters {
    pub stages: [StageCounters; Stage::COUNT],
    pub drops: [u64; DropReason::COUNT],
    pub events: [u64; Event::COUNT],
    /// Packets and bytes per FIB entry (index = route index of `generation`), for flow dumps.
    pub routes: Vec<[u64; 2]>,
    /// Snapshot generation the route counters belong to.
    pub generation: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stages: [StageCounters::default(); Stage::COUNT],
            drops: [0; DropReason::COUNT],
            events: [0; Event::COUNT],
            routes: Vec::new(),
            generation: 0,
        }
    }
}

impl Counters {
    /// Adds another worker's counters into these.
    pub fn merge(&mut self, o: &Counters) {
        for (a, b) in self.stages.iter_mut().zip(o.stages.iter()) {
            a.packets += b.packets;
            a.batches += b.batches;
            a.nanos += b.nanos;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        for (a, b) in self.events.iter_mut().zip(o.events.iter()) {
            *a += b;
        }
        if o.generation == self.generation || self.routes.is_empty() {
            if self.routes.len() < o.routes.len() {
                self.routes.resize(o.routes.len(), [0; 2]);
            }
            for (a, b) in self.routes.iter_mut().zip(o.routes.iter()) {
                a[0] += b[0];
                a[1] += b[1];
            }
            self.generation = o.generation;
        }
    }

    /// Starts per-route counting for a new snapshot (allocates only when the FIB grew).
    pub fn track_generation(&mut self, generation: u64, routes: usize) {
        if self.generation != generation || self.routes.len() != routes {
            self.routes.clear();
            self.routes.resize(routes, [0; 2]);
            self.generation = generation;
        }
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    pub fn event_count(&self, e: Event) -> u64 {
        self.events[e as usize]
    }

    /// JSON view: stages with packets/batches/ns-per-packet, drops by stage and reason, events.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let mut stages = Vec::new();
        for s in Stage::RUN_ORDER {
            let c = &self.stages[s as usize];
            if c.packets == 0 {
                continue;
            }
            let ns = if c.packets > 0 {
                c.nanos as f64 / c.packets as f64
            } else {
                0.0
            };
            stages.push(json!({
                "stage": s.name(), "packets": c.packets, "batches": c.batches,
                "packets_per_batch": c.packets as f64 / c.batches.max(1) as f64,
                "ns_per_packet": (ns * 10.0).round() / 10.0,
            }));
        }
        let mut drops: Map<String, Value> = Map::new();
        for r in DropReason::ALL {
            let n = self.drops[*r as usize];
            if n == 0 {
                continue;
            }
            let e = drops.entry(r.stage().name()).or_insert_with(|| json!({}));
            if let Value::Object(m) = e {
                m.insert(r.name().into(), json!(n));
            }
        }
        let mut events: Map<String, Value> = Map::new();
        for e in Event::ALL {
            let n = self.events[e as usize];
            if n > 0 {
                events.insert(e.name().into(), json!(n));
            }
        }
        json!({ "stages": stages, "drops": drops, "events": events, "total_drops": self.total_drops() })
    }
}
