//! The packet pipeline: named stages over batches of frames.
//!
//! Pure library code: no I/O, no locks, no allocation and no logging per packet (tracing,
//! used by the `trace` tool, allocates only when switched on). The caller supplies the
//! snapshot and the time; the pipeline leaves each slot either `Out` (with an output port)
//! or `Dropped` (with a reason).

pub mod batch;
pub mod counters;
pub mod drop;
pub mod frag_table;
pub mod gro;
pub mod stage;
mod stages;
pub mod tso;

use crate::conntrack::Conntrack;
use crate::tables::{PortId, Snapshot};
pub use batch::{BATCH_SIZE, Batch, MAX_FRAME};
pub use counters::{ArpFlow, Counters};
pub use drop::{DropReason, Event};
use frag_table::FragTable;
pub use stage::Stage;
use std::sync::Arc;
use std::time::Instant;

/// How many times the stage sequence may be run over one batch (decap, echo replies and
/// ICMP errors go back to an earlier stage; nothing legitimate needs more than three).
const MAX_PASSES: usize = 4;

/// Conntrack slots examined for expiry per batch (bounded work, never a full scan).
const CT_EXPIRE_BUDGET: usize = 64;

/// A token bucket for ICMP errors, refilled from the batch time.
#[derive(Debug, Clone)]
struct TokenBucket {
    tokens: f64,
    last_ns: u64,
}

/// One worker's pipeline: counters and the little state stages keep between batches.
pub struct Pipeline {
    pub counters: Counters,
    /// Measure ns per stage (two clock reads per stage call).
    pub timing: bool,
    icmp_bucket: TokenBucket,
    trace: Option<Vec<String>>,
    /// The conntrack table shared by all workers (none: Service NAT is unavailable).
    ct: Option<Arc<Conntrack>>,
    /// nat44-in's translations of fragmented datagrams and held early fragments (this
    /// worker's own).
    frags: FragTable,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

/// What a stage gets: the snapshot, the batch, the packets waiting for it, and the pipeline's
/// counters and trace.
pub(crate) struct Cx<'a> {
    pub snap: &'a Snapshot,
    pub now_ns: u64,
    pub counters: &'a mut Counters,
    pub trace: &'a mut Option<Vec<String>>,
    pub ct: Option<&'a Conntrack>,
    pub frags: &'a mut FragTable,
    icmp_bucket: &'a mut TokenBucket,
}

impl Cx<'_> {
    #[inline]
    pub fn drop(&mut self, b: &mut Batch, i: usize, r: DropReason) {
        self.counters.drops[r as usize] += 1;
        b.meta[i].drop = Some(r);
        b.set_next(i, Stage::Dropped);
        if let Some(t) = self.trace.as_mut() {
            t.push(format!(
                "{}: drop {} ({})",
                r.stage().name(),
                r.name(),
                r.description()
            ));
        }
    }

    #[inline]
    pub fn event(&mut self, e: Event) {
        self.counters.events[e as usize] += 1;
    }

    /// Records a trace line for the stage; `f` runs only when tracing.
    ///
    /// Always inlined, with the formatting out of line: when tracing is off this is one
    /// test, and the closure's captures are never built.
    #[inline(always)]
    pub fn trace(&mut self, stage: Stage, f: impl FnOnce() -> String) {
        if self.trace.is_some() {
            self.trace_line(stage, f);
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_line(&mut self, stage: Stage, f: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            t.push(format!("{}: {}", stage.name(), f()));
        }
    }

    /// Takes one ICMP error token; false when the rate limit is reached.
    pub fn icmp_token(&mut self) -> bool {
        let cfg = &self.snap.node.icmp;
        let b = &mut *self.icmp_bucket;
        let elapsed = self.now_ns.saturating_sub(b.last_ns) as f64 / 1e9;
        b.last_ns = b.last_ns.max(self.now_ns);
        b.tokens = (b.tokens + elapsed * f64::from(cfg.errors_per_sec)).min(f64::from(cfg.burst));
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Pipeline {
    pub fn new() -> Self {
        Pipeline {
            counters: Counters::default(),
            timing: false,
            icmp_bucket: TokenBucket {
                tokens: f64::MAX,
                last_ns: 0,
            },
            trace: None,
            ct: None,
            frags: FragTable::new(),
        }
    }

    /// A pipeline using the shared conntrack table `ct` for Service NAT and masquerade.
    pub fn with_conntrack(ct: Arc<Conntrack>) -> Self {
        let mut p = Self::new();
        p.ct = Some(ct);
        p
    }

    pub fn set_conntrack(&mut self, ct: Option<Arc<Conntrack>>) {
        self.ct = ct;
    }

    pub fn conntrack(&self) -> Option<&Arc<Conntrack>> {
        self.ct.as_ref()
    }

    /// The fragment table of nat44-in.
    pub fn frag_table(&self) -> &FragTable {
        &self.frags
    }

    /// Turns on tracing: every stage records what it did to each packet.
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// Takes the recorded trace lines.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Runs every packet of `batch` to `Out` or `Dropped`; checksums the stages left to the
    /// output port are completed here (see `run_offloading`).
    pub fn run(&mut self, snap: &Snapshot, batch: &mut Batch, now_ns: u64) {
        self.run_offloading(snap, batch, now_ns, |_| false);
    }

    /// Runs the batch through the stages, then settles the checksums they deferred (partial
    /// TCP/UDP checksums of frames from super-frame pods, leaving whole toward a pod): left
    /// to the output port when `offload(port)` says it completes them on transmit (the
    /// frame then carries a `TxCsum`), else computed here.
    pub fn run_offloading(
        &mut self,
        snap: &Snapshot,
        batch: &mut Batch,
        now_ns: u64,
        offload: impl Fn(PortId) -> bool,
    ) {
        self.run_stages(snap, batch, now_ns);
        let mut m = batch.pending[Stage::Out as usize];
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            m &= m - 1;
            if batch.meta[i].flags & batch::flags::CSUM_PENDING == 0 {
                continue;
            }
            let off = offload(batch.meta[i].out_port);
            let e = match stages::l4_checksum::settle(batch, i, off) {
                stages::l4_checksum::Settled::Offloaded => Event::CsumOffloaded,
                stages::l4_checksum::Settled::Finished => Event::CsumFinished,
                stages::l4_checksum::Settled::Nothing => continue,
            };
            self.counters.events[e as usize] += 1;
        }
    }

    fn run_stages(&mut self, snap: &Snapshot, batch: &mut Batch, now_ns: u64) {
        let Pipeline {
            counters,
            timing,
            icmp_bucket,
            trace,
            ct,
            frags,
        } = self;
        let ct = ct.as_deref();
        if let Some(ct) = ct {
            ct.expire(now_ns, CT_EXPIRE_BUDGET);
        }
        counters.track_generation(snap.generation, snap.routes.len(), snap.ports.len());
        let mut cx = Cx {
            snap,
            now_ns,
            counters,
            trace,
            ct,
            frags,
            icmp_bucket,
        };
        for _ in 0..MAX_PASSES {
            let mut ran = false;
            for stage in Stage::RUN_ORDER {
                let mask = batch.pending[stage as usize];
                if mask == 0 {
                    continue;
                }
                ran = true;
                let t0 = timing.then(Instant::now);
                stages::run(stage, &mut cx, batch, mask);
                let c = &mut cx.counters.stages[stage as usize];
                c.packets += u64::from(mask.count_ones());
                c.batches += 1;
                if let Some(t0) = t0 {
                    c.nanos += t0.elapsed().as_nanos() as u64;
                }
            }
            if !ran {
                return;
            }
        }
        // Anything still in flight is a pipeline bug; name it rather than leak it.
        for stage in Stage::RUN_ORDER {
            let mut m = batch.pending[stage as usize];
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                m &= m - 1;
                cx.drop(batch, i, DropReason::LoopLimit);
            }
        }
    }
}
