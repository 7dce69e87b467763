//! The control side: owns the configuration, applies changes by building and publishing a
//! new snapshot, opens and closes ports, and serves the control socket.

use super::edit::Edit;
use super::protocol::{MAX_REQUEST, Request, Response};
use super::sys::{euid, peer_uid, poll_readable};
use super::view::{Handle, View, ViewCell};
use super::worker::{WorkerMsg, WorkerShared};
use crate::config::Neighbour;
use crate::config::NodeConfig;
use crate::conntrack::ChangedServices;
use crate::dump;
use crate::pipeline::Counters;
use crate::port::Port;
use crate::tables::build::{ServiceDelta, build_with_learned, rebuild, unresolved_next_hops};
use crate::tables::snapshot::ConfigState;
use crate::tables::{PortEntry, Snapshot};
use crossbeam::channel::Sender;
use parking_lot::Mutex;
pub use podswitch_model::protocol::request;
use serde_json::json;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Opens the sockets of a port (one per receive queue) and releases what it attached.
pub trait PortFactory: Send + Sync {
    fn open(&self, entry: &PortEntry, snap: &Snapshot) -> Result<Vec<Box<dyn Port>>, String>;
    fn close(&self, entry: &PortEntry);
    /// The tables changed: refresh what the port set-up derives from them (the uplink
    /// filter), before the new tables are published. An error rejects the change.
    fn update(&self, _snap: &Snapshot) -> Result<(), String> {
        Ok(())
    }
    /// The classification counters of the XDP program on port `name` (the uplink filter),
    /// if it has one: (counter name, packets).
    fn xdp_counters(&self, _name: &str) -> Option<Vec<(&'static str, u64)>> {
        None
    }
}

struct PortSlot {
    handle: Handle,
    /// Worker of each queue's socket; the first one transmits.
    workers: Vec<u16>,
    entry: PortEntry,
}

struct Inner {
    cfg: ConfigState,
    /// Underlay neighbours learned from the kernel (daemon::neigh), kept across changes.
    learned: Vec<Neighbour>,
    generation: u64,
    ports: HashMap<String, PortSlot>,
    next_handle: Handle,
    load: Vec<usize>,
}

pub struct Control {
    inner: Mutex<Inner>,
    pub views: Arc<ViewCell>,
    pub workers: Arc<Vec<Arc<WorkerShared>>>,
    senders: Vec<Sender<WorkerMsg>>,
    factory: Arc<dyn PortFactory>,
    /// The conntrack table the workers share; cleaned of stale Service entries on publish.
    pub ct: Arc<crate::conntrack::Conntrack>,
    /// Called with every published snapshot before the change is acknowledged
    /// ([`Control::on_publish`]).
    hooks: Mutex<Vec<PublishHook>>,
}

/// Keeps state outside the tables in step with them (the health-check listeners). It runs
/// under the control lock, so it must be quick and must not call back into `Control`.
pub type PublishHook = Box<dyn Fn(&Snapshot) + Send + Sync>;

impl Control {
    /// Builds the first snapshot and opens every port; nothing is left open on error.
    pub fn start(
        cfg: NodeConfig,
        workers: Arc<Vec<Arc<WorkerShared>>>,
        senders: Vec<Sender<WorkerMsg>>,
        factory: Arc<dyn PortFactory>,
    ) -> Result<Self, String> {
        let snap = build_with_learned(&cfg, &[], 1)?;
        let cfg = snap.config.clone();
        // Generation 0: the same tables, no port open yet.
        let views = Arc::new(ViewCell::new(View {
            snap: rebuild(
                Some(&snap),
                cfg.clone(),
                Some(&ServiceDelta::default()),
                &[],
                0,
            )?,
            owner: vec![],
            handle: vec![],
        }));
        let n = workers.len();
        let c = Control {
            inner: Mutex::new(Inner {
                cfg: cfg.clone(),
                learned: Vec::new(),
                generation: 0,
                ports: HashMap::new(),
                next_handle: 1,
                load: vec![0; n],
            }),
            views,
            workers,
            senders,
            factory,
            ct: Arc::new(crate::conntrack::Conntrack::new(
                snap.nat.conntrack_max as usize,
            )),
            hooks: Mutex::new(Vec::new()),
        };
        {
            let mut inner = c.inner.lock();
            c.commit(&mut inner, snap, None)?;
        }
        Ok(c)
    }

    pub fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    pub fn snapshot(&self) -> Arc<View> {
        self.views.load()
    }

    /// Adds a hook called with the live snapshot now and after every publish, before the
    /// change that published it is acknowledged.
    pub fn on_publish(&self, hook: PublishHook) {
        let _inner = self.inner.lock(); // no publish in between
        hook(&self.views.load().snap);
        self.hooks.lock().push(hook);
    }

    /// Applies changes (control requests that change the configuration) together, as one
    /// publish: all of them or, on the first problem, none. Only the tables and Services
    /// they touch are rebuilt.
    pub fn apply(&self, changes: Vec<Request>) -> Result<u64, String> {
        let mut inner = self.inner.lock();
        let mut edit = Edit::new(&inner.cfg);
        let many = changes.len() > 1;
        for (i, c) in changes.into_iter().enumerate() {
            edit.apply(c).map_err(|e| {
                if many {
                    format!("change {}: {e}", i + 1)
                } else {
                    e
                }
            })?;
        }
        let (cfg, delta) = edit.finish();
        let prev = self.views.load();
        let snap = rebuild(
            Some(&prev.snap),
            cfg,
            delta.as_ref(),
            &inner.learned,
            inner.generation + 1,
        )?;
        // Conntrack entries to re-check: those of the Services touched (before and after).
        // Past a few dozen Services a walk of every entry costs less than the bookkeeping.
        let changed = delta.and_then(|d| {
            if self.ct.is_empty() {
                return Some(ChangedServices::default());
            }
            if d.upserts.len() + d.removed.len() > 64 {
                return None;
            }
            let mut ch = ChangedServices::default();
            for n in d.removed.iter().cloned().chain(
                d.upserts
                    .iter()
                    .map(|s| crate::tables::services::service_name(s)),
            ) {
                ch.add(&prev.snap, &n);
                ch.add(&snap, &n);
            }
            Some(ch)
        });
        let changed = match changed {
            None if Arc::ptr_eq(&prev.snap.services, &snap.services) => {
                Some(ChangedServices::default())
            }
            c => c,
        };
        self.commit(&mut inner, snap, changed)?;
        Ok(inner.generation)
    }

    /// The uplink's name and the underlay next hops that have no configured MAC.
    pub fn unresolved_next_hops(&self) -> (String, Vec<std::net::Ipv4Addr>) {
        let inner = self.inner.lock();
        (
            inner.cfg.base.uplink.name.clone(),
            unresolved_next_hops(&inner.cfg.base),
        )
    }

    /// Replaces the learned neighbours; publishes a new snapshot only when they changed.
    pub fn set_learned(&self, mut learned: Vec<Neighbour>) -> Result<Option<u64>, String> {
        learned.sort_by_key(|n| n.ip);
        let mut inner = self.inner.lock();
        if inner.learned == learned {
            return Ok(None);
        }
        let prev = self.views.load();
        let snap = rebuild(
            Some(&prev.snap),
            inner.cfg.clone(),
            Some(&ServiceDelta::default()),
            &learned,
            inner.generation + 1,
        )?;
        self.commit(&mut inner, snap, Some(ChangedServices::default()))?;
        inner.learned = learned;
        Ok(Some(inner.generation))
    }

    /// Publishes `snap`. `changed`: the Services whose conntrack entries to re-check
    /// (`None`: all of them).
    fn commit(
        &self,
        inner: &mut Inner,
        snap: Snapshot,
        changed: Option<ChangedServices>,
    ) -> Result<(), String> {
        let cfg = snap.config.clone();
        // Open new ports first: if any fails, close what this call opened and change nothing.
        let mut opened: Vec<(PortEntry, Vec<Box<dyn Port>>)> = Vec::new();
        for p in snap.ports.iter() {
            let known = inner
                .ports
                .get(&p.name)
                .is_some_and(|s| s.entry.kind == p.kind);
            if known {
                continue;
            }
            match self.factory.open(p, &snap) {
                Ok(socks) => opened.push((p.clone(), socks)),
                Err(e) => {
                    for (entry, socks) in opened {
                        drop(socks);
                        self.factory.close(&entry);
                    }
                    return Err(format!("port {}: {e}", p.name));
                }
            }
        }
        // The uplink filter follows the new tables before they are published (it only adds
        // prefixes before removing stale ones); when it cannot, nothing changes.
        if let Err(e) = self.factory.update(&snap) {
            for (entry, socks) in opened {
                drop(socks);
                self.factory.close(&entry);
            }
            return Err(e);
        }
        // Ports that disappear (or change kind) are closed after the new tables are live.
        let removed: Vec<String> = inner
            .ports
            .iter()
            .filter(|(name, s)| {
                !snap
                    .ports
                    .iter()
                    .any(|p| &p.name == *name && p.kind == s.entry.kind)
            })
            .map(|(n, _)| n.clone())
            .collect();
        let mut removed_slots = Vec::new();
        for name in removed {
            if let Some(s) = inner.ports.remove(&name) {
                removed_slots.push(s);
            }
        }
        for (entry, socks) in opened {
            let handle = inner.next_handle;
            inner.next_handle += 1;
            let mut ws = Vec::new();
            for sock in socks {
                let w = (0..inner.load.len())
                    .min_by_key(|&w| inner.load[w])
                    .unwrap_or(0);
                inner.load[w] += 1;
                ws.push(w as u16);
                let _ = self.senders[w].send(WorkerMsg::AddPort { handle, port: sock });
                self.workers[w].wake.wake();
            }
            inner.ports.insert(
                entry.name.clone(),
                PortSlot {
                    handle,
                    workers: ws,
                    entry,
                },
            );
        }
        let mut owner = Vec::with_capacity(snap.ports.len());
        let mut handle = Vec::with_capacity(snap.ports.len());
        for p in snap.ports.iter() {
            let s = inner.ports.get_mut(&p.name);
            owner.push(
                s.as_ref()
                    .and_then(|s| s.workers.first().copied())
                    .unwrap_or(0),
            );
            handle.push(s.as_ref().map_or(0, |s| s.handle));
            if let Some(s) = s {
                s.entry = p.clone();
            }
        }
        let prev_policy = self.views.load().snap.policy.clone();
        inner.generation = snap.generation;
        self.views.publish(View {
            snap,
            owner,
            handle,
        });
        // Entries for Services or endpoints that no longer exist go now (UDP clients move
        // to a live endpoint at once); only the changed Services' entries are examined.
        let (now, live) = (super::clock::now_ns(), self.views.load());
        match &changed {
            Some(ch) => crate::conntrack::cleanup_changed(&self.ct, &live.snap, ch, now),
            None => crate::conntrack::cleanup_stale(&self.ct, &live.snap, now),
        };
        if !Arc::ptr_eq(&prev_policy, &live.snap.policy) {
            crate::conntrack::policy_cut::cut(&self.ct, &live.snap, now);
        }
        for s in removed_slots {
            for &w in &s.workers {
                inner.load[usize::from(w)] = inner.load[usize::from(w)].saturating_sub(1);
                let _ =
                    self.senders[usize::from(w)].send(WorkerMsg::RemovePort { handle: s.handle });
                self.workers[usize::from(w)].wake.wake();
            }
            self.factory.close(&s.entry);
        }
        inner.cfg = cfg;
        // Last, with the change complete: a hook sees consistent state whatever it does.
        for hook in self.hooks.lock().iter() {
            hook(&live.snap);
        }
        Ok(())
    }

    /// Closes every port (on shutdown, after the workers stopped).
    pub fn close_all(&self) {
        let inner = self.inner.lock();
        for s in inner.ports.values() {
            self.factory.close(&s.entry);
        }
    }

    pub fn merged_counters(&self) -> Counters {
        let mut c = Counters::default();
        for w in self.workers.iter() {
            c.merge(&w.stats.lock().counters);
        }
        c
    }

    pub fn handle(&self, req: Request) -> Response {
        let generation = self.generation();
        let view = self.views.load();
        let snap = &view.snap;
        let r: Result<(String, serde_json::Value), String> = match req {
            Request::Version {} => Ok((
                format!("podswitchd {}", env!("CARGO_PKG_VERSION")),
                json!({"version": env!("CARGO_PKG_VERSION")}),
            )),
            Request::Dump { table } => match table.as_str() {
                "ports" => Ok(self.ports_dump(snap)),
                "conntrack" | "ct" => {
                    let now = super::clock::now_ns();
                    Ok((
                        crate::conntrack::dump_text(&self.ct, now),
                        crate::conntrack::dump_json(&self.ct, now),
                    ))
                }
                other => {
                    let counters = (other == "flows").then(|| self.merged_counters());
                    dump::snapshot_table(snap, other, counters.as_ref())
                        .ok_or_else(|| format!("unknown table {other:?}: {}", dump::table_names()))
                }
            },
            Request::Stats {} => Ok(self.stats()),
            Request::Replace { .. }
            | Request::AddPod { .. }
            | Request::RemovePod { .. }
            | Request::AddRoute { .. }
            | Request::RemoveRoute { .. }
            | Request::AddPeer { .. }
            | Request::RemovePeer { .. }
            | Request::AddService { .. }
            | Request::RemoveService { .. }
            | Request::AddNeighbour { .. }
            | Request::RemoveNeighbour { .. }
            | Request::AddAddressSet { .. }
            | Request::RemoveAddressSet { .. }
            | Request::SetPodPolicy { .. }
            | Request::RemovePodPolicy { .. } => self.change(vec![req]),
            Request::Batch { changes } => self.change(changes),
            Request::Trace { in_port, frame } => (|| {
                let port = snap
                    .port_by_name(&in_port)
                    .ok_or_else(|| format!("unknown port {in_port:?}"))?;
                let bytes = crate::tools::parse_hex(&frame)?;
                let r = crate::tools::trace::run(snap, port, &bytes);
                let outs: Vec<_> = r
                    .outputs
                    .iter()
                    .map(|(p, f)| json!({"port": p, "frame": crate::tools::to_hex(f)}))
                    .collect();
                Ok((
                    crate::tools::trace::render(&r),
                    json!({"lines": r.lines, "outputs": outs}),
                ))
            })(),
        };
        match r {
            Ok((text, data)) => Response::ok(self.generation().max(generation), text, data),
            Err(e) => Response::err(generation, e),
        }
    }

    fn change(&self, changes: Vec<Request>) -> Result<(String, serde_json::Value), String> {
        let replace = matches!(changes.as_slice(), [Request::Replace { .. }]);
        self.apply(changes).map(|g| {
            let text = if replace {
                format!("replaced: generation {g}")
            } else {
                format!("ok: generation {g}")
            };
            (text, json!({"generation": g}))
        })
    }

    fn ports_dump(&self, snap: &Snapshot) -> (String, serde_json::Value) {
        let (_, mut data) = dump::ports(snap);
        let mut stats: HashMap<String, (u64, u64, u64, String)> = HashMap::new();
        for w in self.workers.iter() {
            for p in &w.stats.lock().ports {
                let e = stats
                    .entry(p.name.clone())
                    .or_insert((0, 0, 0, p.mode.clone()));
                e.0 += p.stats.rx_packets;
                e.1 += p.stats.tx_packets;
                e.2 += p.tx_dropped + p.stats.tx_ring_full;
            }
        }
        let rows: Vec<Vec<String>> = snap
            .ports
            .iter()
            .map(|p| {
                let s = stats.get(&p.name).cloned().unwrap_or((0, 0, 0, "-".into()));
                vec![
                    p.id.to_string(),
                    p.name.clone(),
                    format!("{:?}", p.kind).to_lowercase(),
                    p.mac.to_string(),
                    p.ip.map_or("-".into(), |i| std::net::Ipv4Addr::from(i).to_string()),
                    p.mtu.to_string(),
                    s.0.to_string(),
                    s.1.to_string(),
                    s.2.to_string(),
                    s.3,
                    p.label.clone(),
                ]
            })
            .collect();
        if let Some(arr) = data.as_array_mut() {
            for (v, p) in arr.iter_mut().zip(snap.ports.iter()) {
                if let (Some(o), Some(s)) = (v.as_object_mut(), stats.get(&p.name)) {
                    o.insert("rx_packets".into(), json!(s.0));
                    o.insert("tx_packets".into(), json!(s.1));
                    o.insert("tx_dropped".into(), json!(s.2));
                    o.insert("mode".into(), json!(s.3));
                }
            }
        }
        let text = dump::table(
            &[
                "ID", "NAME", "KIND", "MAC", "IP", "MTU", "RX", "TX", "TX-DROP", "MODE", "LABEL",
            ],
            &rows,
        );
        (text, data)
    }

    fn stats(&self) -> (String, serde_json::Value) {
        let mut text = String::new();
        let mut workers = Vec::new();
        for w in self.workers.iter() {
            let s = w.stats.lock().clone();
            let total = (s.busy_cycles + s.idle_cycles).max(1);
            let per_pkt = s.busy_cycles as f64 / s.rx_packets.max(1) as f64;
            text.push_str(&format!(
                "worker {} (core {}):\n  rx packets: {}  batches: {}  packets/batch: {:.1}\n  busy cycles: {} ({:.1}%)  idle cycles: {}  busy cycles/packet: {:.0}\n  sleeps: {}  handoff out: {}  handoff dropped: {}\n",
                w.id,
                s.core.map_or("-".into(), |c| c.to_string()),
                s.rx_packets,
                s.rx_batches,
                s.rx_packets as f64 / s.rx_batches.max(1) as f64,
                s.busy_cycles,
                100.0 * s.busy_cycles as f64 / total as f64,
                s.idle_cycles,
                per_pkt,
                s.sleeps,
                s.handoff_out,
                s.handoff_dropped
            ));
            for p in &s.ports {
                text.push_str(&format!(
                    "  port {:<14} rx {:>10} tx {:>10} tx-dropped {:>6} ring-full {:>6}  {}\n",
                    p.name,
                    p.stats.rx_packets,
                    p.stats.tx_packets,
                    p.tx_dropped,
                    p.stats.tx_ring_full,
                    p.mode
                ));
            }
            workers.push(json!({
                "id": w.id, "core": s.core, "rx_packets": s.rx_packets, "rx_batches": s.rx_batches,
                "busy_cycles": s.busy_cycles, "idle_cycles": s.idle_cycles,
                "busy_cycles_per_packet": per_pkt, "sleeps": s.sleeps,
                "handoff_out": s.handoff_out, "handoff_dropped": s.handoff_dropped,
                "ports": s.ports, "pipeline": s.counters.to_json(),
            }));
        }
        // What the uplink's XDP filter steered to podswitch and passed to the kernel.
        let view = self.views.load();
        let uplink = view
            .snap
            .ports
            .get(usize::from(view.snap.uplink))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let xdp = self.factory.xdp_counters(&uplink);
        if let Some(cs) = &xdp {
            text.push_str(&format!("\nuplink {uplink} XDP filter (packets):\n "));
            for (name, v) in cs {
                text.push_str(&format!(" {name} {v}"));
            }
            text.push('\n');
        }
        let xdp_json = xdp.map(|cs| {
            json!({"port": uplink, "counters": cs.into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()})
        });
        let c = self.merged_counters();
        text.push('\n');
        text.push_str(&dump::stats_text(&c));
        (
            text,
            json!({"workers": workers, "pipeline": c.to_json(), "uplink_xdp": xdp_json}),
        )
    }
}

/// Serves the control socket until `stop` is set. The socket is mode 0600 and only root
/// (or the daemon's own user) may talk to it.
pub fn serve(
    control: Arc<Control>,
    path: &Path,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use: is another podswitchd running?",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path); // left by a crashed run
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let listener = super::sys::with_umask(0o077, || UnixListener::bind(path))
        .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let clients = Arc::new(AtomicUsize::new(0));
    let h = std::thread::Builder::new()
        .name("psw-control".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if clients.load(Ordering::Relaxed) >= 32 {
                            let mut s = s;
                            let _ = reply(&mut s, &Response::err(0, "too many clients"));
                            continue;
                        }
                        let c = control.clone();
                        let n = clients.clone();
                        n.fetch_add(1, Ordering::Relaxed);
                        let _ = std::thread::Builder::new().name("psw-client".into()).spawn(
                            move || {
                                client(&c, s);
                                n.fetch_sub(1, Ordering::Relaxed);
                            },
                        );
                    }
                    // Wait for the next client, not a fixed nap: a sleep here added 25 ms on
                    // average to every connection (each CNI ADD pays it); the timeout
                    // still bounds how late `stop` is seen.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        poll_readable(&[listener.as_raw_fd()], 50);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(h)
}

fn reply(s: &mut UnixStream, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    line.push(b'\n');
    s.write_all(&line)
}

fn client(c: &Control, mut s: UnixStream) {
    let _ = s.set_nonblocking(false);
    let uid = peer_uid(&s).unwrap_or(u32::MAX);
    if uid != 0 && uid != euid() {
        let _ = reply(
            &mut s,
            &Response::err(0, format!("permission denied: uid {uid} is not root")),
        );
        return;
    }
    let Ok(rs) = s.try_clone() else { return };
    let mut rd = BufReader::new(rs);
    loop {
        let mut line = Vec::new();
        let n = match (&mut rd)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if line.len() > MAX_REQUEST {
            let _ = reply(
                &mut s,
                &Response::err(
                    c.generation(),
                    format!("request larger than {MAX_REQUEST} bytes"),
                ),
            );
            return;
        }
        let r = match super::parse::request(&line) {
            Ok(req) => c.handle(req),
            Err(e) => Response::err(c.generation(), format!("bad request: {e}")),
        };
        if reply(&mut s, &r).is_err() {
            return;
        }
    }
}
