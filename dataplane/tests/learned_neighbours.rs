//! Underlay neighbours learned at run time (the daemon's kernel-ARP resolver): what is
//! unresolved, how learned MACs enter the snapshot, and that configuration always wins.

use podswitch::config::{Neighbour, NodeConfig};
use podswitch::tables::build::{build, build_with_learned, unresolved_next_hops};
use std::net::Ipv4Addr;

fn node1() -> NodeConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node1-vxlan.toml");
    NodeConfig::load(&p).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// node1 with its static neighbour for node2 removed and a peer node3 added.
fn without_static() -> NodeConfig {
    let mut c = node1();
    c.neighbours.clear();
    let mut p3 = c.peers[0].clone();
    p3.name = "node3".into();
    p3.address = ip("192.168.1.12");
    p3.pod_cidr = "10.244.3.0/24".parse().unwrap();
    p3.vtep_mac = Some("0e:00:00:00:00:03".parse().unwrap());
    c.peers.push(p3);
    c
}

/// The underlay MAC of peer `name` ("none" while unresolved).
fn peer_underlay(snap: &podswitch::tables::Snapshot, name: &str) -> String {
    let p = snap.peers.iter().find(|p| p.name == name).expect("peer");
    p.underlay_mac.map_or("none".into(), |m| m.to_string())
}

#[test]
fn peers_without_a_configured_mac_are_unresolved() {
    assert!(unresolved_next_hops(&node1()).is_empty());
    assert_eq!(
        unresolved_next_hops(&without_static()),
        vec![ip("192.168.1.11"), ip("192.168.1.12")]
    );
}

#[test]
fn learned_macs_reach_the_peers_and_the_dump() {
    let cfg = without_static();
    let before = build(&cfg, 1).unwrap();
    assert_eq!(peer_underlay(&before, "node3"), "none");
    let learned = vec![Neighbour {
        ip: ip("192.168.1.12"),
        mac: "02:00:c0:a8:01:12".parse().unwrap(),
    }];
    let after = build_with_learned(&cfg, &learned, 2).unwrap();
    assert_eq!(peer_underlay(&after, "node3"), "02:00:c0:a8:01:12");
    assert_eq!(peer_underlay(&after, "node2"), "none");
    let (text, json) = podswitch::dump::neighbours(&after);
    assert!(text.contains("kernel-arp"), "{text}");
    assert_eq!(json[0]["origin"], "kernel-arp");
    // The configuration itself is unchanged: learned entries are not configuration.
    assert!(after.config.base.neighbours.is_empty());
}

#[test]
fn configured_neighbours_win_and_bad_learned_macs_are_ignored() {
    let cfg = node1();
    let learned = vec![
        Neighbour {
            ip: ip("192.168.1.11"),
            mac: "02:00:00:00:00:99".parse().unwrap(),
        },
        Neighbour {
            ip: ip("192.168.1.12"),
            mac: "01:00:5e:00:00:01".parse().unwrap(),
        },
    ];
    let snap = build_with_learned(&cfg, &learned, 1).unwrap();
    assert_eq!(peer_underlay(&snap, "node2"), "02:00:c0:a8:01:11");
    assert!(snap.learned_neighbours.is_empty());
}
