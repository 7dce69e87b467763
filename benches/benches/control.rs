//! The control side under a cluster's load, through the control socket: a daemon's
//! `Control` (in-memory ports, no AF_XDP) holding 10k Services with 100k endpoints.
//!
//! - `control/endpoint_change`: one Service's endpoints change (`add-service`), applied and
//!   published, as a client sees it (request to response on the socket);
//! - `control/full_sync`: 10k Services from empty in one `batch` request (client encode,
//!   daemon parse, build and publish; the request itself is built before the clock starts);
//! - `control/full_rebuild`: every table built from scratch from the same configuration,
//!   which is what every change cost before tables were built per table and per Service.
//!
//! Before criterion runs, the median and 99th percentile of 2000 endpoint changes are
//! printed (criterion reports means and medians, not tails), with an empty conntrack table
//! and again with 100k Service flows in it.

use criterion::{Criterion, black_box};
use podswitch::config::NodeConfig;
use podswitch::config::services::Service;
use podswitch::daemon::control::{self, Control};
use podswitch::daemon::protocol::{Request, Response};
use podswitch::daemon::worker::WorkerShared;
use podswitch::port::mem::MemFactory;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const SERVICES: u32 = 10_000;
const ENDPOINTS: u32 = 10;

fn base() -> NodeConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node1-vxlan.toml");
    let mut c = NodeConfig::load(&p).expect("example config");
    c.services.clear();
    c
}

/// Service `i`: a ClusterIP, one UDP port, 10 endpoints on this node and node2; `shift`
/// moves one endpoint (an endpoint change).
fn service(i: u32, shift: u32) -> Service {
    let eps: Vec<String> = (0..ENDPOINTS)
        .map(|k| {
            let k = if k == 0 { 10 + shift } else { k };
            let x = i * 7 + k * 23;
            format!(r#"{{"ip":"10.244.{}.{}"}}"#, 1 + x % 2, 2 + (x / 2) % 250)
        })
        .collect();
    let json = format!(
        r#"{{"namespace":"bench","name":"svc-{i}","cluster_ip":"10.96.{}.{}","ports":[{{"protocol":"udp","port":80,"target_port":8080}}],"endpoints":[{}]}}"#,
        i / 250,
        1 + i % 250,
        eps.join(",")
    );
    serde_json::from_str(&json).expect("service")
}

struct Daemon {
    control: Arc<Control>,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
    conn: Mutex<Option<(BufReader<UnixStream>, UnixStream)>>,
}

impl Daemon {
    fn start() -> Daemon {
        let w = Arc::new(vec![Arc::new(WorkerShared::new(0).expect("worker"))]);
        // Port messages go to a worker that does not run here; keep its receiver alive.
        let (tx, rx) = crossbeam::channel::unbounded();
        std::mem::forget(rx);
        let control =
            Arc::new(Control::start(base(), w, vec![tx], Arc::new(MemFactory)).expect("control"));
        let socket =
            std::env::temp_dir().join(format!("podswitch-bench-{}.sock", std::process::id()));
        let stop = Arc::new(AtomicBool::new(false));
        let server = control::serve(control.clone(), &socket, stop.clone()).expect("serve");
        Daemon {
            control,
            socket,
            stop,
            server: Some(server),
            conn: Mutex::new(None),
        }
    }

    /// One request on a connection kept open, as the controller keeps one (a new
    /// connection waits for the accept loop, which polls every 50 ms).
    fn send(&self, req: &Request) {
        let mut conn = self.conn.lock().expect("connection");
        let c = conn.get_or_insert_with(|| {
            let s = UnixStream::connect(&self.socket).expect("control socket");
            (BufReader::new(s.try_clone().expect("clone")), s)
        });
        let mut line = serde_json::to_vec(req).expect("request");
        line.push(b'\n');
        c.1.write_all(&line).expect("send");
        let mut out = String::new();
        c.0.read_line(&mut out).expect("response");
        let r: Response = serde_json::from_str(&out).expect("response");
        assert!(r.ok, "refused: {:?}", r.error);
    }

    /// The full sync request: 10k `add-service` in one `batch` (built before the clock
    /// starts: a controller has its Services in memory, it does not parse them first).
    fn full_sync_request() -> Request {
        let changes = (0..SERVICES)
            .map(|i| Request::AddService {
                service: service(i, 0),
            })
            .collect();
        Request::Batch { changes }
    }

    fn clear(&self) {
        self.send(&Request::Replace {
            config: base().to_toml(),
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.conn.lock().map(|mut c| c.take()).ok();
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn percentiles(d: &Daemon) {
    let mut t: Vec<Duration> = Vec::new();
    for n in 0..2000u32 {
        let req = Request::AddService {
            service: service(n * 37 % SERVICES, 1 + n % 2),
        };
        let t0 = Instant::now();
        d.send(&req);
        t.push(t0.elapsed());
    }
    t.sort();
    let q = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)];
    eprintln!(
        "endpoint change through the socket, {} changes: median {:?}, p99 {:?}, max {:?}",
        t.len(),
        q(0.5),
        q(0.99),
        t[t.len() - 1]
    );
}

/// Fills conntrack with `n` flows to the Services' ClusterIPs (each to one of its
/// endpoints), as a busy node has: a change's conntrack cleanup then has entries to look
/// at. UDP: the cleanup removes UDP flows of removed endpoints (TCP ones run on, as with
/// kube-proxy), so this is its most expensive case.
fn fill_conntrack(d: &Daemon, n: u32) {
    use podswitch::conntrack::{FlowKey, NewFlow, State, flag};
    let view = d.control.snapshot();
    let now = podswitch::daemon::clock::now_ns();
    let t = podswitch::config::services::Timeouts::default();
    let mut made = 0;
    for k in 0..n {
        let i = k % SERVICES;
        let vip = [10, 96, (i / 250) as u8, (1 + i % 250) as u8];
        let Some((idx, _)) = view.snap.services.lookup(vip, 80, 17, [0; 4]) else {
            continue;
        };
        let be = &view.snap.services.ports[idx as usize].backends;
        let b = &be[(k / SERVICES) as usize % be.len()];
        let client = [10, 244, 1, 2 + (k % 200) as u8];
        let sport = 1024 + (k / 200) as u16;
        let f = NewFlow {
            orig: FlowKey::new(17, client, vip, sport, 80),
            reply: FlowKey::new(17, b.ip, client, b.port, sport),
            port_range: None,
            flags: flag::SERVICE,
            state: State::Unreplied,
            bytes: 60,
        };
        if d.control.ct.create(&f, now, &t).is_ok() {
            made += 1;
        }
    }
    eprintln!("conntrack: {made} Service flows");
}

fn main() {
    let d = Daemon::start();
    let t0 = Instant::now();
    let req = Daemon::full_sync_request();
    let made = t0.elapsed();
    let t0 = Instant::now();
    d.send(&req);
    eprintln!(
        "first full sync: {:?} ({} Services, {} endpoints; building the request before: {:?})",
        t0.elapsed(),
        SERVICES,
        SERVICES * ENDPOINTS,
        made
    );
    percentiles(&d);
    // The same changes with conntrack holding flows: the cleanup after each publish
    // examines the changed Service's entries.
    fill_conntrack(&d, 100_000);
    percentiles(&d);

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("control");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    let mut n = 0u32;
    g.bench_function("endpoint_change", |b| {
        b.iter(|| {
            n += 1;
            d.send(&Request::AddService {
                service: service(n * 37 % SERVICES, 1 + n % 2),
            })
        })
    });
    let full = d.control.snapshot().snap.config.to_node_config();
    g.bench_function("full_rebuild", |b| {
        b.iter(|| black_box(podswitch::tables::build::build(&full, 1).expect("valid")))
    });
    g.bench_function("full_sync", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                d.clear();
                let req = Daemon::full_sync_request();
                let t0 = Instant::now();
                d.send(&req);
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
    c.final_summary();
}
