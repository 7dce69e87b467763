//! podswitchd's runtime: workers, the control side and the control socket.
//!
//! ```text
//!  control socket ──> Control::apply ──> build(config) ──> ViewCell::publish
//!                                   └──> PortFactory::open/close ──> WorkerMsg
//!  worker n: ports' rx ──> Batch ──> Pipeline::run_offloading(view.snap) ──> local tx | handoff
//! ```

pub mod clock;
pub mod control;
mod edit;
pub mod handoff;
pub mod health;
pub mod kernel_ports;
pub mod neigh;
mod parse;
pub use podswitch_model::protocol;
pub mod restore;
pub mod sys;
pub mod view;
pub mod worker;

use crate::config::NodeConfig;
use crate::pipeline::Pipeline;
use control::{Control, PortFactory};
use handoff::BufPool;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use worker::{Worker, WorkerConfig, WorkerShared};

/// How long an adaptive worker polls an idle queue set before sleeping in poll(): long
/// enough to catch the next packet of a request/response exchange without a wake-up,
/// short enough that an idle daemon costs next to nothing.
const IDLE_SPIN_NS: u64 = 200_000;

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config: PathBuf,
    pub socket: PathBuf,
    /// One entry per worker: the core to pin it to (None = not pinned).
    pub cores: Vec<Option<usize>>,
    pub busy_poll: bool,
    pub stage_timing: bool,
    /// podswitch-cni's state folder: the pods it attached to this daemon's socket are
    /// registered again at start (`restore::restore_attachments`).
    pub cni_state: Option<PathBuf>,
}

/// Moves this thread, and so every non-worker thread spawned from it after (the control
/// socket, its Service-build threads for a large batch, the neighbour resolver, health
/// checks), off the cores the workers are pinned to, when other cores are allowed: a full
/// sync then never takes forwarding time from a worker. Workers pin themselves afterwards.
fn keep_off_worker_cores(cores: &[Option<usize>]) {
    let pinned: Vec<usize> = cores.iter().flatten().copied().collect();
    if pinned.is_empty() {
        return;
    }
    let Ok(allowed) = sys::allowed_cpus() else {
        return;
    };
    let others: Vec<usize> = allowed
        .into_iter()
        .filter(|c| !pinned.contains(c))
        .collect();
    if !others.is_empty()
        && let Err(e) = sys::set_cpus(&others)
    {
        eprintln!("podswitchd: control threads stay on every core ({e})");
    }
}

/// Runs the daemon until SIGTERM/SIGINT (or `stop` is set), then stops the workers, closes
/// the ports (detaching XDP programs) and removes the control socket.
pub fn run(
    opts: &DaemonOptions,
    factory: Arc<dyn PortFactory>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let cfg = NodeConfig::load(&opts.config)?;
    keep_off_worker_cores(&opts.cores);
    let n = opts.cores.len().max(1);
    let mut shared = Vec::new();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..n {
        shared.push(Arc::new(
            WorkerShared::new(i as u16).map_err(|e| e.to_string())?,
        ));
        let (tx, rx) = crossbeam::channel::unbounded();
        senders.push(tx);
        receivers.push(rx);
    }
    let all = Arc::new(shared);
    let control = Arc::new(Control::start(cfg, all.clone(), senders, factory)?);
    let listeners = match health::Listeners::new() {
        Ok(l) => Arc::new(l),
        Err(e) => {
            control.close_all();
            return Err(format!("health-check listeners: {e}"));
        }
    };
    control.on_publish({
        let l = listeners.clone();
        Box::new(move |snap| l.sync(snap))
    });
    if let Some(dir) = &opts.cni_state {
        let (restored, failed) = restore::restore_attachments(&control, dir, &opts.socket);
        eprintln!(
            "podswitchd: restored {restored} pod(s) from {}{}",
            dir.display(),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        );
    }
    // Hand-off buffers: 4096 of one frame, 64 of 64 KiB for super-frames (4 MiB).
    let pool = Arc::new(BufPool::new(4096, 64));
    // One conntrack table shared by every worker (Service NAT, masquerade).
    let ct = control.ct.clone();
    let mut threads = Vec::new();
    for (i, rx) in receivers.into_iter().enumerate() {
        let w = Worker {
            shared: all[i].clone(),
            all: all.clone(),
            views: control.views.clone(),
            msgs: rx,
            pool: pool.clone(),
            stop: stop.clone(),
            cfg: WorkerConfig {
                core: opts.cores.get(i).copied().flatten(),
                busy_poll: opts.busy_poll,
                idle_spin_ns: IDLE_SPIN_NS,
                stage_timing: opts.stage_timing,
            },
        };
        let t = std::thread::Builder::new()
            .name(format!("psw-worker-{i}"))
            .spawn({
                let ct = ct.clone();
                move || w.run(Pipeline::with_conntrack(ct))
            })
            .map_err(|e| e.to_string())?;
        threads.push(t);
    }
    let resolver = std::thread::Builder::new()
        .name("psw-neigh".into())
        .spawn({
            let (control, stop) = (control.clone(), stop.clone());
            move || neigh::run(control, stop)
        })
        .map_err(|e| e.to_string())?;
    threads.push(resolver);
    let health = std::thread::Builder::new()
        .name("psw-health".into())
        .spawn({
            let (control, stop) = (control.clone(), stop.clone());
            move || health::serve(listeners, control, stop)
        })
        .map_err(|e| e.to_string())?;
    threads.push(health);
    let server = control::serve(control.clone(), &opts.socket, stop.clone());
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                let _ = t.join();
            }
            control.close_all();
            return Err(e);
        }
    };
    eprintln!(
        "podswitchd: node {} running: {} worker(s), control socket {}",
        control.snapshot().snap.node.name,
        n,
        opts.socket.display()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("podswitchd: stopping");
    for w in all.iter() {
        w.wake.wake();
    }
    for t in threads {
        let _ = t.join();
    }
    control.close_all();
    let _ = server.join();
    let _ = std::fs::remove_file(&opts.socket);
    Ok(())
}
