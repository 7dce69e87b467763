//! The health-check NodePorts of externalTrafficPolicy Local Services: one TCP listener per
//! `health_check_node_port` on the node address, in the node's own stack (the uplink filter
//! leaves these ports to the kernel), answering HTTP as kube-proxy does
//! (`tables::health_check::response`).
//!
//! The listeners follow the tables on every publish, before the change is acknowledged
//! ([`Listeners::sync`], a `Control` publish hook), so a client that connects once
//! `add-service` said ok is answered; thread `psw-health` ([`serve`]) accepts and answers, and
//! binds again what could not be bound.

use super::control::Control;
use super::sys::{EventFd, poll_readable, stop_listening};
use crate::tables::Snapshot;
use crate::tables::health_check::{local_ready_endpoints, response};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A bind that failed is tried again after this long (the port may be freed).
const RETRY: Duration = Duration::from_secs(5);
/// A client gets this long to send its request head.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

struct Bound {
    addr: SocketAddrV4,
    sock: TcpListener,
}

#[derive(Default)]
struct State {
    bound: HashMap<u16, Arc<Bound>>,
    /// Ports that could not be bound, with the time of the last try.
    failed: HashMap<u16, Instant>,
    /// The generation of the last snapshot synced: an older one (a retry that read the
    /// snapshot just before a publish) changes nothing.
    generation: u64,
    /// Set on shutdown: nothing is bound any more.
    closed: bool,
}

/// The health-check listeners of the node.
pub struct Listeners {
    state: Mutex<State>,
    /// Wakes `serve` out of its poll when the set of listeners changed.
    wake: EventFd,
}

impl Listeners {
    pub fn new() -> std::io::Result<Self> {
        Ok(Listeners {
            state: Mutex::new(State::default()),
            wake: EventFd::new()?,
        })
    }

    /// Binds a listener for every health-check port `snap` wants that has none, and closes
    /// the others. A port that cannot be bound is reported once and tried again later
    /// (kube-proxy does not refuse the Service either).
    pub fn sync(&self, snap: &Snapshot) {
        let node = Ipv4Addr::from(snap.node.address);
        let wanted: HashMap<u16, &Arc<str>> = snap.config.services.health_checks().collect();
        let mut st = self.state.lock();
        if st.closed || snap.generation < st.generation {
            return;
        }
        st.generation = snap.generation;
        let before = st.bound.len();
        st.bound.retain(|p, b| {
            let keep = wanted.contains_key(p) && *b.addr.ip() == node;
            if !keep {
                // Refused from now on, though `serve` may still hold it for one poll.
                stop_listening(&b.sock);
            }
            keep
        });
        let mut changed = st.bound.len() != before;
        st.failed.retain(|p, _| wanted.contains_key(p));
        for (&port, name) in &wanted {
            if st.bound.contains_key(&port) {
                continue;
            }
            let addr = SocketAddrV4::new(node, port);
            match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(sock) => {
                    st.failed.remove(&port);
                    st.bound.insert(port, Arc::new(Bound { addr, sock }));
                    changed = true;
                }
                Err(e) => {
                    if !st.failed.contains_key(&port) {
                        eprintln!(
                            "podswitchd: service {name}: cannot serve health_check_node_port on {addr}: {e}"
                        );
                    }
                    st.failed.insert(port, Instant::now());
                }
            }
        }
        drop(st);
        if changed {
            self.wake.wake();
        }
    }

    /// Stops every listener (clients are refused from now on) and binds nothing after.
    pub fn close_all(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        for (_, b) in st.bound.drain() {
            stop_listening(&b.sock);
        }
        st.failed.clear();
    }

    fn retry_due(&self) -> bool {
        self.state
            .lock()
            .failed
            .values()
            .any(|t| t.elapsed() >= RETRY)
    }

    fn current(&self) -> Vec<(u16, Arc<Bound>)> {
        let st = self.state.lock();
        st.bound.iter().map(|(p, b)| (*p, b.clone())).collect()
    }
}

/// Accepts and answers on the listeners until `stop` is set, then closes them.
pub fn serve(listeners: Arc<Listeners>, control: Arc<Control>, stop: Arc<AtomicBool>) {
    answer_until(&listeners, &control, &stop);
    listeners.close_all();
}

fn answer_until(listeners: &Listeners, control: &Control, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if listeners.retry_due() {
            listeners.sync(&control.snapshot().snap);
        }
        let bound = listeners.current();
        let mut fds = vec![listeners.wake.fd()];
        fds.extend(bound.iter().map(|(_, b)| b.sock.as_raw_fd()));
        if !poll_readable(&fds, 200) {
            continue;
        }
        listeners.wake.drain();
        let view = control.snapshot();
        let services = &view.snap.config.services;
        for (port, b) in &bound {
            loop {
                let conn = match b.sock.accept() {
                    Ok((conn, _)) => conn,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // Out of descriptors, or a listener just stopped: do not spin on it.
                        std::thread::sleep(Duration::from_millis(20));
                        break;
                    }
                };
                let svc = services
                    .health_checks()
                    .find(|(p, _)| p == port)
                    .and_then(|(_, name)| services.get(name));
                if let Some(s) = svc {
                    answer(conn, s, local_ready_endpoints(&view.snap.config.base, s));
                }
            }
        }
    }
}

/// Reads the request head (bounded in size and time) and writes the response.
fn answer(mut conn: TcpStream, s: &crate::config::services::Service, local: usize) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match conn.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let head_only = buf[..n].starts_with(b"HEAD ");
    let _ = conn.write_all(response(s, local, head_only).as_bytes());
}
