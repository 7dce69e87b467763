//! Classification test of `xdp_uplink` with BPF_PROG_TEST_RUN (no interfaces
//! needed). Needs root (CAP_BPF + CAP_NET_ADMIN); skipped when not root, and fails when
//! root is refused (a skip as root would hide that the classification never ran).
use std::net::Ipv4Addr;

use podswitch::daemon::sys::euid;
use podswitch::port::xdp_prog::{Counter, ProgKind, UplinkConfig, XdpProgram};

const XDP_PASS: u32 = 2;

/// Load, or None (test skipped) when we are not root and lack the privileges to load BPF.
fn load(kind: ProgKind) -> Option<XdpProgram> {
    match XdpProgram::load(kind) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            assert_ne!(
                euid(),
                0,
                "running as root but loading {kind:?} was refused ({e}): not skipping"
            );
            eprintln!("skipped (not root): {e}");
            None
        }
        Err(e) => panic!("load {kind:?}: {e}"),
    }
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn ipv4(proto: u8, dst: Ipv4Addr, frag_off: u16, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag_off.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&Ipv4Addr::new(10, 99, 9, 9).octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(l4);
    h
}

fn l4(dport: u16) -> Vec<u8> {
    let mut v = 12345u16.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0u8; 16]);
    v
}

#[test]
fn uplink_classification() {
    let Some(prog) = load(ProgKind::Uplink) else {
        return;
    };
    let node = Ipv4Addr::new(10, 99, 1, 1);
    let cfg = UplinkConfig {
        node_addr: node,
        vxlan_port: Some(4789),
        ipip: true,
        pod_cidrs: vec![
            (Ipv4Addr::new(10, 99, 64, 0), 18),
            (Ipv4Addr::new(10, 99, 200, 0), 24),
        ],
        service_cidr: Some((Ipv4Addr::new(10, 99, 128, 0), 20)),
        nodeport_range: Some((30000, 32767)),
        snat_range: Some((61000, 65535)),
    };
    prog.set_config(&cfg).expect("config");

    // (frame, expected counter)
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "vxlan",
            eth(0x0800, &ipv4(17, node, 0, &l4(4789))),
            Counter::Vxlan,
        ),
        (
            "udp other port",
            eth(0x0800, &ipv4(17, node, 0, &l4(53))),
            Counter::Pass,
        ),
        (
            "tcp 4789 is not vxlan",
            eth(0x0800, &ipv4(6, node, 0, &l4(4789))),
            Counter::Pass,
        ),
        (
            "ipip",
            eth(0x0800, &ipv4(4, node, 0, &[0u8; 20])),
            Counter::Ipip,
        ),
        (
            "ipip to other host",
            eth(0x0800, &ipv4(4, Ipv4Addr::new(10, 99, 1, 7), 0, &[0u8; 20])),
            Counter::Pass,
        ),
        (
            "pod cidr 1",
            eth(
                0x0800,
                &ipv4(1, Ipv4Addr::new(10, 99, 100, 3), 0, &[0u8; 8]),
            ),
            Counter::PodCidr,
        ),
        (
            "pod cidr 2",
            eth(0x0800, &ipv4(6, Ipv4Addr::new(10, 99, 200, 77), 0, &l4(80))),
            Counter::PodCidr,
        ),
        (
            "just outside pod cidr",
            eth(0x0800, &ipv4(6, Ipv4Addr::new(10, 99, 201, 1), 0, &l4(80))),
            Counter::Pass,
        ),
        (
            "service",
            eth(
                0x0800,
                &ipv4(6, Ipv4Addr::new(10, 99, 143, 255), 0, &l4(443)),
            ),
            Counter::ServiceCidr,
        ),
        (
            "nodeport tcp lo",
            eth(0x0800, &ipv4(6, node, 0, &l4(30000))),
            Counter::NodePort,
        ),
        (
            "nodeport udp hi",
            eth(0x0800, &ipv4(17, node, 0, &l4(32767))),
            Counter::NodePort,
        ),
        (
            "above nodeport",
            eth(0x0800, &ipv4(6, node, 0, &l4(32768))),
            Counter::Pass,
        ),
        (
            "masquerade reply tcp",
            eth(0x0800, &ipv4(6, node, 0, &l4(61000))),
            Counter::Snat,
        ),
        (
            "masquerade reply udp hi",
            eth(0x0800, &ipv4(17, node, 0, &l4(65535))),
            Counter::Snat,
        ),
        (
            "below snat range",
            eth(0x0800, &ipv4(6, node, 0, &l4(60999))),
            Counter::Pass,
        ),
        (
            "echo reply to a masqueraded ping",
            eth(0x0800, &ipv4(1, node, 0, &[0, 0, 0, 0, 0xee, 0x48, 0, 1])),
            Counter::Snat,
        ),
        (
            "echo reply to the node's own ping",
            eth(0x0800, &ipv4(1, node, 0, &[0, 0, 0, 0, 0x12, 0x34, 0, 1])),
            Counter::Pass,
        ),
        (
            "ssh",
            eth(0x0800, &ipv4(6, node, 0, &l4(22))),
            Counter::Pass,
        ),
        (
            "icmp to node",
            eth(0x0800, &ipv4(1, node, 0, &[8, 0, 0, 0, 0, 0, 0, 0])),
            Counter::Pass,
        ),
        (
            "vxlan fragment",
            eth(0x0800, &ipv4(17, node, 0x2000, &l4(4789))),
            Counter::Pass,
        ),
        ("arp", eth(0x0806, &[0u8; 28]), Counter::Pass),
        ("ipv6", eth(0x86dd, &[0x60; 40]), Counter::Pass),
        ("truncated ip", eth(0x0800, &[0x45, 0, 0]), Counter::Pass),
        (
            "vlan vxlan",
            {
                let mut p = vec![0, 100, 0x08, 0x00];
                p.extend_from_slice(&ipv4(17, node, 0, &l4(4789)));
                eth(0x8100, &p)
            },
            Counter::Vxlan,
        ),
    ];
    let n = cases.len();
    for (name, frame, want) in cases {
        let before = prog.counters().expect("counters");
        let rc = prog.test_run(&frame).expect("test_run");
        let after = prog.counters().expect("counters");
        assert_eq!(rc, XDP_PASS, "{name}: action");
        // A matched class with no socket bound also bumps NoSocket (and returns XDP_PASS).
        let bumped: Vec<usize> = (0..8).filter(|&i| after[i] != before[i]).collect();
        let mut expect = vec![want as usize];
        if want != Counter::Pass {
            expect.push(Counter::NoSocket as usize);
            expect.sort();
        }
        assert_eq!(bumped, expect, "{name}: counters");
    }
    eprintln!("uplink_classification: {n} frames classified by BPF_PROG_TEST_RUN");

    // Disable everything: all pass.
    prog.set_config(&UplinkConfig {
        node_addr: node,
        ..Default::default()
    })
    .unwrap();
    let before = prog.counter(Counter::Pass).unwrap();
    prog.test_run(&eth(0x0800, &ipv4(17, node, 0, &l4(4789))))
        .unwrap();
    assert_eq!(prog.counter(Counter::Pass).unwrap(), before + 1);
}

#[test]
fn redirect_all_loads() {
    let Some(prog) = load(ProgKind::RedirectAll) else {
        return;
    };
    assert_eq!(prog.test_run(&eth(0x0806, &[0u8; 28])).unwrap(), XDP_PASS);
}
