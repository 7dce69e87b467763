//! Health-check NodePorts follow the tables before a change is acknowledged: once the
//! control side has applied a Service with a `health_check_node_port`, a client connecting
//! at once is answered, and once the Service is changed or removed its old port refuses.
//! The node address is 127.0.0.1 here, so the test needs no privilege.

mod support;

use podswitch::config::NodeConfig;
use podswitch::config::services::Service;
use podswitch::daemon::control::Control;
use podswitch::daemon::health::{Listeners, serve};
use podswitch::daemon::protocol::Request;
use podswitch::daemon::worker::WorkerShared;
use podswitch::port::mem::MemFactory;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A port the kernel just had free on loopback (the node port range is widened to hold
/// any).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

fn get(port: u16) -> std::io::Result<String> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn apply(c: &Control, change: Request) {
    let r = c.handle(change);
    assert!(r.ok, "change refused: {:?}", r.error);
}

fn web_local(cfg: &NodeConfig) -> Service {
    cfg.services
        .iter()
        .find(|s| s.name == "web-local")
        .cloned()
        .expect("web-local in the example")
}

#[test]
fn health_ports_answer_when_the_change_is_acknowledged() {
    let mut cfg = support::config();
    cfg.node.address = Ipv4Addr::LOCALHOST;
    cfg.nat.node_port_range = [1024, 65535];
    cfg.services.retain(|s| s.name != "web-local");
    let w = Arc::new(vec![Arc::new(WorkerShared::new(0).expect("worker"))]);
    let (tx, _rx) = crossbeam::channel::unbounded();
    let control =
        Arc::new(Control::start(cfg.clone(), w, vec![tx], Arc::new(MemFactory)).expect("control"));
    let listeners = Arc::new(Listeners::new().expect("eventfd"));
    control.on_publish({
        let l = listeners.clone();
        Box::new(move |snap| l.sync(snap))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let server = std::thread::spawn({
        let (l, c, s) = (listeners.clone(), control.clone(), stop.clone());
        move || serve(l, c, s)
    });

    let mut lb = web_local(&support::config());
    let first = free_port();
    lb.health_check_node_port = Some(first);
    apply(
        &control,
        Request::AddService {
            service: lb.clone(),
        },
    );
    let r = get(first).expect("the health-check port answers as soon as the Service is in");
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    assert!(r.contains(r#""name":"web-local""#), "{r}");
    assert!(r.contains(r#""localEndpoints":1"#), "{r}");

    // Moved to another port: the new one answers and the old one refuses, at once.
    let second = free_port();
    lb.health_check_node_port = Some(second);
    apply(
        &control,
        Request::AddService {
            service: lb.clone(),
        },
    );
    let r = get(second).expect("the new health-check port answers");
    assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
    let old = get(first);
    assert!(old.is_err(), "the old port still answers: {old:?}");

    apply(
        &control,
        Request::RemoveService {
            namespace: lb.namespace.clone(),
            name: lb.name.clone(),
        },
    );
    let gone = get(second);
    assert!(
        gone.is_err(),
        "a removed Service's port still answers: {gone:?}"
    );

    stop.store(true, Ordering::Relaxed);
    server.join().expect("serve stops");
}
