//! NetworkPolicy through replay: default deny in each direction, address sets and ports,
//! endPort ranges, ipBlock except, replies and related ICMP errors through conntrack,
//! Service DNAT before the ingress check, the node's own traffic, and established flows
//! when a policy changes (keep and cut).

mod support;
use podswitch::config::{
    AddressSet, Established, NodeConfig, PodPolicy, PolicyDirection, PolicyPort, PolicyRule,
    services::Protocol,
};
use support::*;

const POD_A_NAME: &str = "default/pod-a";
const POD_C_NAME: &str = "default/pod-c";
const MAC_HOST: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0xfe];

fn set(name: &str, p: &[&str], except: &[&str]) -> AddressSet {
    AddressSet {
        name: name.into(),
        prefixes: p.iter().map(|s| s.parse().unwrap()).collect(),
        except: except.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

fn rule(
    policy: &str,
    idx: u32,
    peers: &[&str],
    ports: &[(Protocol, u16, Option<u16>)],
) -> PolicyRule {
    PolicyRule {
        policy: policy.into(),
        rule: idx,
        peers: peers.iter().map(|s| s.to_string()).collect(),
        ports: ports
            .iter()
            .map(|&(protocol, p, e)| PolicyPort {
                protocol,
                port: Some(p),
                end_port: e,
            })
            .collect(),
    }
}

fn dir(policies: &[&str], rules: Vec<PolicyRule>) -> Option<PolicyDirection> {
    Some(PolicyDirection {
        policies: policies.iter().map(|s| s.to_string()).collect(),
        rules,
    })
}

fn with(sets: Vec<AddressSet>, pods: Vec<PodPolicy>) -> NodeConfig {
    let mut c = config();
    c.address_sets = sets;
    c.pod_policies = pods;
    c
}

fn pod(name: &str, ingress: Option<PolicyDirection>, egress: Option<PolicyDirection>) -> PodPolicy {
    PodPolicy {
        pod: name.into(),
        ingress,
        egress,
    }
}

fn a_to_c(n: &mut Node, dport: u16, flags: u8) -> Out {
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, POD_C, 40000, dport, flags, 1, 0, &[]),
    )
}

fn c_to_a(n: &mut Node, sport: u16, flags: u8) -> Out {
    n.send(
        "veth-pod-c",
        tcp(MAC_C, MAC_GW, POD_C, POD_A, sport, 40000, flags, 1, 2, &[]),
    )
}

fn deny_ingress_c() -> PodPolicy {
    pod(POD_C_NAME, dir(&["default/deny"], vec![]), None)
}

#[test]
fn default_deny_ingress_routed_and_bridged() {
    let mut n = Node::new(&with(vec![], vec![deny_ingress_c()]));
    a_to_c(&mut n, 8080, SYN).dropped("policy_denied_ingress");
    // Bridged straight to C's MAC: routed through netpol all the same.
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_C, POD_A, POD_C, 40001, 8080, SYN, 1, 0, &[]),
    )
    .dropped("policy_denied_ingress");
    // C itself may still open connections (not isolated for egress), and its peer answers.
    let (port, p) = c_to_a(&mut n, 5000, SYN).one();
    assert_eq!((port.as_str(), p.dst), ("veth-pod-a", POD_A));
    let (port, _) = n
        .send(
            "veth-pod-a",
            tcp(
                MAC_A,
                MAC_GW,
                POD_A,
                POD_C,
                40000,
                5000,
                SYN | ACK,
                1,
                2,
                &[],
            ),
        )
        .one();
    assert_eq!(port, "veth-pod-c", "the reply to C's own flow passes");
    let d = &n.snap.policy.by_ip(POD_C).unwrap().ingress;
    assert_eq!(
        d.as_ref()
            .unwrap()
            .denied
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn default_deny_egress() {
    let mut n = Node::new(&with(
        vec![],
        vec![pod(POD_A_NAME, None, dir(&["default/deny-egress"], vec![]))],
    ));
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, POD_B, 40000, 80, SYN, 1, 0, &[]),
    )
    .dropped("policy_denied_egress");
    n.send(
        "veth-pod-a",
        udp(MAC_A, MAC_GW, POD_A, INET, 5000, 53, b"q"),
    )
    .dropped("policy_denied_egress");
    // Traffic from B into A is not affected by A's egress isolation, nor its replies.
    let (port, _) = n
        .send(
            "eth0",
            from_node2(&tcp(
                MAC_NODE2,
                VTEP1,
                POD_B,
                POD_A,
                1234,
                80,
                SYN,
                1,
                0,
                &[],
            )),
        )
        .one();
    assert_eq!(port, "veth-pod-a");
    let (port, _) = n
        .send(
            "veth-pod-a",
            tcp(MAC_A, MAC_GW, POD_A, POD_B, 80, 1234, SYN | ACK, 1, 2, &[]),
        )
        .one();
    assert_eq!(port, "eth0", "reply of an allowed inbound flow leaves");
}

#[test]
fn allow_by_address_set_and_port_with_end_port() {
    let cfg = with(
        vec![set("a", &["10.244.1.10/32"], &[])],
        vec![pod(
            POD_C_NAME,
            dir(
                &["default/web"],
                vec![rule(
                    "default/web",
                    0,
                    &["a"],
                    &[
                        (Protocol::Tcp, 8080, None),
                        (Protocol::Tcp, 9000, Some(9100)),
                    ],
                )],
            ),
            None,
        )],
    );
    let mut n = Node::new(&cfg);
    assert_eq!(a_to_c(&mut n, 8080, SYN).one().0, "veth-pod-c");
    assert_eq!(a_to_c(&mut n, 9050, SYN).one().0, "veth-pod-c");
    a_to_c(&mut n, 9101, SYN).dropped("policy_denied_ingress");
    a_to_c(&mut n, 8081, SYN).dropped("policy_denied_ingress");
    n.send(
        "veth-pod-a",
        udp(MAC_A, MAC_GW, POD_A, POD_C, 5000, 8080, b"x"),
    )
    .dropped("policy_denied_ingress");
    // From B (not in the set) on the allowed port.
    let out = n.send(
        "eth0",
        from_node2(&tcp(
            MAC_NODE2,
            VTEP1,
            POD_B,
            POD_C,
            1234,
            8080,
            SYN,
            1,
            0,
            &[],
        )),
    );
    out.dropped("policy_denied_ingress");
    // The trace names the rule.
    let mut p = podswitch::tools::trace::run(
        &n.snap,
        n.snap.port_by_name("veth-pod-a").unwrap(),
        &tcp(MAC_A, MAC_GW, POD_A, POD_C, 41000, 9000, SYN, 1, 0, &[]),
    );
    let text = podswitch::tools::trace::render(&p);
    assert!(
        text.contains(
            "ingress of pod default/pod-c from 10.244.1.10: allowed by default/web rule 0"
        ),
        "{text}"
    );
    p = podswitch::tools::trace::run(
        &n.snap,
        n.snap.port_by_name("veth-pod-a").unwrap(),
        &tcp(MAC_A, MAC_GW, POD_A, POD_C, 41000, 22, SYN, 1, 0, &[]),
    );
    let text = podswitch::tools::trace::render(&p);
    assert!(
        text.contains("no policy selecting the pod allowed it (selected by default/web)")
            && text.contains("policy_denied_ingress"),
        "{text}"
    );
}

#[test]
fn ip_block_except_through_sets() {
    let cfg = with(
        vec![set(
            "cluster-but-node2",
            &["10.244.0.0/16"],
            &["10.244.2.0/24"],
        )],
        vec![pod(
            POD_C_NAME,
            dir(
                &["default/ipblock"],
                vec![rule("default/ipblock", 0, &["cluster-but-node2"], &[])],
            ),
            None,
        )],
    );
    let mut n = Node::new(&cfg);
    assert_eq!(a_to_c(&mut n, 80, SYN).one().0, "veth-pod-c");
    n.send(
        "eth0",
        from_node2(&tcp(
            MAC_NODE2,
            VTEP1,
            POD_B,
            POD_C,
            1234,
            80,
            SYN,
            1,
            0,
            &[],
        )),
    )
    .dropped("policy_denied_ingress");
}

/// A and C both isolated both ways; only A→C:8080 allowed. The reply C→A passes by
/// conntrack though neither C's egress nor A's ingress allows it.
#[test]
fn replies_pass_through_conntrack() {
    let cfg = with(
        vec![
            set("a", &["10.244.1.10/32"], &[]),
            set("c", &["10.244.1.11/32"], &[]),
        ],
        vec![
            pod(
                POD_A_NAME,
                dir(&["default/deny"], vec![]),
                dir(
                    &["default/to-c"],
                    vec![rule(
                        "default/to-c",
                        0,
                        &["c"],
                        &[(Protocol::Tcp, 8080, None)],
                    )],
                ),
            ),
            pod(
                POD_C_NAME,
                dir(
                    &["default/from-a"],
                    vec![rule(
                        "default/from-a",
                        0,
                        &["a"],
                        &[(Protocol::Tcp, 8080, None)],
                    )],
                ),
                dir(&["default/deny"], vec![]),
            ),
        ],
    );
    let mut n = Node::new(&cfg);
    let netpol =
        |n: &Node| n.counters().stages[podswitch::pipeline::Stage::NetPol as usize].packets;
    assert_eq!(a_to_c(&mut n, 8080, SYN).one().0, "veth-pod-c");
    assert_eq!(netpol(&n), 1);
    // The rest of the flow, both ways, is tracked: never handed to netpol, and its
    // untranslated entry rewrites nothing (the bytes arrive as sent).
    let reply = c_to_a(&mut n, 8080, SYN | ACK).one();
    assert_eq!(reply.0, "veth-pod-a");
    let (sent, got) = (
        tcp(
            MAC_C,
            MAC_GW,
            POD_C,
            POD_A,
            8080,
            40000,
            SYN | ACK,
            1,
            2,
            &[],
        ),
        &reply.1,
    );
    assert_eq!(got.l4(), &sent[34..], "TCP header and payload as sent");
    assert_eq!(a_to_c(&mut n, 8080, ACK).one().0, "veth-pod-c");
    assert_eq!(netpol(&n), 1);
    // A new flow C→A is still denied (egress of C first).
    c_to_a(&mut n, 8081, SYN).dropped("policy_denied_egress");
    assert!(
        n.dump()
            .contains("orig=(src=10.244.1.10,dst=10.244.1.11,sport=40000,dport=8080)")
    );
}

#[test]
fn icmp_errors_of_allowed_flows_pass() {
    let cfg = with(
        vec![set("b", &["10.244.2.20/32"], &[])],
        vec![pod(
            POD_A_NAME,
            dir(&["default/deny"], vec![]),
            dir(
                &["default/dns"],
                vec![rule("default/dns", 0, &["b"], &[(Protocol::Udp, 53, None)])],
            ),
        )],
    );
    let mut n = Node::new(&cfg);
    let q = udp(MAC_A, MAC_GW, POD_A, POD_B, 5353, 53, b"query");
    assert_eq!(n.send("veth-pod-a", q.clone()).one().0, "eth0");
    // B's node answers port unreachable, quoting A's datagram.
    let err = icmp_error(MAC_NODE2, VTEP1, POD_B, POD_A, 3, 3, [0; 4], &q[14..42]);
    assert_eq!(n.send("eth0", from_node2(&err)).one().0, "veth-pod-a");
    // An error quoting a flow nobody allowed is judged as ICMP from B: denied.
    let other = udp(MAC_A, MAC_GW, POD_A, POD_B, 5354, 53, b"query");
    let err = icmp_error(MAC_NODE2, VTEP1, POD_B, POD_A, 3, 3, [0; 4], &other[14..42]);
    n.send("eth0", from_node2(&err))
        .dropped("policy_denied_ingress");
}

#[test]
fn service_dnat_then_ingress_policy_on_the_endpoint() {
    let mut cfg = with(
        vec![set("a", &["10.244.1.10/32"], &[])],
        vec![pod(
            POD_C_NAME,
            dir(
                &["default/web"],
                vec![rule(
                    "default/web",
                    0,
                    &["a"],
                    &[(Protocol::Tcp, 8080, None)],
                )],
            ),
            None,
        )],
    );
    let web = cfg.services.iter_mut().find(|s| s.name == "web").unwrap();
    web.endpoints
        .retain(|e| e.ip == std::net::Ipv4Addr::from(POD_C));
    let mut n = Node::new(&cfg);
    // A → ClusterIP:80, DNATed to C:8080, which the rule allows.
    let (port, p) = n
        .send(
            "veth-pod-a",
            tcp(MAC_A, MAC_GW, POD_A, VIP, 40000, 80, SYN, 1, 0, &[]),
        )
        .one();
    assert_eq!((port.as_str(), p.dst, p.dport), ("veth-pod-c", POD_C, 8080));
    // The reply is reverse-translated and passes.
    let (port, p) = c_to_a(&mut n, 8080, SYN | ACK).one();
    assert_eq!((port.as_str(), p.src, p.sport), ("veth-pod-a", VIP, 80));
    // A rule on the Service port (80) does not allow the endpoint port: denied, twice
    // (the denied flow's conntrack entry is gone, so its retransmission is judged again).
    let mut cfg2 = cfg.clone();
    cfg2.pod_policies[0].ingress.as_mut().unwrap().rules[0].ports[0].port = Some(80);
    n.publish(&cfg2);
    for _ in 0..2 {
        n.send(
            "veth-pod-a",
            tcp(MAC_A, MAC_GW, POD_A, VIP, 40010, 80, SYN, 1, 0, &[]),
        )
        .dropped("policy_denied_ingress");
    }
    assert!(!n.dump().contains("sport=40010"));
}

#[test]
fn node_itself_reaches_isolated_pods() {
    let cfg = with(
        vec![],
        vec![pod(
            POD_C_NAME,
            dir(&["default/deny"], vec![]),
            dir(&["default/deny"], vec![]),
        )],
    );
    let mut n = Node::new(&cfg);
    // A kubelet probe from the node's stack (host port) to C.
    let (port, _) = n
        .send(
            "psw-host",
            tcp(MAC_HOST, MAC_GW, NODE, POD_C, 33000, 8080, SYN, 1, 0, &[]),
        )
        .one();
    assert_eq!(port, "veth-pod-c");
    // C's answer passes although C is isolated for egress.
    let (port, _) = n
        .send(
            "veth-pod-c",
            tcp(
                MAC_C,
                MAC_GW,
                POD_C,
                NODE,
                8080,
                33000,
                SYN | ACK,
                1,
                2,
                &[],
            ),
        )
        .one();
    assert_eq!(port, "psw-host");
    // The same from a pod is denied.
    a_to_c(&mut n, 8080, SYN).dropped("policy_denied_ingress");
}

fn established_then_deny(mode: Established) -> (Out, usize) {
    let allow = with(
        vec![set("a", &["10.244.1.10/32"], &[])],
        vec![pod(
            POD_C_NAME,
            dir(
                &["default/web"],
                vec![rule(
                    "default/web",
                    0,
                    &["a"],
                    &[(Protocol::Tcp, 8080, None)],
                )],
            ),
            None,
        )],
    );
    let mut cfg = allow.clone();
    cfg.policy.established = mode;
    let mut n = Node::new(&cfg);
    assert_eq!(a_to_c(&mut n, 8080, SYN).one().0, "veth-pod-c");
    assert_eq!(c_to_a(&mut n, 8080, SYN | ACK).one().0, "veth-pod-a");
    let mut deny = cfg.clone();
    deny.pod_policies = vec![deny_ingress_c()];
    n.publish(&deny);
    let cut = podswitch::conntrack::policy_cut::cut(n.ct(), &n.snap, n.now_ns());
    (a_to_c(&mut n, 8080, ACK), cut)
}

#[test]
fn established_flows_are_kept_by_default() {
    let (out, cut) = established_then_deny(Established::Keep);
    assert_eq!(cut, 0);
    assert_eq!(out.one().0, "veth-pod-c");
}

#[test]
fn established_flows_are_cut_when_configured() {
    let (out, cut) = established_then_deny(Established::Cut);
    assert_eq!(cut, 1);
    out.dropped("policy_denied_ingress");
}

#[test]
fn bad_policy_configuration_names_the_object() {
    let mut cfg = with(
        vec![set("a", &["10.244.1.10/32"], &[])],
        vec![pod(
            "default/nope",
            dir(&["default/x"], vec![rule("default/x", 0, &["a"], &[])]),
            None,
        )],
    );
    let e = podswitch::tables::build::build(&cfg, 1).err().unwrap();
    assert!(
        e.contains("pod_policy \"default/nope\": no such pod"),
        "{e}"
    );
    cfg.pod_policies[0].pod = POD_C_NAME.into();
    cfg.pod_policies[0].ingress.as_mut().unwrap().rules[0].peers = vec!["missing".into()];
    cfg.pod_policies[0].ingress.as_mut().unwrap().rules[0].ports = vec![PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(90),
        end_port: Some(80),
    }];
    let e = podswitch::tables::build::build(&cfg, 1).err().unwrap();
    assert!(
        e.contains("rule default/x 0: no address_set \"missing\""),
        "{e}"
    );
    assert!(e.contains("end_port 80 is below port 90"), "{e}");
}

fn control(cfg: NodeConfig) -> podswitch::daemon::control::Control {
    use std::sync::Arc;
    let w = Arc::new(vec![Arc::new(
        podswitch::daemon::worker::WorkerShared::new(0).expect("worker"),
    )]);
    let (tx, _rx) = crossbeam::channel::unbounded();
    podswitch::daemon::control::Control::start(
        cfg,
        w,
        vec![tx],
        Arc::new(podswitch::port::mem::MemFactory),
    )
    .expect("control starts")
}

/// Address sets and pod policies through the control socket's requests, inside a `Batch`;
/// an unchanged pod keeps its compiled rules; `dump policies` in both forms.
#[test]
fn control_requests_in_a_batch_and_dump() {
    use podswitch::daemon::protocol::Request;
    let c = control(config());
    let r = c.handle(Request::Batch {
        changes: vec![
            Request::AddAddressSet {
                set: set("a", &["10.244.1.10/32"], &[]),
            },
            Request::SetPodPolicy {
                policy: pod(
                    POD_C_NAME,
                    dir(
                        &["default/web"],
                        vec![rule(
                            "default/web",
                            0,
                            &["a"],
                            &[(Protocol::Tcp, 8080, Some(8090))],
                        )],
                    ),
                    None,
                ),
            },
            Request::SetPodPolicy {
                policy: pod(POD_A_NAME, None, dir(&["default/deny"], vec![])),
            },
        ],
    });
    assert!(r.ok, "{:?}", r.error);
    let before = c.snapshot();
    // Removing a set still referred to is refused, with the pod and rule named.
    let r = c.handle(Request::RemoveAddressSet { name: "a".into() });
    assert!(!r.ok);
    let e = r.error.unwrap();
    assert!(
        e.contains("pod_policy \"default/pod-c\" ingress rule default/web 0: no address_set \"a\""),
        "{e}"
    );
    // Changing A's policy leaves C's compiled rules shared.
    let r = c.handle(Request::RemovePodPolicy {
        pod: POD_A_NAME.into(),
    });
    assert!(r.ok, "{:?}", r.error);
    let after = c.snapshot();
    assert!(std::ptr::eq(
        before.snap.policy.by_ip(POD_C).unwrap(),
        after.snap.policy.by_ip(POD_C).unwrap()
    ));
    assert!(after.snap.policy.by_ip(POD_A).is_none());
    let r = c.handle(Request::Dump {
        table: "policies".into(),
    });
    assert!(r.ok, "{:?}", r.error);
    assert!(
        r.text
            .contains("pod default/pod-c (10.244.1.11, port veth-pod-c)"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("[0] default/web rule 0: from/to a on tcp/8080-8090"),
        "{}",
        r.text
    );
    let pods = r.data.as_array().unwrap();
    assert_eq!(pods.len(), 1);
    let p = &pods[0];
    assert_eq!(p["ip"], "10.244.1.11");
    assert_eq!(p["port"], "veth-pod-c");
    assert!(p["egress"].is_null());
    assert_eq!(p["ingress"]["rules"][0]["ports"][0]["end_port"], 8090);
    assert_eq!(
        p["ingress"]["compiled"]["tcp"][0]["ranges"][0]["first"],
        "10.244.1.10"
    );
}

/// Removing a pod (a CNI DEL) removes its policy with it, so the DEL is never refused while
/// the controller has not caught up yet.
#[test]
fn removing_a_selected_pod_removes_its_policy() {
    use podswitch::daemon::protocol::Request;
    let c = control(with(vec![], vec![deny_ingress_c()]));
    assert!(c.snapshot().snap.policy.by_ip(POD_C).is_some());
    let r = c.handle(Request::RemovePod {
        name: POD_C_NAME.into(),
    });
    assert!(r.ok, "{:?}", r.error);
    assert!(c.snapshot().snap.policy.by_ip(POD_C).is_none());
}
