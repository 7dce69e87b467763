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
    /// Packets and bytes l2-fwd bridged, per output port (index = port id of
    /// `generation`): the flow dump's `eth(dst=MAC)` lines.
    pub l2: Vec<[u64; 2]>,
    /// Packets and bytes per ARP flow of the flow dump (index: [`ArpFlow`]).
    pub arp: [[u64; 2]; ArpFlow::COUNT],
    /// Snapshot generation the route and L2 counters belong to.
    pub generation: u64,
}

/// The ARP lines of the flow dump: what arp-input did with a request or a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpFlow {
    /// A request for the gateway address, answered by the switch.
    GatewayRequest,
    /// A request for a same-node pod: delivered to its owner (or answered, proxy ARP).
    PodRequest,
    /// A reply from one pod to another, bridged.
    Reply,
}

impl ArpFlow {
    pub const COUNT: usize = 3;
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stages: [StageCounters::default(); Stage::COUNT],
            drops: [0; DropReason::COUNT],
            events: [0; Event::COUNT],
            routes: Vec::new(),
            l2: Vec::new(),
            arp: [[0; 2]; ArpFlow::COUNT],
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
        for (a, b) in self.arp.iter_mut().zip(o.arp.iter()) {
            a[0] += b[0];
            a[1] += b[1];
        }
        if o.generation == self.generation || (self.routes.is_empty() && self.l2.is_empty()) {
            for (mine, theirs) in [(&mut self.routes, &o.routes), (&mut self.l2, &o.l2)] {
                if mine.len() < theirs.len() {
                    mine.resize(theirs.len(), [0; 2]);
                }
                for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                    a[0] += b[0];
                    a[1] += b[1];
                }
            }
            self.generation = o.generation;
        }
    }

    /// Starts per-route and per-port counting for a new snapshot (allocates only when the
    /// FIB or the port list grew).
    pub fn track_generation(&mut self, generation: u64, routes: usize, ports: usize) {
        if self.generation != generation || self.routes.len() != routes || self.l2.len() != ports {
            self.routes.clear();
            self.routes.resize(routes, [0; 2]);
            self.l2.clear();
            self.l2.resize(ports, [0; 2]);
            self.generation = generation;
        }
    }

    /// Counts a frame bridged to `port` by l2-fwd.
    #[inline]
    pub fn count_l2(&mut self, port: u16, len: usize) {
        if let Some(c) = self.l2.get_mut(usize::from(port)) {
            c[0] += 1;
            c[1] += len as u64;
        }
    }

    /// Counts a frame of one ARP flow.
    #[inline]
    pub fn count_arp(&mut self, flow: ArpFlow, len: usize) {
        let c = &mut self.arp[flow as usize];
        c[0] += 1;
        c[1] += len as u64;
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
