//! Table-full and port-exhaustion behaviour, publish-time stale cleanup, and the Maglev
//! disruption bound measured on the Service table.

mod support;
use podswitch::config::services::Endpoint;
use support::*;

fn masq_syn(n: &mut Node, sport: u16, dport: u16) -> Out {
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, INET, sport, dport, SYN, 1, 0, &[]),
    )
}

#[test]
fn full_table_evicts_only_unreplied_flows() {
    let mut cfg = config();
    cfg.nat.conntrack_max = 4;
    let mut n = Node::new(&cfg);
    // Four flows that never saw a reply: a fifth evicts one of them.
    for s in 0..4 {
        masq_syn(&mut n, 2000 + s, 443).one();
    }
    masq_syn(&mut n, 2004, 443).one();
    assert_eq!(n.dump().lines().count(), 4);
    // Now make all four live flows replied: a new flow is refused.
    for line in n.dump().lines().map(String::from).collect::<Vec<_>>() {
        let nat_port: u16 = line
            .split("dport=")
            .nth(2)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        n.send(
            "eth0",
            tcp(
                MAC_ROUTER,
                MAC_UPLINK,
                INET,
                NODE,
                443,
                nat_port,
                SYN | ACK,
                1,
                2,
                &[],
            ),
        )
        .one();
    }
    masq_syn(&mut n, 2010, 443).dropped("conntrack_full");
    assert_eq!(n.dump().lines().count(), 4);
    assert!(n.dump().lines().all(|l| l.contains("state=SYN_RECV")));
}

#[test]
fn port_exhaustion_is_counted() {
    let mut cfg = config();
    cfg.nat.snat_port_range = [40000, 40002];
    let mut n = Node::new(&cfg);
    let mut ports = std::collections::HashSet::new();
    for s in 0..3 {
        let (_, p) = masq_syn(&mut n, 3000 + s, 443).one();
        assert!((40000..=40002).contains(&p.sport));
        assert!(
            ports.insert(p.sport),
            "no two live flows share a translated tuple"
        );
    }
    masq_syn(&mut n, 3003, 443).dropped("nat_ports_exhausted");
    // Another destination has its own tuples.
    masq_syn(&mut n, 3003, 8443).one();
}

#[test]
fn stale_udp_entries_are_removed_at_publish() {
    let cfg = config();
    let mut n = Node::new(&cfg);
    let (port, p) = n
        .send(
            "veth-pod-a",
            udp(MAC_A, MAC_GW, POD_A, VIP, 53000, 53, b"q"),
        )
        .one();
    let before = n.dump();
    assert!(before.contains("udp orig=(src=10.244.1.10,dst=10.96.0.10,sport=53000,dport=53)"));
    // The endpoint that served it goes away.
    let mut cfg2 = cfg.clone();
    let dns = cfg2
        .services
        .iter_mut()
        .find(|s| s.name == "kube-dns")
        .unwrap();
    dns.endpoints.retain(|e: &Endpoint| e.ip.octets() != p.dst);
    assert_eq!(n.publish(&cfg2), 1);
    assert!(n.dump().is_empty(), "stale entry gone: {}", n.dump());
    // The client's next datagram (same port) goes to a live endpoint at once.
    let (port2, p2) = n
        .send(
            "veth-pod-a",
            udp(MAC_A, MAC_GW, POD_A, VIP, 53000, 53, b"q"),
        )
        .one();
    assert_ne!(p2.dst, p.dst);
    assert!(port == "eth0" || port2 == "eth0");
    // Entries of endpoints that remain are kept; deleting the Service removes them.
    assert_eq!(n.publish(&cfg2), 0);
    let mut cfg3 = cfg2.clone();
    cfg3.services.retain(|s| s.name != "kube-dns");
    assert_eq!(n.publish(&cfg3), 1);
    assert!(n.dump().is_empty());
}

#[test]
fn maglev_removing_one_of_ten_endpoints_moves_about_a_tenth() {
    let mut cfg = config();
    let web = cfg.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.endpoints = (0..10)
        .map(|i| Endpoint {
            ip: std::net::Ipv4Addr::new(10, 244, 2, 100 + i),
            node: None,
            ports: Default::default(),
            ready: true,
            serving: None,
            terminating: false,
        })
        .collect();
    let before = snapshot(&cfg);
    web_remove(&mut cfg, 3);
    let after = snapshot(&cfg);
    let pick = |s: &podswitch::tables::Snapshot, h: u32| {
        let sp = s
            .services
            .ports
            .iter()
            .find(|p| p.name == "default/web:http")
            .unwrap();
        sp.backends[usize::from(sp.choose(h, false).unwrap())].ip
    };
    let mut moved = 0;
    let mut on_removed = 0;
    let n = 100_000u32;
    for i in 0..n {
        let h = i.wrapping_mul(0x9e37_79b9) ^ (i >> 7);
        let (a, b) = (pick(&before, h), pick(&after, h));
        if a == [10, 244, 2, 103] {
            on_removed += 1;
        }
        if a != b {
            moved += 1;
        }
    }
    let frac = f64::from(moved) / f64::from(n);
    assert!((0.08..0.15).contains(&frac), "moved {frac}");
    // Everything on the removed endpoint moved, and little else did.
    assert!(moved >= on_removed);
    assert!(f64::from(moved - on_removed) / f64::from(n) < 0.05);
}

fn web_remove(cfg: &mut podswitch::config::NodeConfig, i: usize) {
    let web = cfg.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.endpoints.remove(i);
}

#[test]
fn config_errors_are_reported() {
    let mut cfg = config();
    let web = cfg.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.cluster_ip = Some("10.200.0.1".parse().unwrap());
    web.ports[0].node_port = Some(80);
    let err = podswitch::tables::build::build(&cfg, 1).err().unwrap();
    assert!(
        err.contains("cluster_ip 10.200.0.1 is outside nat.service_cidr 10.96.0.0/12"),
        "{err}"
    );
    assert!(
        err.contains("node_port 80 is outside nat.node_port_range 30000-32767"),
        "{err}"
    );
    let mut cfg = config();
    cfg.services[1].cluster_ip = Some("10.96.0.10".parse().unwrap());
    cfg.services[1].ports[1].port = 80; // kube-dns tcp/80 on the web VIP
    let err = podswitch::tables::build::build(&cfg, 1).err().unwrap();
    assert!(
        err.contains("10.96.0.10:80/tcp is already used by default/web:http"),
        "{err}"
    );
}

#[test]
fn more_external_ips_than_the_uplink_filter_holds_are_refused() {
    use podswitch::port::xdp_prog::MAX_OWNED_PREFIXES;
    use std::net::Ipv4Addr;
    let ext = |i: usize| Ipv4Addr::from(0xc6_12_00_00u32 + i as u32); // 198.18.0.0/15
    let mut cfg = config();
    let base: std::collections::HashSet<Ipv4Addr> = cfg
        .services
        .iter()
        .flat_map(|s| s.external_ips.iter().chain(&s.load_balancer_ips).copied())
        .collect();
    // The pod CIDR takes one entry: MAX - 1 distinct external IPs fit.
    let n = MAX_OWNED_PREFIXES - 1 - base.len();
    let web = cfg.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.external_ips.extend((0..n).map(ext));
    podswitch::tables::build::build(&cfg, 1).expect("MAX - 1 external IPs fit");
    // One more does not.
    web_add_external(&mut cfg, ext(n));
    let err = podswitch::tables::build::build(&cfg, 1).err().unwrap();
    assert!(
        err.contains(&format!(
            "{MAX_OWNED_PREFIXES} distinct external/LoadBalancer IPs: the uplink filter holds at most {}",
            MAX_OWNED_PREFIXES - 1
        )),
        "{err}"
    );
}

fn web_add_external(cfg: &mut podswitch::config::NodeConfig, ip: std::net::Ipv4Addr) {
    let web = cfg.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.external_ips.push(ip);
}
