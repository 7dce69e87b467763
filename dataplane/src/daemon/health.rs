//! The health-check NodePorts of externalTrafficPolicy Local Services (thread
//! `psw-health`): one TCP listener per `health_check_node_port` on the node address, in the
//! node's own stack (the uplink filter leaves these ports to the kernel), answering HTTP as
//! kube-proxy does (`tables::health_check::response`). Listeners follow every publish.

use super::control::Control;
use super::sys::poll_readable;
use crate::tables::health_check::{local_ready_endpoints, response};
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

struct Listener {
    addr: SocketAddrV4,
    sock: TcpListener,
}

/// Runs until `stop` is set.
pub fn run(control: Arc<Control>, stop: Arc<AtomicBool>) {
    let mut listeners: HashMap<u16, Listener> = HashMap::new();
    let mut failed: HashMap<u16, Instant> = HashMap::new();
    let mut seen_gen = u64::MAX;
    while !stop.load(Ordering::Relaxed) {
        let view = control.snapshot();
        let snap = &view.snap;
        let node = Ipv4Addr::from(snap.node.address);
        let wanted: HashMap<u16, String> = snap
            .config
            .services
            .health_checks()
            .map(|(p, name)| (p, name.to_string()))
            .collect();
        if snap.generation != seen_gen || !failed.is_empty() {
            seen_gen = snap.generation;
            listeners.retain(|p, l| wanted.contains_key(p) && *l.addr.ip() == node);
            failed.retain(|p, _| wanted.contains_key(p));
            for (&port, name) in &wanted {
                if listeners.contains_key(&port)
                    || failed.get(&port).is_some_and(|t| t.elapsed() < RETRY)
                {
                    continue;
                }
                let addr = SocketAddrV4::new(node, port);
                match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                    Ok(sock) => {
                        failed.remove(&port);
                        listeners.insert(port, Listener { addr, sock });
                    }
                    Err(e) => {
                        if !failed.contains_key(&port) {
                            eprintln!(
                                "podswitchd: service {name}: cannot serve health_check_node_port on {addr}: {e}"
                            );
                        }
                        failed.insert(port, Instant::now());
                    }
                }
            }
        }
        let fds: Vec<i32> = listeners.values().map(|l| l.sock.as_raw_fd()).collect();
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        if !poll_readable(&fds, 200) {
            continue;
        }
        for (port, l) in &listeners {
            while let Ok((conn, _)) = l.sock.accept() {
                let svc = wanted
                    .get(port)
                    .and_then(|name| snap.config.services.get(name));
                if let Some(s) = svc {
                    answer(conn, s, local_ready_endpoints(&snap.config.base, s));
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
