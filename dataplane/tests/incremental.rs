//! Incremental table builds: unchanged tables are shared between snapshots, a per-Service
//! update gives the same Service table as a build from scratch, and a publish cleans only
//! the conntrack entries of what changed.

mod support;

use podswitch::config::NodeConfig;
use podswitch::config::services::{Endpoint, Service};
use podswitch::conntrack::{NewFlow, State, flag};
use podswitch::daemon::control::Control;
use podswitch::daemon::protocol::Request;
use podswitch::daemon::worker::WorkerShared;
use podswitch::port::mem::MemFactory;
use podswitch::tables::build::build;
use podswitch::tables::services::ServiceTable;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

fn control(cfg: NodeConfig) -> Control {
    let w = Arc::new(vec![Arc::new(WorkerShared::new(0).expect("worker"))]);
    let (tx, _rx) = crossbeam::channel::unbounded();
    Control::start(cfg, w, vec![tx], Arc::new(MemFactory)).expect("control starts")
}

fn service(cfg: &NodeConfig, ns: &str, name: &str) -> Service {
    cfg.services
        .iter()
        .find(|s| s.namespace == ns && s.name == name)
        .cloned()
        .expect("service in the example")
}

fn endpoint(ip: Ipv4Addr) -> Endpoint {
    serde_json::from_value(serde_json::json!({ "ip": ip.to_string() })).expect("endpoint")
}

fn apply(c: &Control, changes: Vec<Request>) {
    let r = c.handle(Request::Batch { changes });
    assert!(r.ok, "change refused: {:?}", r.error);
}

#[test]
fn unchanged_tables_are_shared() {
    let cfg = support::config();
    let c = control(cfg.clone());
    let a = c.snapshot();
    let mut web = service(&cfg, "default", "web");
    web.endpoints.push(endpoint(Ipv4Addr::new(10, 244, 1, 12)));
    apply(&c, vec![Request::AddService { service: web }]);
    let b = c.snapshot();
    let (a, b) = (&a.snap, &b.snap);
    assert!(Arc::ptr_eq(&a.ports, &b.ports));
    assert!(Arc::ptr_eq(&a.macs, &b.macs));
    assert!(Arc::ptr_eq(&a.fib, &b.fib));
    assert!(Arc::ptr_eq(&a.routes, &b.routes));
    assert!(Arc::ptr_eq(&a.peers, &b.peers));
    assert!(Arc::ptr_eq(&a.neighbour_macs, &b.neighbour_macs));
    assert!(Arc::ptr_eq(&a.nat, &b.nat));
    assert!(Arc::ptr_eq(&a.config.base, &b.config.base));
    assert!(!Arc::ptr_eq(&a.services, &b.services));
    // The other Services' entries are the same allocations.
    let dns = |s: &ServiceTable| {
        s.ports_of("kube-system/kube-dns")
            .map(|p| p as *const _)
            .collect::<Vec<_>>()
    };
    assert_eq!(dns(&a.services), dns(&b.services));
    assert!(!dns(&a.services).is_empty());

    // A pod: ports and FIB change, Services, peers and neighbours do not.
    let mut pod = cfg.pods[0].clone();
    pod.name = "pod-z".into();
    pod.port = "vethz".into();
    pod.ip = Ipv4Addr::new(10, 244, 1, 99);
    pod.mac = "0a:58:0a:f4:01:63".parse().expect("mac");
    apply(&c, vec![Request::AddPod { pod }]);
    let d = c.snapshot();
    let d = &d.snap;
    assert!(!Arc::ptr_eq(&b.ports, &d.ports));
    assert!(!Arc::ptr_eq(&b.fib, &d.fib));
    assert!(Arc::ptr_eq(&b.services, &d.services));
    assert!(Arc::ptr_eq(&b.peers, &d.peers));
    assert!(Arc::ptr_eq(&b.neighbour_macs, &d.neighbour_macs));
    assert!(d.route(Ipv4Addr::new(10, 244, 1, 99).octets()).is_some());
}

/// The Service table as a value independent of entry order.
fn canonical(t: &ServiceTable) -> String {
    let mut ports = BTreeMap::new();
    for p in &t.ports {
        ports.insert(
            p.name.clone(),
            format!(
                "{} {} {:?} {:?} {} {} {:?} {:?} {:?}",
                p.proto,
                p.port,
                p.node_port,
                p.affinity_secs,
                p.external_local,
                p.internal_local,
                p.backends
                    .iter()
                    .map(|b| (b.ip, b.port, b.local, b.node.clone()))
                    .collect::<Vec<_>>(),
                p.maglev,
                p.maglev_local
            ),
        );
    }
    let fe: BTreeMap<u64, String> = t
        .frontends
        .iter()
        .map(|(k, (i, f))| (*k, format!("{} {f:?}", t.ports[*i as usize].name)))
        .chain(
            t.node_ports
                .iter()
                .map(|(k, i)| (*k | 1 << 63, t.ports[*i as usize].name.clone())),
        )
        .collect();
    let mut addrs = BTreeMap::new();
    for p in &t.ports {
        for b in &p.backends {
            addrs.insert(b.ip, t.addr_kind(b.ip));
        }
    }
    for k in fe.keys() {
        let ip = ((*k >> 24) as u32).to_be_bytes();
        addrs.insert(ip, t.addr_kind(ip));
    }
    format!("{ports:#?}\n{fe:#?}\n{addrs:?}\n{:?}", t.external_ips())
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_service(r: &mut Rng, i: u64) -> Service {
    let eps: Vec<String> = (0..r.next(5))
        .map(|_| {
            // Local pods, node2's pods (a peer), and some not ready.
            let (net, host) = if r.next(2) == 0 {
                (1, 10 + r.next(4))
            } else {
                (2, 20 + r.next(4))
            };
            format!(
                r#"{{"ip":"10.244.{net}.{host}","ready":{}}}"#,
                r.next(4) != 0
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Some share a ClusterIP with another (refused when the port is the same too).
    let vip = 100 + r.next(6);
    let port = 80 + r.next(3);
    let lb = if r.next(4) == 0 {
        format!(
            r#","type":"LoadBalancer","load_balancer_ips":["192.168.1.{}"],"ports":[{{"name":"p","protocol":"tcp","port":{port},"node_port":{}}}]"#,
            200 + r.next(3),
            30100 + i
        )
    } else {
        format!(
            r#","ports":[{{"name":"p","protocol":"tcp","port":{port}}},{{"name":"q","protocol":"udp","port":53}}]"#
        )
    };
    let json = format!(
        r#"{{"namespace":"ns","name":"s{i}","cluster_ip":"10.96.1.{vip}"{lb},"endpoints":[{}]}}"#,
        eps.join(",")
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn per_service_updates_match_a_full_build() {
    for seed in 1..=6u64 {
        let mut base = support::config();
        base.services.clear();
        let c = control(base);
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut refused = 0;
        for step in 0..120 {
            let n = 1 + r.next(3);
            let changes: Vec<Request> = (0..n)
                .map(|_| {
                    let i = r.next(12);
                    if r.next(3) == 0 {
                        Request::RemoveService {
                            namespace: "ns".into(),
                            name: format!("s{i}"),
                        }
                    } else {
                        Request::AddService {
                            service: random_service(&mut r, i),
                        }
                    }
                })
                .collect();
            let before = c.snapshot();
            let resp = c.handle(Request::Batch { changes });
            let after = c.snapshot();
            if !resp.ok {
                refused += 1;
                assert!(Arc::ptr_eq(&before.snap.services, &after.snap.services));
                continue;
            }
            let full = build(&after.snap.config.to_node_config(), 1)
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: full build refuses: {e}"));
            assert_eq!(
                canonical(&after.snap.services),
                canonical(&full.services),
                "seed {seed} step {step}"
            );
        }
        assert!(refused < 100, "seed {seed}: most changes refused");
    }
}

/// Service `i` of many: its own ClusterIP, one or two ports, random endpoints, some with
/// an externalIP or a Local traffic policy (its local Maglev table).
fn numbered_service(r: &mut Rng, i: u64) -> Service {
    let eps: Vec<String> = (0..r.next(6))
        .map(|_| {
            let (net, host) = if r.next(2) == 0 {
                (1, 10 + r.next(4))
            } else {
                (2, 20 + r.next(4))
            };
            format!(r#"{{"ip":"10.244.{net}.{host}"}}"#)
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let ports = if r.next(2) == 0 {
        r#"[{"protocol":"tcp","port":80}]"#
    } else {
        r#"[{"name":"p","protocol":"tcp","port":80},{"name":"q","protocol":"udp","port":53}]"#
    };
    let extra = match r.next(6) {
        0 => format!(
            r#","external_ips":["198.51.{}.{}"]"#,
            100 + i / 250,
            1 + i % 250
        ),
        1 => r#","internal_traffic_policy":"Local""#.to_string(),
        _ => String::new(),
    };
    let json = format!(
        r#"{{"namespace":"many","name":"s{i}","cluster_ip":"10.96.{}.{}","ports":{ports}{extra},"endpoints":[{}]}}"#,
        2 + i / 200,
        1 + i % 200,
        eps.join(",")
    );
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Hundreds of Services, so that the Service table's pages (64 entries) and shards are
/// crossed, shared and copied: every publish equals a build from scratch, the Service set
/// keeps its order (a replaced Service moves last) and its health-check index.
#[test]
fn per_service_updates_across_pages_match_a_full_build() {
    let mut base = support::config();
    base.services.clear();
    let c = control(base);
    let mut r = Rng(0x05ee_d0f9_a9e5);
    let mut order: Vec<String> = Vec::new();
    for step in 0..60 {
        // The first batch is large enough to be built on several threads.
        let n = if step == 0 { 600 } else { 1 + r.next(20) };
        let mut changes = Vec::new();
        let mut touched = std::collections::HashSet::new();
        for _ in 0..n {
            let i = if step == 0 {
                changes.len() as u64
            } else {
                r.next(700)
            };
            if !touched.insert(i) {
                continue;
            }
            let name = format!("s{i}");
            let exists = order.contains(&format!("many/{name}"));
            if exists && r.next(3) == 0 {
                changes.push(Request::RemoveService {
                    namespace: "many".into(),
                    name,
                });
                order.retain(|x| *x != format!("many/s{i}"));
            } else {
                changes.push(Request::AddService {
                    service: numbered_service(&mut r, i),
                });
                order.retain(|x| *x != format!("many/s{i}"));
                order.push(format!("many/s{i}"));
            }
        }
        apply(&c, changes);
        let after = c.snapshot();
        let cfg = after.snap.config.to_node_config();
        let names: Vec<String> = cfg
            .services
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        assert_eq!(names, order, "step {step}: order of the Services");
        let full = build(&cfg, 1).unwrap_or_else(|e| panic!("step {step}: {e}"));
        assert_eq!(
            canonical(&after.snap.services),
            canonical(&full.services),
            "step {step}"
        );
        assert_eq!(after.snap.services.ports.len(), full.services.ports.len());
        assert_eq!(after.snap.services.service_count(), order.len());
    }
}

/// A batch large enough to be built on several threads reports its problems in request
/// order, as one thread would: a Service's own problems and frontend conflicts alike.
#[test]
fn a_large_batch_reports_problems_in_request_order() {
    let mut cfg = support::config();
    cfg.services.clear();
    let mut r = Rng(0x0bad_5eed);
    let mut services: Vec<Service> = (0..600).map(|i| numbered_service(&mut r, i)).collect();
    for i in [20, 300] {
        services[i].cluster_ip = Some(Ipv4Addr::new(10, 200, 0, i as u8));
    }
    services[550].cluster_ip = services[100].cluster_ip;
    services[550].ports = services[100].ports.clone();
    cfg.services = services;
    let Err(e) = build(&cfg, 1) else {
        panic!("a batch with bad Services was accepted")
    };
    let who: Vec<&str> = e
        .lines()
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect();
    let mut want = vec!["service many/s20", "service many/s300"];
    want.extend(std::iter::repeat_n("service many/s550", who.len() - 2));
    assert_eq!(who, want, "{e}");
    assert!(
        e.lines()
            .last()
            .is_some_and(|l| l.contains("already used by many/s100")),
        "{e}"
    );
}

#[test]
fn health_check_ports_follow_their_services() {
    let mut cfg = support::config();
    // The example's LoadBalancer with externalTrafficPolicy Local, health-checked.
    let lb = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "web-local")
        .expect("web-local in the example");
    lb.health_check_node_port = Some(31000);
    let with_hc = [lb.clone()];
    let c = control(cfg.clone());
    let ports = |c: &Control| -> Vec<(u16, String)> {
        c.snapshot()
            .snap
            .config
            .services
            .health_checks()
            .map(|(p, n)| (p, n.to_string()))
            .collect()
    };
    let want: Vec<(u16, String)> = with_hc
        .iter()
        .map(|s| {
            (
                s.health_check_node_port.unwrap_or_default(),
                format!("{}/{}", s.namespace, s.name),
            )
        })
        .collect();
    assert_eq!(ports(&c), want);
    // Replaced with another port, then removed.
    let mut s = with_hc[0].clone();
    let new_port = s.health_check_node_port.unwrap_or_default() + 1;
    s.health_check_node_port = Some(new_port);
    apply(&c, vec![Request::AddService { service: s.clone() }]);
    assert!(ports(&c).contains(&(new_port, format!("{}/{}", s.namespace, s.name))));
    assert_eq!(ports(&c).len(), want.len());
    apply(
        &c,
        vec![Request::RemoveService {
            namespace: s.namespace.clone(),
            name: s.name.clone(),
        }],
    );
    assert_eq!(ports(&c).len(), want.len() - 1);
}

#[test]
fn a_publish_cleans_only_the_udp_entries_of_removed_endpoints() {
    let cfg = support::config();
    let c = control(cfg.clone());
    let now = podswitch::daemon::clock::now_ns();
    let t = podswitch::config::services::Timeouts::default();
    let client = [10, 244, 1, 10];
    let flow = |dst: [u8; 4], dport: u16, proto: u8, ep: [u8; 4], eport: u16, sport: u16| NewFlow {
        orig: podswitch::conntrack::FlowKey::new(proto, client, dst, sport, dport),
        reply: podswitch::conntrack::FlowKey::new(proto, ep, client, eport, sport),
        port_range: None,
        flags: flag::SERVICE,
        state: if proto == 6 {
            State::TcpEstablished
        } else {
            State::Unreplied
        },
        bytes: 60,
    };
    // default/web (10.96.0.10:80/tcp) to both of its endpoints; kube-dns (same address)
    // on 53/udp to both of its endpoints.
    let (web_vip, dns_vip) = ([10, 96, 0, 10], [10, 96, 0, 10]);
    for f in [
        flow(web_vip, 80, 6, [10, 244, 1, 11], 8080, 40001),
        flow(web_vip, 80, 6, [10, 244, 2, 20], 8080, 40002),
        flow(dns_vip, 53, 17, [10, 244, 2, 21], 53, 40003),
        flow(dns_vip, 53, 17, [10, 244, 1, 11], 53, 40004),
    ] {
        c.ct.create(&f, now, &t).expect("conntrack entry");
    }
    assert_eq!(c.ct.len(), 4);
    // kube-dns changes, without touching its endpoints in use: nothing goes.
    let mut dns = service(&cfg, "kube-system", "kube-dns");
    dns.endpoints.push(endpoint(Ipv4Addr::new(10, 244, 2, 23)));
    apply(
        &c,
        vec![Request::AddService {
            service: dns.clone(),
        }],
    );
    assert_eq!(c.ct.len(), 4);
    // web loses 10.244.2.20: its TCP connection goes on, as with kube-proxy.
    let mut web = service(&cfg, "default", "web");
    web.endpoints
        .retain(|e| e.ip != Ipv4Addr::new(10, 244, 2, 20));
    apply(&c, vec![Request::AddService { service: web }]);
    assert_eq!(c.ct.len(), 4, "TCP connections are not cut");
    // kube-dns loses 10.244.2.21: that UDP flow goes, the other stays.
    dns.endpoints
        .retain(|e| e.ip != Ipv4Addr::new(10, 244, 2, 21));
    apply(&c, vec![Request::AddService { service: dns }]);
    let left: Vec<_> =
        c.ct.entries(now)
            .into_iter()
            .map(|(_, e)| (e.reply.src, e.orig.sport))
            .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(!left.contains(&([10, 244, 2, 21], 40003)));
    assert!(left.contains(&([10, 244, 1, 11], 40004)));
}

#[test]
fn a_publish_cleans_nodeport_and_affinity_entries_of_the_changed_services() {
    use podswitch::conntrack::FlowKey;
    let cfg = support::config();
    let c = control(cfg.clone());
    // default/web-udp: default/web's endpoints behind a UDP NodePort (30090).
    let mut v = serde_json::to_value(service(&cfg, "default", "web")).expect("json");
    v["name"] = "web-udp".into();
    v["cluster_ip"] = "10.96.0.90".into();
    v["ports"][0]["protocol"] = "udp".into();
    v["ports"][0]["node_port"] = 30090.into();
    let web_udp: Service = serde_json::from_value(v).expect("web-udp");
    apply(
        &c,
        vec![Request::AddService {
            service: web_udp.clone(),
        }],
    );
    let now = podswitch::daemon::clock::now_ns();
    let t = podswitch::config::services::Timeouts::default();
    let client = [192, 168, 1, 77];
    let node = [192, 168, 1, 10];
    let flow = |proto: u8, dport: u16, ep: [u8; 4], sport: u16, flags: u8| NewFlow {
        orig: FlowKey::new(
            proto,
            client,
            if flags & flag::SERVICE != 0 {
                node
            } else {
                [1, 1, 1, 1]
            },
            sport,
            dport,
        ),
        reply: FlowKey::new(proto, ep, node, 8080, sport),
        port_range: None,
        flags,
        state: if proto == 6 {
            State::TcpEstablished
        } else {
            State::Unreplied
        },
        bytes: 60,
    };
    let svc = flag::SERVICE | flag::SNAT;
    for f in [
        // default/web-udp's NodePort (30090 on the node's address), to each endpoint.
        flow(17, 30090, [10, 244, 1, 11], 40001, svc),
        flow(17, 30090, [10, 244, 2, 20], 40002, svc),
        // default/web's TCP NodePort, to the endpoint it loses: goes on (kube-proxy).
        flow(6, 30080, [10, 244, 2, 20], 40003, svc),
        // Masquerade only: no Service.
        flow(6, 443, [1, 1, 1, 1], 40004, flag::SNAT),
    ] {
        c.ct.create(&f, now, &t).expect("conntrack entry");
    }
    // default/sticky's ClientIP records: one client per endpoint.
    let sticky = c
        .snapshot()
        .snap
        .services
        .ports_of("default/sticky")
        .map(|p| podswitch::conntrack::affinity_tag(&p.name))
        .next()
        .expect("sticky's port");
    for (n, ep) in [[10, 244, 1, 11], [10, 244, 2, 21]].into_iter().enumerate() {
        let key = FlowKey::new(6, [10, 244, 1, 20 + n as u8], sticky.to_be_bytes(), 0, 0);
        c.ct.affinity_set(&key, (ep, 8080), 10800, now);
    }
    assert_eq!(c.ct.len(), 6);
    // One publish: web and web-udp lose 10.244.2.20, sticky loses 10.244.2.21.
    let lose = |mut s: Service, ip: Ipv4Addr| {
        s.endpoints.retain(|e| e.ip != ip);
        Request::AddService { service: s }
    };
    apply(
        &c,
        vec![
            lose(
                service(&cfg, "default", "web"),
                Ipv4Addr::new(10, 244, 2, 20),
            ),
            lose(web_udp, Ipv4Addr::new(10, 244, 2, 20)),
            lose(
                service(&cfg, "default", "sticky"),
                Ipv4Addr::new(10, 244, 2, 21),
            ),
        ],
    );
    let mut left: Vec<(u16, [u8; 4])> =
        c.ct.entries(now)
            .into_iter()
            .map(|(_, e)| (e.orig.sport, e.reply.src))
            .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            (0, [10, 244, 1, 11]),
            (40001, [10, 244, 1, 11]),
            (40003, [10, 244, 2, 20]),
            (40004, [1, 1, 1, 1]),
        ],
        "the UDP NodePort flow and the affinity record of the removed endpoints go, nothing else"
    );
}
