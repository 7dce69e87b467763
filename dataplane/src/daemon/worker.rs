//! A poll-mode worker: owns port queues, runs the pipeline over their batches, hands frames
//! for ports owned elsewhere to their worker, and sleeps in `poll()` when idle.

use super::handoff::{BufPool, Handoff, Inbox};
use super::sys::{EventFd, cycles, poll_readable};
use super::view::{Handle, ViewCell};
use crate::pipeline::batch::TxInfo;
use crate::pipeline::{BATCH_SIZE, Batch, Counters, Pipeline};
use crate::port::{Port, PortStats};
use crate::tables::PortId;
use crossbeam::channel::Receiver;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub enum WorkerMsg {
    AddPort { handle: Handle, port: Box<dyn Port> },
    RemovePort { handle: Handle },
}

#[derive(Clone, Debug, Serialize)]
pub struct PortStatsEntry {
    pub name: String,
    pub mode: String,
    #[serde(flatten)]
    pub stats: PortStats,
    /// Frames the pipeline sent to this port that the tx ring refused.
    pub tx_dropped: u64,
}

/// What a worker publishes for the control side (copied every ~100 ms).
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    pub core: Option<usize>,
    pub counters: Counters,
    pub ports: Vec<PortStatsEntry>,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub rx_packets: u64,
    pub rx_batches: u64,
    pub handoff_out: u64,
    pub handoff_dropped: u64,
    pub sleeps: u64,
    pub generation: u64,
}

/// The part of a worker other threads touch.
pub struct WorkerShared {
    pub id: u16,
    pub inbox: Inbox,
    pub wake: EventFd,
    pub sleeping: AtomicBool,
    pub stats: Mutex<WorkerStats>,
}

impl WorkerShared {
    pub fn new(id: u16) -> std::io::Result<Self> {
        Ok(WorkerShared {
            id,
            inbox: Inbox::new(4096),
            wake: EventFd::new()?,
            sleeping: AtomicBool::new(false),
            stats: Mutex::new(WorkerStats::default()),
        })
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub core: Option<usize>,
    /// Never sleep: for dedicated cores.
    pub busy_poll: bool,
    /// How long (ns) a worker keeps polling with nothing to do before it sleeps in
    /// poll(); while it spins it yields the core to any other runnable task.
    pub idle_spin_ns: u64,
    pub stage_timing: bool,
}

struct LocalPort {
    handle: Handle,
    port: Box<dyn Port>,
    snap_id: Option<PortId>,
    tx_dropped: u64,
    dirty: bool,
}

pub struct Worker {
    pub shared: Arc<WorkerShared>,
    pub all: Arc<Vec<Arc<WorkerShared>>>,
    pub views: Arc<ViewCell>,
    pub msgs: Receiver<WorkerMsg>,
    pub pool: Arc<BufPool>,
    pub stop: Arc<AtomicBool>,
    pub cfg: WorkerConfig,
}

impl Worker {
    pub fn run(self, mut pipeline: Pipeline) {
        if let Some(c) = self.cfg.core {
            core_affinity::set_for_current(core_affinity::CoreId { id: c });
        }
        pipeline.timing = self.cfg.stage_timing;
        let mut ports: Vec<LocalPort> = Vec::new();
        let mut batch = Batch::new();
        let mut view = self.views.load();
        let mut local_by_snap: Vec<Option<usize>> = Vec::new();
        let mut cur_gen = u64::MAX;
        let mut st = WorkerStats {
            core: self.cfg.core,
            ..Default::default()
        };
        // When the current run of empty iterations began (None: the last one did work).
        let mut idle_since: Option<u64> = None;
        let mut last_pub = Instant::now();
        let mut fds: Vec<i32> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let c0 = cycles();
            let mut changed = false;
            while let Ok(m) = self.msgs.try_recv() {
                match m {
                    WorkerMsg::AddPort { handle, port } => ports.push(LocalPort {
                        handle,
                        port,
                        snap_id: None,
                        tx_dropped: 0,
                        dirty: false,
                    }),
                    WorkerMsg::RemovePort { handle } => ports.retain(|p| p.handle != handle),
                }
                changed = true;
            }
            let v = self.views.load();
            if changed || v.snap.generation != cur_gen {
                view = v;
                cur_gen = view.snap.generation;
                local_by_snap = vec![None; view.snap.ports.len()];
                for (li, lp) in ports.iter_mut().enumerate() {
                    lp.snap_id = view
                        .handle
                        .iter()
                        .position(|h| *h == lp.handle)
                        .map(|i| i as PortId);
                    if let Some(s) = lp.snap_id {
                        local_by_snap[usize::from(s)].get_or_insert(li);
                    }
                }
                fds = ports.iter().filter_map(|p| p.port.raw_fd()).collect();
                fds.push(self.shared.wake.fd());
            }
            let mut work = 0usize;
            while let Some(h) = self.shared.inbox.pop() {
                if let Some(lp) = ports.iter_mut().find(|p| p.handle == h.port) {
                    let tx = TxInfo {
                        csum: None,
                        segment_size: h.segment_size,
                    };
                    if !lp.port.send_chain(&[&h.buf[..h.len as usize]], tx) {
                        lp.tx_dropped += 1;
                    }
                    lp.dirty = true;
                }
                self.pool.put(h.buf);
                work += 1;
            }
            let now_ns = super::clock::now_ns();
            for pi in 0..ports.len() {
                let Some(sid) = ports[pi].snap_id else {
                    continue;
                };
                batch.clear();
                let gso = view.snap.port(sid).is_some_and(|p| p.gso);
                let n = ports[pi].port.recv_burst(BATCH_SIZE, &mut |chain, rx| {
                    let taken = batch.push_rx_chain(sid, chain, gso);
                    if taken && rx.segment_size > 0 {
                        batch.set_last_segment_size(rx.segment_size);
                    }
                    taken
                });
                if n == 0 {
                    continue;
                }
                ports[pi].dirty = true;
                work += n;
                st.rx_packets += n as u64;
                st.rx_batches += 1;
                // Checksums left partial by super-frame pods are completed by the output port
                // where it offloads them (only a port of this worker: a hand-off carries none).
                pipeline.run_offloading(&view.snap, &mut batch, now_ns, |out| {
                    local_by_snap
                        .get(usize::from(out))
                        .copied()
                        .flatten()
                        .is_some_and(|li| ports[li].port.offloads_tx_csum())
                });
                batch.for_each_output(|out, frame, tx| {
                    let o = usize::from(out);
                    if let Some(&Some(li)) = local_by_snap.get(o) {
                        let lp = &mut ports[li];
                        if !lp.port.send_chain(frame, tx) {
                            lp.tx_dropped += 1;
                        }
                        lp.dirty = true;
                        return;
                    }
                    let (Some(&w), Some(&handle)) = (view.owner.get(o), view.handle.get(o)) else {
                        st.handoff_dropped += 1;
                        return;
                    };
                    let Some(target) = self.all.get(usize::from(w)) else {
                        st.handoff_dropped += 1;
                        return;
                    };
                    // A super-frame (a chain) goes over whole, in a 64 KiB buffer. Its
                    // checksum is complete: only a local port is offered offload.
                    let len: usize = frame.iter().map(|b| b.len()).sum();
                    let Some(mut buf) = self.pool.get(len) else {
                        st.handoff_dropped += 1;
                        return;
                    };
                    let mut at = 0;
                    for part in frame {
                        buf[at..at + part.len()].copy_from_slice(part);
                        at += part.len();
                    }
                    match target.inbox.push(Handoff {
                        port: handle,
                        len: len as u32,
                        segment_size: tx.segment_size,
                        buf,
                    }) {
                        Ok(()) => {
                            st.handoff_out += 1;
                            if target.sleeping.load(Ordering::Acquire) {
                                target.wake.wake();
                            }
                        }
                        Err(h) => {
                            self.pool.put(h.buf);
                            st.handoff_dropped += 1;
                        }
                    }
                });
            }
            for lp in ports.iter_mut().filter(|p| p.dirty) {
                lp.port.flush();
                lp.dirty = false;
            }
            let c1 = cycles();
            if work > 0 {
                st.busy_cycles += c1 - c0;
                idle_since = None;
            } else {
                st.idle_cycles += c1 - c0;
                let since = *idle_since.get_or_insert(now_ns);
                if self.cfg.busy_poll {
                    // A dedicated core: never sleep, never yield.
                } else if now_ns.saturating_sub(since) < self.cfg.idle_spin_ns {
                    // Spinning keeps wake-up latency low, but on a core shared with
                    // another worker or daemon (two nodes' podswitchd on one core) a
                    // spinning worker would hold the core for the scheduler's whole slice
                    // while the other has packets: hand it over at every empty pass.
                    std::thread::yield_now();
                    st.idle_cycles += cycles() - c1;
                } else {
                    self.shared.sleeping.store(true, Ordering::Release);
                    let mut woken = true;
                    if self.shared.inbox.is_empty() {
                        st.sleeps += 1;
                        woken = poll_readable(&fds, 100);
                    }
                    self.shared.sleeping.store(false, Ordering::Release);
                    self.shared.wake.drain();
                    // Refill fill rings / reap completions after a sleep.
                    for lp in ports.iter_mut() {
                        lp.port.flush();
                    }
                    // After a timeout go straight back to sleep unless work shows up;
                    // after a wake-up spin again.
                    idle_since = if woken { None } else { Some(0) };
                    st.idle_cycles += cycles() - c1;
                }
            }
            if last_pub.elapsed() > Duration::from_millis(100) {
                last_pub = Instant::now();
                self.publish(&mut st, &pipeline, &ports, cur_gen);
            }
        }
        self.publish(&mut st, &pipeline, &ports, cur_gen);
        // Dropping the ports closes their sockets.
    }

    fn publish(&self, st: &mut WorkerStats, p: &Pipeline, ports: &[LocalPort], cur_gen: u64) {
        st.counters = p.counters.clone();
        st.generation = cur_gen;
        st.ports = ports
            .iter()
            .map(|lp| PortStatsEntry {
                name: lp.port.name().to_string(),
                mode: lp.port.mode(),
                stats: lp.port.stats(),
                tx_dropped: lp.tx_dropped,
            })
            .collect();
        *self.shared.stats.lock() = st.clone();
    }
}
