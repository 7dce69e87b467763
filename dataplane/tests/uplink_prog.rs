//! Classification test of `xdp_uplink` with BPF_PROG_TEST_RUN (no interfaces
//! needed). Needs root (CAP_BPF + CAP_NET_ADMIN); skipped when not root, and fails when
//! root is refused (a skip as root would hide that the classification never ran).
use std::net::Ipv4Addr;

use podswitch::daemon::sys::euid;
use podswitch::port::xdp_prog::{
    Counter, MAX_OWNED_PREFIXES, N_COUNTERS, ProgKind, UplinkConfig, XdpProgram,
};

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
    ipv4_from(Ipv4Addr::new(10, 99, 9, 9), proto, dst, frag_off, l4)
}

fn ipv4_from(src: Ipv4Addr, proto: u8, dst: Ipv4Addr, frag_off: u16, l4: &[u8]) -> Vec<u8> {
    ipv4_id(src, proto, dst, 1, frag_off, l4)
}

/// IPv4 header with identification `id` (fragments of one datagram share it).
fn ipv4_id(src: Ipv4Addr, proto: u8, dst: Ipv4Addr, id: u16, frag_off: u16, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag_off.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
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

/// TCP/UDP header start with source port `sport` (what an ICMP error quotes: 8 bytes).
fn l4_from(sport: u16, dport: u16) -> Vec<u8> {
    let mut v = sport.to_be_bytes().to_vec();
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&[0u8; 4]);
    v
}

/// ICMP error (type, code, 4 bytes of rest) quoting `quote`.
fn icmp_err(ty: u8, code: u8, rest: [u8; 4], quote: &[u8]) -> Vec<u8> {
    let mut v = vec![ty, code, 0, 0];
    v.extend_from_slice(&rest);
    v.extend_from_slice(quote);
    v
}

const FRAG_NEEDED_1400: [u8; 4] = [0, 0, 0x05, 0x78];

/// Runs `frame` and returns the counters it bumped (sorted indices).
fn bumped(prog: &XdpProgram, frame: &[u8]) -> Vec<usize> {
    let before = prog.counters().expect("counters");
    let rc = prog.test_run(frame).expect("test_run");
    let after = prog.counters().expect("counters");
    assert_eq!(rc, XDP_PASS, "action (no socket bound: XDP_PASS)");
    (0..N_COUNTERS).filter(|&i| after[i] != before[i]).collect()
}

/// What `bumped` returns for a frame classified as `want`: a matched class with no socket
/// bound also bumps NoSocket (and returns XDP_PASS).
fn expect(want: Counter) -> Vec<usize> {
    let mut e = vec![want as usize];
    if want != Counter::Pass {
        e.push(Counter::NoSocket as usize);
        e.sort();
    }
    e
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
        external_ips: vec![Ipv4Addr::new(198, 51, 100, 7)],
        service_cidr: Some((Ipv4Addr::new(10, 99, 128, 0), 20)),
        nodeport_range: Some((30000, 32767)),
        snat_range: Some((61000, 65535)),
        kernel_tcp_ports: vec![31000],
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
            "health-check NodePort (tcp) is the kernel's",
            eth(0x0800, &ipv4(6, node, 0, &l4(31000))),
            Counter::Pass,
        ),
        (
            "udp on a health-check port is still a NodePort",
            eth(0x0800, &ipv4(17, node, 0, &l4(31000))),
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
            "first fragment of a vxlan datagram",
            eth(0x0800, &ipv4(17, node, 0x2000, &l4(4789))),
            Counter::Vxlan,
        ),
        (
            "first fragment, udp to a port of the kernel's",
            eth(0x0800, &ipv4(17, node, 0x2000, &l4(53))),
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
    let mut cases = cases;
    cases.push((
        "external ip",
        eth(0x0800, &ipv4(6, Ipv4Addr::new(198, 51, 100, 7), 0, &l4(80))),
        Counter::External,
    ));
    cases.push((
        "next to the external ip",
        eth(0x0800, &ipv4(6, Ipv4Addr::new(198, 51, 100, 8), 0, &l4(80))),
        Counter::Pass,
    ));
    let n = cases.len();
    for (name, frame, want) in cases {
        assert_eq!(bumped(&prog, &frame), expect(want), "{name}: counters");
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

#[test]
fn many_external_ips_follow_every_publish() {
    let Some(prog) = load(ProgKind::Uplink) else {
        return;
    };
    let node = Ipv4Addr::new(192, 168, 1, 10);
    let ext = |i: u8| Ipv4Addr::new(203, 0, 113, 10 + i);
    let cfg_with = |ips: Vec<Ipv4Addr>| UplinkConfig {
        node_addr: node,
        vxlan_port: Some(8472),
        ipip: true,
        pod_cidrs: vec![(Ipv4Addr::new(10, 244, 1, 0), 24)],
        external_ips: ips,
        service_cidr: Some((Ipv4Addr::new(10, 96, 0, 0), 12)),
        nodeport_range: Some((30000, 32767)),
        snat_range: Some((61000, 65535)),
        kernel_tcp_ports: Vec::new(),
    };
    let to = |dst: Ipv4Addr| eth(0x0800, &ipv4(6, dst, 0, &l4(443)));

    // 20 external IPs (the old fixed table held the pod CIDR and 7): every one steered.
    let twenty: Vec<Ipv4Addr> = (0..20).map(ext).collect();
    prog.set_config(&cfg_with(twenty.clone()))
        .expect("20 external IPs");
    for &ip in &twenty {
        assert_eq!(bumped(&prog, &to(ip)), expect(Counter::External), "{ip}");
    }
    assert_eq!(
        bumped(&prog, &to(Ipv4Addr::new(10, 244, 1, 99))),
        expect(Counter::PodCidr),
        "pod CIDR"
    );
    assert_eq!(prog.owned_prefixes().unwrap().len(), 21);
    // The node's own traffic and other addresses still go to the kernel.
    assert_eq!(
        bumped(&prog, &eth(0x0800, &ipv4(6, node, 0, &l4(22)))),
        expect(Counter::Pass),
        "ssh to the node"
    );
    assert_eq!(bumped(&prog, &to(ext(20))), expect(Counter::Pass), "21st");

    // Next publish: ext(3) removed, ext(20) added.
    let mut next: Vec<Ipv4Addr> = twenty.iter().copied().filter(|&ip| ip != ext(3)).collect();
    next.push(ext(20));
    prog.set_config(&cfg_with(next.clone())).expect("publish 2");
    assert_eq!(bumped(&prog, &to(ext(3))), expect(Counter::Pass), "removed");
    for &ip in &next {
        assert_eq!(bumped(&prog, &to(ip)), expect(Counter::External), "{ip}");
    }
    let mut listed: Vec<(Ipv4Addr, u8, Counter)> =
        next.iter().map(|&ip| (ip, 32, Counter::External)).collect();
    listed.push((Ipv4Addr::new(10, 244, 1, 0), 24, Counter::PodCidr));
    let mut got = prog.owned_prefixes().unwrap();
    listed.sort_by_key(|e| (e.0, e.1));
    got.sort_by_key(|e| (e.0, e.1));
    assert_eq!(got, listed, "the map holds exactly the new prefixes");

    // More prefixes than the map holds: refused with a clear error, nothing changes.
    let too_many: Vec<Ipv4Addr> = (0..MAX_OWNED_PREFIXES as u32)
        .map(|i| Ipv4Addr::from(0xc612_0000 + i))
        .collect();
    let err = prog.set_config(&cfg_with(too_many)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains("exceed its capacity of 65536"),
        "{err}"
    );
    let mut after = prog.owned_prefixes().unwrap();
    after.sort_by_key(|e| (e.0, e.1));
    assert_eq!(after, listed, "a refused configuration changes nothing");
    assert_eq!(
        bumped(&prog, &to(ext(20))),
        expect(Counter::External),
        "still steered after the refusal"
    );
}

/// While the configuration flips between two sets of external IPs, an address in both is
/// steered by every one of many concurrent runs (it is never absent from the map).
#[test]
fn kept_prefixes_never_disappear_during_a_publish() {
    let Some(prog) = load(ProgKind::Uplink) else {
        return;
    };
    let node = Ipv4Addr::new(192, 168, 1, 10);
    let kept = Ipv4Addr::new(203, 0, 113, 1);
    let cfg_with = |first: u32| UplinkConfig {
        node_addr: node,
        pod_cidrs: vec![(Ipv4Addr::new(10, 244, 1, 0), 24)],
        external_ips: std::iter::once(kept)
            .chain((first..first + 200).map(|i| Ipv4Addr::from(0xc612_0000 + i)))
            .collect(),
        ..Default::default()
    };
    prog.set_config(&cfg_with(0)).unwrap();
    let frame = eth(0x0800, &ipv4(17, kept, 0, &l4(53)));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let passed_before = prog.counter(Counter::Pass).unwrap();
    let runs = std::thread::scope(|s| {
        let runner = s.spawn(|| {
            let mut n = 0u64;
            // Bounded: at most 200000 runs, or until the publisher is done.
            while n < 200_000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                prog.test_run(&frame).unwrap();
                n += 1;
            }
            n
        });
        for round in 1..=20u32 {
            prog.set_config(&cfg_with(round % 2 * 1000)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        runner.join().unwrap()
    });
    assert!(runs > 0);
    assert_eq!(
        prog.counter(Counter::Pass).unwrap(),
        passed_before,
        "{runs} runs during 20 publishes: the kept address was passed to the kernel"
    );
    eprintln!("kept_prefixes_never_disappear_during_a_publish: {runs} runs, all steered");
}

#[test]
fn icmp_errors_about_masqueraded_flows() {
    let Some(prog) = load(ProgKind::Uplink) else {
        return;
    };
    let node = Ipv4Addr::new(192, 168, 1, 10);
    let router = Ipv4Addr::new(192, 168, 1, 1);
    let far = Ipv4Addr::new(198, 51, 100, 80);
    prog.set_config(&UplinkConfig {
        node_addr: node,
        vxlan_port: Some(8472),
        ipip: true,
        pod_cidrs: vec![(Ipv4Addr::new(10, 244, 1, 0), 24)],
        external_ips: vec![],
        service_cidr: Some((Ipv4Addr::new(10, 96, 0, 0), 12)),
        nodeport_range: Some((30000, 32767)),
        snat_range: Some((61000, 65535)),
        kernel_tcp_ports: Vec::new(),
    })
    .unwrap();
    // The packet a router quotes: what left the node (source = node address).
    let quoted = |src: Ipv4Addr, proto: u8, l4: &[u8]| {
        let mut q = ipv4_from(src, proto, far, 0x4000, l4);
        q.truncate(20 + 8); // the usual 8 bytes of L4
        q
    };
    let err_to_node = |ty: u8, code: u8, q: &[u8]| {
        let mut f = eth(
            0x0800,
            &ipv4_from(router, 1, node, 0, &icmp_err(ty, code, FRAG_NEEDED_1400, q)),
        );
        f.truncate(14 + 20 + 8 + q.len());
        f
    };
    let tcp_masq = quoted(node, 6, &l4_from(61234, 443));
    let udp_masq = quoted(node, 17, &l4_from(65535, 53));
    let echo_masq = quoted(node, 1, &[8, 0, 0, 0, 0xee, 0x48, 0, 1]);
    let mut with_options = ipv4_from(node, 17, far, 0, &[]);
    with_options[0] = 0x46; // 24-byte header: one option word
    with_options.extend_from_slice(&[1, 1, 1, 0]);
    with_options.extend_from_slice(&l4_from(61000, 53));

    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "frag needed, masqueraded tcp",
            err_to_node(3, 4, &tcp_masq),
            Counter::SnatIcmpError,
        ),
        (
            "frag needed, masqueraded udp",
            err_to_node(3, 4, &udp_masq),
            Counter::SnatIcmpError,
        ),
        (
            "frag needed, masqueraded echo",
            err_to_node(3, 4, &echo_masq),
            Counter::SnatIcmpError,
        ),
        (
            "time exceeded, masqueraded tcp",
            err_to_node(11, 0, &tcp_masq),
            Counter::SnatIcmpError,
        ),
        (
            "parameter problem, masqueraded udp",
            err_to_node(12, 0, &udp_masq),
            Counter::SnatIcmpError,
        ),
        (
            "port unreachable, quoted header with options",
            err_to_node(3, 3, &with_options),
            Counter::SnatIcmpError,
        ),
        (
            "quoted source port below the SNAT range (the node's own flow)",
            err_to_node(3, 4, &quoted(node, 6, &l4_from(40000, 443))),
            Counter::Pass,
        ),
        (
            "quoted echo identifier outside the SNAT range",
            err_to_node(3, 4, &quoted(node, 1, &[8, 0, 0, 0, 0x12, 0x34, 0, 1])),
            Counter::Pass,
        ),
        (
            "quoted echo reply (not a request the node sent)",
            err_to_node(3, 4, &quoted(node, 1, &[0, 0, 0, 0, 0xee, 0x48, 0, 1])),
            Counter::Pass,
        ),
        (
            "quoted destination port in the range, source port not",
            err_to_node(3, 4, &quoted(node, 17, &l4_from(5353, 62000))),
            Counter::Pass,
        ),
        (
            "quoted source is another address",
            err_to_node(
                3,
                4,
                &quoted(Ipv4Addr::new(192, 168, 1, 11), 6, &l4_from(61234, 443)),
            ),
            Counter::Pass,
        ),
        (
            "quoted protocol without ports (gre)",
            err_to_node(3, 4, &quoted(node, 47, &l4_from(61234, 443))),
            Counter::Pass,
        ),
        (
            "quoted non-first fragment",
            {
                let mut q = tcp_masq.clone();
                q[7] = 0xb9; // fragment offset 185
                err_to_node(3, 4, &q)
            },
            Counter::Pass,
        ),
        (
            "redirect (type 5) is not an error we take",
            err_to_node(5, 1, &tcp_masq),
            Counter::Pass,
        ),
        (
            "echo request to the node",
            err_to_node(8, 0, &tcp_masq),
            Counter::Pass,
        ),
        (
            "error about a masqueraded flow to another host",
            {
                let mut f = err_to_node(3, 4, &tcp_masq);
                f[14 + 16..14 + 20].copy_from_slice(&[192, 168, 1, 99]);
                f
            },
            Counter::Pass,
        ),
    ];
    let n = cases.len();
    for (name, frame, want) in cases {
        assert_eq!(bumped(&prog, &frame), expect(want), "{name}");
    }

    // Truncated anywhere: passed, never read out of bounds (the verifier insists; the
    // kernel runs each one). Cut the frame after every byte of the quote.
    let full = err_to_node(3, 4, &tcp_masq);
    let icmp_at = 14 + 20;
    let mut truncated = 0;
    for len in icmp_at..full.len() {
        let mut f = full[..len].to_vec();
        // Keep the outer IP total length consistent with what is there.
        let tot = ((len - 14) as u16).to_be_bytes();
        f[16..18].copy_from_slice(&tot);
        assert_eq!(
            bumped(&prog, &f),
            expect(Counter::Pass),
            "truncated to {len} bytes"
        );
        truncated += 1;
    }
    // Quote with a header length beyond the frame.
    let mut f = full.clone();
    f[icmp_at + 8] = 0x4f; // 60-byte quoted header, 28 bytes present
    assert_eq!(
        bumped(&prog, &f),
        expect(Counter::Pass),
        "quoted ihl too long"
    );
    let mut f = full.clone();
    f[icmp_at + 8] = 0x44; // ihl 16 < 20
    assert_eq!(
        bumped(&prog, &f),
        expect(Counter::Pass),
        "quoted ihl too short"
    );
    let mut f = full;
    f[icmp_at + 8] = 0x65; // IPv6 version nibble
    assert_eq!(bumped(&prog, &f), expect(Counter::Pass), "quoted version 6");

    // SNAT off (no masquerade): nothing of this is ours.
    prog.set_config(&UplinkConfig {
        node_addr: node,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        bumped(&prog, &err_to_node(3, 4, &tcp_masq)),
        expect(Counter::Pass),
        "SNAT off"
    );
    eprintln!(
        "icmp_errors_about_masqueraded_flows: {n} errors and {truncated} truncations classified"
    );
}

/// Fragmented datagrams to the node address: the first fragment is classified by its
/// ports, the later ones follow it (steered_frags), whatever their order afterwards.
#[test]
fn later_fragments_follow_their_first() {
    let Some(prog) = load(ProgKind::Uplink) else {
        return;
    };
    let node = Ipv4Addr::new(10, 99, 1, 1);
    prog.set_config(&UplinkConfig {
        node_addr: node,
        nodeport_range: Some((30000, 32767)),
        snat_range: Some((61000, 65535)),
        ..Default::default()
    })
    .expect("config");
    let client = Ipv4Addr::new(203, 0, 113, 5);
    let other = Ipv4Addr::new(203, 0, 113, 6);
    let frag =
        |src, id, off: u16, payload: &[u8]| eth(0x0800, &ipv4_id(src, 17, node, id, off, payload));
    let tail = [0u8; 24];
    // Offset 185 (x 8 bytes), more fragments; then the last one at 370.
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        (
            "later fragment before any first",
            frag(client, 7, 0x2000 | 185, &tail),
            Counter::Pass,
        ),
        (
            "first fragment, NodePort",
            frag(client, 7, 0x2000, &l4(30080)),
            Counter::NodePort,
        ),
        (
            "middle fragment of that datagram",
            frag(client, 7, 0x2000 | 185, &tail),
            Counter::Fragment,
        ),
        (
            "last fragment of that datagram",
            frag(client, 7, 370, &tail),
            Counter::Fragment,
        ),
        (
            "same id, another source",
            frag(other, 7, 370, &tail),
            Counter::Pass,
        ),
        (
            "same source, another id",
            frag(client, 8, 370, &tail),
            Counter::Pass,
        ),
        (
            "first fragment, SNAT reply",
            frag(other, 9, 0x2000, &l4(61234)),
            Counter::Snat,
        ),
        (
            "its last fragment",
            frag(other, 9, 185, &tail),
            Counter::Fragment,
        ),
        (
            "first fragment, kernel port",
            frag(other, 10, 0x2000, &l4(22)),
            Counter::Pass,
        ),
        (
            "its last fragment stays the kernel's",
            frag(other, 10, 185, &tail),
            Counter::Pass,
        ),
    ];
    for (name, frame, want) in cases {
        assert_eq!(bumped(&prog, &frame), expect(want), "{name}: counters");
    }
    // A large reply to a masqueraded ping: echo reply, identifier in the SNAT range.
    let icmp =
        |id, off: u16, payload: &[u8]| eth(0x0800, &ipv4_id(other, 1, node, id, off, payload));
    let echo_reply = [0u8, 0, 0, 0, 0xee, 0x48, 0, 1]; // type 0, identifier 61000
    assert_eq!(
        bumped(&prog, &icmp(20, 0x2000, &echo_reply)),
        expect(Counter::Snat),
        "fragmented echo reply"
    );
    assert_eq!(
        bumped(&prog, &icmp(20, 185, &tail)),
        expect(Counter::Fragment),
        "its last fragment"
    );
    // An entry older than the fragment lifetime (2 s) is ignored: the sender's IP id may have
    // come round to a datagram of the kernel's.
    assert_eq!(
        bumped(&prog, &frag(client, 30, 0x2000, &l4(30080))),
        expect(Counter::NodePort)
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        bumped(&prog, &frag(client, 30, 185, &tail)),
        expect(Counter::Pass),
        "stale entry"
    );
}
